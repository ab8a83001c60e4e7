// Ops that return no tensor, and those whose result depends on the values of a batched
// tensor (Python control flow on tensors, data-dependent output shapes): a value every
// example shares, or a clear error, not a loop that would fail later or silently pick
// one example.
#include "../../errors.h"
#include "../fallback.h"
#include "../rule.h"

namespace torchfunc {
namespace {

Outs data_dependent_rule(Call& call) {
  TORCH_CHECK(false, errors::data_dependent(call.name()));
}

// NOTE [Data-dependent values that every example shares]
// .item(), bool(tensor) (is_nonzero), torch.equal, torch.allclose and
// _nested_tensor_from_mask_left_aligned return a Python value, one per example. When every example gives the same value, the loop that vmap
// stands for takes the same branch (or uses the same number) for each example, so
// that value is the answer: checks like `if (var < 0).any(): raise` work under vmap
// (torch.func refuses them all). When the examples differ, the data-dependent error
// stands, saying so. Each example is computed below every transform.
Outs uniform_scalar_rule(Call& call) {
  const auto B = call.batch_size;
  std::optional<c10::IValue> first;
  for (int64_t b = 0; b < B; ++b) {
    auto result = call.call_below(slice_example(call.args, call.level, b));
    TORCH_INTERNAL_ASSERT(result.size() == 1);
    if (!first) {
      first = result[0];
    } else if (!(*first == result[0])) {
      TORCH_CHECK(false, errors::data_dependent(call.name()), " (torchfunc: here examples 0 and ", b,
                  " give different values; when every example gives the same value, vmap uses it)");
    }
  }
  TORCH_CHECK(first.has_value(), errors::data_dependent(call.name()), " (torchfunc: the batch is empty)");
  return {{*first, std::nullopt}};
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
  // _nested_tensor_from_mask_left_aligned: TransformerEncoder's fast-path check on its mask.
  for (const char* op : {"_local_scalar_dense", "is_nonzero", "equal", "allclose", "item",
                         "_nested_tensor_from_mask_left_aligned"}) {
    t.push_back({op, &uniform_scalar_rule});
  }
  for (const char* op : {"nonzero", "nonzero_static",
                         "_unique", "_unique2", "unique_dim", "unique_consecutive",
                         "unique_dim_consecutive", "bincount", "repeat_interleave.Tensor",
                         "_assert_async", "_assert_async.msg"}) {
    t.push_back({op, &data_dependent_rule, RuleKind::Refused});
  }
}

} // namespace torchfunc
