// NOTE [The kBatchedKey fallback]
// An op with no batching rule lands here. Two ways out, in order:
//  1. It is CompositeImplicitAutograd: run its composite kernel at the logical
//     level; the ops it is made of meet their own rules.
//  2. Otherwise the slow per-example loop: slice every batched argument, call the
//     op once per example and stack the results. It is correct but slow, so it
//     is counted, can warn (set_fallback_warning) and can be disabled
//     (set_fallback_enabled(False)), which the "has a batching rule" tests use.
#include "fallback.h"

#include "../errors.h"
#include "../keys.h"
#include "../op_traits.h"
#include "../stack.h"
#include "batched_tensor.h"
#include "fresh_tensors.h"
#include "plumbing.h"
#include "rule.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/stack.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <algorithm>
#include <functional>
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace torchfunc {
namespace {

std::atomic<bool> fallback_warning{false};
std::atomic<bool> fallback_enabled{true};
std::atomic<int64_t> fallback_runs{0};
// The ops the loop ran since the last take_fallback_ops() (torchfunc.testing names them).
std::mutex looped_mutex;
std::vector<std::string> looped_ops;


} // namespace

torch::jit::Stack slice_example(const torch::jit::Stack& args, int64_t level, int64_t b) {
  torch::jit::Stack out = args;
  map_tensors(out, out.size(), [level, b](const at::Tensor& t) {
    auto [value, bdim] = unwrap_at(t, level);
    return bdim.has_value() ? value.select(*bdim, b) : t;
  });
  return out;
}

// NOTE [In-place ops through their functional form]
// An in-place op without a rule (addmm_, cumsum_, tril_, index_add_, ...) runs its
// functional form on the logical tensors, which meets that form's rule, and copies
// the result into self. Like the eager op, it refuses a result that cannot be cast
// to self's dtype; copy_ refuses one self cannot hold (a batched result into an
// unbatched self, a shape that does not fit).
std::optional<c10::OperatorHandle> functional_form(const c10::OperatorHandle& op) {
  const auto& schema = op.schema();
  const auto& name = schema.name();
  // In-place views (as_strided_) change metadata, which no copy of values does.
  if (!is_inplace(schema) || op.hasTag(at::Tag::inplace_view) || name.size() < 2 || name.back() != '_' ||
      name[name.size() - 2] == '_') {
    return std::nullopt;
  }
  auto functional = c10::Dispatcher::singleton().findOp({name.substr(0, name.size() - 1), schema.overload_name()});
  if (!functional || functional->schema().returns().size() != 1) {
    return std::nullopt;
  }
  // The same arguments in the same order (polygamma_(self, n) vs polygamma(n, self) differ).
  const auto& args = schema.arguments();
  const auto& fargs = functional->schema().arguments();
  if (fargs.size() != args.size()) return std::nullopt;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].name() != fargs[i].name() || *args[i].type() != *fargs[i].type()) return std::nullopt;
  }
  return functional;
}

// NOTE [out= ops through their functional form]
// An out= op without a rule (mm.out, amax.out, index_select.out, ...) runs the overload
// of the same name that takes the same arguments less the written ones, on the logical
// tensors, and copies each result into its out tensor, as the in-place ops do. An out
// tensor the function created is batched by then (NOTE [In-place writes into fresh
// tensors]); one captured from outside with a batched result raises. Unlike eager
// out=, a wrong-shaped out tensor is not resized: under vmap it raises.
std::optional<c10::OperatorHandle> out_functional_form(const c10::OperatorHandle& op) {
  const auto& schema = op.schema();
  if (is_inplace(schema) || !writes_arguments(schema) || op.hasTag(at::Tag::inplace_view)) return std::nullopt;
  std::vector<const c10::Argument*> inputs;
  size_t written = 0;
  for (const auto& arg : schema.arguments()) {
    if (arg.alias_info() != nullptr && arg.alias_info()->isWrite()) {
      if (arg.type()->kind() != c10::TypeKind::TensorType) return std::nullopt;
      ++written;
    } else {
      inputs.push_back(&arg);
    }
  }
  if (schema.returns().size() != written) return std::nullopt;
  static const auto overloads = [] {
    std::unordered_map<std::string, std::vector<std::string>> by_name;
    for (const auto& name : c10::Dispatcher::singleton().getAllOpNames()) {
      by_name[name.name].push_back(name.overload_name);
    }
    return by_name;
  }();
  const auto it = overloads.find(schema.name());
  if (it == overloads.end()) return std::nullopt;
  for (const auto& overload : it->second) {
    auto candidate = c10::Dispatcher::singleton().findOp({schema.name(), overload});
    if (!candidate || overload == schema.overload_name()) continue;
    const auto& cs = candidate->schema();
    if (cs.returns().size() != written || cs.arguments().size() != inputs.size() || cs.is_mutable()) continue;
    bool same = true;
    for (size_t i = 0; i < inputs.size() && same; ++i) {
      same = cs.arguments()[i].name() == inputs[i]->name() && *cs.arguments()[i].type() == *inputs[i]->type();
    }
    if (same) return candidate;
  }
  return std::nullopt;
}

