// Ops whose result depends on the values of a batched tensor (Python control
// flow on tensors, data-dependent output shapes): a clear error, not a loop
// that would fail later or silently pick one example.
#include "../../errors.h"
#include "../rule.h"

namespace torchfunc {
namespace {

Outs data_dependent_rule(Call& call) {
  TORCH_CHECK(false, errors::data_dependent(call.name()));
}

} // namespace

void add_dynamic_rules(std::vector<RuleEntry>& t) {
  for (const char* op : {"_local_scalar_dense", "is_nonzero", "equal", "nonzero", "nonzero_static",
                         "masked_select", "_unique", "_unique2", "unique_dim", "unique_consecutive",
                         "unique_dim_consecutive", "allclose", "bincount", "repeat_interleave.Tensor",
                         "_assert_async", "_assert_async.msg", "item"}) {
    t.push_back({op, &data_dependent_rule});
  }
}

} // namespace torchfunc
