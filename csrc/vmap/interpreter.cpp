// The vmap interpreter. process runs the op with kBatchedKey live (batching
// rules and the fallback); send_to_next simply calls the op again below.
//
// NOTE [Randomness under vmap]
// Random ops (Tag::nondeterministic_seeded) are intercepted here, before any
// rule: our front key sees every op, factory ops without tensor inputs included.
//   'error'     raise.
//   'same'      run the op once on per-example shapes: one draw shared by all.
//   'different' one draw per example: size-taking ops get the batch size
//               prepended, tensor-taking ops run on batch-materialized inputs,
//               in-place ops fill the physical value of a batched self.
// An op whose dropout_p argument is 0 draws nothing and is no random op here.
//
// NOTE [Random ops inside decompositions]
// Composite ops (dropout, alpha_dropout, scaled_dot_product_attention, ...) decompose
// into primitive ops, and only the primitives can tell whether anything is drawn
// (dropout in eval mode draws nothing). A primitive on unbatched tensors inside a
// decomposition must still meet random_kernel, or it would draw once for all examples
// ('error' silent, 'different' giving every example the same draw). So a vmap level
// processes every op with kBatchedKey TLS-included, not just left live: ops inside a
// decomposition meet the batching rules whatever their inputs (a rule with no batched
// input sends its op straight below; a composite op with no batched input decomposes
// here, see batched_fallback), as core functorch's VmapMode key does. A composite
// random op under 'different' with no batched input gets its inputs batch-materialized
// first, so that each example draws its own.
#include "../errors.h"
#include "../interpreter.h"
#include "../keys.h"
#include "../op_traits.h"
#include "axis.h"
#include "batched_tensor.h"
#include "fresh_tensors.h"
#include "plumbing.h"
#include "rule.h"
#include "../stack.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/stack.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

namespace torchfunc {
namespace {

int64_t size_argument(const c10::FunctionSchema& schema) {
  const auto& args = schema.arguments();
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].name() == "size" && args[i].type()->kind() == c10::TypeKind::ListType) {
      return static_cast<int64_t>(i);
    }
  }
  return -1;
}

void random_same(const Interpreter& self, const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto& schema = op.schema();
  const auto n = schema.arguments().size();
  const auto level = self.level();
  if (!any_batched_at(*stack, n, level)) {
    continue_below_recording(self, op, stack);  // one draw for all: a fresh tensor
    return;
  }
  const auto name = display_name(op);
  const auto& op_name = schema.operator_name().name;
  if (op_name.size() > 5 && op_name.compare(op_name.size() - 5, 5, "_like") == 0) {
    // randn_like(x) and friends read only x's shape and options: one draw of the
    // example's shape, shared by all examples.
    const size_t first = stack->size() - n;
    auto [value, bdim] = unwrap_at((*stack)[first].toTensor(), level);
    TORCH_CHECK(!any_tensor(*stack, n - 1, [level](const at::Tensor& t) { return batched_at(t, level); }),
                errors::random_same_with_batched_input(name));
    if (bdim.has_value()) (*stack)[first] = value.select(*bdim, 0);
    continue_below(op, stack);
    return;
  }
  TORCH_CHECK(is_inplace(schema), errors::random_same_with_batched_input(name));
  // In place on a batched self: draw once into a per-example-shaped tensor, then
  // broadcast that draw into every example.
  const size_t first = stack->size() - n;
  TORCH_CHECK(!any_tensor(*stack, n - 1, [level](const at::Tensor& t) { return batched_at(t, level); }),
              errors::random_same_with_batched_input(name));
  at::Tensor batched_self = (*stack)[first].toTensor();
  auto [value, bdim] = unwrap_at(batched_self, level);
  c10::impl::ExcludeDispatchKeyGuard guard(kBatchedKey);
  auto draw = at::empty_like(value.select(*bdim, 0));
  (*stack)[first] = draw;
  op.callBoxed(stack);
  torch::jit::drop(*stack, 1);
  axis::bdim_to_front(value, bdim).copy_(draw.unsqueeze(0).expand_as(axis::bdim_to_front(value, bdim)));
  stack->push_back(batched_self);
}

