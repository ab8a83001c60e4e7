// Searches in sorted sequences and set membership: searchsorted, bucketize, isin.
// A sequence (or test set) shared by every example searches the physical values
// directly, whatever their shape; a batched one pairs each example's values with its
// own sequence by giving the kernel matching leading dims.
#include "../axis.h"
#include "../rule.h"

#include <ATen/ATen.h>
#include <ATen/ScalarOps.h>

namespace torchfunc {
namespace {

// searchsorted of `values` (logical rank any) in per-example 1-D sequences [B, n].
at::Tensor search_in_rows(const at::Tensor& rows, const at::Tensor& values, bool out_int32, bool right,
                          const std::optional<c10::string_view>& side, const std::optional<at::Tensor>& sorter) {
  const auto sizes = values.sizes();
  auto flat = values.reshape({values.size(0), -1});
  return at::searchsorted(rows, flat, out_int32, right, side, sorter).reshape(sizes);
}

std::optional<c10::string_view> side_arg(const Call& call) {
  const auto& side = call.arg("side");
  return side.isNone() ? std::nullopt : std::optional<c10::string_view>(side.toStringView());
}

Outs searchsorted_rule(Call& call) {
  const auto B = call.batch_size;
  auto [seq, seq_bdim] = call.tensor("sorted_sequence");
  auto [values, values_bdim] = call.tensor("self");
  auto sorter = call.optional_tensor("sorter");
  const bool out_int32 = call.arg("out_int32").toBool();
  const bool right = call.arg("right").toBool();
  const bool shared = !seq_bdim && !(sorter && sorter->second);
  const auto seq_rank = call.arg("sorted_sequence").toTensor().dim();
  std::optional<at::Tensor> sorter_value;
  if (shared && seq_rank == 1) {
    if (sorter) sorter_value = sorter->first;
    return {{at::searchsorted(seq, values, out_int32, right, side_arg(call), sorter_value), values_bdim}};
  }
  if (sorter) sorter_value = axis::materialize(sorter->first, sorter->second, B);
  auto s = axis::materialize(seq, seq_bdim, B);
  auto v = axis::materialize(values, values_bdim, B);
  if (seq_rank == 1) return {{search_in_rows(s, v, out_int32, right, side_arg(call), sorter_value), 0}};
  return {{at::searchsorted(s, v, out_int32, right, side_arg(call), sorter_value), 0}};
}

// searchsorted of one scalar in each example's 1-D sequence: a [B, 1] search.
Outs searchsorted_scalar_rule(Call& call) {
  const auto B = call.batch_size;
  auto [seq, seq_bdim] = call.tensor("sorted_sequence");
  auto sorter = call.optional_tensor("sorter");
  if (call.arg("sorted_sequence").toTensor().dim() != 1) return loop_rule(call); // the op's own error
  auto s = axis::materialize(seq, seq_bdim, B);
  std::optional<at::Tensor> sorter_value;
  if (sorter) sorter_value = axis::materialize(sorter->first, sorter->second, B);
  auto value = c10::scalar_to_tensor(call.arg("self").toScalar(), s.device()).expand({B, 1}).contiguous();
  auto out = at::searchsorted(s, value, call.arg("out_int32").toBool(), call.arg("right").toBool(), side_arg(call),
                              sorter_value);
  return {{out.squeeze(1), 0}};
}

Outs bucketize_rule(Call& call) {
  auto [values, values_bdim] = call.tensor("self");
  auto [boundaries, boundaries_bdim] = call.tensor("boundaries");
  const bool out_int32 = call.arg("out_int32").toBool();
  const bool right = call.arg("right").toBool();
  if (!boundaries_bdim) return {{at::bucketize(values, boundaries, out_int32, right), values_bdim}};
  auto rows = axis::materialize(boundaries, boundaries_bdim, call.batch_size);
  auto v = axis::materialize(values, values_bdim, call.batch_size);
  return {{search_in_rows(rows, v, out_int32, right, std::nullopt, std::nullopt), 0}};
}

Outs isin_rule(Call& call) {
  auto [elements, elements_bdim] = call.tensor("elements");
  auto [test, test_bdim] = call.tensor("test_elements");
  if (test_bdim) return loop_rule(call);
  return {{at::isin(elements, test, call.arg("assume_unique").toBool(), call.arg("invert").toBool()), elements_bdim}};
}

} // namespace

void add_search_rules(std::vector<RuleEntry>& t) {
  t.push_back({"searchsorted.Tensor", &searchsorted_rule, RuleKind::Physical, nullptr,
               {"sorted_sequence", "self", "out_int32", "right", "side", "sorter"}});
  t.push_back({"searchsorted.Scalar", &searchsorted_scalar_rule, RuleKind::Physical, nullptr,
               {"sorted_sequence", "self", "out_int32", "right", "side", "sorter"}});
  t.push_back({"bucketize.Tensor", &bucketize_rule, RuleKind::Physical, nullptr,
               {"self", "boundaries", "out_int32", "right"}});
  t.push_back({"isin.Tensor_Tensor", &isin_rule, RuleKind::Physical, "with batched test_elements",
               {"elements", "test_elements", "assume_unique", "invert"}});
}

} // namespace torchfunc
