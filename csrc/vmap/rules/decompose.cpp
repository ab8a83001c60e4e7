// Decompositions: ops without a physical rule, written as the ops they compute
// on the logical (per-example) tensors. Each op they call meets its own rule. The
// nll_loss family runs its kernel once when the class weights are shared (NOTE
// [nll_loss folds the batch into N]) and decomposes otherwise.
#include "../axis.h"
#include "../batched_tensor.h"
#include "../rule.h"
#include "../../keys.h"

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Reduction.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/index.h>
#include <ATen/ops/index_put.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/log1p.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/sign.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

namespace torchfunc {
namespace {

at::Tensor opt(const c10::IValue& v) { return v.isNone() ? at::Tensor() : v.toTensor(); }

// Shared by nll_loss and nll_loss2d: the class dim is 1, or 0 for one example.
struct NllTerms {
  at::Tensor target;  // ignored entries replaced by class 0
  at::Tensor weight;  // per-entry class weight, 0 where ignored
  int64_t class_dim;
};

NllTerms nll_terms(const at::Tensor& self, const at::Tensor& target, const at::Tensor& weight,
                   int64_t ignore_index) {
  const int64_t class_dim = self.dim() == 1 ? 0 : 1;
  auto keep = target.ne(ignore_index);
  auto safe = target.masked_fill(keep.logical_not(), 0);
  at::Tensor w = weight.defined() ? at::embedding(weight.unsqueeze(1), safe).squeeze(-1)
                                  : at::ones_like(safe, self.options());
  return {safe, w * keep.to(self.scalar_type()), class_dim};
}

Outs nll_loss_forward_logical(Call& call) {
  const auto self = call.arg("self").toTensor();
  const auto reduction = call.arg("reduction").toInt();
  const auto terms = nll_terms(self, call.arg("target").toTensor(), opt(call.arg("weight")),
                               call.arg("ignore_index").toInt());
  auto picked = self.gather(terms.class_dim, terms.target.unsqueeze(terms.class_dim)).squeeze(terms.class_dim);
  auto losses = picked.neg() * terms.weight;
  auto total_weight = terms.weight.sum();
  if (reduction == at::Reduction::None) {
    return {{losses, std::nullopt}, {at::zeros({}, self.options()), std::nullopt}};
  }
  auto loss = losses.sum();
  if (reduction == at::Reduction::Mean) loss = loss / total_weight;
  return {{loss, std::nullopt}, {total_weight, std::nullopt}};
}

Outs nll_loss_backward_logical(Call& call) {
  const auto grad_output = call.arg("grad_output").toTensor();
  const auto self = call.arg("self").toTensor();
  const auto reduction = call.arg("reduction").toInt();
  const auto terms = nll_terms(self, call.arg("target").toTensor(), opt(call.arg("weight")),
                               call.arg("ignore_index").toInt());
  auto coef = terms.weight.neg() * grad_output;
  if (reduction == at::Reduction::Mean) coef = coef / call.arg("total_weight").toTensor();
  auto grad = at::zeros_like(self).scatter(terms.class_dim, terms.target.unsqueeze(terms.class_dim),
                                           coef.unsqueeze(terms.class_dim));
  return {{grad, std::nullopt}};
}

// NOTE [nll_loss folds the batch into N]
// With class weights every example shares (or none), the kernel runs once: the batch
// folds into N (self [B, N, C, ...] as [B*N, C, ...]; one example's [C] as [B, C]) with
// reduction none, and each example's sum or weighted mean is taken from those losses.
// The total weight of example b is the sum of weight[target] over its entries that are
// not ignore_index (their count without weights), as the kernel computes it. Batched
// class weights take the decomposition above, one op at a time.
struct Folded {
  at::Tensor self;    // [B*N, C, ...] or [B, C]
  at::Tensor target;  // [B*N, ...] or [B]
  int64_t batch;
  int64_t per_example;  // elements of one example's unreduced loss
};

Folded fold_nll(const Call& call) {
  const auto B = call.batch_size;
  auto [self, s_bdim] = call.tensor("self");
  auto [target, t_bdim] = call.tensor("target");
  auto x = axis::materialize(self, s_bdim, B);
  auto t = axis::materialize(target, t_bdim, B);
  const int64_t per_example = call.arg("target").toTensor().numel();
  if (x.dim() > 2) {  // one example is [N, C, ...]
    x = x.flatten(0, 1);
    t = t.flatten(0, 1);
  }
  return {x, t, B, per_example};
}

// The op's arguments with self and target folded and no reduction.
torch::jit::Stack folded_args(const Call& call, const Folded& f) {
  auto args = call.args;
  args[call.index("self")] = f.self;
  args[call.index("target")] = f.target;
  args[call.index("reduction")] = static_cast<int64_t>(at::Reduction::None);
  return args;
}

// [B] followed by the logical sizes of argument `name`: a folded result split back out.
c10::DimVector unfolded_shape(const Call& call, const Folded& f, std::string_view name) {
  const auto logical = call.arg(name).toTensor().sizes();
  c10::DimVector shape{f.batch};
  shape.append(logical.begin(), logical.end());
  return shape;
}

// Example b's total weight, [B].
at::Tensor total_weights(const Call& call, const Folded& f) {
  const auto ignore_index = call.arg("ignore_index").toInt();
  auto keep = f.target.ne(ignore_index);
  auto weight = opt(call.arg("weight"));
  at::Tensor w = weight.defined()
      ? weight.index_select(0, f.target.masked_fill(keep.logical_not(), 0).reshape(-1)) * keep.reshape(-1)
      : keep.reshape(-1).to(f.self.scalar_type());
  // One entry per example (an example of shape [C]): its weight is its total.
  return f.per_example == 1 ? w : w.view({f.batch, f.per_example}).sum(1);
}

bool weight_batched(const Call& call) {
  const auto& w = call.arg("weight");
  return w.isTensor() && batched_at(w.toTensor(), call.level);
}

Outs nll_loss_forward(Call& call) {
  if (weight_batched(call)) return nll_loss_forward_logical(call);
  const auto reduction = call.arg("reduction").toInt();
  c10::impl::ExcludeDispatchKeyGuard below(kBatchedKey);
  const auto f = fold_nll(call);
  auto losses = call.call_below(folded_args(call, f))[0].toTensor();
  if (reduction == at::Reduction::None) {
    return {{losses.view(unfolded_shape(call, f, "target")), 0}, {at::zeros({}, f.self.options()), std::nullopt}};
  }
  auto total = total_weights(call, f);
  auto loss = f.per_example != 1 ? losses.view({f.batch, f.per_example}).sum(1)
                                 : losses.dim() == 1 ? losses : losses.reshape({f.batch});
  if (reduction == at::Reduction::Mean) loss = loss / total;
  return {{loss, 0}, {total, 0}};
}

Outs nll_loss_backward(Call& call) {
  if (weight_batched(call)) return nll_loss_backward_logical(call);
  const auto reduction = call.arg("reduction").toInt();
  c10::impl::ExcludeDispatchKeyGuard below(kBatchedKey);
  const auto f = fold_nll(call);
  auto [grad, g_bdim] = call.tensor("grad_output");
  auto g = axis::materialize(grad, g_bdim, f.batch);  // [B] (sum, mean) or [B, *target] (none)
  if (reduction == at::Reduction::Mean) {
    auto [total, w_bdim] = call.tensor("total_weight");
    g = g / axis::materialize(total, w_bdim, f.batch);
  }
  if (reduction != at::Reduction::None && f.per_example != 1) g = g.unsqueeze(1).expand({f.batch, f.per_example});
  auto args = folded_args(call, f);
  args[call.index("grad_output")] = g.sizes() == f.target.sizes() ? g : g.reshape(f.target.sizes());
  args[call.index("total_weight")] = at::zeros({}, f.self.options());  // unread without a reduction
  auto grad_self = call.call_below(std::move(args))[0].toTensor();
  return {{grad_self.view(unfolded_shape(call, f, "self")), 0}};
}

at::Tensor reduce(const at::Tensor& losses, int64_t reduction) {
  if (reduction == at::Reduction::Mean) return losses.mean();
  if (reduction == at::Reduction::Sum) return losses.sum();
  return losses;
}

Outs mse_loss(Call& call) {
  auto diff = call.arg("self").toTensor() - call.arg("target").toTensor();
  return {{reduce(diff * diff, call.arg("reduction").toInt()), std::nullopt}};
}

Outs mse_loss_backward(Call& call) {
  const auto grad = call.arg("grad_output").toTensor();
  const auto self = call.arg("self").toTensor();
  auto out = (self - call.arg("target").toTensor()) * grad * 2;
  if (call.arg("reduction").toInt() == at::Reduction::Mean) out = out / self.numel();
  return {{out, std::nullopt}};
}

// Gradients of the pointwise losses: 1/numel of self under mean reduction.
at::Tensor loss_grad(const Call& call, const at::Tensor& d_loss) {
  auto out = d_loss * call.arg("grad_output").toTensor();
  if (call.arg("reduction").toInt() == at::Reduction::Mean) out = out / call.arg("self").toTensor().numel();
  return out;
}

// The pointwise losses' forwards, from their eager formulas (by argument name).
Outs huber_loss(Call& call) {
  const auto d = call.arg("self").toTensor() - call.arg("target").toTensor();
  const double delta = call.arg("delta").toDouble();
  auto a = d.abs();
  auto losses = at::where(a < delta, d * d * 0.5, (a - 0.5 * delta) * delta);
  return {{reduce(losses, call.arg("reduction").toInt()), std::nullopt}};
}

Outs smooth_l1_loss(Call& call) {
  const auto d = call.arg("self").toTensor() - call.arg("target").toTensor();
  const double beta = call.arg("beta").toDouble();
  auto a = d.abs();
  auto losses = beta == 0 ? a : at::where(a < beta, d * d * (0.5 / beta), a - 0.5 * beta);
  return {{reduce(losses, call.arg("reduction").toInt()), std::nullopt}};
}

Outs soft_margin_loss(Call& call) {
  auto losses = at::log1p(at::exp(-call.arg("self").toTensor() * call.arg("target").toTensor()));
  return {{reduce(losses, call.arg("reduction").toInt()), std::nullopt}};
}

// multi_margin_loss: for each sample, the sum over the other classes j of
// max(0, margin - x[y] + x[j])^p (weighted by weight[y]), over the number of classes;
// a 1-D input is one sample. Forward and backward share the hinge terms.
struct MarginTerms {
  at::Tensor x, y, z, w;  // [N, C] input, [N] targets, [N, C] hinge (0 at y), [N, 1] weights
  bool single;
};

MarginTerms margin_terms(const Call& call) {
  const auto self = call.arg("self").toTensor();
  const bool single = self.dim() <= 1;
  auto x = single ? self.reshape({1, -1}) : self;
  auto y = call.arg("target").toTensor().reshape({-1});
  auto xy = x.gather(1, y.unsqueeze(1));
  auto z = (x - xy + call.arg("margin").toScalar()).scatter(1, y.unsqueeze(1), 0.0);
  const auto weight = opt(call.arg("weight"));
  auto w = weight.defined() ? weight.index_select(0, y).unsqueeze(1) : at::Tensor();
  return {x, y, z, w, single};
}

Outs multi_margin_loss(Call& call) {
  auto t = margin_terms(call);
  auto h = t.z.clamp_min(0);
  if (call.arg("p").toScalar().toLong() == 2) h = h * h;
  if (t.w.defined()) h = h * t.w;
  auto per_sample = h.sum(1) / t.x.size(1);
  if (t.single) per_sample = per_sample.squeeze(0);
  return {{reduce(per_sample, call.arg("reduction").toInt()), std::nullopt}};
}

Outs multi_margin_loss_backward(Call& call) {
  auto t = margin_terms(call);
  auto active = (t.z > 0).to(t.x.scalar_type());
  auto g = call.arg("p").toScalar().toLong() == 2 ? active * t.z * 2 : active;
  if (t.w.defined()) g = g * t.w;
  g = g / t.x.size(1);
  auto grad = g.scatter(1, t.y.unsqueeze(1), -g.sum(1, /*keepdim=*/true));
  auto grad_output = call.arg("grad_output").toTensor();
  const auto reduction = call.arg("reduction").toInt();
  if (reduction == at::Reduction::None && !t.single) {
    grad = grad * grad_output.unsqueeze(1);
  } else {
    grad = grad * grad_output;
    if (reduction == at::Reduction::Mean) grad = grad / t.x.size(0);
  }
  return {{t.single ? grad.squeeze(0) : grad, std::nullopt}};
}

// renorm: every slice along `dim` whose p-norm (over the example's other dims)
// exceeds maxnorm is scaled down to it; as the eager kernel, by maxnorm / (norm + 1e-7).
Outs renorm(Call& call) {
  const auto self = call.arg("self").toTensor();
  const auto rank = std::max<int64_t>(self.dim(), 1);
  const auto dim = c10::maybe_wrap_dim(call.arg("dim").toInt(), rank);
  std::vector<int64_t> others;
  for (int64_t d = 0; d < self.dim(); ++d) {
    if (d != dim) others.push_back(d);
  }
  const auto maxnorm = call.arg("maxnorm").toScalar();
  auto norm = at::linalg_vector_norm(self, call.arg("p").toScalar(), others, /*keepdim=*/true);
  auto factor = at::where(norm > maxnorm, maxnorm / (norm + 1e-7), at::ones_like(norm));
  return {{self * factor.to(self.scalar_type()), std::nullopt}};
}

Outs soft_margin_loss_backward(Call& call) {
  const auto self = call.arg("self").toTensor();
  const auto target = call.arg("target").toTensor();
  auto z = at::exp(-target * self);
  return {{loss_grad(call, -target * z / (z + 1)), std::nullopt}};
}

Outs smooth_l1_loss_backward(Call& call) {
  const auto x = call.arg("self").toTensor() - call.arg("target").toTensor();
  const double beta = call.arg("beta").toDouble();
  auto d = beta == 0 ? at::sign(x) : at::where(x.abs() < beta, x / beta, at::sign(x));
  return {{loss_grad(call, d), std::nullopt}};
}

Outs huber_loss_backward(Call& call) {
  const auto x = call.arg("self").toTensor() - call.arg("target").toTensor();
  const double delta = call.arg("delta").toDouble();
  return {{loss_grad(call, at::clamp(x, -delta, delta)), std::nullopt}};
}

// The "unsafe" indices may be out of range where the mask is false: clamped first.
c10::List<std::optional<at::Tensor>> clamped_indices(const at::Tensor& self, const c10::IValue& list) {
  c10::List<std::optional<at::Tensor>> out;
  const auto indices = list.toOptionalTensorList();
  for (size_t i = 0; i < indices.size(); ++i) {
    const std::optional<at::Tensor> idx = indices[i];
    if (!idx.has_value() || !idx->defined()) {
      out.push_back(std::nullopt);
      continue;
    }
    const auto size = self.size(static_cast<int64_t>(i));
    out.push_back(idx->clamp(-size, size - 1));
  }
  return out;
}

Outs unsafe_masked_index(Call& call) {
  const auto self = call.arg("self").toTensor();
  const auto mask = call.arg("mask").toTensor();
  auto picked = at::index(self, clamped_indices(self, call.arg("indices")));
  return {{picked.masked_fill(mask.logical_not(), call.arg("fill").toScalar()), std::nullopt}};
}

Outs unsafe_masked_index_put_accumulate(Call& call) {
  const auto self = call.arg("self").toTensor();
  const auto values = call.arg("values").toTensor().masked_fill(call.arg("mask").toTensor().logical_not(), 0);
  return {{at::index_put(self, clamped_indices(self, call.arg("indices")), values, /*accumulate=*/true),
           std::nullopt}};
}

// log is clamped at -100, as torch's kernel does.
Outs binary_cross_entropy(Call& call) {
  const auto x = call.arg("self").toTensor();
  const auto y = call.arg("target").toTensor();
  const auto w = opt(call.arg("weight"));
  auto losses = (y * x.log().clamp_min(-100) + (1 - y) * (1 - x).log().clamp_min(-100)).neg();
  if (w.defined()) losses = losses * w;
  return {{reduce(losses, call.arg("reduction").toInt()), std::nullopt}};
}

Outs binary_cross_entropy_backward(Call& call) {
  const auto g = call.arg("grad_output").toTensor();
  const auto x = call.arg("self").toTensor();
  const auto y = call.arg("target").toTensor();
  const auto w = opt(call.arg("weight"));
  auto out = g * (x - y) / ((1 - x) * x).clamp_min(1e-12);
  if (w.defined()) out = out * w;
  if (call.arg("reduction").toInt() == at::Reduction::Mean) out = out / x.numel();
  return {{out, std::nullopt}};
}

Outs native_layer_norm_backward(Call& call) {
  const auto grad_out = call.arg("grad_out").toTensor();
  const auto input = call.arg("input").toTensor();
  const auto normalized = call.arg("normalized_shape").toDimVector();
  const auto mean = call.arg("mean").toTensor();
  const auto rstd = call.arg("rstd").toTensor();
  const auto weight = opt(call.arg("weight"));
  const auto mask = call.arg("output_mask").toBoolList();
  const auto axis = input.dim() - static_cast<int64_t>(normalized.size());
  std::vector<int64_t> inner, outer;
  for (int64_t d = 0; d < input.dim(); ++d) (d < axis ? outer : inner).push_back(d);
  int64_t n = 1;
  for (auto s : normalized) n *= s;
  auto x_hat = (input - mean) * rstd;
  auto g = weight.defined() ? grad_out * weight : grad_out;
  at::Tensor grad_input, grad_weight, grad_bias;
  if (mask[0]) {
    grad_input = (rstd / n) * (g * n - g.sum(inner, true) - x_hat * (g * x_hat).sum(inner, true));
  }
  if (mask[1] && weight.defined()) {
    grad_weight = outer.empty() ? grad_out * x_hat : (grad_out * x_hat).sum(outer);
  }
  if (mask[2] && call.arg("bias").isTensor()) {
    grad_bias = outer.empty() ? grad_out.clone() : grad_out.sum(outer);
  }
  return {{grad_input, std::nullopt}, {grad_weight, std::nullopt}, {grad_bias, std::nullopt}};
}

// Same formula as torch's kernel: stable in both tails of the logits.
Outs binary_cross_entropy_with_logits(Call& call) {
  const auto x = call.arg("self").toTensor();
  const auto y = call.arg("target").toTensor();
  const auto w = opt(call.arg("weight"));
  const auto pos_weight = opt(call.arg("pos_weight"));
  auto max_val = x.neg().clamp_min(0);
  auto log_term = (max_val.neg().exp() + (x.neg() - max_val).exp()).log() + max_val;
  auto losses = pos_weight.defined() ? (1 - y) * x + ((pos_weight - 1) * y + 1) * log_term
                                     : (1 - y) * x + log_term;
  if (w.defined()) losses = losses * w;
  return {{reduce(losses, call.arg("reduction").toInt()), std::nullopt}};
}

// x [N, C, *] in G groups; mean, rstd [N, G].
Outs native_group_norm_backward(Call& call) {
  const auto grad_out = call.arg("grad_out").toTensor();
  const auto input = call.arg("input").toTensor();
  const auto mean = call.arg("mean").toTensor();
  const auto rstd = call.arg("rstd").toTensor();
  const auto weight = opt(call.arg("weight"));
  const auto N = call.arg("N").toInt();
  const auto C = call.arg("C").toInt();
  const auto G = call.arg("group").toInt();
  const auto mask = call.arg("output_mask").toBoolList();
  auto grouped = [&](const at::Tensor& t) { return t.reshape({N, G, -1}); };
  auto x_hat = (grouped(input) - mean.unsqueeze(-1)) * rstd.unsqueeze(-1); // [N, G, D]
  std::vector<int64_t> channel_view{1, C};
  for (int64_t d = 2; d < input.dim(); ++d) channel_view.push_back(1);
  at::Tensor grad_input, grad_weight, grad_bias;
  if (mask[0]) {
    auto g = grouped(weight.defined() ? grad_out * weight.reshape(channel_view) : grad_out);
    const auto D = g.size(-1);
    auto gi = (rstd.unsqueeze(-1) / D) *
        (g * D - g.sum(-1, true) - x_hat * (g * x_hat).sum(-1, true));
    grad_input = gi.reshape(input.sizes());
  }
  std::vector<int64_t> reduce_dims{0};
  for (int64_t d = 2; d < input.dim(); ++d) reduce_dims.push_back(d);
  if (mask[1] && weight.defined()) {
    grad_weight = (grad_out * x_hat.reshape(input.sizes())).sum(reduce_dims);
  }
  if (mask[2]) {
    grad_bias = grad_out.sum(reduce_dims);
  }
  return {{grad_input, std::nullopt}, {grad_weight, std::nullopt}, {grad_bias, std::nullopt}};
}

Outs addr(Call& call) {
  auto outer = call.arg("vec1").toTensor().unsqueeze(-1) * call.arg("vec2").toTensor();
  const auto beta = call.arg("beta").toScalar();
  const auto alpha = call.arg("alpha").toScalar();
  auto out = alpha.equal(1) ? outer : outer * alpha;
  if (!beta.equal(0)) out = out + (beta.equal(1) ? call.arg("self").toTensor() : call.arg("self").toTensor() * beta);
  return {{out, std::nullopt}};
}

Outs addbmm(Call& call) {
  auto product = at::bmm(call.arg("batch1").toTensor(), call.arg("batch2").toTensor()).sum(0);
  const auto beta = call.arg("beta").toScalar();
  const auto alpha = call.arg("alpha").toScalar();
  auto out = alpha.equal(1) ? product : product * alpha;
  if (!beta.equal(0)) out = out + (beta.equal(1) ? call.arg("self").toTensor() : call.arg("self").toTensor() * beta);
  return {{out, std::nullopt}};
}

Outs dist(Call& call) {
  auto diff = call.arg("self").toTensor() - call.arg("other").toTensor();
  return {{at::linalg_vector_norm(diff, call.arg("p").toScalar()), std::nullopt}};
}

} // namespace

void add_decompositions(std::vector<RuleEntry>& t) {
  t.push_back({"huber_loss", &huber_loss, RuleKind::Logical, nullptr, {"self", "target", "reduction", "delta"}});
  t.push_back({"smooth_l1_loss", &smooth_l1_loss, RuleKind::Logical, nullptr, {"self", "target", "reduction", "beta"}});
  t.push_back({"soft_margin_loss", &soft_margin_loss, RuleKind::Logical, nullptr, {"self", "target", "reduction"}});
  t.push_back({"multi_margin_loss", &multi_margin_loss, RuleKind::Logical, nullptr,
               {"self", "target", "p", "margin", "weight", "reduction"}});
  t.push_back({"multi_margin_loss_backward", &multi_margin_loss_backward, RuleKind::Logical, nullptr,
               {"grad_output", "self", "target", "p", "margin", "weight", "reduction"}});
  t.push_back({"renorm", &renorm, RuleKind::Logical, nullptr, {"self", "p", "dim", "maxnorm"}});
  t.push_back({"nll_loss_forward", &nll_loss_forward, RuleKind::Logical, nullptr, {"self", "target", "weight", "reduction", "ignore_index"}});
  t.push_back({"nll_loss_backward", &nll_loss_backward, RuleKind::Logical, nullptr, {"grad_output", "self", "target", "weight", "reduction", "ignore_index", "total_weight"}});
  t.push_back({"nll_loss2d_forward", &nll_loss_forward, RuleKind::Logical, nullptr, {"self", "target", "weight", "reduction", "ignore_index"}});
  t.push_back({"nll_loss2d_backward", &nll_loss_backward, RuleKind::Logical, nullptr, {"grad_output", "self", "target", "weight", "reduction", "ignore_index", "total_weight"}});
  t.push_back({"mse_loss", &mse_loss, RuleKind::Logical, nullptr, {"self", "target", "reduction"}});
  t.push_back({"mse_loss_backward", &mse_loss_backward, RuleKind::Logical, nullptr, {"grad_output", "self", "target", "reduction"}});
  t.push_back({"soft_margin_loss_backward", &soft_margin_loss_backward, RuleKind::Logical, nullptr, {"grad_output", "self", "target", "reduction"}});
  t.push_back({"smooth_l1_loss_backward", &smooth_l1_loss_backward, RuleKind::Logical, nullptr, {"grad_output", "self", "target", "reduction", "beta"}});
  t.push_back({"huber_loss_backward", &huber_loss_backward, RuleKind::Logical, nullptr, {"grad_output", "self", "target", "reduction", "delta"}});
  t.push_back({"_unsafe_masked_index", &unsafe_masked_index, RuleKind::Logical, nullptr, {"self", "mask", "indices", "fill"}});
  t.push_back({"_unsafe_masked_index_put_accumulate", &unsafe_masked_index_put_accumulate, RuleKind::Logical, nullptr,
               {"self", "mask", "indices", "values"}});
  t.push_back({"binary_cross_entropy", &binary_cross_entropy, RuleKind::Logical, nullptr, {"self", "target", "weight", "reduction"}});
  t.push_back({"binary_cross_entropy_backward", &binary_cross_entropy_backward, RuleKind::Logical, nullptr, {"grad_output", "self", "target", "weight", "reduction"}});
  t.push_back({"native_layer_norm_backward", &native_layer_norm_backward, RuleKind::Logical, nullptr,
               {"grad_out", "input", "normalized_shape", "mean", "rstd", "weight", "bias", "output_mask"}});
  t.push_back({"addr", &addr, RuleKind::Logical, nullptr, {"self", "vec1", "vec2", "beta", "alpha"}});
  t.push_back({"addbmm", &addbmm, RuleKind::Logical, nullptr, {"self", "batch1", "batch2", "beta", "alpha"}});
  t.push_back({"dist", &dist, RuleKind::Logical, nullptr, {"self", "other", "p"}});
  t.push_back({"native_group_norm_backward", &native_group_norm_backward, RuleKind::Logical, nullptr,
               {"grad_out", "input", "mean", "rstd", "weight", "N", "C", "group", "output_mask"}});
  t.push_back({"binary_cross_entropy_with_logits", &binary_cross_entropy_with_logits, RuleKind::Logical, nullptr, {"self", "target", "weight", "pos_weight", "reduction"}});
}

} // namespace torchfunc
