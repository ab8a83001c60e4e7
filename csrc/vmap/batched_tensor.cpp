#include "batched_tensor.h"

#include "../errors.h"
#include "../keys.h"
#include "../stack.h"

#include <c10/core/DispatchKeySet.h>
#include <c10/util/irange.h>

#include <typeinfo>

namespace torchfunc {

BatchedTensorImpl::BatchedTensorImpl(at::Tensor value, int64_t bdim, int64_t level,
                                     std::shared_ptr<bool> alive)
    : c10::TensorImpl(wrapper_base_keys(value).add(kBatchedKey).add(kSubclassMarkerKey), value.dtype(), value.device()),
      value_(std::move(value)),
      bdim_(bdim),
      level_(level),
      alive_(std::move(alive)) {
  static const std::string storage_error = errors::storage_access("BatchedTensor");
  release_storage_and_set_meta_custom_data_ptr_error_msg_(storage_error);
  set_custom_sizes_strides(c10::TensorImpl::SizesStridesPolicy::CustomStrides);
  refresh_metadata();
}

void BatchedTensorImpl::refresh_metadata() {
  const auto n = value_.dim();
  TORCH_INTERNAL_ASSERT(n > 0 && bdim_ >= 0 && bdim_ < n);
  c10::SmallVector<int64_t, 8> sizes;
  c10::SmallVector<int64_t, 8> strides;
  for (const auto d : c10::irange(n)) {
    if (d != bdim_) {
      sizes.push_back(value_.size(d));
      strides.push_back(value_.stride(d));
    }
  }
  sizes_and_strides_.set_sizes(sizes);
  for (const auto d : c10::irange(static_cast<int64_t>(strides.size()))) {
    sizes_and_strides_.stride_at_unchecked(d) = strides[d];
  }
  // Examples share the value's storage; example 0 starts at the value's offset.
  // (Forward-mode AD compares a view's tangent layout, offset included, with its primal.)
  storage_offset_ = value_.storage_offset();
  refresh_numel();
  refresh_contiguous();
}

void BatchedTensorImpl::set_value(at::Tensor value, int64_t bdim) {
  value_ = std::move(value);
  bdim_ = bdim;
  refresh_metadata();
}

int64_t BatchedTensorImpl::actual_dim(int64_t dim) const {
  const auto d = c10::maybe_wrap_dim(dim, dim_custom());
  return d >= bdim_ ? d + 1 : d;
}

c10::IntArrayRef BatchedTensorImpl::sizes_custom() const { return sizes_default(); }
c10::SymIntArrayRef BatchedTensorImpl::sym_sizes_custom() const { return sym_sizes_default(); }
int64_t BatchedTensorImpl::size_custom(int64_t d) const {
  return sizes_default()[c10::maybe_wrap_dim(d, dim_default(), false)];
}
c10::SymInt BatchedTensorImpl::sym_size_custom(int64_t d) const { return size_custom(d); }
c10::IntArrayRef BatchedTensorImpl::strides_custom() const { return strides_default(); }
c10::SymIntArrayRef BatchedTensorImpl::sym_strides_custom() const { return sym_strides_default(); }
int64_t BatchedTensorImpl::dim_custom() const { return dim_default(); }
int64_t BatchedTensorImpl::numel_custom() const { return numel_default(); }
c10::SymInt BatchedTensorImpl::sym_numel_custom() const { return numel_default(); }
// Contiguity in any memory format is the logical (per-example) tensor's, from the flags
// refresh_metadata computes off the logical sizes and strides. (torch.func raises for
// anything but the default format; max_unpool2d's backward asks for channels_last.)
c10::SymBool BatchedTensorImpl::sym_is_contiguous_custom(at::MemoryFormat memory_format) const {
  return is_contiguous_default(memory_format);
}
const char* BatchedTensorImpl::tensorimpl_type_name() const { return "torchfunc.BatchedTensorImpl"; }

void BatchedTensorImpl::set_size(int64_t, int64_t) {
  TORCH_CHECK(false, "vmap: cannot resize a BatchedTensor's metadata in place (set_size).");
}
void BatchedTensorImpl::set_stride(int64_t, int64_t) {
  TORCH_CHECK(false, "vmap: cannot restride a BatchedTensor in place (set_stride).");
}
void BatchedTensorImpl::set_storage_offset(int64_t) {
  TORCH_CHECK(false, "vmap: cannot change a BatchedTensor's storage offset in place.");
}
c10::intrusive_ptr<c10::TensorImpl> BatchedTensorImpl::shallow_copy_and_detach(
    const c10::VariableVersion&, bool) const {
  TORCH_CHECK(false, "accessing `data` under vmap transform is not allowed (torchfunc: `.data` and shallow "
                     "copies of a BatchedTensor are not supported; use .detach() instead.)");
}
c10::intrusive_ptr<c10::TensorImpl> BatchedTensorImpl::shallow_copy_and_detach(
    c10::VariableVersion&&, bool) const {
  TORCH_CHECK(false, "accessing `data` under vmap transform is not allowed (torchfunc: `.data` and shallow "
                     "copies of a BatchedTensor are not supported; use .detach() instead.)");
}
void BatchedTensorImpl::shallow_copy_from(const c10::intrusive_ptr<c10::TensorImpl>&) {
  TORCH_CHECK(false, "vmap: assigning to `.data` of a BatchedTensor is not supported.");
}

BatchedTensorImpl* maybe_batched(const at::Tensor& t) {
  // NOTE [Wrapper identity is the TensorImpl type]
  // The key alone does not make a BatchedTensor: a wrapper of another library
  // around one (core's FunctionalTensorWrapper under functionalize) copies its
  // value's keys. The type check makes such a tensor "not ours" instead of a bad cast.
  if (!t.defined() || !t.key_set().has(kBatchedKey) ||
      typeid(*t.unsafeGetTensorImpl()) != typeid(BatchedTensorImpl)) {
    return nullptr;
  }
  return static_cast<BatchedTensorImpl*>(t.unsafeGetTensorImpl());
}

at::Tensor make_batched(at::Tensor value, std::optional<int64_t> bdim, int64_t level) {
  if (!bdim.has_value() || !value.defined()) {
    return value;
  }
  const auto* interp = find_interpreter(level);
  TORCH_INTERNAL_ASSERT(interp != nullptr, "make_batched: no interpreter at level ", level);
  if (auto* inner = maybe_batched(value)) {
    TORCH_INTERNAL_ASSERT(inner->level() < level, "make_batched: nesting level ", level,
                          " over level ", inner->level());
  }
  const auto d = c10::maybe_wrap_dim(*bdim, value.dim());
  return at::detail::make_tensor<BatchedTensorImpl>(std::move(value), d, level, interp->life_handle());
}

std::pair<at::Tensor, std::optional<int64_t>> unwrap_at(const at::Tensor& t, int64_t level) {
  auto* b = maybe_batched(t);
  if (b == nullptr || b->level() != level) {
    return {t, std::nullopt};
  }
  TORCH_CHECK(b->alive(), errors::escaped_tensor());
  return {b->value(), b->bdim()};
}

bool batched_at(const at::Tensor& t, int64_t level) {
  auto* b = maybe_batched(t);
  return b != nullptr && b->level() == level;
}

} // namespace torchfunc