std::optional<std::string> loop_refusal(const c10::OperatorHandle& op) {
  const auto& schema = op.schema();
  // out= ops return their out argument: say that, not "a view".
  if (writes_arguments(schema)) return "it writes into an argument other than self";
  for (const auto& ret : schema.returns()) {
    if (ret.type()->kind() != c10::TypeKind::TensorType) return "it returns something other than tensors";
    // A stacked copy would silently break writes through the view.
    if (ret.alias_info() != nullptr && !is_inplace(schema)) return "it returns a view of its input";
  }
  // squeeze_, transpose_, as_strided_, ...: each example's slice would change
  // its own metadata, not the BatchedTensor's.
  if (op.hasTag(at::Tag::inplace_view)) return "it changes the shape or strides of its input in place";
  return std::nullopt;
}

Outs loop_rule(Call& call) {
  const auto& schema = call.schema();
  const auto name = call.name();
  if (auto refusal = loop_refusal(call.op)) {
    // The fallback-disabled error comes second, as before, for ops a loop can run.
    TORCH_CHECK(false, errors::no_fallback_possible(name, *refusal));
  }
  TORCH_CHECK(fallback_enabled.load(), errors::fallback_disabled(name));
  TORCH_CHECK(call.batch_size > 0, errors::no_fallback_possible(name, "the batch has size 0"));
  const bool inplace = is_inplace(schema);
  if (inplace) {
    TORCH_CHECK(batched_at(call.args[0].toTensor(), call.level), errors::inplace_on_unbatched(name));
  }
  if (fallback_warning.load()) {
    TORCH_WARN("torchfunc vmap fallback: ", name, " has no batching rule, so it runs once per "
               "example in a loop (slow). Please file an issue asking for a batching rule.");
  }
  fallback_runs.fetch_add(1);
  {
    std::lock_guard<std::mutex> lock(looped_mutex);
    if (std::find(looped_ops.begin(), looped_ops.end(), name) == looped_ops.end()) looped_ops.push_back(name);
  }
  const auto num_returns = schema.returns().size();
  std::vector<std::vector<at::Tensor>> results(num_returns);
  {
    c10::impl::ExcludeDispatchKeyGuard guard(kBatchedKey);
    for (int64_t b = 0; b < call.batch_size; ++b) {
      auto example = slice_example(call.args, call.level, b);
      call.op.callBoxed(example);
      for (size_t r = 0; r < num_returns; ++r) {
        results[r].push_back(example[r].toTensor());
      }
    }
  }
  if (inplace) {
    return {{call.args[0], std::nullopt}};
  }
  Outs outs;
  for (size_t r = 0; r < num_returns; ++r) {
    const auto& per_example = results[r];
    // Outputs an op leaves undefined (masked-out gradients) stay undefined.
    const bool defined = per_example.front().defined();
    for (const auto& t : per_example) {
      TORCH_CHECK(!defined || t.sizes() == per_example.front().sizes(),
                  errors::ragged_outputs(name, r, per_example.front().sizes(), t.sizes()));
    }
    outs.push_back({defined ? at::stack(per_example) : at::Tensor(), 0});
  }
  return outs;
}

