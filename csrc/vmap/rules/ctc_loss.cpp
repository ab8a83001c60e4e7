// CTC loss: ctc_loss, both overloads (lengths as int lists or as tensors).
//
// NOTE [CTC loss by folding the batch into N]
// Per example, ctc_loss scores N sequences (log_probs [T, N, C], or [T, C] for one
// sequence), each independently, then reduces over them. With the vmap batch the
// B*N sequences are independent too: log_probs [T, B*N, C], padded targets [B*N, S]
// and lengths [B*N] make one _ctc_loss call below the level, whose per-sequence
// losses [B*N] are reduced per example as the composite kernel does (zero_infinity,
// then the mean over the sequences of loss / max(target length, 1), or the sum).
// The rule runs at the composite op, so _ctc_loss's log_alpha, whose last dim follows
// the longest target of the call, never reaches the examples. Concatenated (1-D)
// targets with lengths that differ per example loop: each example's targets then
// start at another offset. Under vmap(grad) the grad level decomposes ctc_loss first
// and vmap meets _ctc_loss, which has no rule.
#include "../axis.h"
#include "../rule.h"

#include <ATen/ATen.h>

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

Outs ctc_loss_rule(Call& call) {
  const auto B = call.batch_size;
  const auto& logical = call.arg("log_probs").toTensor();
  const auto& logical_targets = call.arg("targets").toTensor();
  const bool one_sequence = logical.dim() == 2;
  const bool concatenated = !one_sequence && logical_targets.dim() == 1;
  if (logical.dim() < 2 || logical.dim() > 3 || (concatenated && batched(call, "target_lengths"))) {
    return loop_rule(call);  // the op's own error, or targets at offsets that differ per example
  }
  auto [lp, lp_bdim] = call.tensor("log_probs");
  auto log_probs = axis::materialize(lp, lp_bdim, B);  // [B, T, N, C] or [B, T, C]
  if (one_sequence) log_probs = log_probs.unsqueeze(2);
  const auto N = log_probs.size(2);
  log_probs = log_probs.movedim(0, 1).reshape({log_probs.size(1), B * N, log_probs.size(3)});
  auto [tg, tg_bdim] = call.tensor("targets");
  auto targets = axis::materialize(tg.to(log_probs.device(), at::kLong), tg_bdim, B);
  targets = concatenated ? targets.reshape({-1}) : targets.reshape({B * N, -1});
  const auto longs = log_probs.options().dtype(at::kLong);
  const auto input_lengths = folded_lengths(call, "input_lengths", longs);
  const auto target_lengths = folded_lengths(call, "target_lengths", longs);
  auto losses = std::get<0>(at::_ctc_loss(log_probs, targets, input_lengths, target_lengths,
                                          call.arg("blank").toInt(), call.arg("zero_infinity").toBool()));
  if (call.arg("zero_infinity").toBool()) {
    losses = at::where(losses == std::numeric_limits<double>::infinity(), at::zeros({}, losses.options()), losses);
  }
  losses = losses.view({B, N});
  switch (call.arg("reduction").toInt()) {
    case at::Reduction::Mean:
      return {{(losses / target_lengths.view({B, N}).clamp_min(1).to(losses.scalar_type())).mean(1), 0}};
    case at::Reduction::Sum:
      return {{losses.sum(1), 0}};
    default:
      return {{one_sequence ? losses.squeeze(1) : losses, 0}};
  }
}

} // namespace

void add_ctc_loss_rules(std::vector<RuleEntry>& t) {
  for (const char* op : {"ctc_loss.IntList", "ctc_loss.Tensor"}) {
    t.push_back({op, &ctc_loss_rule, RuleKind::Physical,
                 "with concatenated (1-D) targets and target lengths that differ per example",
                 {"log_probs", "targets", "input_lengths", "target_lengths", "blank", "reduction", "zero_infinity"}});
  }
}

} // namespace torchfunc
