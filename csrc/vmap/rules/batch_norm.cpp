// Batch norm family: native_batch_norm and its backward, and the _native_batch_norm_legit /
// _batch_norm_with_update / _batch_norm_no_update forms, forward and backward.
//
// NOTE [Batch norm by folding the batch into the channels]
// Per example, batch norm normalizes each channel c of an input [N, C, *] over (N, *).
// With the vmap batch in front, [B, N, C, *], the pair (example b, channel c) is an
// independent channel: folding B into C gives one call on [N, B*C, *], whose
// per-channel tensors (weight, bias, running stats, saved mean/invstd) are [B*C]:
// each an example's [C] (batched) or the shared [C] repeated (unbatched). Outputs
// unfold back: [N, B*C, *] -> [B, N, C, *] and [B*C] -> [B, C]; an output of any
// other shape (the empty save_mean of eval mode, the reserve) is not per example.
// The gradient of a shared weight comes out per example, which is what vmap(grad)
// asks for. In training mode the running stats are updated in place; batched stats
// are updated through their folded copy and copied back.
//
// NOTE [Shared running stats take one update per example]
// Unbatched running stats in training mode are shared by every example: the loop
// vmap stands for updates them once per example, in order,
//   r <- (1 - m) r + m s_b   for b = 0 .. B-1   (s_b: example b's batch mean or
//                                               unbiased variance, m: momentum),
// which unrolls to r_B = (1 - m)^B r_0 + sum_b (1 - m)^(B-1-b) m s_b. The folded
// kernel updates a zero [B*C] copy of each shared stat, which leaves m s_b in it
// (the kernel's own statistics and formula); the rule then writes the sum above into
// the shared stat. torch.func refuses this case; the result here is the loop's, up to
// float rounding.
#include "../axis.h"
#include "../rule.h"

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <string_view>

namespace torchfunc {
namespace {

// Arguments of [C] per example (weight, bias, running stats, saved statistics).
bool is_per_channel(std::string_view name) {
  return name == "weight" || name == "bias" || name == "running_mean" || name == "running_var" ||
      name == "save_mean" || name == "save_invstd" || name == "save_var";
}

bool updates_running_stats(const Call& call) {
  const auto& name = call.schema().operator_name();
  if (name.name == "aten::_batch_norm_with_update") return true;
  if (name.name == "aten::_native_batch_norm_legit_functional") return false; // returns new stats
  const auto& args = call.schema().arguments();
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].name() == "training") return call.args[i].toBool();
  }
  return false;
}

Outs batch_norm_rule(Call& call) {
  const auto B = call.batch_size;
  const auto& sargs = call.schema().arguments();
  auto input_index = std::string_view(sargs[0].name()) == "grad_out" ? 1 : 0;
  auto [input, input_bdim] = call.tensor(input_index);
  if (axis::logical_rank(input, input_bdim) < 2) {
    return loop_rule(call); // the op's own error for one example
  }
  const bool training = updates_running_stats(call);
  const auto channels = axis::materialize(input, input_bdim, B).size(2);

  auto args = call.args;
  // (physical value, folded copy) of each batched running stat updated in place.
  c10::SmallVector<std::pair<at::Tensor, at::Tensor>, 2> updated;
  // (shared stat, zero folded copy) of each unbatched running stat updated in place
  // (NOTE [Shared running stats take one update per example]).
  c10::SmallVector<std::pair<at::Tensor, at::Tensor>, 2> shared;
  for (size_t i = 0; i < sargs.size(); ++i) {
    const std::string_view name = sargs[i].name();
    if (name == "input" || name == "grad_out") {
      auto [value, bdim] = call.tensor(i);
      args[i] = axis::fold_into(axis::materialize(value, bdim, B), 1).contiguous();
    } else if (is_per_channel(name)) {
      auto t = call.optional_tensor(i);
      if (!t) continue;
      const bool running = name == "running_mean" || name == "running_var";
      if (training && running && !t->second.has_value()) {
        auto zero = at::zeros({B * channels}, t->first.options());
        shared.emplace_back(t->first, zero);
        args[i] = zero;
        continue;
      }
      auto folded = axis::fold_into(axis::materialize(t->first, t->second, B), 0).contiguous();
      if (training && running) updated.emplace_back(axis::bdim_to_front(t->first, t->second), folded);
      args[i] = folded;
    }
  }
  auto r = call.call_below(std::move(args));
  for (auto& [physical, folded] : updated) {
    // A folded copy that is a view of the stat (one channel, say) was updated in place.
    if (!folded.is_alias_of(physical)) physical.copy_(folded.view({B, channels}));
  }
  if (!shared.empty()) {
    const double keep = 1.0 - call.arg("momentum").toDouble();
    // (1 - m)^(B-1-b) for b = 0 .. B-1, a column over the examples.
    auto decay = at::pow(keep, at::arange(B - 1, -1, -1, shared[0].first.options())).unsqueeze(1);
    for (auto& [stat, steps] : shared) {
      stat.mul_(std::pow(keep, static_cast<double>(B))).add_((decay * steps.view({B, channels})).sum(0));
    }
  }

  const auto folded_numel = B * channels;
  Outs outs;
  for (auto& v : r) {
    const auto& t = v.toTensor();
    if (t.dim() >= 2 && t.size(1) == folded_numel) {
      outs.push_back({axis::unfold_from(t, 1, B), 0});
    } else if (t.dim() == 1 && t.numel() == folded_numel) {
      outs.push_back({axis::unfold_from(t, 0, B), 0});
    } else {
      outs.push_back({v, std::nullopt});
    }
  }
  return outs;
}

} // namespace

void add_batch_norm_rules(std::vector<RuleEntry>& t) {
  for (const char* op : {"native_batch_norm", "native_batch_norm_backward", "_native_batch_norm_legit",
                         "_native_batch_norm_legit.no_stats", "_native_batch_norm_legit_no_training",
                         "_native_batch_norm_legit_functional", "_batch_norm_with_update",
                         "_batch_norm_no_update", "batch_norm_backward"}) {
    t.push_back({op, &batch_norm_rule});
  }
}

} // namespace torchfunc
