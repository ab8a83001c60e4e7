#include "grad_tensor.h"

#include "../errors.h"
#include "../keys.h"
#include "../stack.h"

#include <typeinfo>

namespace torchfunc {
GradTensorImpl::GradTensorImpl(at::Tensor value, int64_t level, std::shared_ptr<bool> alive,
                               bool is_immutable)
    : c10::TensorImpl(wrapper_base_keys(value).add(kGradKey), value.dtype(), value.device()),
      value_(std::move(value)),
      level_(level),
      alive_(std::move(alive)),
      is_immutable_(is_immutable) {
  release_storage_and_set_meta_custom_data_ptr_error_msg_(errors::storage_access("GradTensor"));
  refresh_metadata();
}

void GradTensorImpl::refresh_metadata() {
  sizes_and_strides_.set_sizes(value_.sizes());
  const auto strides = value_.strides();
  for (size_t d = 0; d < strides.size(); ++d) {
    sizes_and_strides_.stride_at_unchecked(d) = strides[d];
  }
  storage_offset_ = value_.storage_offset();
  refresh_numel();
  refresh_contiguous();
}

const char* GradTensorImpl::tensorimpl_type_name() const { return "torchfunc.GradTensorImpl"; }

c10::intrusive_ptr<c10::TensorImpl> GradTensorImpl::shallow_copy_and_detach(
    const c10::VariableVersion& version_counter, bool allow_tensor_metadata_change) const {
  auto impl = c10::make_intrusive<GradTensorImpl>(value_, level_, alive_, is_immutable_);
  impl->set_version_counter(version_counter);
  impl->set_allow_tensor_metadata_change(allow_tensor_metadata_change);
  return impl;
}

c10::intrusive_ptr<c10::TensorImpl> GradTensorImpl::shallow_copy_and_detach(
    c10::VariableVersion&& version_counter, bool allow_tensor_metadata_change) const {
  auto impl = c10::make_intrusive<GradTensorImpl>(value_, level_, alive_, is_immutable_);
  impl->set_version_counter(std::move(version_counter));
  impl->set_allow_tensor_metadata_change(allow_tensor_metadata_change);
  return impl;
}

void GradTensorImpl::shallow_copy_from(const c10::intrusive_ptr<c10::TensorImpl>&) {
  TORCH_CHECK(false, "grad: assigning to `.data` of a tensor inside a grad transform is not "
                     "supported; use torch.no_grad() and an in-place copy_ instead.");
}

GradTensorImpl* maybe_grad_tensor(const at::Tensor& t) {
  // NOTE [Wrapper identity is the TensorImpl type] (vmap/batched_tensor.cpp)
  if (!t.defined() || !t.key_set().has(kGradKey) ||
      typeid(*t.unsafeGetTensorImpl()) != typeid(GradTensorImpl)) {
    return nullptr;
  }
  return static_cast<GradTensorImpl*>(t.unsafeGetTensorImpl());
}

at::Tensor wrap_for_grad(const at::Tensor& t, int64_t level, bool is_immutable) {
  if (!t.defined()) {
    return t;
  }
  const auto* interp = find_interpreter(level);
  TORCH_INTERNAL_ASSERT(interp != nullptr, "wrap_for_grad: no interpreter at level ", level);
  return at::detail::make_tensor<GradTensorImpl>(t, level, interp->life_handle(), is_immutable);
}

at::Tensor wrap_for_grad(const at::Tensor& t, int64_t level, const std::shared_ptr<bool>& life_handle) {
  if (!t.defined()) {
    return t;
  }
  return at::detail::make_tensor<GradTensorImpl>(t, level, life_handle, /*is_immutable=*/false);
}

at::Tensor unwrap_for_grad(const at::Tensor& t, int64_t level) {
  auto* g = maybe_grad_tensor(t);
  if (g == nullptr || g->level() != level) {
    return t;
  }
  return g->value();
}

at::Tensor unwrap_if_dead(const at::Tensor& t) {
  auto* g = maybe_grad_tensor(t);
  if (g == nullptr || g->alive()) {
    return t;
  }
  return unwrap_if_dead(g->value());
}

} // namespace torchfunc
