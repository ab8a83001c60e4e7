// Matrix products and linear algebra. Products become one matmul on physical
// values (matmul broadcasts the batch dim); linalg ops that already accept
// leading batch dims ("batch-native") only need the batch dim at the front.
#include "../axis.h"
#include "../outer_product.h"
#include "../rule.h"

#include <ATen/core/Tensor.h>
#include <ATen/ExpandUtils.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/baddbmm.h>
#include <ATen/ops/linalg_matrix_exp.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/promote_types.h>
#include <ATen/ops/triu_indices.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <cmath>

namespace torchfunc {
namespace {

at::Tensor front(const Call& call, std::nullptr_t) = delete; // front(call, 0) would be a null name
at::Tensor front(const Call& call, std::string_view name) {
  auto [value, bdim] = call.tensor(name);
  return axis::bdim_to_front(value, bdim);
}

// beta * self + alpha * product, where self broadcasts against the logical product.
at::Tensor scaled_sum(const Call& call, const at::Tensor& product, int64_t rank) {
  const auto beta = call.arg("beta").toScalar();
  const auto alpha = call.arg("alpha").toScalar();
  auto out = alpha.equal(1) ? product : product * alpha;
  if (beta.equal(0)) {
    return out;
  }
  auto [value, bdim] = call.tensor("self");
  auto self = bdim.has_value() ? axis::pad_to_rank(axis::bdim_to_front(value, bdim), rank) : value;
  return beta.equal(1) ? out + self : out + self * beta;
}

// NOTE [Products with one unbatched operand]
// A batched left operand times an unbatched matrix is one matmul that folds the batch
// into the rows. An unbatched matrix times a batched operand would broadcast the
// matrix into a bmm of B small products; instead the batch folds into the other
// operand's free dim: A @ v_b for every b is V @ A^T (V the [B, k] rows), and A @ M_b is
// A @ [M_1 ... M_B] (the batch moved into the columns), one mm each. Products whose
// inner dim is 1 (the per-example weight gradients of a linear layer, grad^T @ x) are
// outer products: a broadcast multiply (streamed when large, NOTE [Large outer products
// stream their result]), not a bmm of B rank-1 products.
// a @ M_b for every b as one mm over the columns [M_1 ... M_B] (a [r, k], mb [B, k, n]),
// plus column_bias ([B*n], the bias of column (b, j)) when it is defined: one addmm.
at::Tensor columns_product(const at::Tensor& a, const at::Tensor& mb, const at::Tensor& column_bias) {
  const auto B = mb.size(0);
  const auto n = mb.size(2);
  // [k, B*n] as the transpose of [B*n, k]: a view when mb is itself a transposed
  // [B, n, k] (a weight W_b^T), a copy otherwise.
  auto columns = mb.transpose(1, 2).reshape({B * n, mb.size(1)}).t();
  auto product = column_bias.defined() ? at::addmm(column_bias, a, columns) : a.mm(columns);
  // Contiguous per example, as the op's own result: callers may view() it.
  return product.view({a.size(0), B, n}).permute({1, 0, 2}).contiguous();
}

// mm's and addmm's own error, raised before a rule's physical products: the outer
// product below would broadcast [r, 1] @ [k, c] with k > 1 into numbers, and a bmm
// words the mismatch in batched shapes.
void check_multipliable(const Call& call, const char* left, const char* right) {
  const auto& l = call.arg(left).toTensor();
  const auto& r = call.arg(right).toTensor();
  if (l.dim() != 2 || r.dim() != 2) return;  // the kernels raise for other ranks
  TORCH_CHECK(l.size(-1) == r.size(-2), "mat1 and mat2 shapes cannot be multiplied (", l.size(-2), "x", l.size(-1),
              " and ", r.size(-2), "x", r.size(-1), ")");
}

at::Tensor matrix_product(const Call& call, const char* left, const char* right) {
  const auto& left_logical = call.arg(left).toTensor();
  auto [a, a_bdim] = call.tensor(left);
  auto [m, m_bdim] = call.tensor(right);
  if (a_bdim && m_bdim && left_logical.size(-1) == 1 && a.is_floating_point()) {
    return outer_product(axis::bdim_to_front(a, a_bdim), axis::bdim_to_front(m, m_bdim));  // [B, r, 1] [B, 1, c]
  }
  if (a_bdim || !m_bdim) return at::matmul(axis::bdim_to_front(a, a_bdim), axis::bdim_to_front(m, m_bdim));
  return columns_product(a, axis::bdim_to_front(m, m_bdim), at::Tensor());
}

at::Tensor matrix_vector_product(const Call& call, const char* matrix, const char* vector) {
  auto [a, a_bdim] = call.tensor(matrix);
  auto [v, v_bdim] = call.tensor(vector);
  if (!a_bdim && v_bdim) return at::matmul(axis::bdim_to_front(v, v_bdim), a.t());  // [B, k] @ [k, r]
  return at::matmul(axis::bdim_to_front(a, a_bdim), axis::bdim_to_front(v, v_bdim).unsqueeze(-1)).squeeze(-1);
}

Outs mm_rule(Call& call) {
  check_multipliable(call, "self", "mat2");
  return {{matrix_product(call, "self", "mat2"), 0}};
}
Outs bmm_rule(Call& call) { return {{at::matmul(front(call, "self"), front(call, "mat2")), 0}}; }
Outs mv_rule(Call& call) { return {{matrix_vector_product(call, "self", "vec"), 0}}; }
Outs dot_rule(Call& call) {
  const auto& second = call.schema().arguments()[1].name(); // dot's "tensor", vdot's "other"
  auto out = at::matmul(front(call, "self").unsqueeze(-2), front(call, second).unsqueeze(-1));
  return {{out.squeeze(-1).squeeze(-1), 0}};
}
// NOTE [addmm adds in the product's pass]
// linear's kernel: bias + x @ W^T. With beta = alpha = 1 and one dtype, the bias is added
// where the product is written, not in a second pass over it: a baddbmm when both
// operands are batched (an ensemble's layers), one addmm when only the left one is and
// the bias is a row (the batch folds into the rows), and for an unbatched left operand
// one addmm over the columns of NOTE [Products with one unbatched operand], each column
// with its example's bias. Other cases (that NOTE's outer products, scaled sums) take
// scaled_sum.
std::optional<at::Tensor> fused_addmm(const Call& call) {
  if (!call.arg("beta").toScalar().equal(1) || !call.arg("alpha").toScalar().equal(1)) return std::nullopt;
  auto [a, a_bdim] = call.tensor("mat1");
  auto [m, m_bdim] = call.tensor("mat2");
  auto [self, s_bdim] = call.tensor("self");
  if (!a.is_floating_point() || a.scalar_type() != m.scalar_type() || a.scalar_type() != self.scalar_type() ||
      call.arg("mat1").toTensor().size(-1) == 1) {
    return std::nullopt;
  }
  auto bias = s_bdim ? axis::pad_to_rank(axis::bdim_to_front(self, s_bdim), 2) : self;
  if (a_bdim && m_bdim) return at::baddbmm(bias, axis::bdim_to_front(a, a_bdim), axis::bdim_to_front(m, m_bdim));
  if (a_bdim && !s_bdim && bias.dim() <= 1) {
    auto rows = axis::bdim_to_front(a, a_bdim);  // [B, r, k]
    return at::addmm(bias, rows.reshape({rows.size(0) * rows.size(1), rows.size(2)}), m)
        .view({rows.size(0), rows.size(1), m.size(1)});
  }
  const auto& logical_bias = call.arg("self").toTensor();
  if (!a_bdim && m_bdim && (logical_bias.dim() <= 1 || (logical_bias.dim() == 2 && logical_bias.size(0) == 1))) {
    auto mb = axis::bdim_to_front(m, m_bdim);  // [B, k, n]; a is [r, k]
    const auto B = mb.size(0);
    const auto n = mb.size(2);
    // The bias of column (b, j): one row (or number) shared, or one per example.
    auto rows = s_bdim ? axis::bdim_to_front(self, s_bdim).reshape({B, -1}) : self.reshape({1, -1});
    return columns_product(a, mb, rows.expand({B, n}).reshape({B * n}));
  }
  return std::nullopt;
}

Outs addmm_rule(Call& call) {
  check_multipliable(call, "mat1", "mat2");
  if (auto fused = fused_addmm(call)) return {{*fused, 0}};
  return {{scaled_sum(call, matrix_product(call, "mat1", "mat2"), 2), 0}};
}
Outs addmv_rule(Call& call) { return {{scaled_sum(call, matrix_vector_product(call, "mat", "vec"), 1), 0}}; }
Outs baddbmm_rule(Call& call) {
  return {{scaled_sum(call, at::matmul(front(call, "batch1"), front(call, "batch2")), 3), 0}};
}
Outs trace_rule(Call& call) { return {{front(call, "self").diagonal(0, 1, 2).sum(-1), 0}}; }

// Checks the info codes of a batched factorization: every example's at once.
Outs linalg_check_errors_rule(Call& call) {
  auto args = call.args;
  args[0] = call.tensor(0).first;
  call.call_below(std::move(args));
  return {};
}

// The CPU kernel views its input as a batch of matrices, which fails for the
// strides a batch dim moved to the front can have: it gets a contiguous input.
Outs matrix_exp_rule(Call& call) {
  return {{at::linalg_matrix_exp(front(call, "self").contiguous()), 0}};
}

// Tensor argument i batched at the front and padded to logical rank `rank`, so that
// it broadcasts against operands of that rank; unbatched ones broadcast as they are.
at::Tensor broadcastable(const Call& call, size_t i, int64_t rank) {
  auto [value, bdim] = call.tensor(i);
  return bdim.has_value() ? axis::pad_to_rank(axis::bdim_to_front(value, bdim), rank) : value;
}

// cdist (and its mm path, _euclidean_dist) broadcasts the batch dims of x1 and x2,
// which may differ in rank.
Outs cdist_forward_rule(Call& call) {
  const auto x1 = call.index("x1");
  const auto x2 = call.index("x2");
  const int64_t rank = std::max(call.args[x1].toTensor().dim(), call.args[x2].toTensor().dim());
  auto args = call.args;
  for (size_t i : {x1, x2}) args[i] = broadcastable(call, i, rank);
  return {{call.call_below(std::move(args))[0], 0}};
}

// _cdist_backward wants x1, x2, grad and cdist with the same batch dims: all four are
// expanded to the batch dims of the result (grad's).
Outs cdist_backward_rule(Call& call) {
  const auto B = call.batch_size;
  const auto& grad_logical = call.arg("grad").toTensor();
  c10::DimVector batch(grad_logical.sizes().begin(), grad_logical.sizes().end() - 2);
  batch.insert(batch.begin(), B);
  auto args = call.args;
  for (const char* name : {"grad", "x1", "x2", "cdist"}) {
    const auto i = call.index(name);
    auto [value, bdim] = call.tensor(i);
    auto v = axis::pad_to_rank(axis::materialize(value, bdim, B), grad_logical.dim());
    c10::DimVector shape(batch);
    shape.append(v.sizes().end() - 2, v.sizes().end());
    args[i] = v.expand(shape).contiguous();
  }
  return {{call.call_below(std::move(args))[0], 0}};
}

// linalg_ldl_solve: LD [*, n, n], pivots [*, n] and B [*, n, k] with batch dims that
// broadcast. The kernel's broadcasting of LD's batch against B's is fragile (it reads
// out of bounds for some shapes), so all three are expanded to the batch dims of the
// result, vmap's first, and made contiguous.
Outs ldl_solve_rule(Call& call) {
  const auto B = call.batch_size;
  const std::pair<const char*, int64_t> operands[] = {{"LD", 2}, {"pivots", 1}, {"B", 2}};
  c10::DimVector batch;
  for (const auto& [name, core] : operands) {
    const auto sizes = call.arg(name).toTensor().sizes();
    batch = at::infer_size_dimvector(batch, sizes.slice(0, sizes.size() - core));
  }
  batch.insert(batch.begin(), B);
  auto args = call.args;
  for (const auto& [name, core] : operands) {
    const auto i = call.index(name);
    auto [value, bdim] = call.tensor(i);
    auto v = axis::materialize(value, bdim, B);
    c10::DimVector shape(batch);
    shape.append(v.sizes().end() - core, v.sizes().end());
    args[i] = axis::pad_to_rank(v, static_cast<int64_t>(shape.size()) - 1).expand(shape).contiguous();
  }
  return {{call.call_below(std::move(args))[0], 0}};
}

// NOTE [pdist as pairs of rows]
// pdist of [N, M] examples is the p-norm of x[i] - x[j] over the pairs i < j, in
// triu_indices order: for [B, N, M] that is one gather of the pairs and one
// vector_norm. Its backward scatters each pair's gradient g * d|x_i - x_j|_p / dx_i
// into row i and its negative into row j, with the kernel's cases: p = 0 gives 0, p = 1
// sign, p = 2 diff / dist, p = inf sign where |diff| is the max, else
// sign |diff|^(p-1) / dist^(p-1); a zero distance (or a zero diff when p < 1) gives 0.
std::pair<at::Tensor, at::Tensor> pdist_pairs(int64_t n, const at::TensorOptions& options) {
  auto pairs = at::triu_indices(n, n, 1, options.dtype(at::kLong));
  return {pairs[0], pairs[1]};
}

Outs pdist_forward_rule(Call& call) {
  auto [self, bdim] = call.tensor("self");
  auto x = axis::bdim_to_front(self, bdim);
  if (x.dim() != 3) return loop_rule(call);  // the op's own error
  auto [i, j] = pdist_pairs(x.size(1), x.options());
  const double p = call.arg("p").toDouble();
  auto diff = x.index_select(1, i) - x.index_select(1, j);
  return {{at::linalg_vector_norm(diff, p, {-1}), 0}};
}

Outs pdist_backward_rule(Call& call) {
  const auto B = call.batch_size;
  auto [self, bdim] = call.tensor("self");
  auto x = axis::materialize(self, bdim, B);
  auto [grad, grad_bdim] = call.tensor("grad");
  auto [dist, dist_bdim] = call.tensor("pdist");
  auto g = axis::materialize(grad, grad_bdim, B).unsqueeze(-1);
  auto d = axis::materialize(dist, dist_bdim, B).unsqueeze(-1);
  auto [i, j] = pdist_pairs(x.size(1), x.options());
  const double p = call.arg("p").toDouble();
  auto diff = x.index_select(1, i) - x.index_select(1, j);
  at::Tensor coef;
  if (p == 0.0) {
    coef = at::zeros_like(diff);
  } else if (p == 1.0) {
    coef = diff.sign();
  } else if (p == 2.0) {
    coef = diff / d;
  } else if (std::isinf(p)) {
    coef = diff.sign() * (diff.abs() == d);
  } else {
    coef = diff.sign() * diff.abs().pow(p - 1) / d.pow(p - 1);
    if (p < 1.0) coef = coef.masked_fill(diff == 0, 0);
  }
  auto contrib = (g * coef).masked_fill(d == 0, 0);
  auto out = at::zeros_like(x).index_add_(1, i, contrib).index_add_(1, j, contrib, -1);
  return {{out, 0}};
}

// atol and rtol broadcast against the batch dims of the input (all but the last two).
Outs pinv_rule(Call& call) {
  const auto self = call.index("self");
  const int64_t batch_rank = std::max<int64_t>(call.args[self].toTensor().dim() - 2, 0);
  auto args = call.args;
  args[self] = axis::materialize(call.tensor(self).first, call.tensor(self).second, call.batch_size);
  for (size_t i : {call.index("atol"), call.index("rtol")}) {
    if (args[i].isTensor() && args[i].toTensor().defined()) args[i] = broadcastable(call, i, batch_rank);
  }
  return {{call.call_below(std::move(args))[0], 0}};
}

// linalg_lstsq leaves residuals, rank and singular values empty ([0]) when the
// driver does not compute them, whatever the batch dims: each example's [0].
Outs lstsq_rule(Call& call) {
  Outs outs = dim_rule(call);
  for (auto& out : outs) {
    const auto& t = out.value.toTensor();
    if (t.dim() == 1 && t.numel() == 0) out.value = t.new_empty({call.batch_size, 0});
  }
  return outs;
}

// Blocks of rank 0, 1 or 2 (a 0-dim block is 1x1, a 1-d block one row) laid out
// along the diagonal of zeros; the result has the promoted dtype of all blocks.
Outs block_diag_rule(Call& call) {
  const auto list = call.arg("tensors").toTensorList();
  const auto unwrapped = call.tensors("tensors");
  std::vector<at::Tensor> blocks;
  int64_t rows = 0;
  int64_t cols = 0;
  at::ScalarType dtype = list.size() > 0 ? list.get(0).scalar_type() : at::kFloat;
  for (size_t k = 0; k < unwrapped.size(); ++k) {
    const at::Tensor logical = list[k];
    dtype = at::promote_types(dtype, logical.scalar_type());
    auto b = axis::materialize(unwrapped[k].first, unwrapped[k].second, call.batch_size);
    if (logical.dim() == 0) b = b.view({call.batch_size, 1, 1});
    if (logical.dim() == 1) b = b.unsqueeze(1);
    rows += b.size(1);
    cols += b.size(2);
    blocks.push_back(b);
  }
  auto out = at::zeros({call.batch_size, rows, cols}, unwrapped.at(0).first.options().dtype(dtype));
  int64_t r = 0;
  int64_t c = 0;
  for (const auto& b : blocks) {
    out.narrow(1, r, b.size(1)).narrow(2, c, b.size(2)).copy_(b);
    r += b.size(1);
    c += b.size(2);
  }
  return {{out, 0}};
}

// _trilinear (bilinear's kernel): every dim argument refers to the common
// expanded rank, which the front batch dim extends by one.
Outs trilinear_rule(Call& call) {
  auto args = call.args;
  for (const char* name : {"i1", "i2", "i3"}) {
    auto [value, bdim] = call.tensor(name);
    args[call.index(name)] = axis::materialize(value, bdim, call.batch_size);
  }
  for (const char* name : {"expand1", "expand2", "expand3", "sumdim"}) {
    auto dims = call.arg(name).toDimVector();
    for (auto& d : dims) d += 1;
    args[call.index(name)] = c10::IValue(c10::IntArrayRef(dims));
  }
  args[call.index("unroll_dim")] = call.arg("unroll_dim").toInt() + 1;
  return {{call.call_below(std::move(args))[0], 0}};
}

} // namespace

void add_linalg_rules(std::vector<RuleEntry>& t) {
  t.push_back({"mm", &mm_rule, RuleKind::Physical, nullptr, {"self", "mat2"}});
  t.push_back({"bmm", &bmm_rule, RuleKind::Physical, nullptr, {"self", "mat2"}});
  t.push_back({"mv", &mv_rule, RuleKind::Physical, nullptr, {"self", "vec"}});
  t.push_back({"dot", &dot_rule, RuleKind::Physical, nullptr, {"self", "tensor"}});
  t.push_back({"vdot", &dot_rule, RuleKind::Physical, nullptr, {"self", "other"}});
  t.push_back({"addmm", &addmm_rule, RuleKind::Physical, nullptr, {"self", "mat1", "mat2", "beta", "alpha"}});
  t.push_back({"addmv", &addmv_rule, RuleKind::Physical, nullptr, {"self", "mat", "vec", "beta", "alpha"}});
  t.push_back({"baddbmm", &baddbmm_rule, RuleKind::Physical, nullptr, {"self", "batch1", "batch2", "beta", "alpha"}});
  t.push_back({"trace", &trace_rule, RuleKind::Physical, nullptr, {"self"}});
  t.push_back({"_linalg_check_errors", &linalg_check_errors_rule});
  t.push_back({"linalg_lstsq", &lstsq_rule});
  t.push_back({"linalg_matrix_exp", &matrix_exp_rule});
  t.push_back({"_cdist_forward", &cdist_forward_rule, RuleKind::Physical, nullptr, {"x1", "x2"}});
  t.push_back({"_euclidean_dist", &cdist_forward_rule, RuleKind::Physical, nullptr, {"x1", "x2"}});
  t.push_back({"_cdist_backward", &cdist_backward_rule, RuleKind::Physical, nullptr, {"grad", "x1", "x2", "cdist"}});
  t.push_back({"linalg_ldl_solve", &ldl_solve_rule, RuleKind::Physical, nullptr, {"LD", "pivots", "B"}});
  t.push_back({"_pdist_forward", &pdist_forward_rule, RuleKind::Physical, nullptr, {"self", "p"}});
  t.push_back({"_pdist_backward", &pdist_backward_rule, RuleKind::Physical, nullptr, {"grad", "self", "p", "pdist"}});
  t.push_back({"linalg_pinv.atol_rtol_tensor", &pinv_rule, RuleKind::Physical, nullptr, {"self", "atol", "rtol"}});
  t.push_back({"block_diag", &block_diag_rule, RuleKind::Physical, nullptr, {"tensors"}});
  t.push_back({"_trilinear", &trilinear_rule, RuleKind::Physical, nullptr,
               {"i1", "i2", "i3", "expand1", "expand2", "expand3", "sumdim", "unroll_dim"}});
  for (const char* op : {"linalg_inv_ex", "_linalg_det", "linalg_cholesky_ex", "_linalg_solve_ex",
                         "linalg_qr", "_linalg_eigh", "_linalg_svd", "linalg_lu_factor_ex", "linalg_lu",
                         "triangular_solve", "linalg_solve_triangular", "cholesky_solve",
                         "_linalg_slogdet", "tril", "triu", "linalg_eig",
                         "linalg_householder_product", "linalg_lu_solve", "lu_unpack",
                         "cholesky_inverse", "linalg_ldl_factor_ex", "cholesky", "logdet",
                         "linalg_cross", "geqrf", "ormqr"}) {
    t.push_back({op, &dim_rule});
  }
}

} // namespace torchfunc