void random_different(const Interpreter& self, const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto& schema = op.schema();
  const auto n = schema.arguments().size();
  const auto level = self.level();
  const auto batch_size = self.vmap().batch_size;
  const auto name = display_name(op);
  const size_t first = stack->size() - n;
  c10::impl::ExcludeDispatchKeyGuard guard(kBatchedKey);
  if (is_inplace(schema)) {
    at::Tensor self_arg = (*stack)[first].toTensor();  // what the op returns
    if (!batched_at(self_arg, level)) {
      // A tensor the function created takes a batch dimension for its draws
      // (NOTE [In-place writes into fresh tensors]).
      Call call{op, level, batch_size, torch::jit::last(*stack, n).vec()};
      TORCH_CHECK(!promote_written_arguments(self, call).empty(), errors::random_inplace_unbatched(name));
      (*stack)[first] = call.args[0];
    }
    map_tensors(*stack, n, [&](const at::Tensor& t) {
      auto [value, bdim] = unwrap_at(t, level);
      return bdim.has_value() ? axis::bdim_to_front(value, bdim) : value;
    });
    op.callBoxed(stack);
    torch::jit::drop(*stack, 1);
    stack->push_back(self_arg);
    return;
  }
  if (schema.operator_name().name == "aten::randperm") {
    std::vector<at::Tensor> draws;
    torch::jit::Stack args = torch::jit::last(*stack, n).vec();
    torch::jit::drop(*stack, n);
    for (int64_t b = 0; b < batch_size; ++b) {
      auto example = args;
      op.callBoxed(example);
      draws.push_back(example[0].toTensor());
    }
    stack->emplace_back(make_batched(at::stack(draws), 0, level));
    return;
  }
  const auto size_index = size_argument(schema);
  if (size_index >= 0) {
    auto sizes = (*stack)[first + size_index].toDimVector();
    sizes.insert(sizes.begin(), batch_size);
    (*stack)[first + size_index] = c10::IValue(c10::IntArrayRef(sizes));
  }
  const bool has_tensors = any_tensor(*stack, n, [](const at::Tensor& t) { return t.defined(); });
  TORCH_CHECK(size_index >= 0 || has_tensors,
              "vmap: randomness='different' is not supported for ", name, ". Please file an issue.");
  map_tensors(*stack, n, [&](const at::Tensor& t) {
    auto [value, bdim] = unwrap_at(t, level);
    return axis::materialize(value, bdim, batch_size);
  });
  // multinomial takes at most 2-D probabilities: fold the batch into their rows.
  const bool fold_rows = schema.operator_name().name == "aten::multinomial" && (*stack)[first].toTensor().dim() == 3;
  if (fold_rows) (*stack)[first] = axis::fold_into((*stack)[first].toTensor(), 0);
  op.callBoxed(stack);
  map_tensors(*stack, schema.returns().size(), [&](const at::Tensor& t) {
    return make_batched(fold_rows ? axis::unfold_from(t, 0, batch_size) : t, 0, level);
  });
}

// A composite random op under 'different' with no batched input: each example draws
// its own (NOTE [Random ops inside decompositions]).
void materialize_for_different_draws(const Interpreter& self, const c10::OperatorHandle& op,
                                     torch::jit::Stack* stack) {
  const auto& schema = op.schema();
  const auto n = schema.arguments().size();
  const auto level = self.level();
  if (self.vmap().randomness == Randomness::Different && !is_inplace(schema) && !any_batched_at(*stack, n, level)) {
    map_tensors(*stack, n, [&](const at::Tensor& t) {
      return t.defined() ? make_batched(axis::materialize(t, std::nullopt, self.vmap().batch_size), 0, level) : t;
    });
  }
}

} // namespace

bool draws_nothing(const c10::FunctionSchema& schema, const torch::jit::Stack& stack) {
  const auto& args = schema.arguments();
  const size_t first = stack.size() - args.size();
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].name() == "dropout_p") {
      return stack[first + i].toDouble() == 0.0;
    }
  }
  return false;
}

void random_kernel(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto& self = top_interpreter();
  substitute_promoted(self, *stack, op.schema().arguments().size(), &op);
  switch (self.vmap().randomness) {
    case Randomness::Error:
      TORCH_CHECK(false, errors::random_in_error_mode(display_name(op)));
    case Randomness::Same:
      return random_same(self, op, stack);
    case Randomness::Different:
      return random_different(self, op, stack);
  }
}

void vmap_process(const Interpreter& self, const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  static const auto exclude = keys_to_exclude(c10::DispatchKeySet(kBatchedKey));
  c10::impl::ExcludeDispatchKeyGuard guard(exclude);
  c10::impl::IncludeDispatchKeyGuard include(kBatchedKey);
  if (op.hasTag(at::Tag::nondeterministic_seeded) && !draws_nothing(op.schema(), *stack)) {
    if (!is_composite_implicit(op)) return random_kernel(op, stack);
    materialize_for_different_draws(self, op, stack);
  }
  op.callBoxed(stack);
}

void vmap_send_to_next(const Interpreter&, const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  op.callBoxed(stack);
}

} // namespace torchfunc
