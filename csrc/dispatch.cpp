// NOTE [Front and back fallbacks: the ping-pong]
// With a non-empty stack, kFrontKey and kBackKey are TLS-included, so every op
// first reaches front_fallback. It records the TLS on the top interpreter and
// lets that interpreter *process* the op with the transform range excluded but
// for the interpreter's own keys: a vmap level runs a batching rule (kBatchedKey),
// a grad level runs autograd's kernels on GradTensors. Whatever those kernels call
// on unwrapped values falls through every excluded key to kBackKey, whose fallback
// restores the recorded TLS, *lowers* the stack (pops the top interpreter until
// the call returns) and lets that interpreter *send* the op *to the next* one:
// the op starts again at the front key and meets the interpreter below. When the
// last interpreter is lowered the keys leave the TLS and the op reaches the real
// kernels. Every step restores what it changed on the way out, also on exceptions
// (RAII guards), so no level and no TLS change leaks.
#include "dispatch.h"

#include "autodiff/grad_tensor.h"
#include "errors.h"
#include "vmap/batched_tensor.h"
#include "keys.h"
#include "op_traits.h"
#include "stack.h"

#include <torch/library.h>

namespace torchfunc {
namespace {

// NOTE [torch keeps functorch out]
// Some torch code excludes core functorch's front and back keys around a call that
// must reach the real kernels: torch.tensor(data) allocates with at::empty, writes
// the values through the raw data pointer, and only then lifts the tensor into the
// transforms (lift_fresh, with the keys live again). That request is ours too: an op
// with no wrapped tensor that reaches the front key while both are excluded runs
// below every level. (Under functionalize the allocation came back a
// FunctionalTensorWrapper with no data of its own, and the store killed the process.)
bool torch_keeps_functorch_out(const torch::jit::Stack& stack, size_t n) {
  const auto excluded = c10::impl::tls_local_dispatch_key_set().excluded_;
  if (!excluded.has(c10::DispatchKey::FuncTorchDynamicLayerFrontMode) ||
      !excluded.has(c10::DispatchKey::FuncTorchDynamicLayerBackMode)) {
    return false;
  }
  const auto wrapped = c10::DispatchKeySet({kBatchedKey, kGradKey, c10::DispatchKey::Functionalize});
  return !any_tensor(stack, n, [&](const at::Tensor& t) { return t.defined() && t.key_set().has_any(wrapped); });
}

// NOTE [Metadata queries answered at the front key]
// Forward-mode AD asks is_same_size and _has_same_storage_numel of every tangent it
// attaches (and make_dual of each primal). Sent through the levels, each query cost as
// much as the op it follows. Their answers do not depend on the levels: every level
// keeps the sizes of the tensors it wraps, and the vmap rules answer both queries from
// the logical (per-example) tensors (rules/dynamic.cpp: a BatchedTensor has no storage,
// each example stands for a storage of its own numel). So is_same_size compares the
// arguments' sizes here, and _has_same_storage_numel their numels when a BatchedTensor
// lies under either argument (the first vmap level that meets the call answers so);
// with none, the plain tensors' storages decide, and the call takes the usual path.
// Only strided, non-nested tensors without Python subclasses are answered here.
bool answer_metadata_query(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  static const auto is_same_size = c10::Dispatcher::singleton().findSchemaOrThrow("aten::is_same_size", "");
  static const auto same_storage_numel =
      c10::Dispatcher::singleton().findSchemaOrThrow("aten::_has_same_storage_numel", "");
  if (op != is_same_size && op != same_storage_numel) {
    return false;
  }
  const at::Tensor& self = (*stack)[stack->size() - 2].toTensor();
  const at::Tensor& other = (*stack)[stack->size() - 1].toTensor();
  bool any_batched = false;
  auto plain_strided = [&any_batched](const at::Tensor& t) {
    if (!t.defined() || t.key_set().has(c10::DispatchKey::Python)) return false;
    at::Tensor inner = t;
    while (true) {
      if (auto* g = maybe_grad_tensor(inner)) {
        inner = g->value();
      } else if (auto* b = maybe_batched(inner)) {
        any_batched = true;
        inner = b->value();
      } else {
        break;
      }
    }
    return inner.layout() == c10::kStrided && !inner.is_nested() && !inner.key_set().has(c10::DispatchKey::Python);
  };
  if (!plain_strided(self) || !plain_strided(other)) {
    return false;
  }
  bool answer = false;
  if (op == is_same_size) {
    answer = self.sizes() == other.sizes();
  } else if (any_batched) {
    answer = self.numel() == other.numel();
  } else {
    return false;
  }
  torch::jit::drop(*stack, 2);
  stack->emplace_back(answer);
  return true;
}

} // namespace

void front_fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  sync_with_parent_thread();
  TORCH_CHECK(!c10::impl::tls_is_dispatch_key_included(c10::DispatchKey::FuncTorchDynamicLayerFrontMode),
              errors::mixed_with_torch_func(op.schema().operator_name().name));
  const auto n = op.schema().arguments().size();
  if (torch_keeps_functorch_out(*stack, n)) {
    c10::impl::ExcludeDispatchKeyGuard below_every_level(front_and_back());
    op.callBoxed(stack);
    return;
  }
  auto& top = top_interpreter();
  if (any_tensor(*stack, n, is_dead_grad_tensor)) {
    map_tensors(*stack, n, unwrap_if_dead);
  }
  if (answer_metadata_query(op, stack)) {
    return;
  }
  top.saved_tls = c10::impl::tls_local_dispatch_key_set();
  top.processed_op = &op.schema();
  top.process(op, stack);
}

