#pragma once
// NOTE [BatchedTensor]
// A BatchedTensor is the logical per-example view of a physical tensor `value`
// with one extra dimension, `bdim`, that runs over the batch of level `level`.
// Its sizes and strides are the value's with bdim removed; storage access is
// refused (there is no per-example storage). Nested vmaps nest BatchedTensors,
// innermost level outermost: BatchedTensor(l=2, BatchedTensor(l=1, plain)).
#include <ATen/core/Tensor.h>
#include <c10/core/TensorImpl.h>

#include <memory>
#include <optional>

namespace torchfunc {

class BatchedTensorImpl : public c10::TensorImpl {
 public:
  BatchedTensorImpl(at::Tensor value, int64_t bdim, int64_t level, std::shared_ptr<bool> alive);

  const at::Tensor& value() const { return value_; }
  int64_t bdim() const { return bdim_; }
  int64_t level() const { return level_; }
  bool alive() const { return *alive_; }
  const std::shared_ptr<bool>& life_handle() const { return alive_; }

  // For in-place view rules (unsqueeze_, transpose_, ...): replace the physical
  // value and its bdim, then recompute the logical metadata.
  void set_value(at::Tensor value, int64_t bdim);
  void refresh_metadata();
  // The physical dim of logical dim `dim` (wrapped).
  int64_t actual_dim(int64_t dim) const;

  c10::IntArrayRef sizes_custom() const override;
  c10::SymIntArrayRef sym_sizes_custom() const override;
  int64_t size_custom(int64_t d) const override;
  c10::SymInt sym_size_custom(int64_t d) const override;
  c10::IntArrayRef strides_custom() const override;
  c10::SymIntArrayRef sym_strides_custom() const override;
  int64_t dim_custom() const override;
  int64_t numel_custom() const override;
  c10::SymInt sym_numel_custom() const override;
  c10::SymBool sym_is_contiguous_custom(at::MemoryFormat memory_format) const override;
  const char* tensorimpl_type_name() const override;
  void set_size(int64_t dim, int64_t new_size) override;
  void set_stride(int64_t dim, int64_t new_stride) override;
  void set_storage_offset(int64_t storage_offset) override;
  c10::intrusive_ptr<c10::TensorImpl> shallow_copy_and_detach(
      const c10::VariableVersion& version_counter,
      bool allow_tensor_metadata_change) const override;
  c10::intrusive_ptr<c10::TensorImpl> shallow_copy_and_detach(
      c10::VariableVersion&& version_counter,
      bool allow_tensor_metadata_change) const override;
  void shallow_copy_from(const c10::intrusive_ptr<c10::TensorImpl>& impl) override;

 private:
  at::Tensor value_;
  int64_t bdim_;
  int64_t level_;
  std::shared_ptr<bool> alive_;
};

BatchedTensorImpl* maybe_batched(const at::Tensor& t);
// Wraps `value` as batched at `level` along `bdim`; a nullopt bdim returns value.
at::Tensor make_batched(at::Tensor value, std::optional<int64_t> bdim, int64_t level);
// (value, bdim) of `t` at `level`: unwraps t if it is batched at that level,
// else returns (t, nullopt). Refuses a BatchedTensor whose level is dead.
std::pair<at::Tensor, std::optional<int64_t>> unwrap_at(const at::Tensor& t, int64_t level);
bool batched_at(const at::Tensor& t, int64_t level);

} // namespace torchfunc
