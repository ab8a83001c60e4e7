// Ops that return no tensor. Those whose result depends on the values of a batched tensor (Python control
// flow on tensors, data-dependent output shapes): a clear error, not a loop
// that would fail later or silently pick one example.
#include "../../errors.h"
#include "../rule.h"

namespace torchfunc {
namespace {

Outs data_dependent_rule(Call& call) {
  TORCH_CHECK(false, errors::data_dependent(call.name()));
}

// Metadata queries answer for the logical (per-example) tensors.
Outs is_same_size_rule(Call& call) {
  return {{c10::IValue(call.args[0].toTensor().sizes() == call.args[1].toTensor().sizes()), std::nullopt}};
}

// A BatchedTensor has no storage; each example stands for a storage of its own
// numel (what forward-mode AD asks before reusing a tangent's layout).
Outs has_same_storage_numel_rule(Call& call) {
  return {{c10::IValue(call.args[0].toTensor().numel() == call.args[1].toTensor().numel()), std::nullopt}};
}

} // namespace

void add_dynamic_rules(std::vector<RuleEntry>& t) {
  t.push_back({"is_same_size", &is_same_size_rule, RuleKind::Logical});
  t.push_back({"_has_same_storage_numel", &has_same_storage_numel_rule, RuleKind::Logical});
  for (const char* op : {"_local_scalar_dense", "is_nonzero", "equal", "nonzero", "nonzero_static",
                         "_unique", "_unique2", "unique_dim", "unique_consecutive",
                         "unique_dim_consecutive", "allclose", "bincount", "repeat_interleave.Tensor",
                         "_assert_async", "_assert_async.msg", "item"}) {
    t.push_back({op, &data_dependent_rule, RuleKind::Refused});
  }
}

} // namespace torchfunc