namespace {

// NOTE [Meta replays stay where they are issued]
// Some kernels replay an op on meta tensors for shape checks only, with the Python
// key (and core functorch's keys) excluded: torch's functionalization kernels do so
// for every in-place op. Those replays reach our back key too; sent on to the
// levels below they would be transformed like user ops (a grad level refuses the
// in-place replay as a mutation of a captured tensor, make_fx records it). A call on
// plain meta tensors that a kernel of this level issued with the Python key
// excluded (it was not excluded when the op reached the front key) runs right here.
bool is_meta_replay(const c10::OperatorHandle& op, const torch::jit::Stack& stack,
                    const c10::impl::LocalDispatchKeySet& at_front) {
  const auto now = c10::impl::tls_local_dispatch_key_set();
  if (!now.excluded_.has(c10::DispatchKey::Python) || at_front.excluded_.has(c10::DispatchKey::Python)) {
    return false;
  }
  bool any = false;
  const bool all_plain_meta = !any_tensor(stack, op.schema().arguments().size(), [&](const at::Tensor& t) {
    if (!t.defined()) return false;
    any = true;
    return !t.is_meta() || maybe_grad_tensor(t) != nullptr || t.key_set().has(kBatchedKey);
  });
  return any && all_plain_meta;
}

// NOTE [Small zero tangents are plain zeros]
// Autograd's formulas stand for a missing tangent or gradient with an efficient zero
// tensor (_efficientzerotensor: no data, the ZeroTensor key). torch's ZeroTensor
// kernels for add, mul, sub, ... compute their result's shape by running the op on
// meta tensors, which goes through torch's Python meta registrations: 150-200 us a
// call on CPU whatever the size (the forward gradient of x * 2 or of a linear layer's
// bias took longer than the rest of the jvp). Ops without such a kernel materialize
// it anyway (mv clones an expanded zero matrix). So below a level, a zero tensor of
// at most kSmallZerosBytes is made as plain zeros: the same values, and add or mul of
// it costs what the op costs (measured on CPU, float32, add of an efficient zero
// against zeros + add: 177 vs 6 us at 1024 elements, 162 vs 21 us at 65536, but 196
// vs 1175 us at 262144, where fresh pages cost more than the meta call).
constexpr size_t kSmallZerosBytes = 256 * 1024;

const c10::OperatorHandle* plain_zeros_for(const c10::OperatorHandle& op, const torch::jit::Stack& stack) {
  static const auto efficient_zeros =
      c10::Dispatcher::singleton().findSchemaOrThrow("aten::_efficientzerotensor", "");
  static const auto zeros = c10::Dispatcher::singleton().findSchemaOrThrow("aten::zeros", "");
  if (op != efficient_zeros) {
    return nullptr;
  }
  // (size, dtype, layout, device, pin_memory): zeros takes the same arguments.
  const auto& size = stack[stack.size() - 5];
  const auto& dtype = stack[stack.size() - 4];
  if (!size.isIntList()) {
    return nullptr;  // symbolic sizes
  }
  size_t numel = 1;
  for (const auto d : size.toIntList()) {
    numel *= static_cast<size_t>(d);
  }
  const auto scalar_type = dtype.isNone() ? c10::typeMetaToScalarType(c10::get_default_dtype()) : dtype.toScalarType();
  return numel * c10::elementSize(scalar_type) <= kSmallZerosBytes ? &zeros : nullptr;
}

void back_fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  auto& top = top_interpreter();
  if (is_meta_replay(op, *stack, top.saved_tls)) {
    c10::impl::ExcludeDispatchKeyGuard here(kBackKey);
    op.callBoxed(stack);
    return;
  }
  c10::impl::ForceDispatchKeyGuard restore(top.saved_tls);
  send_below_top(op, stack);
}

// Reached only when no transform processes the op: a GradTensor outlived its level
// (e.g. vjp_fn runs after vjp returned). Dead GradTensors stand for their values.
void dead_grad_tensor_fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto n = op.schema().arguments().size();
  const bool any_dead = any_tensor(*stack, n, is_dead_grad_tensor);
  TORCH_CHECK(any_dead, "torchfunc: ", op.schema().operator_name().name,
              " received a GradTensor whose grad transform is still active on another thread, "
              "but no transform is active here. Pass plain tensors between threads.");
  map_tensors(*stack, n, unwrap_if_dead);
  op.callBoxed(stack);
}

} // namespace

void send_below_top(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto* plain_zeros = plain_zeros_for(op, *stack);
  LowerGuard lower;
  lower.lowered().send_to_next(plain_zeros != nullptr ? *plain_zeros : op, stack);
}

void register_fallbacks(torch::Library& front, torch::Library& back, torch::Library& grad) {
  front.fallback(torch::CppFunction::makeFromBoxedFunction<&front_fallback>());
  back.fallback(torch::CppFunction::makeFromBoxedFunction<&back_fallback>());
  grad.fallback(torch::CppFunction::makeFromBoxedFunction<&dead_grad_tensor_fallback>());
}

} // namespace torchfunc