namespace {

// Composite ops run their composite kernel on the logical tensors; the others loop.
Outs decompose_rule(Call& call) {
  torch::jit::Stack stack = call.args; // a copy: run_rule may need the arguments again
  call.op.callBoxedForDispatchKey(c10::DispatchKey::CompositeImplicitAutograd, stack);
  Outs outs;
  for (auto& v : stack) outs.push_back({std::move(v), std::nullopt});
  return outs;
}

Outs inplace_through_functional(Call& call) {
  const auto functional = *functional_form(call.op);
  TORCH_CHECK(batched_at(call.args[0].toTensor(), call.level), errors::inplace_on_unbatched(call.name()));
  torch::jit::Stack stack = call.args;
  functional.callBoxed(stack);
  const auto& self = call.args[0].toTensor();
  const auto& result = stack[0].toTensor();
  TORCH_CHECK(c10::canCast(result.scalar_type(), self.scalar_type()), "result type ", result.scalar_type(),
              " can't be cast to the desired output type ", self.scalar_type());
  self.copy_(result);
  return {{call.args[0], std::nullopt}};
}

} // namespace

Outs run_out_op_through(Call& call, const c10::OperatorHandle& functional,
                        const std::function<void(size_t, const at::Tensor&)>& write) {
  const auto& args = call.schema().arguments();
  torch::jit::Stack stack;
  std::vector<size_t> outs;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].alias_info() != nullptr && args[i].alias_info()->isWrite()) {
      outs.push_back(i);
    } else {
      stack.push_back(call.args[i]);
    }
  }
  functional.callBoxed(stack);
  Outs results;
  for (size_t r = 0; r < outs.size(); ++r) {
    const auto& result = stack[r].toTensor();
    const auto& out = call.args[outs[r]].toTensor();  // logical
    // First, as before any shape check: a batched result has no place in a captured out.
    TORCH_CHECK(batched_at(out, call.level) || !batched_at(result, call.level), errors::out_into_unbatched(call.name()));
    TORCH_CHECK(out.sizes() == result.sizes(), "vmap: ", call.name(), " writes a result of shape ", result.sizes(),
                " into an out= tensor of shape ", out.sizes(), ", which vmap cannot resize. Allocate the out= "
                "tensor with the result's shape.");
    TORCH_CHECK(c10::canCast(result.scalar_type(), out.scalar_type()), "result type ", result.scalar_type(),
                " can't be cast to the desired output type ", out.scalar_type());
    write(outs[r], result);
    results.push_back({call.args[outs[r]], std::nullopt});
  }
  return results;
}

namespace {

Outs out_through_functional(Call& call) {
  return run_out_op_through(call, *out_functional_form(call.op),
                            [&](size_t i, const at::Tensor& result) { call.args[i].toTensor().copy_(result); });
}

void batched_fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  substitute_promoted(top_interpreter(), *stack, op.schema().arguments().size(), &op);
  if (is_composite_implicit(op)) {
    if (!any_batched_at(*stack, op.schema().arguments().size(), top_interpreter().level())) {
      // Decomposed here rather than below, so that the ops it is made of still meet the
      // batching rules (NOTE [Random ops inside decompositions]).
      op.callBoxedForDispatchKey(c10::DispatchKey::CompositeImplicitAutograd, *stack);
      return;
    }
    run_rule(op, stack, &decompose_rule, RuleKind::Logical);
  } else if (functional_form(op).has_value()) {
    run_rule(op, stack, &inplace_through_functional, RuleKind::Logical);
  } else if (out_functional_form(op).has_value()) {
    run_rule(op, stack, &out_through_functional, RuleKind::Logical);
  } else {
    run_rule(op, stack, &loop_rule, RuleKind::Logical);
  }
}

} // namespace

void set_fallback_warning(bool enabled) { fallback_warning.store(enabled); }
void set_fallback_enabled(bool enabled) { fallback_enabled.store(enabled); }
int64_t fallback_count() { return fallback_runs.load(); }
std::vector<std::string> take_fallback_ops() {
  std::lock_guard<std::mutex> lock(looped_mutex);
  return std::exchange(looped_ops, {});
}

void register_batched_fallback(torch::Library& lib) {
  lib.fallback(torch::CppFunction::makeFromBoxedFunction<&batched_fallback>());
}

} // namespace torchfunc
