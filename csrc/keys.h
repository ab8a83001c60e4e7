#pragma once
// NOTE [Borrowed dispatch keys]
// torchfunc lives out of tree, so it cannot add dispatch keys to c10. It borrows
// four keys that torch 2.13 leaves without fallbacks or kernels, and names them
// here by the role they play. Nothing else in torchfunc spells a DispatchKey
// literal for these roles: porting to another torch is a change to this file.
//
//   priority (high to low)        role
//   TESTING_ONLY_GenericMode      kFrontKey   TLS-included while the stack is non-empty;
//                                             its fallback hands each op to the top interpreter
//   TESTING_ONLY_GenericWrapper   kBatchedKey carried by every BatchedTensor; batching rules live here
//   DeferredInit                  kGradKey    carried by every GradTensor; unwraps dead GradTensors
//   ... core functorch, autocast, autograd, ADInplaceOrView, Python ...
//   Fake                          kBackKey    TLS-included with kFrontKey; its fallback lowers the
//                                             op to the next interpreter down ("ping-pong")
//
// Everything from kBackKey up to kFrontKey is the *transform range*: while an
// interpreter processes an op, the range is excluded except for the keys that
// interpreter owns (and kBackKey itself), so that the op falls to kBackKey once
// the interpreter's own kernels have run. See docs/design.md.
#include <ATen/core/Tensor.h>
#include <c10/core/DispatchKey.h>
#include <c10/core/DispatchKeySet.h>

namespace torchfunc {

constexpr c10::DispatchKey kFrontKey = c10::DispatchKey::TESTING_ONLY_GenericMode;
constexpr c10::DispatchKey kBatchedKey = c10::DispatchKey::TESTING_ONLY_GenericWrapper;
constexpr c10::DispatchKey kGradKey = c10::DispatchKey::DeferredInit;
constexpr c10::DispatchKey kBackKey = c10::DispatchKey::Fake;

// Functionality keys from kBackKey to kFrontKey, both included.
inline c10::DispatchKeySet transform_range() {
  return (c10::DispatchKeySet(c10::DispatchKeySet::FULL_AFTER, kFrontKey) -
          c10::DispatchKeySet(c10::DispatchKeySet::FULL_AFTER, kBackKey)) |
      c10::DispatchKeySet({kFrontKey, kBackKey});
}

// Autocast stays active inside the range so that autocast regions keep working
// under transforms (core functorch makes the same choice).
inline c10::DispatchKeySet autocast_keys() {
  return c10::DispatchKeySet({
      c10::DispatchKey::AutocastCPU, c10::DispatchKey::AutocastCUDA,
      c10::DispatchKey::AutocastXPU, c10::DispatchKey::AutocastMPS,
      c10::DispatchKey::AutocastPrivateUse1});
}

inline c10::DispatchKeySet front_and_back() {
  return c10::DispatchKeySet({kFrontKey, kBackKey});
}

// NOTE [BatchedTensors look like tensor subclasses]
// Backward formulas and composite kernels pick out-of-place code paths for
// tensors that at::isTensorSubclassLike recognises (it knows core functorch's
// keys, not ours): e.g. `zeros(...).scatter_(..., grad)` would otherwise write a
// batched gradient into an unbatched tensor. BatchedTensors therefore also carry
// kSubclassMarkerKey, the legacy vmap key, which that check lists. It lies in the
// transform range, so it is excluded whenever a transform runs, and outside any
// transform kBatchedKey, which outranks it, handles every op first: no kernel of
// it ever sees our tensors. A GradTensor carries it when its value does (a grad
// level above a vmap level), since formulas at that level then produce batched
// values too. torch.autograd.grad refuses outputs with that key, so the grad
// transform calls the engine from C++ (_C.autograd_grad).
constexpr c10::DispatchKey kSubclassMarkerKey = c10::DispatchKey::Batched;

// The keys a BatchedTensor or GradTensor carries besides its own: the value's
// backend (so is_cpu(), device queries answer like the value's; with
// `keep_layout`, a sparse COO value's sparse backend too, so layout and is_sparse
// answer like the value's: `to_dense()` of such a GradTensor returned it unchanged),
// its view flags and its subclass marker. TensorImpl adds the autograd keys of that
// backend. Sparse compressed values (CSR, ...) keep the dense key, as in torch.func:
// their kernels cast the tensor to torch's own sparse TensorImpl.
inline c10::DispatchKeySet wrapper_base_keys(const at::Tensor& value, bool keep_layout = false) {
  constexpr auto flags = c10::DispatchKeySet({c10::DispatchKey::Conjugate, c10::DispatchKey::Negative,
                                              c10::DispatchKey::ZeroTensor, kSubclassMarkerKey});
  const auto layout = keep_layout && value.layout() == c10::kSparse ? std::optional<c10::Layout>(c10::kSparse)
                                                                    : std::nullopt;
  return c10::DispatchKeySet(c10::computeDispatchKey(std::nullopt, layout, value.device())) |
      (value.key_set() & flags);
}

// (role, key) pairs, for the import check and `python -m torchfunc`.
struct KeyRole {
  const char* role;
  c10::DispatchKey key;
};
constexpr KeyRole kKeyRoles[] = {
    {"front", kFrontKey},
    {"batched", kBatchedKey},
    {"grad", kGradKey},
    {"back", kBackKey},
};

} // namespace torchfunc
