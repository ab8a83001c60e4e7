// Neural-network ops: convolution (forward and backward), pooling and other ops
// with a leading batch dim N, constant padding and pixel shuffle, embedding, layer
// and group norm, packed sequences, and the backward ops of these.
//
// NOTE [Batching through N and through groups]
// Ops with their own batch dim N take our batch dim by folding it into N
// ([B, N, ...] -> [B*N, ...]); this is exact whenever the op treats samples of
// N independently. Convolutions whose weight differs per example (ensembles,
// and the per-example weight gradient of per-sample-gradient computations) fold
// it into the channels instead and run B independent groups:
// input [N, B*C, ...], weight [B*O, C/g, ...], groups B*g.
#include "../../op_traits.h"
#include "../axis.h"
#include "../rule.h"

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Reduction.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/embedding_renorm.h>
#include <ATen/ops/zeros.h>

namespace torchfunc {
namespace {

// Spatial dims of a pooling-style op, read off its name ("max_pool2d_..." -> 2).
int64_t spatial_dims(const std::string& name) {
  if (name.find("1d") != std::string::npos) return 1;
  if (name.find("3d") != std::string::npos) return 3;
  return 2;
}

// Pooling-style ops: every tensor argument folds the batch into N, or becomes N
// itself when examples are unbatched-form (rank spatial+1).
Outs fold_into_n_rule(Call& call) {
  const auto full_rank = spatial_dims(call.name()) + 2;
  const bool fold = call.args[0].toTensor().dim() == full_rank;
  torch::jit::Stack physical = call.args;
  for (size_t i = 0; i < physical.size(); ++i) {
    if (!physical[i].isTensor() || !physical[i].toTensor().defined()) continue;
    auto [value, bdim] = call.tensor(i);
    auto v = axis::materialize(value, bdim, call.batch_size);
    // Some of these CPU kernels index raw memory as if contiguous (adaptive_max_pool3d's
    // backward crashed on an expanded, stride-0 indices tensor).
    physical[i] = (fold && v.dim() == full_rank + 1 ? axis::fold_into(v, 0) : v).contiguous();
  }
  auto results = call.call_below(std::move(physical));
  Outs outs;
  for (auto& r : results) {
    const auto& t = r.toTensor();
    if (!t.defined()) {  // masked out by output_mask (grid_sampler backward)
      outs.push_back({t, std::nullopt});
      continue;
    }
    outs.push_back({fold ? axis::unfold_from(t, 0, call.batch_size) : t, 0});
  }
  return outs;
}

// upsample_*_backward: grad_output folds into N, and input_size, which names N, grows by B.
Outs upsample_backward_rule(Call& call) {
  const auto B = call.batch_size;
  auto [grad, bdim] = call.tensor("grad_output");
  auto input_size = call.arg("input_size").toDimVector();
  input_size[0] *= B;
  auto args = call.args;
  args[call.index("grad_output")] = axis::fold_into(axis::bdim_to_front(grad, bdim), 0).contiguous();
  args[call.index("input_size")] = c10::IValue(c10::IntArrayRef(input_size));
  return {{axis::unfold_from(call.call_below(std::move(args))[0].toTensor(), 0, B), 0}};
}

// col2im takes [N, C*k, L] or, unbatched, [C*k, L].
Outs col2im_rule(Call& call) {
  const auto B = call.batch_size;
  auto [self, bdim] = call.tensor("self");
  const bool has_n = call.arg("self").toTensor().dim() == 3;
  auto args = call.args;
  auto front = axis::bdim_to_front(self, bdim);
  args[call.index("self")] = has_n ? axis::fold_into(front, 0) : front;
  auto result = call.call_below(std::move(args))[0].toTensor();
  return {{has_n ? axis::unfold_from(result, 0, B) : result, 0}};
}

// fractional_max_pool{2,3}d and their backward: like fold_into_n_rule, except that
// random_samples ([N, C, k], or [1, C, k] for an unbatched-form input) always folds.
Outs fractional_max_pool_rule(Call& call) {
  const auto B = call.batch_size;
  const bool fold = call.arg("self").toTensor().dim() == spatial_dims(call.name()) + 2;
  const auto& schema_args = call.schema().arguments();
  torch::jit::Stack physical = call.args;
  for (size_t i = 0; i < physical.size(); ++i) {
    if (!physical[i].isTensor()) continue;
    auto [value, bdim] = call.tensor(i);
    auto v = axis::materialize(value, bdim, B);
    physical[i] = (fold || schema_args[i].name() == "random_samples" ? axis::fold_into(v, 0) : v).contiguous();
  }
  Outs outs;
  for (auto& r : call.call_below(std::move(physical))) {
    outs.push_back({fold ? axis::unfold_from(r.toTensor(), 0, B) : r.toTensor(), 0});
  }
  return outs;
}

// multilabel_margin_loss over [N, C] examples folds the batch into N and runs with
// reduction='none'; each example's N losses are then reduced as asked. A [C] example is
// one sample, so the batch is N; a 0-dim example is a [1] one.
at::Tensor multilabel_operand(Call& call, const char* name, int64_t rank) {
  auto [value, bdim] = call.tensor(name);
  auto v = axis::materialize(value, bdim, call.batch_size);
  if (rank == 0) v = v.unsqueeze(1);
  return (rank == 2 ? axis::fold_into(v, 0) : v).contiguous();
}

Outs multilabel_margin_loss_forward_rule(Call& call) {
  const auto B = call.batch_size;
  const int64_t rank = call.arg("self").toTensor().dim();
  auto prepare = [&](const char* name) { return multilabel_operand(call, name, rank); };
  auto args = call.args;
  args[call.index("self")] = prepare("self");
  args[call.index("target")] = prepare("target");
  args[call.index("reduction")] = static_cast<int64_t>(at::Reduction::None);
  auto results = call.call_below(std::move(args));
  auto output = results[0].toTensor();
  auto is_target = results[1].toTensor();
  if (rank == 2) {
    output = axis::unfold_from(output, 0, B);
    is_target = axis::unfold_from(is_target, 0, B);
    const auto reduction = call.arg("reduction").toInt();
    if (reduction == at::Reduction::Mean) output = output.mean(1);
    if (reduction == at::Reduction::Sum) output = output.sum(1);
  }
  if (rank == 0) is_target = is_target.squeeze(1);
  return {{output, 0}, {is_target, 0}};
}

Outs multilabel_margin_loss_backward_rule(Call& call) {
  const auto B = call.batch_size;
  const auto& logical_self = call.arg("self").toTensor();
  const int64_t rank = logical_self.dim();
  auto prepare = [&](const char* name) { return multilabel_operand(call, name, rank); };
  auto [grad, grad_bdim] = call.tensor("grad_output");
  auto g = axis::materialize(grad, grad_bdim, B);
  if (rank == 2) {
    const auto n = logical_self.size(0);
    const auto reduction = call.arg("reduction").toInt();
    if (reduction != at::Reduction::None) g = g.reshape({B, 1}).expand({B, n});
    if (reduction == at::Reduction::Mean) g = g / static_cast<double>(n);
    g = g.reshape({B * n});
  }
  auto args = call.args;
  args[call.index("grad_output")] = g.contiguous();
  args[call.index("self")] = prepare("self");
  args[call.index("target")] = prepare("target");
  args[call.index("is_target")] = prepare("is_target");
  args[call.index("reduction")] = static_cast<int64_t>(at::Reduction::None);
  auto result = call.call_below(std::move(args))[0].toTensor();
  if (rank == 0) result = result.squeeze(1);
  return {{rank == 2 ? axis::unfold_from(result, 0, B) : result, 0}};
}

// unfold_backward: the batch dim in front of grad_in and of input_sizes, dim shifted.
// A 0-dim example unfolds into its one window of size 1, [1]: its gradient is that
// window's.
Outs unfold_backward_rule(Call& call) {
  auto sizes = call.arg("input_sizes").toDimVector();
  if (sizes.empty()) {
    auto [grad, bdim] = call.tensor("grad_in");
    if (call.arg("size").toInt() != 1) return loop_rule(call);  // the op's own error
    return {{axis::materialize(grad, bdim, call.batch_size).reshape({call.batch_size}), 0}};
  }
  const int64_t dim = c10::maybe_wrap_dim(call.arg("dim").toInt(), static_cast<int64_t>(sizes.size()));
  sizes.insert(sizes.begin(), call.batch_size);
  auto [grad, bdim] = call.tensor("grad_in");
  auto args = call.args;
  args[call.index("grad_in")] = axis::materialize(grad, bdim, call.batch_size);
  args[call.index("input_sizes")] = c10::IValue(c10::IntArrayRef(sizes));
  args[call.index("dim")] = dim + 1;
  return {{call.call_below(std::move(args))[0], 0}};
}

// [B, N, C, ...] -> [N, B*C, ...] and back.
at::Tensor channels_in(const at::Tensor& front_batched) { return axis::fold_into(front_batched, 1); }
at::Tensor channels_out(const at::Tensor& t, int64_t batch_size) { return axis::unfold_from(t, 1, batch_size); }
// [B, O, ...] -> [B*O, ...] and back.
at::Tensor flat_front(const at::Tensor& t) { return t.flatten(0, 1); }
at::Tensor unflat_front(const at::Tensor& t, int64_t batch_size) {
  return axis::unfold_from(t, 0, batch_size);
}

Outs convolution_rule(Call& call) {
  const auto B = call.batch_size;
  auto [input, input_bdim] = call.tensor("input");
  auto [weight, weight_bdim] = call.tensor("weight");
  auto bias = call.optional_tensor(call.index("bias"));
  const bool per_example_params = weight_bdim.has_value() || (bias && bias->second.has_value());
  auto args = call.args;
  if (!per_example_params) {
    args[call.index("input")] = axis::fold_into(axis::bdim_to_front(input, input_bdim), 0);
    auto out = call.call_below(std::move(args))[0].toTensor();
    return {{axis::unfold_from(out, 0, B), 0}};
  }
  args[call.index("input")] = channels_in(axis::materialize(input, input_bdim, B));
  args[call.index("weight")] = flat_front(axis::materialize(weight, weight_bdim, B));
  if (bias) args[call.index("bias")] = flat_front(axis::materialize(bias->first, bias->second, B));
  args[call.index("groups")] = call.arg("groups").toInt() * B;
  auto out = call.call_below(std::move(args))[0].toTensor();
  return {{channels_out(out, B), 0}};
}

// The group trick serves every case: per-example weight gradients need it anyway.
Outs convolution_backward_rule(Call& call) {
  const auto B = call.batch_size;
  auto [grad_out, go_bdim] = call.tensor("grad_output");
  auto [input, input_bdim] = call.tensor("input");
  auto [weight, weight_bdim] = call.tensor("weight");
  auto args = call.args;
  args[call.index("grad_output")] = channels_in(axis::materialize(grad_out, go_bdim, B));
  args[call.index("input")] = channels_in(axis::materialize(input, input_bdim, B));
  args[call.index("weight")] = flat_front(axis::materialize(weight, weight_bdim, B));
  if (!call.arg("bias_sizes").isNone()) {
    auto bias_sizes = call.arg("bias_sizes").toDimVector();
    bias_sizes[0] *= B;
    args[call.index("bias_sizes")] = c10::IValue(c10::IntArrayRef(bias_sizes));
  }
  args[call.index("groups")] = call.arg("groups").toInt() * B;
  auto results = call.call_below(std::move(args));
  auto grad_input = results[0].toTensor();
  auto grad_weight = results[1].toTensor();
  auto grad_bias = results[2].toTensor();
  return {{grad_input.defined() ? channels_out(grad_input, B) : grad_input, 0},
          {grad_weight.defined() ? unflat_front(grad_weight, B) : grad_weight, 0},
          {grad_bias.defined() ? unflat_front(grad_bias, B) : grad_bias, 0}};
}

Outs embedding_rule(Call& call) {
  const auto B = call.batch_size;
  auto [weight, weight_bdim] = call.tensor("weight");
  auto [indices, indices_bdim] = call.tensor("indices");
  auto args = call.args;
  if (!weight_bdim.has_value()) {
    args[call.index("indices")] = axis::bdim_to_front(indices, indices_bdim);
    return {{call.call_below(std::move(args))[0], 0}};
  }
  // Per-example tables: offset each example's indices into the stacked table.
  auto table = axis::bdim_to_front(weight, weight_bdim);
  const auto rows = table.size(1);
  auto idx = axis::materialize(indices, indices_bdim, B);
  std::vector<int64_t> shape(idx.dim(), 1);
  shape[0] = B;
  auto offsets = at::arange(B, idx.options()).mul(rows).view(shape);
  args[call.index("weight")] = table.flatten(0, 1);
  args[call.index("indices")] = idx + offsets;
  // padding_idx only matters for the backward (embedding_dense_backward's rule).
  args[call.index("padding_idx")] = int64_t{-1};
  return {{call.call_below(std::move(args))[0], 0}};
}

// NOTE [embedding_renorm_ under vmap]
// embedding_renorm_ scales each row of the table that an index names and whose norm
// exceeds max_norm down to max_norm; a row already at most max_norm is left alone, so
// renorming a row twice is renorming it once. With a shared table the loop over the
// examples therefore renorms every row named by any example, once: one call with every
// example's indices. Per-example tables are one stacked table [B*V, D] with each
// example's indices offset by b*V (as embedding's rule does), renormed in place and
// copied back when the stacked view is not the value itself. The functional form
// renorms each example's copy of the table by that example's indices alone.
Outs embedding_renorm_rule(Call& call) {
  const auto B = call.batch_size;
  auto [weight, weight_bdim] = call.tensor("self");
  auto [indices, indices_bdim] = call.tensor("indices");
  const bool inplace = is_inplace(call.schema());
  const double max_norm = call.arg("max_norm").toDouble();
  const double norm_type = call.arg("norm_type").toDouble();
  if (!weight_bdim.has_value() && inplace) {
    at::embedding_renorm_(weight, axis::bdim_to_front(indices, indices_bdim).reshape({-1}), max_norm, norm_type);
    return {{call.arg("self"), std::nullopt}};
  }
  auto front = axis::materialize(weight, weight_bdim, B);
  const auto rows = front.size(1);
  const bool direct = inplace && front.is_contiguous();
  auto stacked = front.reshape({B * rows, front.size(2)});
  if (!direct) stacked = stacked.clone(at::MemoryFormat::Contiguous);
  auto idx = axis::materialize(indices, indices_bdim, B).reshape({B, -1});
  idx = idx + at::arange(B, idx.options()).mul(rows).unsqueeze(1);
  at::embedding_renorm_(stacked, idx.reshape({-1}), max_norm, norm_type);
  if (!inplace) return {{stacked.view(front.sizes()), 0}};
  if (!direct) front.copy_(stacked.view(front.sizes()));
  return {{call.arg("self"), std::nullopt}};
}

// Per-example weight gradients of an embedding: offset indices into B stacked tables.
Outs embedding_dense_backward_rule(Call& call) {
  const auto B = call.batch_size;
  auto [grad, grad_bdim] = call.tensor("grad_output");
  auto [indices, indices_bdim] = call.tensor("indices");
  auto g = axis::materialize(grad, grad_bdim, B);
  auto idx = axis::materialize(indices, indices_bdim, B);
  const auto rows = call.arg("num_weights").toInt();
  const auto padding_idx = call.arg("padding_idx").toInt();
  if (padding_idx >= 0) {
    g = g.masked_fill(idx.eq(padding_idx).unsqueeze(-1), 0);
  }
  std::vector<int64_t> shape(idx.dim(), 1);
  shape[0] = B;
  auto offsets = at::arange(B, idx.options()).mul(rows).view(shape);
  auto args = call.args;
  args[call.index("grad_output")] = g;
  args[call.index("indices")] = idx + offsets;
  args[call.index("num_weights")] = rows * B;
  args[call.index("padding_idx")] = int64_t{-1};
  auto out = call.call_below(std::move(args))[0].toTensor();
  return {{out.unflatten(0, {B, rows}), 0}};
}

// Layer norm normalizes trailing dims, so a front batch dim is just one more
// leading dim. Per-example weight or bias are applied after normalizing.
Outs native_layer_norm_rule(Call& call) {
  const auto B = call.batch_size;
  auto [input, input_bdim] = call.tensor("input");
  auto weight = call.optional_tensor(call.index("weight"));
  auto bias = call.optional_tensor(call.index("bias"));
  auto args = call.args;
  args[call.index("input")] = axis::materialize(input, input_bdim, B);
  const bool per_example_params = (weight && weight->second.has_value()) || (bias && bias->second.has_value());
  if (!per_example_params) {
    auto r = call.call_below(std::move(args));
    return {{r[0], 0}, {r[1], 0}, {r[2], 0}};
  }
  const auto rank = call.arg("input").toTensor().dim();
  args[call.index("weight")] = c10::IValue();
  args[call.index("bias")] = c10::IValue();
  auto r = call.call_below(std::move(args));
  auto out = r[0].toTensor();
  if (weight) out = out * axis::pad_to_rank(axis::materialize(weight->first, weight->second, B), rank);
  if (bias) out = out + axis::pad_to_rank(axis::materialize(bias->first, bias->second, B), rank);
  return {{out, 0}, {r[1], 0}, {r[2], 0}};
}

// Group norm normalizes each sample of N on its own: the batch folds into N (the
// N argument grows with it). Per-example weight or bias are applied afterwards.
Outs native_group_norm_rule(Call& call) {
  const auto B = call.batch_size;
  auto [input, input_bdim] = call.tensor("input");
  auto weight = call.optional_tensor("weight");
  auto bias = call.optional_tensor("bias");
  const bool per_example_params = (weight && weight->second.has_value()) || (bias && bias->second.has_value());
  auto x = axis::materialize(input, input_bdim, B);
  auto args = call.args;
  args[call.index("input")] = axis::fold_into(x, 0).contiguous(); // the kernel needs a contiguous input
  args[call.index("N")] = call.arg("N").toInt() * B;
  if (per_example_params) {
    args[call.index("weight")] = c10::IValue();
    args[call.index("bias")] = c10::IValue();
  }
  auto r = call.call_below(std::move(args));
  auto out = axis::unfold_from(r[0].toTensor(), 0, B);
  if (per_example_params) {
    // [B, C] -> [B, 1, C, 1, ...] against out [B, N, C, spatial...]
    auto per_channel = [&](const std::pair<at::Tensor, std::optional<int64_t>>& p) {
      auto t = axis::materialize(p.first, p.second, B).unsqueeze(1);
      while (t.dim() < out.dim()) t = t.unsqueeze(-1);
      return t;
    };
    if (weight) out = out * per_channel(*weight);
    if (bias) out = out + per_channel(*bias);
  }
  return {{out, 0},
          {axis::unfold_from(r[1].toTensor(), 0, B), 0},
          {axis::unfold_from(r[2].toTensor(), 0, B), 0}};
}

// channel_shuffle of examples [N, C, *]: the batch folds into N.
Outs channel_shuffle_rule(Call& call) {
  auto [value, bdim] = call.tensor("self");
  if (axis::logical_rank(value, bdim) < 3) return loop_rule(call); // the op's own error
  auto args = call.args;
  args[call.index("self")] = axis::fold_into(axis::materialize(value, bdim, call.batch_size), 0);
  return {{axis::unfold_from(call.call_below(std::move(args))[0].toTensor(), 0, call.batch_size), 0}};
}

// Gradient of max/min/sort/topk along a dim: scatter the gradient into zeros.
Outs value_selecting_reduction_backward_rule(Call& call) {
  const auto B = call.batch_size;
  auto [grad, grad_bdim] = call.tensor("grad");
  auto [indices, indices_bdim] = call.tensor("indices");
  auto sizes = call.arg("sizes").toDimVector();
  const auto r = std::max<int64_t>(static_cast<int64_t>(sizes.size()), 1);
  const auto d = axis::physical_dim(call.arg("dim").toInt(), r);
  auto g = axis::materialize(grad, grad_bdim, B);
  auto idx = axis::materialize(indices, indices_bdim, B);
  const bool zero_dim = sizes.empty();
  if (!call.arg("keepdim").toBool() && !zero_dim) {
    g = g.unsqueeze(d);
    idx = idx.unsqueeze(d);
  }
  if (zero_dim) {
    g = g.reshape({B, 1});
    idx = idx.reshape({B, 1});
  }
  sizes.insert(sizes.begin(), B);
  if (zero_dim) sizes.push_back(1);
  auto out = at::zeros(sizes, g.options()).scatter(d, idx, g);
  return {{zero_dim ? out.squeeze(1) : out, 0}};
}

// NOTE [Packed sequences]
// A packed sequence's data holds the rows (t, n) with n < batch_sizes[t] of the padded
// [T, N, *] input (or [N, T, *]), in order; the trailing dims ride along untouched. So
// the batch dim goes right after the first two: padded [T, N, B, *] packs to data
// [sum, B, *] with the same batch_sizes, and unpacks back. Lengths that differ per
// example would give each example its own batch_sizes: those calls loop.
// Packing and unpacking: the batch dim of `tensor` moves to dim `to`, the first output
// is batched along `out_bdim`, the second (batch_sizes or lengths) is shared.
Outs packed_sequence_rule(Call& call, const char* segments, const char* tensor, int64_t to, int64_t out_bdim) {
  if (call.tensor(segments).second.has_value()) return loop_rule(call);
  auto [value, bdim] = call.tensor(tensor);
  auto args = call.args;
  args[call.index(tensor)] = axis::bdim_to_front(value, bdim).movedim(0, to);
  auto results = call.call_below(std::move(args));
  return {{results[0], out_bdim}, {results[1], std::nullopt}};
}

Outs pack_padded_sequence_rule(Call& call) { return packed_sequence_rule(call, "lengths", "input", 2, 1); }
Outs pad_packed_sequence_rule(Call& call) { return packed_sequence_rule(call, "batch_sizes", "data", 1, 2); }

Outs pack_padded_sequence_backward_rule(Call& call) {
  if (call.tensor("batch_sizes").second.has_value()) return loop_rule(call);
  auto [grad, bdim] = call.tensor("grad");
  auto input_size = call.arg("input_size").toDimVector();
  input_size.insert(input_size.begin() + 2, call.batch_size);
  auto args = call.args;
  args[call.index("grad")] = axis::bdim_to_front(grad, bdim).movedim(0, 1);
  args[call.index("input_size")] = c10::IValue(c10::IntArrayRef(input_size));
  return {{call.call_below(std::move(args))[0], 2}};
}


} // namespace

void add_nn_rules(std::vector<RuleEntry>& t) {
  t.push_back({"convolution", &convolution_rule, RuleKind::Physical, nullptr, {"input", "weight", "bias", "groups"}});
  t.push_back({"convolution_backward", &convolution_backward_rule, RuleKind::Physical, nullptr,
               {"grad_output", "input", "weight", "bias_sizes", "groups"}});
  t.push_back({"embedding", &embedding_rule, RuleKind::Physical, nullptr, {"weight", "indices", "padding_idx"}});
  for (const char* op : {"embedding_renorm_", "embedding_renorm"}) {
    t.push_back({op, &embedding_renorm_rule, RuleKind::Physical, nullptr,
                 {"self", "indices", "max_norm", "norm_type"}});
  }
  t.push_back({"embedding_dense_backward", &embedding_dense_backward_rule, RuleKind::Physical, nullptr,
               {"grad_output", "indices", "num_weights", "padding_idx"}});
  t.push_back({"native_layer_norm", &native_layer_norm_rule, RuleKind::Physical, nullptr, {"input", "weight", "bias"}});
  t.push_back({"value_selecting_reduction_backward", &value_selecting_reduction_backward_rule, RuleKind::Physical,
               nullptr, {"grad", "dim", "indices", "sizes", "keepdim"}});
  t.push_back({"native_group_norm", &native_group_norm_rule, RuleKind::Physical, nullptr,
               {"input", "weight", "bias", "N"}});
  for (const char* op : {"max_pool2d_with_indices", "max_pool2d_with_indices_backward", "max_pool3d_with_indices",
                         "max_pool3d_with_indices_backward", "avg_pool2d", "avg_pool2d_backward", "avg_pool3d",
                         "avg_pool3d_backward", "_adaptive_avg_pool2d", "_adaptive_avg_pool2d_backward",
                         "_adaptive_avg_pool3d", "_adaptive_avg_pool3d_backward", "adaptive_max_pool2d",
                         "adaptive_max_pool2d_backward", "adaptive_max_pool3d", "adaptive_max_pool3d_backward",
                         "max_pool1d_with_indices", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
                         "replication_pad1d", "replication_pad2d", "replication_pad3d", "upsample_nearest1d",
                         "upsample_nearest2d", "upsample_nearest3d", "upsample_bilinear2d", "max_pool1d",
                         "upsample_linear1d", "upsample_bicubic2d", "upsample_trilinear3d", "max_pool2d",
                         "_upsample_nearest_exact1d", "_upsample_nearest_exact2d", "_upsample_nearest_exact3d",
                         "reflection_pad1d_backward", "reflection_pad2d_backward", "reflection_pad3d_backward",
                         "replication_pad1d_backward", "replication_pad2d_backward", "replication_pad3d_backward",
                         "im2col", "grid_sampler_2d", "grid_sampler_3d", "_upsample_bilinear2d_aa",
                         "max_unpool2d", "max_unpool3d", "_upsample_bicubic2d_aa", "grid_sampler_2d_backward",
                         "grid_sampler_3d_backward"}) {
    t.push_back({op, &fold_into_n_rule});
  }
  t.push_back({"channel_shuffle", &channel_shuffle_rule, RuleKind::Physical, nullptr, {"self"}});
  for (const char* op : {"upsample_nearest1d_backward", "upsample_nearest2d_backward", "upsample_nearest3d_backward",
                         "_upsample_nearest_exact1d_backward", "_upsample_nearest_exact2d_backward",
                         "_upsample_nearest_exact3d_backward", "upsample_linear1d_backward",
                         "upsample_bilinear2d_backward", "upsample_bicubic2d_backward", "upsample_trilinear3d_backward",
                         "_upsample_bilinear2d_aa_backward", "_upsample_bicubic2d_aa_backward"}) {
    t.push_back({op, &upsample_backward_rule, RuleKind::Physical, nullptr, {"grad_output", "input_size"}});
  }
  t.push_back({"col2im", &col2im_rule, RuleKind::Physical, nullptr, {"self"}});
  for (const char* op : {"fractional_max_pool2d", "fractional_max_pool3d", "fractional_max_pool2d_backward",
                         "fractional_max_pool3d_backward"}) {
    t.push_back({op, &fractional_max_pool_rule, RuleKind::Physical, nullptr, {"self"}});
  }
  t.push_back({"multilabel_margin_loss_forward", &multilabel_margin_loss_forward_rule, RuleKind::Physical,
               nullptr, {"self", "target", "reduction"}});
  t.push_back({"multilabel_margin_loss_backward", &multilabel_margin_loss_backward_rule, RuleKind::Physical,
               nullptr, {"grad_output", "self", "target", "reduction", "is_target"}});
  t.push_back({"unfold_backward", &unfold_backward_rule, RuleKind::Physical,
               "with 0-dim examples unfolded into windows of size other than 1 (the op's error)",
               {"grad_in", "input_sizes", "dim", "size"}});
  t.push_back({"_pack_padded_sequence", &pack_padded_sequence_rule, RuleKind::Physical, "with batched lengths",
               {"input", "lengths"}});
  t.push_back({"_pack_padded_sequence_backward", &pack_padded_sequence_backward_rule, RuleKind::Physical,
               "with batched batch_sizes", {"grad", "input_size", "batch_sizes"}});
  t.push_back({"_pad_packed_sequence", &pad_packed_sequence_rule, RuleKind::Physical, "with batched batch_sizes",
               {"data", "batch_sizes"}});
  // Batch-native: any leading dims are batch dims (the generic dim rule).
  for (const char* op : {"constant_pad_nd", "pixel_shuffle", "pixel_unshuffle"}) {
    t.push_back({op, &dim_rule});
  }
}

} // namespace torchfunc
