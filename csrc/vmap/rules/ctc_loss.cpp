// CTC loss: ctc_loss, _ctc_loss and _ctc_loss_backward, each in both overloads
// (lengths as int lists or as tensors).
//
// NOTE [CTC loss by folding the batch into N]
// Per example, ctc_loss scores N sequences (log_probs [T, N, C], or [T, C] for one
// sequence), each independently, then reduces over them. With the vmap batch the
// B*N sequences are independent too: log_probs [T, B*N, C], padded targets [B*N, S]
// and lengths [B*N] make one _ctc_loss call below the level, whose per-sequence
// losses [B*N] are reduced per example as the composite kernel does (zero_infinity,
// then the mean over the sequences of loss / max(target length, 1), or the sum).
// Under vmap alone the rule runs at the composite op, so _ctc_loss's log_alpha, whose
// last dim follows the longest target of the call, never reaches the examples. Under
// vmap(grad) the grad level decomposes ctc_loss first and vmap meets _ctc_loss and
// _ctc_loss_backward, which fold the same way when the examples' longest targets
// agree (log_alpha's shape follows it).
// Concatenated (1-D) targets with lengths that differ per example loop: each
// example's targets then start at another offset.
#include "../axis.h"
#include "../rule.h"

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Reduction.h>
#include <ATen/ops/_ctc_loss.h>
#include <ATen/ops/_ctc_loss_backward.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

#include <limits>

