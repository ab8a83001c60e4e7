// NOTE [Rules check what the op checks]
// A physical rule runs the op once on the whole batch, so the kernel checks the
// physical tensors, not each example: trace of 3-D examples is a valid batched trace
// of matrices, bmm of 2-D examples a valid bmm, t of 3-D examples a transpose. Eager
// PyTorch (and torch.func) refuse those calls for one example; a rule must too, or
// vmap returns numbers for a program that has none. For the ops listed here, whose
// kernels' rank and argument checks a batch dim can satisfy by accident, run_rule
// first runs the op's own kernel on the first example (every level's batch dim
// selected at 0; in-place ops on a copy), below every transform: the eager checks raise
// the eager error, with its text. (Meta tensors would cost nothing, but several meta
// kernels word their checks differently, or raise another class.) The cost is one
// example's worth of the op, for ops that are not on the hot path of a model; the
// products on that path (mm, mv, dot) and t are checked only when their examples' ranks
// are not the ones the op takes, which costs a rank comparison otherwise. An empty batch
// is not checked. The same check runs for every op whose rule raised: the rule's
// error is about physical shapes ("diagonal dimensions cannot be identical 2, 2" for
// the user's dims 1, 1), so an example the op refuses gets the op's error instead.
#include "example_checks.h"

#include "../autodiff/grad_tensor.h"
#include "../op_traits.h"
#include "../stack.h"
#include "batched_tensor.h"

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <optional>
#include <unordered_map>

