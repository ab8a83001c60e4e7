// Ops that return no tensor, and those whose result depends on the values of a batched
// tensor (Python control flow on tensors, data-dependent output shapes): a value every
// example shares, or a clear error, not a loop that would fail later or silently pick
// one example; and nonzero_static, whose values depend on the data but whose shape
// does not.
#include "../../errors.h"
#include "../fallback.h"
#include "../axis.h"
#include "../rule.h"

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/full.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/tensor_split.h>
#include <ATen/ops/where.h>

namespace torchfunc {
namespace {

Outs data_dependent_rule(Call& call) {
  TORCH_CHECK(false, errors::data_dependent(call.name()));
}

// NOTE [Data-dependent values that every example shares]
// .item(), bool(tensor) (is_nonzero), torch.equal, torch.allclose and
// _nested_tensor_from_mask_left_aligned return a Python value, one per example. When every example gives the same value, the loop that vmap
// stands for takes the same branch (or uses the same number) for each example, so
// that value is the answer: checks like `if (var < 0).any(): raise` work under vmap
// (torch.func refuses them all). When the examples differ, the data-dependent error
// stands, saying so. Each example is computed below every transform.
Outs uniform_scalar_rule(Call& call) {
  const auto B = call.batch_size;
  std::optional<c10::IValue> first;
  for (int64_t b = 0; b < B; ++b) {
    auto result = call.call_below(slice_example(call.args, call.level, b));
    TORCH_INTERNAL_ASSERT(result.size() == 1);
    if (!first) {
      first = result[0];
    } else if (!(*first == result[0])) {
      TORCH_CHECK(false, errors::data_dependent(call.name()), " (torchfunc: here examples 0 and ", b,
                  " give different values; when every example gives the same value, vmap uses it)");
    }
  }
  TORCH_CHECK(first.has_value(), errors::data_dependent(call.name()), " (torchfunc: the batch is empty)");
  return {{*first, std::nullopt}};
}

// nonzero_static: the coordinates of an example's first `size` nonzero elements, in
// row-major order, padded with fill_value rows; [size, rank] whatever the values. A
// stable sort of the flat positions with the nonzero ones first picks them for every
// example at once; the picked positions unravel into coordinates.
Outs nonzero_static_rule(Call& call) {
  const auto B = call.batch_size;
  const auto& logical = call.arg("self").toTensor();
  const int64_t size = call.arg("size").toInt();
  const int64_t fill = call.arg("fill_value").toInt();
  TORCH_CHECK(size >= 0, "nonzero_static: 'size' must be an non-negative integer");
  auto [self, bdim] = call.tensor("self");
  const int64_t numel = logical.numel();
  auto nonzero = axis::materialize(self, bdim, B).reshape({B, numel}).ne(0);
  auto longs = nonzero.options().dtype(at::kLong);
  auto out = at::full({B, size, logical.dim()}, fill, longs);
  const int64_t picked = std::min(size, numel);
  if (picked == 0 || logical.dim() == 0) return {{out, 0}};
  auto order = std::get<1>(nonzero.logical_not().to(at::kByte).sort(std::optional<bool>(true), /*dim=*/1)).narrow(1, 0, picked);
  auto found = nonzero.gather(1, order).unsqueeze(2);
  // Row-major coordinates of each picked flat position.
  std::vector<at::Tensor> coords;
  int64_t stride = numel;
  for (int64_t d = 0; d < logical.dim(); ++d) {
    stride /= std::max<int64_t>(logical.size(d), 1);
    coords.push_back(order.div(stride, "floor").remainder(logical.size(d)));
  }
  out.narrow(1, 0, picked).copy_(at::where(found, at::stack(coords, 2), fill));
  return {{out, 0}};
}

// tensor_split with a tensor of split points (or a 0-dim number of sections) reads
// their values: when every example has the same ones (NOTE [Data-dependent values
// that every example shares]) the split is the one with those ints; otherwise the
// examples' parts differ in shape and the data-dependent error stands.
Outs tensor_split_tensor_indices(Call& call) {
  const auto B = call.batch_size;
  const auto& points = call.arg("tensor_indices_or_sections").toTensor();
  TORCH_CHECK(points.device().is_cpu(), "tensor_split expected tensor_indices_or_sections to be on cpu, but it's on ",
              points.device());
  TORCH_CHECK(points.scalar_type() == at::kLong, "tensor_split expected tensor_indices_or_sections to have dtype of long, but got ",
              points.scalar_type());
  TORCH_CHECK(points.dim() <= 1, "tensor_split expected tensor_indices_or_sections to be a zero-dimensional or "
              "one-dimensional tensor, but got a tensor with ", points.dim(), " dims");
  auto [value, bdim] = call.tensor("tensor_indices_or_sections");
  TORCH_CHECK(B > 0, errors::data_dependent(call.name()), " (torchfunc: the batch is empty)");
  auto rows = axis::materialize(value, bdim, B).reshape({B, points.numel()});
  const auto differs = (rows != rows[0]).any(1).nonzero();
  TORCH_CHECK(differs.numel() == 0, errors::data_dependent(call.name()), " (torchfunc: here examples 0 and ",
              differs.numel() ? differs[0].item<int64_t>() : 0, " give different split points; when every example "
              "gives the same ones, vmap uses them)");
  const auto& self = call.arg("self").toTensor();
  const auto dim = call.arg("dim").toInt();
  std::vector<int64_t> ints;
  for (int64_t i = 0; i < points.numel(); ++i) ints.push_back(rows[0][i].item<int64_t>());
  auto parts = points.dim() == 0 ? at::tensor_split(self, ints[0], dim) : at::tensor_split(self, ints, dim);
  return {{c10::IValue(std::move(parts)), std::nullopt}};
}

// Metadata queries answer for the logical (per-example) tensors.
Outs is_same_size_rule(Call& call) {
  return {{c10::IValue(call.arg("self").toTensor().sizes() == call.arg("other").toTensor().sizes()), std::nullopt}};
}

// A BatchedTensor has no storage; each example stands for a storage of its own
// numel (what forward-mode AD asks before reusing a tangent's layout).
Outs has_same_storage_numel_rule(Call& call) {
  return {{c10::IValue(call.arg("self").toTensor().numel() == call.arg("other").toTensor().numel()), std::nullopt}};
}

} // namespace

void add_dynamic_rules(std::vector<RuleEntry>& t) {
  t.push_back({"is_same_size", &is_same_size_rule, RuleKind::Logical});
  t.push_back({"_has_same_storage_numel", &has_same_storage_numel_rule, RuleKind::Logical});
  // _nested_tensor_from_mask_left_aligned: TransformerEncoder's fast-path check on its mask.
  for (const char* op : {"_local_scalar_dense", "is_nonzero", "equal", "allclose", "item",
                         "_nested_tensor_from_mask_left_aligned"}) {
    t.push_back({op, &uniform_scalar_rule});
  }
  t.push_back({"tensor_split.tensor_indices_or_sections", &tensor_split_tensor_indices, RuleKind::Logical, nullptr,
               {"self", "tensor_indices_or_sections", "dim"}});
  t.push_back({"nonzero_static", &nonzero_static_rule, RuleKind::Physical, nullptr,
               {"self", "size", "fill_value"}});
  for (const char* op : {"nonzero",
                         "_unique", "_unique2", "unique_dim", "unique_consecutive",
                         "unique_dim_consecutive", "bincount", "repeat_interleave.Tensor",
                         "_assert_async", "_assert_async.msg"}) {
    t.push_back({op, &data_dependent_rule, RuleKind::Refused});
  }
}

} // namespace torchfunc
