// embedding_bag: its forward (_embedding_bag_forward_only when no gradient is
// recorded, _embedding_bag under a grad level) and its backward ops.
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

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

namespace torchfunc {
namespace {

// Example b's rows of a table of V rows, in a stacked [B*V] table: indices + b*V,
// entries equal to padding_idx left at padding_idx (excluded, never read).
at::Tensor stacked_indices(const at::Tensor& indices, int64_t V, int64_t padding_idx) {
  auto shifted = indices + at::arange(indices.size(0), indices.options()).unsqueeze(1) * V;
  return padding_idx >= 0 ? at::where(indices == padding_idx, indices, shifted) : shifted;
}

// Tensor argument `name` materialized as [B, rest] and flattened to [B*rest].
at::Tensor folded(const Call& call, const char* name) {
  auto [value, bdim] = call.tensor(name);
  return axis::materialize(value, bdim, call.batch_size).reshape({-1});
}

// The examples' offset2bag [B, n] (empty in sum mode without weights) as one call's:
// each entry's bag + b*bags.
at::Tensor folded_offset2bag(const Call& call, int64_t bags) {
  auto [value, bdim] = call.tensor("offset2bag");
  auto o = axis::materialize(value, bdim, call.batch_size).reshape({call.batch_size, -1});
  return (o + at::arange(call.batch_size, o.options()).unsqueeze(1) * bags).reshape({-1});
}

// The examples' first `bags` offsets as one call's: example b's indices start at b*n.
at::Tensor folded_offsets(const Call& call, int64_t bags, int64_t n) {
  auto [value, bdim] = call.tensor("offsets");
  auto o = axis::materialize(value, bdim, call.batch_size).reshape({call.batch_size, -1}).narrow(1, 0, bags);
  return (o + at::arange(call.batch_size, o.options()).unsqueeze(1) * n).reshape({-1});
}

// per_sample_weights, when given, as one call's [B*n].
void fold_per_sample_weights(const Call& call, torch::jit::Stack& args) {
  if (call.optional_tensor(call.index("per_sample_weights")).has_value()) {
    args[call.index("per_sample_weights")] = folded(call, "per_sample_weights");
  }
}

Outs embedding_bag_forward_rule(Call& call) {
  const auto B = call.batch_size;
  const auto& logical_weight = call.arg("weight").toTensor();
  const auto& logical_indices = call.arg("indices").toTensor();
  const int64_t V = logical_weight.size(0);
  const int64_t n = logical_indices.numel();
  const bool last_offset = call.arg("include_last_offset").toBool();
  const int64_t padding_idx = call.arg("padding_idx").toInt();
  const int64_t bags = call.arg("offsets").toTensor().numel() - (last_offset ? 1 : 0);
  if (logical_indices.dim() != 1 || bags <= 0) {
    return loop_rule(call);  // the op's own error, or no bags to fold
  }
  auto [w, w_bdim] = call.tensor("weight");
  auto [idx, idx_bdim] = call.tensor("indices");
  auto indices = axis::materialize(idx, idx_bdim, B).reshape({B, n});
  at::Tensor weight = w;
  if (w_bdim.has_value()) {
    weight = axis::bdim_to_front(w, w_bdim).reshape({B * V, logical_weight.size(1)});
    indices = stacked_indices(indices, V, padding_idx);
  }
  auto offsets = folded_offsets(call, bags, n);
  if (last_offset) offsets = at::cat({offsets, at::full({1}, B * n, offsets.options())});
  indices = indices.reshape({B * n});
  auto args = call.args;
  args[call.index("weight")] = weight;
  args[call.index("indices")] = indices;
  args[call.index("offsets")] = offsets;
  fold_per_sample_weights(call, args);
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

// The weight gradient of every example at once: one dense backward into a stacked
// [B*V, D] table (NOTE [embedding_bag by folding the batch into the bags]), with
// each example's indices, bags and maxima shifted into it. scale_grad_by_freq counts
// an index within its example, as the stacked indices do. The sparse gradient loops.
Outs embedding_bag_dense_backward_rule(Call& call) {
  const auto B = call.batch_size;
  const auto sparse = call.schema().argumentIndexWithName("sparse");
  if (sparse.has_value() && call.args[*sparse].toBool()) return loop_rule(call);
  const auto& logical_grad = call.arg("grad").toTensor();
  const int64_t bags = logical_grad.size(0);
  const int64_t V = call.arg("num_weights").toInt();
  const int64_t padding_idx = call.arg("padding_idx").toInt();
  auto [g, g_bdim] = call.tensor("grad");
  auto [idx, idx_bdim] = call.tensor("indices");
  auto indices = axis::materialize(idx, idx_bdim, B).reshape({B, -1});
  auto args = call.args;
  args[call.index("grad")] = axis::materialize(g, g_bdim, B).reshape({B * bags, logical_grad.size(1)});
  args[call.index("indices")] = stacked_indices(indices, V, padding_idx).reshape({-1});
  if (call.schema().argumentIndexWithName("offsets").has_value()) {
    args[call.index("offsets")] = folded_offsets(call, bags, indices.size(1));
  }
  args[call.index("offset2bag")] = folded_offset2bag(call, bags);
  args[call.index("bag_size")] = folded(call, "bag_size");
  auto [mi, mi_bdim] = call.tensor("maximum_indices");
  auto maxima = axis::materialize(mi, mi_bdim, B);
  if (call.arg("mode").toInt() == 2) {
    const auto start = at::arange(B, maxima.options()).view({B, 1, 1}) * V;
    maxima = at::where(maxima >= 0, maxima + start, maxima);
  }
  args[call.index("maximum_indices")] = maxima.reshape({B * maxima.size(1), -1}).squeeze(-1);
  args[call.index("num_weights")] = B * V;
  fold_per_sample_weights(call, args);
  auto out = call.call_below(std::move(args))[0].toTensor();
  return {{out.view({B, V, out.size(1)}), 0}};
}

// The gradient of per_sample_weights: each entry's row of the table (stacked when
// it is per example) dotted with its bag's gradient, for every example at once.
Outs embedding_bag_per_sample_weights_backward_rule(Call& call) {
  const auto B = call.batch_size;
  const auto& logical_grad = call.arg("grad").toTensor();
  const int64_t bags = logical_grad.size(0);
  const auto& logical_weight = call.arg("weight").toTensor();
  const int64_t V = logical_weight.size(0);
  auto [g, g_bdim] = call.tensor("grad");
  auto [w, w_bdim] = call.tensor("weight");
  auto [idx, idx_bdim] = call.tensor("indices");
  auto indices = axis::materialize(idx, idx_bdim, B).reshape({B, -1});
  const int64_t n = indices.size(1);
  auto args = call.args;
  args[call.index("grad")] = axis::materialize(g, g_bdim, B).reshape({B * bags, logical_grad.size(1)});
  if (w_bdim.has_value()) {
    args[call.index("weight")] = axis::bdim_to_front(w, w_bdim).reshape({B * V, logical_weight.size(1)});
    indices = stacked_indices(indices, V, call.arg("padding_idx").toInt());
  }
  args[call.index("indices")] = indices.reshape({-1});
  args[call.index("offsets")] = folded_offsets(call, bags, n);
  args[call.index("offset2bag")] = folded_offset2bag(call, bags);
  auto out = call.call_below(std::move(args))[0].toTensor();
  return {{out.view({B, n}), 0}};
}

} // namespace

void add_embedding_bag_rules(std::vector<RuleEntry>& t) {
  for (const char* op : {"_embedding_bag_forward_only", "_embedding_bag"}) {
    t.push_back({op, &embedding_bag_forward_rule, RuleKind::Physical, nullptr,
                 {"weight", "indices", "offsets", "mode", "per_sample_weights", "include_last_offset", "padding_idx"}});
  }
  t.push_back({"_embedding_bag_backward", &embedding_bag_dense_backward_rule, RuleKind::Physical,
               "with sparse=True (a sparse gradient)",
               {"grad", "indices", "offsets", "offset2bag", "bag_size", "maximum_indices", "num_weights", "mode",
                "sparse", "per_sample_weights", "padding_idx"}});
  t.push_back({"_embedding_bag_dense_backward", &embedding_bag_dense_backward_rule, RuleKind::Physical, nullptr,
               {"grad", "indices", "offset2bag", "bag_size", "maximum_indices", "num_weights", "mode",
                "per_sample_weights", "padding_idx"}});
  t.push_back({"_embedding_bag_per_sample_weights_backward", &embedding_bag_per_sample_weights_backward_rule,
               RuleKind::Physical, nullptr, {"grad", "weight", "indices", "offsets", "offset2bag", "padding_idx"}});
}

} // namespace torchfunc