namespace torchfunc {
namespace {

constexpr const char* kCheckedOps[] = {
    "trace", "tril", "triu", "tril_", "triu_", "bmm", "roll",
    "narrow_copy", "unbind.int", "unbind_copy.int", "masked_fill.Tensor", "masked_fill_.Tensor",
    "masked_fill.Scalar", "masked_fill_.Scalar", "masked_scatter", "masked_scatter_", "linalg_eig",
    "linalg_eigvals", "_linalg_eigh", "linalg_lu", "linalg_lu_factor_ex", "linalg_qr",
    "linalg_solve_triangular", "_linalg_svd", "linalg_inv_ex", "_linalg_det", "_linalg_slogdet",
    "linalg_cholesky_ex", "linalg_matrix_exp", "cholesky", "cholesky_inverse", "triangular_solve",
    "linalg_householder_product", "linalg_ldl_factor_ex", "_linalg_solve_ex", "linalg_lu_solve",
    "linalg_cross", "linalg_pinv.atol_rtol_tensor", "linalg_pinv.atol_rtol_float", "as_strided_scatter",
    "renorm", "renorm_", "huber_loss", "smooth_l1_loss", "soft_margin_loss", "histc", "searchsorted.Tensor",
    "searchsorted.Scalar", "bucketize.Tensor", "channel_shuffle", "linspace.Tensor_Tensor", "logspace.Tensor_Tensor",
    "multi_margin_loss", "multi_margin_loss_backward", "multilabel_margin_loss_forward",
    "multilabel_margin_loss_backward", "fractional_max_pool2d", "fractional_max_pool3d",
    "fractional_max_pool2d_backward", "fractional_max_pool3d_backward", "col2im", "unfold_backward",
    "_cdist_backward"};

// Ops on the hot path, checked only when the examples' ranks (self, other) are not
// these: the products, and t, which takes examples of rank 0 to 2 (other_rank
// kAnyRank: the op has no second tensor argument; self_rank is then the highest rank
// the op takes). Every call of the backward of a linear layer transposes its batched
// gradients, so an example check there cost two more ops per t.
constexpr int64_t kAnyRank = -1;
struct RankedOp {
  const char* name;
  int64_t self_rank;
  int64_t other_rank;
};
constexpr RankedOp kRankedOps[] = {{"mm", 2, 2}, {"mv", 2, 1}, {"dot", 1, 1}, {"vdot", 1, 1},
                                   {"t", 2, kAnyRank}, {"t_copy", 2, kAnyRank}};

const c10::FunctionSchema* find(const std::string& name) {
  const auto dot = name.find('.');
  auto op = c10::Dispatcher::singleton().findSchema(
      {"aten::" + name.substr(0, dot), dot == std::string::npos ? "" : name.substr(dot + 1)});
  return op ? &op->schema() : nullptr;
}

// nullopt: always checked; else the ranks under which the check is skipped.
using Checked = std::unordered_map<const c10::FunctionSchema*, std::optional<std::pair<int64_t, int64_t>>>;

const Checked& checked_schemas() {
  static const auto schemas = [] {
    Checked out;
    for (const char* name : kCheckedOps) {
      if (auto* s = find(name)) out.emplace(s, std::nullopt);
    }
    for (const auto& r : kRankedOps) {
      if (auto* s = find(r.name)) out.emplace(s, std::make_pair(r.self_rank, r.other_rank));
    }
    return out;
  }();
  return schemas;
}

// The plain tensor under every wrapper of t, and the dims of it that are batch dims
// (one per BatchedTensor on the way down). Only the plain tensor is touched: an op on
// a wrapper would meet the transform keys that the check excludes.
std::pair<at::Tensor, std::vector<int64_t>> peel(const at::Tensor& t) {
  if (auto* g = maybe_grad_tensor(t)) return peel(g->value());
  auto* b = maybe_batched(t);
  if (!b) return {t, {}};
  auto [plain, batch_dims] = peel(b->value());
  // b's bdim counts the value's logical dims, i.e. the plain dims that are not batch dims.
  int64_t logical = -1;
  for (int64_t d = 0; d < plain.dim(); ++d) {
    if (std::find(batch_dims.begin(), batch_dims.end(), d) != batch_dims.end()) continue;
    if (++logical == b->bdim()) {
      batch_dims.push_back(d);
      break;
    }
  }
  return {plain, batch_dims};
}

// The first example of t: every batch dim selected at 0, as a plain tensor. Undefined
// when a batch is empty.
at::Tensor first_example(const at::Tensor& t) {
  auto [plain, batch_dims] = peel(t);
  std::sort(batch_dims.rbegin(), batch_dims.rend());  // select the last dims first
  for (int64_t d : batch_dims) {
    if (plain.size(d) == 0) return at::Tensor();
    plain = plain.select(d, 0);
  }
  return plain;
}

} // namespace

bool checks_one_example(const c10::OperatorHandle& op, const torch::jit::Stack& args) {
  const auto& checked = checked_schemas();
  auto it = checked.find(&op.schema());
  if (it == checked.end()) return false;
  if (!it->second) return true;
  const auto [self_rank, other_rank] = *it->second;
  if (other_rank == kAnyRank) return args[0].toTensor().dim() > self_rank;
  return args[0].toTensor().dim() != self_rank || args[1].toTensor().dim() != other_rank;
}

void check_one_example(const c10::OperatorHandle& op, const torch::jit::Stack& args) {
  // Everything here, the selects of the first example included, runs below every
  // transform (a select with the front key live would come back wrapped).
  BelowEveryTransform below;
  // Arguments the op writes are copies: the check must change nothing. So are the
  // arguments of as_strided_scatter, whose bounds check reads the storage: a selected
  // example's storage is the whole batch's.
  const bool inplace = is_inplace(op.schema()) || writes_arguments(op.schema()) ||
      op.schema().operator_name().name == "aten::as_strided_scatter";
  bool empty = false;
  auto example = [&](const at::Tensor& t) {
    if (!t.defined()) return t;
    auto e = first_example(t);
    empty |= !e.defined();
    return inplace && e.defined() ? e.clone() : e;
  };
  torch::jit::Stack one = args;
  map_tensors(one, one.size(), example);
  if (empty) return;
  op.callBoxed(one);
}

} // namespace torchfunc
