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
  auto [value, bdim] = call.tensor("self");
  auto args = call.args;
  args[call.index("self")] = value;
  auto sizes = call.arg("size").toDimVector();
  sizes.insert(sizes.begin(), call.batch_size);
  args[call.index("size")] = c10::IValue(c10::IntArrayRef(sizes));
  return {{call.call_below(std::move(args))[0], 0}};
}

// NOTE [Tangents with the layout of their primal]
// Forward AD calls _new_zeros_with_same_feature_meta(tangent, primal, n) to make a
// tangent with the primal's sizes, strides and storage offset, under n leading
// dims of the tangent. Here the examples are the feature part: the batch dim
// joins the leading dims. A batched primal contributes the layout of one
// example, in a storage just large enough for it (not the batched storage,
// which would make the result batch-size times larger than needed).
Outs new_zeros_with_same_feature_meta_rule(Call& call) {
  auto [self, self_bdim] = call.tensor("self");
  auto [other, other_bdim] = call.tensor("other");
  at::Tensor example = other;
  if (other_bdim.has_value()) {
    auto first = other.select(*other_bdim, 0);
    int64_t span = 1;
    for (int64_t d = 0; d < first.dim(); ++d) {
      if (first.size(d) == 0) span = 0;
      if (span > 0) span += (first.size(d) - 1) * first.stride(d);
    }
    example = at::empty({first.storage_offset() + span}, first.options())
                  .as_strided(first.sizes(), first.strides(), first.storage_offset());
  }
  auto args = call.args;
  args[call.index("self")] = axis::materialize(self, self_bdim, call.batch_size);
  args[call.index("other")] = example;
  args[call.index("self_num_batch_dims")] = call.arg("self_num_batch_dims").toInt() + 1;
  return {{call.call_below(std::move(args))[0], 0}};
}

} // namespace

void add_factory_rules(std::vector<RuleEntry>& t) {
  for (const char* op : {"empty_like", "zeros_like", "ones_like", "full_like"}) {
    t.push_back({op, &like_rule});
  }
  for (const char* op : {"new_empty", "new_zeros", "new_ones", "new_full"}) {
    t.push_back({op, &new_rule, RuleKind::Physical, nullptr, {"self", "size"}});
  }
  t.push_back({"_new_zeros_with_same_feature_meta", &new_zeros_with_same_feature_meta_rule, RuleKind::Physical,
               nullptr, {"self", "other", "self_num_batch_dims"}});
}

} // namespace torchfunc
