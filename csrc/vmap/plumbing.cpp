// NOTE [vmap plumbing]
// Every rule entry becomes one boxed kernel on kBatchedKey. The kernel finds the
// current level (the top interpreter, which is processing this op), and if no
// argument is batched at that level the op is not this level's business: it
// continues below with kBatchedKey excluded. Otherwise the rule runs and its
// outputs are wrapped as BatchedTensors of the level.
#include "plumbing.h"

#include "../errors.h"
#include "../keys.h"
#include "../op_traits.h"
#include "../stack.h"
#include "batched_tensor.h"
#include "empty_batch.h"
#include "fallback.h"
#include "fresh_tensors.h"
#include "example_checks.h"
#include "registry.h"
#include "rule.h"

#include <ATen/core/op_registration/op_registration.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

namespace torchfunc {

std::string Call::name() const {
  return display_name(op);
}

size_t Call::index(std::string_view name) const {
  const auto i = op.schema().argumentIndexWithName(name);
  TORCH_CHECK(i.has_value(), "torchfunc internal error: the batching rule of ", display_name(op),
              " reads an argument named '", name, "', which its schema lacks: ", op.schema());
  return static_cast<size_t>(*i);
}

std::pair<at::Tensor, std::optional<int64_t>> Call::tensor(size_t i) const {
  return unwrap_at(args[i].toTensor(), level);
}

std::optional<std::pair<at::Tensor, std::optional<int64_t>>> Call::optional_tensor(size_t i) const {
  if (args[i].isNone() || !args[i].toTensor().defined()) {
    return std::nullopt;
  }
  return unwrap_at(args[i].toTensor(), level);
}

std::vector<std::pair<at::Tensor, std::optional<int64_t>>> Call::tensors(size_t i) const {
  std::vector<std::pair<at::Tensor, std::optional<int64_t>>> out;
  for (const at::Tensor& t : args[i].toTensorList()) {
    out.push_back(unwrap_at(t, level));
  }
  return out;
}

torch::jit::Stack Call::call_below(torch::jit::Stack call_args) const {
  c10::impl::ExcludeDispatchKeyGuard guard(kBatchedKey);
  op.callBoxed(call_args);
  return call_args;
}

bool any_batched_at(const torch::jit::Stack& stack, size_t n, int64_t level) {
  return any_tensor(stack, n, [level](const at::Tensor& t) { return batched_at(t, level); });
}

void continue_below(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  c10::impl::ExcludeDispatchKeyGuard guard(kBatchedKey);
  op.callBoxed(stack);
}

void push_outputs(torch::jit::Stack* stack, const Outs& outs, int64_t level) {
  for (const auto& out : outs) {
    if (out.value.isTensor()) {
      stack->emplace_back(make_batched(out.value.toTensor(), out.bdim, level));
    } else if (out.value.isTensorList() && out.bdim.has_value()) {
      c10::List<at::Tensor> list;
      for (const at::Tensor& t : out.value.toTensorList()) {
        list.push_back(make_batched(t, out.bdim, level));
      }
      stack->emplace_back(std::move(list));
    } else {
      stack->push_back(out.value);
    }
  }
}

void run_rule(const c10::OperatorHandle& op, torch::jit::Stack* stack, Rule rule, RuleKind kind) {
  const auto& interp = top_interpreter();
  const auto level = interp.level();
  const auto& schema = op.schema();
  const auto n = schema.arguments().size();
  substitute_promoted(interp, *stack, n, &op);  // NOTE [In-place writes into fresh tensors]
  if (!any_batched_at(*stack, n, level)) {
    continue_below_recording(interp, op, stack);
    return;
  }
  Call call{op, level, interp.vmap().batch_size, torch::jit::last(*stack, n).vec()};
  torch::jit::drop(*stack, n);
  const auto promoted = promote_written_arguments(interp, call);
  const bool checked = checks_one_example(op, call.args);
  if (checked) {
    check_one_example(op, call.args);
  }
  Outs outs;
  if (kind == RuleKind::Physical && call.batch_size == 0) {
    if (auto empty = empty_batch_outputs(call)) {  // NOTE [An empty batch]
      push_outputs(stack, *empty, level);
      return;
    }
  }
  try {
    if (kind == RuleKind::Physical) {
      c10::impl::ExcludeDispatchKeyGuard guard(kBatchedKey);
      outs = rule(call);
    } else {
      outs = rule(call);
    }
    push_outputs(stack, outs, level);
    if (!promoted.empty()) return_promoted(schema, promoted, *stack);
  } catch (const c10::Error&) {
    // The rule's error speaks of the physical (batched) tensors; an example the op
    // refuses on its own gets the op's own error instead (NOTE [Rules check what the
    // op checks]). An error that one example does not reproduce stands.
    if (!checked) {
      check_one_example(op, call.args);
    }
    throw;
  }
}

namespace {

class RuleKernel final : public c10::OperatorKernel {
 public:
  RuleKernel(Rule rule, RuleKind kind, bool random = false) : rule_(rule), kind_(kind), random_(random) {}

  void operator()(const c10::OperatorHandle& op, c10::DispatchKeySet, torch::jit::Stack* stack) {
    // A random op with a rule of its own (attention with dropout) is still refused in
    // 'error' mode when its inputs are unbatched (NOTE [Randomness under vmap]).
    if (random_ && top_interpreter().vmap().randomness == Randomness::Error &&
        !draws_nothing(op.schema(), *stack)) {
      TORCH_CHECK(false, errors::random_in_error_mode(display_name(op)));
    }
    run_rule(op, stack, rule_, kind_);
  }

