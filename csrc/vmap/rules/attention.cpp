// Attention family: the CPU flash-attention kernel behind scaled_dot_product_attention,
// forward and backward.
//
// NOTE [Attention by folding the batch into N]
// Per example, query/key/value are [N, H, L, E] (4-D, as the kernel requires) and the
// mask broadcasts to [N, H, L, S]; the vmap batch folds into N: one call on
// [B*N, H, L, E], outputs unfolded back ([B*N, ...] -> [B, N, ...]). A mask is
// expanded to its per-example [N, H, L, S] first, since an unbatched mask of one
// example's N does not broadcast over B*N. The op is tagged random for its
// dropout_p: with dropout_p == 0 it draws nothing (and vmap lets it through in any
// randomness mode, see NOTE [Randomness under vmap]); with dropout_p > 0 the folded
// call draws independently per (example, n) row, which is randomness='different', and
// the other modes raise as for any random op.
#include "../axis.h"
#include "../rule.h"
#include "../../errors.h"
#include "../../interpreter.h"
#include "../../stack.h"

#include <ATen/core/Tensor.h>

#include <string_view>

namespace torchfunc {
namespace {

Outs flash_attention_cpu_rule(Call& call) {
  const auto B = call.batch_size;
  const auto& sargs = call.schema().arguments();
  int64_t n = -1; // the per-example N
  for (size_t i = 0; i < sargs.size(); ++i) {
    if (sargs[i].name() == "query") {
      auto [q, q_bdim] = call.tensor(i);
      if (axis::logical_rank(q, q_bdim) != 4) return loop_rule(call); // the kernel's own error
      n = axis::materialize(q, q_bdim, B).size(1);
    }
    // 'error' mode is refused before any random op's rule runs (plumbing.cpp, RuleKernel).
    if (sargs[i].name() == "dropout_p" && call.args[i].toDouble() != 0.0) {
      TORCH_CHECK(top_interpreter().vmap().randomness != Randomness::Same,
                  errors::random_same_with_batched_input(call.name()));
    }
  }
  auto args = call.args;
  for (size_t i = 0; i < sargs.size(); ++i) {
    const std::string_view name = sargs[i].name();
    if (name == "attn_mask") {
      auto mask = call.optional_tensor(i);
      if (!mask) continue;
      auto m = axis::materialize(mask->first, mask->second, B); // [B, ..., L, S]
      const auto L = m.size(-2), S = m.size(-1);
      const auto H = axis::materialize(call.tensor(0).first, call.tensor(0).second, B).size(2);
      m = axis::pad_to_rank(m, 4).expand({B, n, H, L, S});
      args[i] = m.reshape({B * n, H, L, S});
    } else if (sargs[i].type()->kind() == c10::TypeKind::TensorType) {
      auto [value, bdim] = call.tensor(i);
      args[i] = axis::fold_into(axis::materialize(value, bdim, B), 0);
    }
  }
  auto r = call.call_below(std::move(args));
  Outs outs;
  for (auto& v : r) outs.push_back({axis::unfold_from(v.toTensor(), 0, B), 0});
  return outs;
}

} // namespace

void add_attention_rules(std::vector<RuleEntry>& t) {
  t.push_back({"_scaled_dot_product_flash_attention_for_cpu", &flash_attention_cpu_rule});
  t.push_back({"_scaled_dot_product_flash_attention_for_cpu_backward", &flash_attention_cpu_rule});
}

} // namespace torchfunc
