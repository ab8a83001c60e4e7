// The grad and jvp interpreters: process lifts every tensor argument to a
// GradTensor of this level and lets autograd's kernels handle the op at this
// level (grad: record it on this level's graph; jvp: compute its forward
// gradient); send_to_next unwraps this level, runs the op below and wraps the
// results.
#include "grad_tensor.h"

#include "../dispatch.h"
#include "../errors.h"
#include "../interpreter.h"
#include "../stack.h"
#include "../op_traits.h"

#include <c10/core/GradMode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/util/SmallVector.h>

namespace torchfunc {
namespace {

bool is_lifted_at(const at::Tensor& t, int64_t level) {
  auto* g = maybe_grad_tensor(t);
  return g != nullptr && g->level() == level;
}

// NOTE [Captured tensors are immutable]
// A tensor the function did not receive as an input but uses anyway (a global,
// a closure variable, an outer level's tensor) is lifted as an *immutable*
// GradTensor. An in-place op on it (captured.add_(x)) would change the caller's
// tensor behind this level's autograd graph, so it is refused. Buffers an op
// updates on the side (batch norm's running stats) are not refused: like
// torch.func, the update reaches the caller's tensor. The same holds while a level's
// last backward runs (NOTE [A grad level's last backward records nothing at its level]):
// the results of its ops are still lifted, so a backward formula's own buffer (index's
// backward: zeros, then index_put_) may be written, and a user's hook writing into a
// captured tensor is refused as torch.func refuses it.
void check_no_mutation_of_captured(const c10::OperatorHandle& op, const torch::jit::Stack& stack,
                                   int64_t level, Kind self_kind) {
  const auto& schema = op.schema();
  if (!is_inplace(schema)) {
    return;
  }
  const auto& self = stack[stack.size() - schema.arguments().size()];
  if (!self.isTensor()) {
    return;
  }
  auto* g = maybe_grad_tensor(self.toTensor());
  TORCH_CHECK(g != nullptr && g->level() == level && !g->is_immutable(),
              errors::mutation_of_captured(kind_name(self_kind), schema.operator_name().name +
                                           (schema.overload_name().empty() ? "" : "." + schema.overload_name())));
}

} // namespace

void autodiff_process(const Interpreter& self, const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  static const auto exclude = keys_to_exclude(c10::autograd_dispatch_keyset_with_ADInplaceOrView);
  const auto level = self.level();
  const auto n = op.schema().arguments().size();
  // torch.tensor(...) inside the function: lift_fresh's input is a new tensor, not
  // a capture. It is not lifted, so its output becomes a mutable GradTensor.
  // torch.tensor(...) also calls detach_ on the new tensor before lifting it; detach_
  // writes no values, so it is no mutation of a capture either.
  static const auto lift_fresh = c10::Dispatcher::singleton().findSchemaOrThrow("aten::lift_fresh", "");
  static const auto detach_ = c10::Dispatcher::singleton().findSchemaOrThrow("aten::detach_", "");
  if (op == lift_fresh || op == detach_) {
    c10::impl::ExcludeDispatchKeyGuard guard(exclude);
    op.callBoxed(stack);
    return;
  }
  check_no_mutation_of_captured(op, *stack, level, self.kind());
  if (!self.records_ops) {
    // NOTE [A grad level's last backward records nothing at its level] (interpreter.h):
    // no autograd kernel runs here, so the op goes straight to the level below, as the
    // back key would send it once the excluded keys had been passed.
    send_below_top(op, stack);
    return;
  }
  // A composite op only passes its arguments on to the ops it is made of, which
  // lift them in turn; some read integer arguments' data (tensor_split's indices),
  // which a GradTensor has none of. Those stay as they are.
  auto needs_lift = [level, &op](const at::Tensor& t) {
    return t.defined() && !is_lifted_at(t, level) &&
        (at::isFloatingType(t.scalar_type()) || at::isComplexType(t.scalar_type()) || !is_composite_implicit(op));
  };
  if (any_tensor(*stack, n, needs_lift)) {
    map_tensors(*stack, n, [&](const at::Tensor& t) {
      return needs_lift(t) ? wrap_for_grad(t, level, /*is_immutable=*/true) : t;
    });
  }
  c10::impl::ExcludeDispatchKeyGuard guard(exclude);
  op.callBoxed(stack);
}

void autodiff_send_to_next(const Interpreter& self, const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto level = self.level();
  const auto& schema = op.schema();
  const auto n = schema.arguments().size();
  // Remember the GradTensors we unwrap: outputs that are their values (in-place
  // ops return self) are given back as the same GradTensor, and their metadata
  // is refreshed afterwards (resize_ and in-place views change it).
  c10::SmallVector<std::pair<at::Tensor, at::Tensor>, 4> unwrapped; // (value, wrapper)
  bool had_tensor_argument = false;  // (no tensor argument: a factory call)
  map_tensors(*stack, n, [&](const at::Tensor& t) {
    had_tensor_argument |= t.defined();
    auto* g = maybe_grad_tensor(t);
    if (g == nullptr || g->level() != level) {
      return t;
    }
    unwrapped.emplace_back(g->value(), t);
    return g->value();
  });
  {
    // NOTE [grad under an outer no_grad]
    // grad ignores a no_grad around the transform for its own level, but the
    // levels below must not record: if grad mode was off when the transform was
    // entered, ops sent down run with grad mode off. jvp does the same with the
    // forward-grad mode.
    std::optional<c10::AutoGradMode> outer_mode;
    std::optional<c10::AutoFwGradMode> outer_fwd_mode;
    if (self.kind() == Kind::Grad && !self.grad().prev_grad_mode) {
      outer_mode.emplace(false);
    }
    if (self.kind() == Kind::Jvp && !self.jvp().prev_fwd_grad_mode) {
      outer_fwd_mode.emplace(false);
    }
    op.callBoxed(stack);
  }
  const auto num_returns = schema.returns().size();
  // NOTE [Fresh allocations share their storage] (autodiff/grad_tensor.cpp)
  const bool kernel_allocation = !had_tensor_argument && self.processed_op != &schema;
  map_tensors(*stack, num_returns, [&](const at::Tensor& out) {
    for (const auto& [value, wrapper] : unwrapped) {
      if (value.unsafeGetTensorImpl() == out.unsafeGetTensorImpl()) {
        return wrapper;
      }
    }
    return wrap_for_grad(out, level, self.life_handle(), kernel_allocation);
  });
  for (const auto& [value, wrapper] : unwrapped) {
    maybe_grad_tensor(wrapper)->refresh_metadata();
  }
}

} // namespace torchfunc
