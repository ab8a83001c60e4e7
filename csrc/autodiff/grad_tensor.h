#pragma once
// NOTE [GradTensor]
// A GradTensor wraps `value` for one grad level. It is a TensorImpl of its own,
// with its own AutogradMeta, so each level records its own graph: grad(grad(f))
// builds GradTensor(l=2, GradTensor(l=1, x)) and two independent graphs, which is
// what keeps nested derivatives from confusing each other's perturbations.
// Sizes and strides mirror the value's; storage access is refused.
// When the level is popped the GradTensor is *dead*: every op unwraps it to its
// value (front key, or kGradKey's fallback when no transform is active).
#include <ATen/core/Tensor.h>
#include <c10/core/TensorImpl.h>

#include <memory>

namespace torchfunc {

class GradTensorImpl : public c10::TensorImpl {
 public:
  GradTensorImpl(at::Tensor value, int64_t level, std::shared_ptr<bool> alive, bool is_immutable,
                 bool shares_storage = false);

  const at::Tensor& value() const { return value_; }
  int64_t level() const { return level_; }
  bool alive() const { return *alive_; }
  // A tensor the function captured from outside, lifted to this level: in-place
  // ops on it are refused (they would mutate the caller's tensor behind autograd).
  bool is_immutable() const { return is_immutable_; }
  void refresh_metadata();

  const char* tensorimpl_type_name() const override;
  c10::intrusive_ptr<c10::TensorImpl> shallow_copy_and_detach(
      const c10::VariableVersion& version_counter,
      bool allow_tensor_metadata_change) const override;
  c10::intrusive_ptr<c10::TensorImpl> shallow_copy_and_detach(
      c10::VariableVersion&& version_counter,
      bool allow_tensor_metadata_change) const override;
  void shallow_copy_from(const c10::intrusive_ptr<c10::TensorImpl>& impl) override;

 private:
  at::Tensor value_;
  int64_t level_;
  std::shared_ptr<bool> alive_;
  bool is_immutable_;
  bool shares_storage_;  // NOTE [Fresh allocations share their storage]
};

GradTensorImpl* maybe_grad_tensor(const at::Tensor& t);
// Wraps t for the interpreter at `level`, which must be on the stack.
at::Tensor wrap_for_grad(const at::Tensor& t, int64_t level, bool is_immutable = false);
// Same, for an interpreter that is not on the stack right now (it is lowered).
at::Tensor wrap_for_grad(const at::Tensor& t, int64_t level, const std::shared_ptr<bool>& life_handle,
                         bool shares_storage = false);
// The value of a GradTensor at `level`; any other tensor is returned as is.
at::Tensor unwrap_for_grad(const at::Tensor& t, int64_t level);
// A GradTensor whose level was popped.
inline bool is_dead_grad_tensor(const at::Tensor& t) {
  auto* g = maybe_grad_tensor(t);
  return g != nullptr && !g->alive();
}
// Peels dead GradTensors (a dead wrapper's value may itself be dead).
at::Tensor unwrap_if_dead(const at::Tensor& t);

} // namespace torchfunc
