#include "grad_tensor.h"

#include "../errors.h"
#include "../keys.h"
#include "../stack.h"

#include <typeinfo>

namespace torchfunc {
// NOTE [Fresh allocations share their storage]
// A GradTensor has no storage of its own: code that reads or writes through its data
// pointer inside a transform gets a clear error. One kind of kernel needs it, though:
// at::tensor(values, options), which torch's own kernels call (ctc_loss's mean
// reduction), allocates with at::empty and then writes the values through the data
// pointer. The allocation reaches this level from inside another op's kernel and
// comes back wrapped. A GradTensor made for the output of an op with no tensor
// argument (a factory) issued by a kernel therefore shares its value's storage (same
// sizes, strides and offset), and the write lands in the value. Factory calls of the
// user's own code keep the storage-less wrapper and torch.func's error.
GradTensorImpl::GradTensorImpl(at::Tensor value, int64_t level, std::shared_ptr<bool> alive,
                               bool is_immutable, bool shares_storage)
    : c10::TensorImpl(wrapper_base_keys(value, /*keep_layout=*/true).add(kGradKey), value.dtype(), value.device()),
      value_(std::move(value)),
      level_(level),
      alive_(std::move(alive)),
      is_immutable_(is_immutable),
      shares_storage_(shares_storage && value_.layout() == c10::kStrided && value_.has_storage()) {
  if (!shares_storage_) {
    static const std::string storage_error = errors::storage_access("GradTensor");
    release_storage_and_set_meta_custom_data_ptr_error_msg_(storage_error);
  }
  if (value_.layout() == c10::kSparse) {
    // A sparse value has sizes, and neither strides nor a storage offset: nor has its
    // GradTensor (strides() raises as the value's does).
    set_custom_sizes_strides(SizesStridesPolicy::CustomStrides);
  }
  refresh_metadata();
}

void GradTensorImpl::refresh_metadata() {
  if (value_.layout() == c10::kSparse) {
    sizes_and_strides_.set_sizes(value_.sizes());
    storage_offset_ = 0;
    refresh_numel();
    return;
  }
  sizes_and_strides_.set_sizes(value_.sizes());
  const auto strides = value_.strides();
  for (size_t d = 0; d < strides.size(); ++d) {
    sizes_and_strides_.stride_at_unchecked(d) = strides[d];
  }
  storage_offset_ = value_.storage_offset();
  if (shares_storage_) {
    storage_ = value_.storage();
  }
  refresh_numel();
  refresh_contiguous();
}

const char* GradTensorImpl::tensorimpl_type_name() const { return "torchfunc.GradTensorImpl"; }

c10::intrusive_ptr<c10::TensorImpl> GradTensorImpl::shallow_copy_and_detach(
    const c10::VariableVersion& version_counter, bool allow_tensor_metadata_change) const {
  auto impl = c10::make_intrusive<GradTensorImpl>(value_, level_, alive_, is_immutable_, shares_storage_);
  impl->set_version_counter(version_counter);
  impl->set_allow_tensor_metadata_change(allow_tensor_metadata_change);
  return impl;
}

c10::intrusive_ptr<c10::TensorImpl> GradTensorImpl::shallow_copy_and_detach(
    c10::VariableVersion&& version_counter, bool allow_tensor_metadata_change) const {
  auto impl = c10::make_intrusive<GradTensorImpl>(value_, level_, alive_, is_immutable_, shares_storage_);
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

at::Tensor wrap_for_grad(const at::Tensor& t, int64_t level, const std::shared_ptr<bool>& life_handle,
                         bool shares_storage) {
  if (!t.defined()) {
    return t;
  }
  return at::detail::make_tensor<GradTensorImpl>(t, level, life_handle, /*is_immutable=*/false, shares_storage);
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