namespace torchfunc {
namespace {

// The lengths of all B*N sequences, [B*N] int64: a list every example shares, or a
// tensor [N] (0-dim for one sequence) per example.
at::Tensor folded_lengths(const Call& call, const char* name, const at::TensorOptions& longs) {
  const auto& arg = call.arg(name);
  if (arg.isIntList()) return at::tensor(arg.toIntVector(), longs).repeat(call.batch_size);
  auto [value, bdim] = call.tensor(name);
  return axis::materialize(value.to(at::kLong), bdim, call.batch_size).reshape({-1});
}

bool batched(const Call& call, const char* name) {
  return call.arg(name).isTensor() && call.tensor(name).second.has_value();
}

// The B*N sequences of every example as one call's (NOTE [CTC loss by folding the
// batch into N]); `ok` is false when the fold does not apply (the caller loops).
struct Folded {
  bool ok = false;
  bool one_sequence = false;  // log_probs [T, C] per example
  int64_t N = 0;
  at::Tensor log_probs, targets, input_lengths, target_lengths;
};

Folded fold_sequences(const Call& call) {
  const auto B = call.batch_size;
  const auto& logical = call.arg("log_probs").toTensor();
  const auto& logical_targets = call.arg("targets").toTensor();
  Folded f;
  f.one_sequence = logical.dim() == 2;
  const bool concatenated = !f.one_sequence && logical_targets.dim() == 1;
  if (logical.dim() < 2 || logical.dim() > 3 || (concatenated && batched(call, "target_lengths"))) return f;
  auto [lp, lp_bdim] = call.tensor("log_probs");
  auto log_probs = axis::materialize(lp, lp_bdim, B);  // [B, T, N, C] or [B, T, C]
  if (f.one_sequence) log_probs = log_probs.unsqueeze(2);
  f.N = log_probs.size(2);
  f.log_probs = log_probs.movedim(0, 1).reshape({log_probs.size(1), B * f.N, log_probs.size(3)});
  auto [tg, tg_bdim] = call.tensor("targets");
  auto targets = axis::materialize(tg.to(f.log_probs.device(), at::kLong), tg_bdim, B);
  f.targets = concatenated ? targets.reshape({-1}) : targets.reshape({B * f.N, -1});
  const auto longs = f.log_probs.options().dtype(at::kLong);
  f.input_lengths = folded_lengths(call, "input_lengths", longs);
  f.target_lengths = folded_lengths(call, "target_lengths", longs);
  f.ok = true;
  return f;
}

// log_alpha's last dim is 2*L+1, L the longest target of the call: one batched
// log_alpha stands for the examples' only when their longest targets agree.
bool same_longest_target(const Call& call, const Folded& f) {
  if (!batched(call, "target_lengths") || f.N == 0) return true;
  const auto longest = f.target_lengths.view({call.batch_size, f.N}).amax(1);
  return (longest == longest[0]).all().item<bool>();
}

Outs ctc_loss_rule(Call& call) {
  const auto B = call.batch_size;
  const auto f = fold_sequences(call);
  if (!f.ok) return loop_rule(call);  // the op's own error, or targets at offsets that differ per example
  auto losses = std::get<0>(at::_ctc_loss(f.log_probs, f.targets, f.input_lengths, f.target_lengths,
                                          call.arg("blank").toInt(), call.arg("zero_infinity").toBool()));
  if (call.arg("zero_infinity").toBool()) {
    losses = at::where(losses == std::numeric_limits<double>::infinity(), at::zeros({}, losses.options()), losses);
  }
  losses = losses.view({B, f.N});
  switch (call.arg("reduction").toInt()) {
    case at::Reduction::Mean:
      return {{(losses / f.target_lengths.view({B, f.N}).clamp_min(1).to(losses.scalar_type())).mean(1), 0}};
    case at::Reduction::Sum:
      return {{losses.sum(1), 0}};
    default:
      return {{f.one_sequence ? losses.squeeze(1) : losses, 0}};
  }
}

// _ctc_loss, the kernel that vmap meets under a grad level: the losses [B, N] and
// log_alpha [B, N, T, 2*L+1]. Examples whose longest targets differ would each get a
// log_alpha of another shape: they loop, and the loop's error says so.
Outs ctc_kernel_rule(Call& call) {
  const auto B = call.batch_size;
  const auto f = fold_sequences(call);
  if (!f.ok || f.one_sequence || !same_longest_target(call, f)) return loop_rule(call);
  auto [nll, log_alpha] = at::_ctc_loss(f.log_probs, f.targets, f.input_lengths, f.target_lengths,
                                        call.arg("blank").toInt(), call.arg("zero_infinity").toBool());
  return {{nll.view({B, f.N}), 0}, {log_alpha.unflatten(0, {B, f.N}), 0}};
}

Outs ctc_kernel_backward_rule(Call& call) {
  const auto B = call.batch_size;
  const auto f = fold_sequences(call);
  if (!f.ok || f.one_sequence || !same_longest_target(call, f)) return loop_rule(call);
  auto folded = [&](const char* name) {  // [B, N, ...] -> [B*N, ...]
    auto [value, bdim] = call.tensor(name);
    return axis::materialize(value, bdim, B).flatten(0, 1);
  };
  auto grad = at::_ctc_loss_backward(folded("grad"), f.log_probs, f.targets, f.input_lengths, f.target_lengths,
                                     folded("neg_log_likelihood"), folded("log_alpha").contiguous(),
                                     call.arg("blank").toInt(), call.arg("zero_infinity").toBool());
  // [T, B*N, C] -> [T, B, N, C], batched along dim 1.
  return {{grad.unflatten(1, {B, f.N}), 1}};
}

} // namespace

void add_ctc_loss_rules(std::vector<RuleEntry>& t) {
  const char* loops = "with concatenated (1-D) targets and target lengths that differ per example";
  for (const char* op : {"ctc_loss.IntList", "ctc_loss.Tensor"}) {
    t.push_back({op, &ctc_loss_rule, RuleKind::Physical, loops,
                 {"log_probs", "targets", "input_lengths", "target_lengths", "blank", "reduction", "zero_infinity"}});
  }
  const char* kernel_loops = "with concatenated (1-D) targets and target lengths that differ per example, or "
                             "examples whose longest targets differ";
  for (const char* op : {"_ctc_loss", "_ctc_loss.Tensor"}) {
    t.push_back({op, &ctc_kernel_rule, RuleKind::Physical, kernel_loops,
                 {"log_probs", "targets", "input_lengths", "target_lengths", "blank", "zero_infinity"}});
  }
  for (const char* op : {"_ctc_loss_backward", "_ctc_loss_backward.Tensor"}) {
    t.push_back({op, &ctc_kernel_backward_rule, RuleKind::Physical, kernel_loops,
                 {"grad", "log_probs", "targets", "input_lengths", "target_lengths", "neg_log_likelihood",
                  "log_alpha", "blank", "zero_infinity"}});
  }
}

} // namespace torchfunc
