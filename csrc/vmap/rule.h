#pragma once
// NOTE [Batching rules are data]
// A batching rule has one signature: it receives the op's call at the current
// level and returns the outputs with their batch dims, as JAX's batchers do.
//   Physical rules see unwrapped values ((value, bdim) per tensor) and call ops
//     on them with kBatchedKey excluded, so those calls go straight to the level
//     below.
//   Logical rules (decompositions) call ops on the BatchedTensors themselves;
//     each call meets the batching rules again. They are how an op with no
//     physical rule reaches ops that have one.
// Rules are registered one line per op in family tables (rules/*.cpp); generic
// rules serve whole families (every op tagged pointwise, every reduction with a
// dim argument, ...). plumbing.cpp turns each entry into a kernel on kBatchedKey.
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/SmallVector.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace torchfunc {

// One output of a rule. A tensor (or every tensor of a list) is batched along
// `bdim`; nullopt means "already what the caller gets" (unbatched, or a
// BatchedTensor returned as is, e.g. `self` of an in-place op).
struct Out {
  c10::IValue value;
  std::optional<int64_t> bdim;
};
using Outs = c10::SmallVector<Out, 2>;

// One call of an op at a vmap level.
struct Call {
  const c10::OperatorHandle& op;
  int64_t level;
  int64_t batch_size;
  torch::jit::Stack args; // the op's arguments as called (tensors still wrapped)

  const c10::FunctionSchema& schema() const { return op.schema(); }
  std::string name() const;
  // NOTE [Arguments by name]
  // Rules read arguments by their schema name (call.arg("groups"), call.tensor("weight")):
  // the names a rule's table line declares in `reads` are checked against the op's
  // schema once, at registration; a name missing at run time raises an internal error
  // naming the op and the argument. Generic rules that serve many ops read the
  // schema itself (dim-like names, "dropout_p", ...).
  size_t index(std::string_view name) const;
  // A literal 0 must not become a null name: positions take the size_t overloads.
  size_t index(std::nullptr_t) const = delete;
  const c10::IValue& arg(std::string_view name) const { return args[index(name)]; }
  // Value and bdim of tensor argument i (or `name`) at this level.
  std::pair<at::Tensor, std::optional<int64_t>> tensor(size_t i) const;
  std::pair<at::Tensor, std::optional<int64_t>> tensor(std::string_view name) const { return tensor(index(name)); }
  std::optional<std::pair<at::Tensor, std::optional<int64_t>>> optional_tensor(size_t i) const;
  std::optional<std::pair<at::Tensor, std::optional<int64_t>>> optional_tensor(std::string_view name) const {
    return optional_tensor(index(name));
  }
  // Values and bdims of a TensorList argument.
  std::vector<std::pair<at::Tensor, std::optional<int64_t>>> tensors(size_t i) const;
  std::vector<std::pair<at::Tensor, std::optional<int64_t>>> tensors(std::string_view name) const {
    return tensors(index(name));
  }
  // Runs the op with `args` replaced and kBatchedKey excluded; returns its outputs.
  torch::jit::Stack call_below(torch::jit::Stack args) const;
};

using Rule = Outs (*)(Call& call);

// Refused: a rule that raises a clear error (data-dependent ops); run like Logical.
enum class RuleKind : uint8_t { Physical, Logical, Refused };

struct RuleEntry {
  const char* op; // "name.overload" in the aten namespace ("sum.dim_IntList", "sin")
  Rule rule;
  RuleKind kind = RuleKind::Physical;
  // A rule that hands some calls to the per-example loop says which (for the registry,
  // NOTE [The rule registry]): "with a batched index", ...
  const char* loops_when = nullptr;
  // The argument names the rule reads with call.arg(name) & co. (NOTE [Arguments by name]).
  std::vector<const char*> reads = {};
};

// Family tables (rules/*.cpp).
void add_pointwise_rules(std::vector<RuleEntry>& table);
void add_dim_rules(std::vector<RuleEntry>& table);
void add_view_rules(std::vector<RuleEntry>& table);
void add_linalg_rules(std::vector<RuleEntry>& table);
void add_nn_rules(std::vector<RuleEntry>& table);
void add_batch_norm_rules(std::vector<RuleEntry>& table);
void add_attention_rules(std::vector<RuleEntry>& table);
void add_index_rules(std::vector<RuleEntry>& table);
void add_search_rules(std::vector<RuleEntry>& table);
void add_ctc_loss_rules(std::vector<RuleEntry>& table);
void add_embedding_bag_rules(std::vector<RuleEntry>& table);
void add_factory_rules(std::vector<RuleEntry>& table);
void add_dynamic_rules(std::vector<RuleEntry>& table);
void add_decompositions(std::vector<RuleEntry>& table);

// Generic rules shared by several families.
// Every op tagged pointwise (rules/pointwise.cpp).
Outs pointwise_rule(Call& call);
// All tensor arguments batch-materialized at the front, dim arguments shifted
// (rules/dims.cpp); "batch-native" ops (linalg) use it with no dim arguments.
Outs dim_rule(Call& call);
// dim_rule for gather, whose output has the rank of its index (rules/dims.cpp).
Outs gather_rule(Call& call);
// The per-example loop (fallback.cpp), for rules that handle only some cases.
Outs loop_rule(Call& call);

} // namespace torchfunc