 private:
  Rule rule_;
  RuleKind kind_;
  bool random_;
};

bool is_aten_op_name(const c10::OperatorName& name) {
  return name.name.rfind("aten::", 0) == 0;
}

// abs_, eq_.Tensor, threshold_, ...: in-place forms are often untagged while their
// functional form (NOTE [In-place ops through their functional form]) is tagged
// pointwise; the pointwise rule serves both.
bool is_inplace_of_pointwise(const c10::OperatorHandle& op) {
  const auto functional = functional_form(op);
  return functional && functional->hasTag(at::Tag::pointwise);
}

} // namespace

std::vector<std::string>& unknown_rule_ops() {
  static std::vector<std::string> unknown;
  return unknown;
}

namespace {

// Each family table with the file it lives in (NOTE [The rule registry]).
struct Family {
  const char* file;
  void (*add)(std::vector<RuleEntry>&);
};
constexpr Family kFamilies[] = {
    {"rules/pointwise.cpp", add_pointwise_rules}, {"rules/dims.cpp", add_dim_rules},
    {"rules/views.cpp", add_view_rules},          {"rules/linalg.cpp", add_linalg_rules},
    {"rules/nn.cpp", add_nn_rules},               {"rules/batch_norm.cpp", add_batch_norm_rules},
    {"rules/attention.cpp", add_attention_rules}, {"rules/index.cpp", add_index_rules},
    {"rules/search.cpp", add_search_rules},        {"rules/ctc_loss.cpp", add_ctc_loss_rules},
    {"rules/embedding_bag.cpp", add_embedding_bag_rules},
    {"rules/factory.cpp", add_factory_rules},     {"rules/dynamic.cpp", add_dynamic_rules},
    {"rules/decompose.cpp", add_decompositions}};

const char* kind_name(RuleKind kind) {
  switch (kind) {
    case RuleKind::Physical: return "physical";
    case RuleKind::Logical: return "decomposition";
    case RuleKind::Refused: return "refused";
  }
  return "physical";
}

} // namespace

size_t register_rules(torch::Library& lib) {
  std::vector<RuleEntry> table;
  std::vector<const char*> files;
  for (const auto& family : kFamilies) {
    family.add(table);
    files.resize(table.size(), family.file);
  }
  std::unordered_set<std::string> covered;
  for (size_t i = 0; i < table.size(); ++i) {
    const auto& e = table[i];
    TORCH_CHECK(covered.insert(e.op).second, "torchfunc: two batching rules for aten::", e.op);
    const std::string op_name(e.op);
    const auto dot = op_name.find('.');
    const auto name = "aten::" + op_name.substr(0, dot);
    const auto overload = dot == std::string::npos ? std::string() : op_name.substr(dot + 1);
    const auto schema = c10::Dispatcher::singleton().findSchema({name, overload});
    if (!schema) {
      unknown_rule_ops().push_back(op_name); // a typo, or an op this torch lacks (tested)
      continue;
    }
    for (const char* read : e.reads) {  // NOTE [Arguments by name]
      TORCH_CHECK(schema->schema().argumentIndexWithName(read).has_value(), "torchfunc: the batching rule of aten::",
                  e.op, " (", files[i], ") reads an argument named '", read, "', which its schema lacks: ",
                  schema->schema());
    }
    const bool random = schema->hasTag(at::Tag::nondeterministic_seeded);
    lib.impl(e.op, torch::CppFunction::makeFromBoxedFunctor(std::make_unique<RuleKernel>(e.rule, e.kind, random)));
    std::string why = e.kind == RuleKind::Refused
        ? "its result depends on the values of a batched tensor: a clear error, not a loop"
        : std::string("a rule of the ") + files[i] + " table";
    if (e.loops_when) why += std::string("; it runs the per-example loop ") + e.loops_when;
    if (random) why += "; a random op: refused under randomness='error' unless it draws nothing";
    record_rule({"aten::" + op_name, kind_name(e.kind), std::string("vmap/") + files[i], why});
  }
  // Generic families for the remaining aten ops that do not decompose (composite
  // ops reach the ops they are made of): random ops, and ops tagged pointwise.
  size_t generic = 0;
  for (const auto& name : c10::Dispatcher::singleton().getAllOpNames()) {
    if (!is_aten_op_name(name)) {
      continue;
    }
    const auto key = name.overload_name.empty() ? name.name.substr(6)
                                                : name.name.substr(6) + "." + name.overload_name;
    if (covered.count(key)) {
      continue;
    }
    auto op = c10::Dispatcher::singleton().findOp(name);
    if (!op || is_composite_implicit(*op)) {
      continue;
    }
    if (op->hasTag(at::Tag::nondeterministic_seeded)) {
      lib.impl(key.c_str(), torch::CppFunction::makeFromBoxedFunction<&random_kernel>());
      record_rule({"aten::" + key, "random", "vmap/interpreter.cpp (random_kernel)",
                   "tagged nondeterministic_seeded: 'error' raises, 'same' draws once, 'different' "
                   "draws per example (NOTE [Randomness under vmap])"});
      ++generic;
      continue;
    }
    const bool pointwise = op->hasTag(at::Tag::pointwise);
    if (!pointwise && !is_inplace_of_pointwise(*op)) {
      continue;
    }
    lib.impl(key.c_str(), torch::CppFunction::makeFromBoxedFunctor(
                              std::make_unique<RuleKernel>(&pointwise_rule, RuleKind::Physical)));
    record_rule({"aten::" + key, "physical", "vmap/rules/pointwise.cpp (pointwise_rule)",
                 pointwise ? "tagged pointwise: the generic pointwise rule"
                           : "the in-place form of an op tagged pointwise: the generic pointwise rule"});
    ++generic;
  }
  return table.size() + generic;
}

} // namespace torchfunc
