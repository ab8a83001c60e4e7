// Searches in sorted sequences, binning and set membership: searchsorted, bucketize,
// histc, isin.
// A sequence (or test set) shared by every example searches the physical values
// directly, whatever their shape; a batched one pairs each example's values with its
// own sequence by giving the kernel matching leading dims.
#include "../axis.h"
#include "../rule.h"

#include <ATen/ATen.h>
#include <ATen/ScalarOps.h>
#include <ATen/native/TypeProperties.h>

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

// histc: each example's histogram, its range the example's own min and max when
// min == max (as eager), counted with a scatter_add into [B, bins]. A value's bin is
// the one whose linspace edges hold it, as in the eager kernel (the last bin holds max).
Outs histc_rule(Call& call) {
  const auto B = call.batch_size;
  auto [value, bdim] = call.tensor("self");
  const auto numel = call.arg("self").toTensor().numel();
  auto x = axis::materialize(value, bdim, B).reshape({B, numel});
  const auto bins = call.arg("bins").toInt();
  auto lo = at::full({B, 1}, call.arg("min").toScalar(), x.options());
  auto hi = at::full({B, 1}, call.arg("max").toScalar(), x.options());
  if (call.arg("min").toScalar().toDouble() == call.arg("max").toScalar().toDouble() && numel > 0) {
    std::tie(lo, hi) = at::aminmax(x, 1, /*keepdim=*/true);
  }
  const auto same = lo == hi;
  lo = at::where(same, lo - 1, lo);
  hi = at::where(same, hi + 1, hi);
  auto steps = at::arange(bins + 1, x.options()).unsqueeze(0);
  auto edges = lo + (hi - lo) * steps / static_cast<double>(bins);
  // searchsorted(right=True) - 1 is the bin whose [left, right) edges hold the value.
  auto idx = at::searchsorted(edges.contiguous(), x.contiguous(), /*out_int32=*/false, /*right=*/true) - 1;
  idx = at::where(x == hi, at::full_like(idx, bins - 1), idx);
  auto inside = (x >= lo) & (x <= hi);
  auto counts = at::zeros({B, bins}, x.options());
  counts.scatter_add_(1, idx.clamp(0, bins - 1), inside.to(x.scalar_type()));
  return {{counts, 0}};
}

// A batched test set: each example's sorted test elements, searched for its elements,
// then compared at the position found (equality, as isin: NaN is in no set).
Outs isin_rule(Call& call) {
  auto [elements, elements_bdim] = call.tensor("elements");
  auto [test, test_bdim] = call.tensor("test_elements");
  const bool invert = call.arg("invert").toBool();
  if (!test_bdim) return {{at::isin(elements, test, call.arg("assume_unique").toBool(), invert), elements_bdim}};
  const auto B = call.batch_size;
  // The logical tensors' promotion (a 0-dim example promotes as a 0-dim tensor), read
  // off their metadata: no op may run on them here.
  at::native::ResultTypeState state{};
  state = at::native::update_result_type_state(call.arg("elements").toTensor(), state);
  state = at::native::update_result_type_state(call.arg("test_elements").toTensor(), state);
  const auto dtype = at::native::result_type(state);
  auto values = axis::materialize(elements, elements_bdim, B).to(dtype);
  const auto shape = values.sizes().vec();
  auto flat = values.reshape({B, -1});
  auto sorted = std::get<0>(axis::materialize(test, test_bdim, B).to(dtype).reshape({B, -1}).sort(-1));
  at::Tensor found;
  if (sorted.size(1) == 0) {
    found = at::zeros(flat.sizes(), flat.options().dtype(at::kBool));
  } else {
    auto at_position = at::searchsorted(sorted, flat.contiguous()).clamp_max(sorted.size(1) - 1);
    found = sorted.gather(1, at_position) == flat;
  }
  if (invert) found = found.logical_not();
  return {{found.reshape(shape), 0}};
}

} // namespace

void add_search_rules(std::vector<RuleEntry>& t) {
  t.push_back({"searchsorted.Tensor", &searchsorted_rule, RuleKind::Physical, nullptr,
               {"sorted_sequence", "self", "out_int32", "right", "side", "sorter"}});
  t.push_back({"searchsorted.Scalar", &searchsorted_scalar_rule, RuleKind::Physical, nullptr,
               {"sorted_sequence", "self", "out_int32", "right", "side", "sorter"}});
  t.push_back({"bucketize.Tensor", &bucketize_rule, RuleKind::Physical, nullptr,
               {"self", "boundaries", "out_int32", "right"}});
  t.push_back({"histc", &histc_rule, RuleKind::Physical, nullptr, {"self", "bins", "min", "max"}});
  t.push_back({"isin.Tensor_Tensor", &isin_rule, RuleKind::Physical, nullptr,
               {"elements", "test_elements", "assume_unique", "invert"}});
}

} // namespace torchfunc
