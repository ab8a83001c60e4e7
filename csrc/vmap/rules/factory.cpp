// Factories that take a tensor: *_like keep the example's batch dim, new_* get
// one (so that later in-place writes of batched values into them work).
#include "../axis.h"
#include "../rule.h"

#include <ATen/ATen.h>

namespace torchfunc {
namespace {

Outs like_rule(Call& call) {
  auto [value, bdim] = call.tensor(0);
  auto args = call.args;
  args[0] = axis::bdim_to_front(value, bdim);
  return {{call.call_below(std::move(args))[0], 0}};
}

Outs new_rule(Call& call) {
  auto [value, bdim] = call.tensor(0);
  auto args = call.args;
  args[0] = value;
  auto sizes = call.args[1].toDimVector();
  sizes.insert(sizes.begin(), call.batch_size);
  args[1] = c10::IValue(c10::IntArrayRef(sizes));
  return {{call.call_below(std::move(args))[0], 0}};
}

} // namespace

void add_factory_rules(std::vector<RuleEntry>& t) {
  for (const char* op : {"empty_like", "zeros_like", "ones_like", "full_like"}) {
    t.push_back({op, &like_rule});
  }
  for (const char* op : {"new_empty", "new_zeros", "new_ones", "new_full"}) {
    t.push_back({op, &new_rule});
  }
}

} // namespace torchfunc
