// embedding_bag's forward (_embedding_bag_forward_only: the op vmap meets when no
// gradient is recorded).
//
// NOTE [embedding_bag by folding the batch into the bags]
// Per example, embedding_bag reduces bags of rows of a [V, D] table: indices [n]
// split by offsets [bags] (or [bags + 1] with include_last_offset; F.embedding_bag
// turns 2-D indices into these). The B examples' bags are independent: one call over
// the indices of every example one after another, offsets shifted by b*n, serves
// them all. A batched table is stacked to [B*V, D] with example
// b's indices shifted by b*V; entries equal to padding_idx all point at row
// padding_idx (they are excluded from their bag, never read). The outputs unfold:
// the bags' rows [B*bags, D], offset2bag (each entry's bag, less b*bags), bag_size,
// and max_indices (max mode: each max's row, less b*V for a stacked table). Sum mode
// with include_last_offset gives bag_size and max_indices one zero per offset.
#include "../axis.h"
#include "../rule.h"

#include <ATen/ATen.h>

namespace torchfunc {
namespace {

Outs embedding_bag_forward_rule(Call& call) {
  const auto B = call.batch_size;
  const auto& logical_weight = call.arg("weight").toTensor();
  const auto& logical_indices = call.arg("indices").toTensor();
  const int64_t V = logical_weight.size(0);
  const int64_t n = logical_indices.numel();
  const bool last_offset = call.arg("include_last_offset").toBool();
  const int64_t padding_idx = call.arg("padding_idx").toInt();
  if (logical_indices.dim() != 1 || call.arg("offsets").toTensor().numel() - (last_offset ? 1 : 0) <= 0) {
    return loop_rule(call);  // the op's own error, or no bags to fold
  }
  auto [w, w_bdim] = call.tensor("weight");
  auto [idx, idx_bdim] = call.tensor("indices");
  auto indices = axis::materialize(idx, idx_bdim, B).reshape({B, n});
  at::Tensor weight = w;
  if (w_bdim.has_value()) {
    weight = axis::bdim_to_front(w, w_bdim).reshape({B * V, logical_weight.size(1)});
    auto shifted = indices + at::arange(B, indices.options()).unsqueeze(1) * V;
    indices = padding_idx >= 0 ? at::where(indices == padding_idx, indices, shifted) : shifted;
  }
  const int64_t bags = call.arg("offsets").toTensor().numel() - (last_offset ? 1 : 0);
  auto [off, off_bdim] = call.tensor("offsets");
  auto o = axis::materialize(off, off_bdim, B).reshape({B, -1}).narrow(1, 0, bags);
  o = o + at::arange(B, o.options()).unsqueeze(1) * n;
  auto offsets = o.reshape({B * bags});
  if (last_offset) offsets = at::cat({offsets, at::full({1}, B * n, offsets.options())});
  indices = indices.reshape({B * n});
  auto args = call.args;
  args[call.index("weight")] = weight;
  args[call.index("indices")] = indices;
  args[call.index("offsets")] = offsets;
  if (auto psw = call.optional_tensor(call.index("per_sample_weights")); psw.has_value()) {
    args[call.index("per_sample_weights")] = axis::materialize(psw->first, psw->second, B).reshape({-1});
  }
  auto r = call.call_below(std::move(args));
  const auto output = r[0].toTensor();
  auto offset2bag = r[1].toTensor();
  auto bag_size = r[2].toTensor();
  auto max_indices = r[3].toTensor();
  if (offset2bag.numel() > 0) {
    offset2bag = offset2bag.view({B, -1}) - at::arange(B, offset2bag.options()).unsqueeze(1) * bags;
  } else {
    offset2bag = offset2bag.view({B, 0});
  }
  if (call.arg("mode").toInt() == 0 && bag_size.numel() != B * bags) {
    // Sum mode fills both with zeros, one per offset (bags + 1 with include_last_offset).
    const auto per_example = (bag_size.numel() - 1) / B + 1;
    return {{output.view({B, bags, output.size(1)}), 0}, {offset2bag, 0},
            {at::zeros({B, per_example}, bag_size.options()), 0}, {at::zeros({B, per_example}, max_indices.options()), 0}};
  }
  const bool max_mode = call.arg("mode").toInt() == 2;
  max_indices = max_indices.reshape({B, bags, -1});
  if (max_mode && w_bdim.has_value()) {
    const auto start = at::arange(B, max_indices.options()).view({B, 1, 1}) * V;
    const auto own = (max_indices >= start) & (max_indices < start + V);
    max_indices = at::where(own, max_indices - start, max_indices);
  }
  if (!max_mode) max_indices = max_indices.squeeze(2);
  return {{output.view({B, bags, output.size(1)}), 0}, {offset2bag, 0}, {bag_size.view({B, bags}), 0},
          {max_indices, 0}};
}

} // namespace

void add_embedding_bag_rules(std::vector<RuleEntry>& t) {
  t.push_back({"_embedding_bag_forward_only", &embedding_bag_forward_rule, RuleKind::Physical, nullptr,
               {"weight", "indices", "offsets", "mode", "per_sample_weights", "include_last_offset", "padding_idx"}});
}

} // namespace torchfunc
