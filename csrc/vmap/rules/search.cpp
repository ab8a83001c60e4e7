// Searches in sorted sequences, binning and set membership: searchsorted, bucketize,
// histc, histogram, histogramdd, isin.
// A sequence (or test set) shared by every example searches the physical values
// directly, whatever their shape; a batched one pairs each example's values with its
// own sequence by giving the kernel matching leading dims.
#include "../axis.h"
#include "../rule.h"

#include <ATen/core/Tensor.h>
#include <ATen/ScalarOps.h>
#include <ATen/TensorOperators.h>
#include <ATen/native/TypeProperties.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bucketize.h>
#include <ATen/ops/full.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/isin.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

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

// NOTE [Histograms of every example at once]
// histogram and histogramdd bin each example's points [n, D] into D axes of bins.
// The edges of an axis are given (a tensor each, batched or shared) or a count: then
// they are linspace(lo, hi, count + 1), lo and hi the range given or the example's
// own min and max (0 and 1 for no points; an empty range widened by 0.5 each way), as
// eager. A point's bin on an axis is the one whose [left, right) edges hold it (the
// last bin also holds the right edge, searchsorted(right=True) - 1); points outside
// any axis's edges are not counted. The bins of all axes make one flat index, and one
// scatter_add over [B, prod(counts)] counts (or weighs) every example's points.
// density divides by the example's total and by each bin's widths.
struct Points {
  at::Tensor x;       // [B, n, D]
  at::Tensor weight;  // [B, n] or undefined
};

// histogramdd's checks on the example's shapes (histogram's points are any shape).
void check_histogramdd_shapes(const Call& call, int64_t dims) {
  const auto& self = call.arg("self").toTensor();
  TORCH_CHECK(self.dim() >= 1, "torch.histogramdd: input tensor should have at least 1 dimension, but got ",
              self.dim());
  TORCH_CHECK(self.size(-1) == dims, "histogramdd: The size of bins must be equal to the innermost dimension of "
              "the input.");
  const auto& weight = call.arg("weight");
  if (weight.isTensor()) {
    TORCH_CHECK(weight.toTensor().sizes() == self.sizes().slice(0, self.dim() - 1), "torch.histogramdd: if weight "
                "tensor is provided it should have the same shape as the input tensor excluding its innermost "
                "dimension, but got input with shape ", self.sizes(), " and weight with shape ",
                weight.toTensor().sizes());
  }
}

Points histogram_points(const Call& call, int64_t dims) {
  const auto B = call.batch_size;
  auto [value, bdim] = call.tensor("self");
  Points p;
  p.x = axis::materialize(value, bdim, B).reshape({B, -1, dims});
  const auto w = call.optional_tensor(call.index("weight"));
  if (w.has_value()) p.weight = axis::materialize(w->first, w->second, B).reshape({B, -1});
  return p;
}

// linspace(lo, hi, count + 1) per example (lo, hi [B, 1]): from lo for the first half
// of the steps and from hi for the rest, as torch's kernel computes it.
at::Tensor linspace_edges(const at::Tensor& lo, const at::Tensor& hi, int64_t count) {
  auto i = at::arange(count + 1, lo.options()).unsqueeze(0);
  auto step = (hi - lo) / static_cast<double>(count);
  return at::where(i < static_cast<double>((count + 1) / 2), lo + step * i, hi - step * (count - i));
}

std::vector<at::Tensor> edges_from_counts(const Call& call, const Points& p, c10::IntArrayRef counts) {
  const auto B = call.batch_size;
  const int64_t D = static_cast<int64_t>(counts.size());
  at::Tensor lo, hi;  // [B, D]
  const auto& range = call.arg("range");
  if (!range.isNone()) {
    const auto r = range.toDoubleVector();
    TORCH_CHECK(static_cast<int64_t>(r.size()) == 2 * D, "torch.histogramdd: for a ", D, "-dimensional histogram range "
                "should have ", 2 * D, " elements, but got ", r.size());
    std::vector<double> l, h;
    for (int64_t d = 0; d < D; ++d) {
      l.push_back(r[2 * d]);
      h.push_back(r[2 * d + 1]);
    }
    lo = at::tensor(l, p.x.options().dtype(at::kDouble)).expand({B, D});
    hi = at::tensor(h, p.x.options().dtype(at::kDouble)).expand({B, D});
  } else if (p.x.size(1) == 0) {
    lo = at::zeros({B, D}, p.x.options().dtype(at::kDouble));
    hi = at::ones({B, D}, p.x.options().dtype(at::kDouble));
  } else {
    auto [mn, mx] = at::aminmax(p.x, 1);
    lo = mn.to(at::kDouble);
    hi = mx.to(at::kDouble);
  }
  for (int64_t d = 0; d < D; ++d) {
    TORCH_CHECK(counts[d] > 0, "torch.histogram(): bins must be > 0, but got ", counts[d], " for dimension ", d);
    const auto l = lo.select(1, d), h = hi.select(1, d);
    const auto bad = (l.isfinite() & h.isfinite()).logical_not().nonzero();
    TORCH_CHECK(bad.numel() == 0, "torch.histogramdd: dimension ", d, "'s range [",
                bad.numel() ? l[bad[0][0]].item<double>() : 0.0, ", ", bad.numel() ? h[bad[0][0]].item<double>() : 0.0,
                "] is not finite");
    const auto reversed = (l > h).nonzero();
    TORCH_CHECK(reversed.numel() == 0, "torch.histogramdd: min should not exceed max, but got min ",
                reversed.numel() ? l[reversed[0][0]].item<double>() : 0.0, " max ",
                reversed.numel() ? h[reversed[0][0]].item<double>() : 0.0, " for dimension ", d);
  }
  const auto same = lo == hi;
  lo = at::where(same, lo - 0.5, lo);
  hi = at::where(same, hi + 0.5, hi);
  std::vector<at::Tensor> edges;
  // In the points' dtype, as torch's linspace computes the edges.
  lo = lo.to(p.x.scalar_type());
  hi = hi.to(p.x.scalar_type());
  for (int64_t d = 0; d < D; ++d) {
    edges.push_back(linspace_edges(lo.narrow(1, d, 1), hi.narrow(1, d, 1), counts[d]));
  }
  return edges;
}

at::Tensor histogram_counts(const Points& p, const std::vector<at::Tensor>& edges, bool density) {
  const auto B = p.x.size(0);
  auto flat = at::zeros({B, p.x.size(1)}, p.x.options().dtype(at::kLong));
  auto inside = at::ones({B, p.x.size(1)}, p.x.options().dtype(at::kBool));
  std::vector<int64_t> shape{B};
  for (size_t d = 0; d < edges.size(); ++d) {
    const auto& e = edges[d];
    const int64_t count = e.size(1) - 1;
    auto v = p.x.select(2, static_cast<int64_t>(d)).contiguous();
    const auto lo = e.narrow(1, 0, 1), hi = e.narrow(1, count, 1);
    auto bin = at::searchsorted(e, v, /*out_int32=*/false, /*right=*/true) - 1;
    bin = at::where(v == hi, at::full_like(bin, count - 1), bin).clamp(0, std::max<int64_t>(count - 1, 0));
    inside = inside & (v >= lo) & (v <= hi);
    flat = flat * count + bin;
    shape.push_back(count);
  }
  const auto cells = c10::multiply_integers(shape.begin() + 1, shape.end());
  auto hist = at::zeros({B, cells}, p.x.options());
  auto add = p.weight.defined() ? at::where(inside, p.weight, at::zeros_like(p.weight)) : inside.to(p.x.scalar_type());
  if (cells > 0) hist.scatter_add_(1, flat, add);
  hist = hist.view(shape);
  if (density) {
    std::vector<int64_t> per_example(shape.size(), 1);
    per_example[0] = B;
    hist = hist / hist.reshape({B, -1}).sum(1).view(per_example);
    for (size_t d = 0; d < edges.size(); ++d) {
      std::vector<int64_t> widths(shape.size(), 1);
      widths[0] = B;
      widths[d + 1] = shape[d + 1];
      hist = hist / edges[d].diff(1, 1).view(widths);
    }
  }
  return hist;
}

Outs histogram_bin_ct_rule(Call& call) {
  const auto p = histogram_points(call, 1);
  const std::vector<int64_t> counts{call.arg("bins").toInt()};
  auto edges = edges_from_counts(call, p, counts);
  return {{histogram_counts(p, edges, call.arg("density").toBool()), 0}, {edges[0], 0}};
}

Outs histogram_bins_tensor_rule(Call& call) {
  const auto p = histogram_points(call, 1);
  auto [value, bdim] = call.tensor("bins");
  std::vector<at::Tensor> edges{axis::materialize(value, bdim, call.batch_size).contiguous()};
  return {{histogram_counts(p, edges, call.arg("density").toBool()), 0}, {edges[0], 0}};
}

Outs histogramdd_bin_edges_rule(Call& call) {
  const auto counts = call.arg("bins").toDimVector();
  check_histogramdd_shapes(call, static_cast<int64_t>(counts.size()));
  const auto p = histogram_points(call, static_cast<int64_t>(counts.size()));
  return {{c10::IValue(edges_from_counts(call, p, counts)), 0}};
}

Outs histogramdd_from_bin_cts_rule(Call& call) {
  const auto counts = call.arg("bins").toDimVector();
  check_histogramdd_shapes(call, static_cast<int64_t>(counts.size()));
  const auto p = histogram_points(call, static_cast<int64_t>(counts.size()));
  return {{histogram_counts(p, edges_from_counts(call, p, counts), call.arg("density").toBool()), 0}};
}

Outs histogramdd_from_bin_tensors_rule(Call& call) {
  const auto i = call.index("bins");
  std::vector<at::Tensor> edges;
  for (const auto& [value, bdim] : call.tensors(i)) {
    edges.push_back(axis::materialize(value, bdim, call.batch_size).contiguous());
  }
  check_histogramdd_shapes(call, static_cast<int64_t>(edges.size()));
  const auto p = histogram_points(call, static_cast<int64_t>(edges.size()));
  return {{histogram_counts(p, edges, call.arg("density").toBool()), 0}};
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
  t.push_back({"histogram.bin_ct", &histogram_bin_ct_rule, RuleKind::Physical, nullptr,
               {"self", "bins", "range", "weight", "density"}});
  t.push_back({"histogram.bins_tensor", &histogram_bins_tensor_rule, RuleKind::Physical, nullptr,
               {"self", "bins", "weight", "density"}});
  t.push_back({"_histogramdd_bin_edges", &histogramdd_bin_edges_rule, RuleKind::Physical, nullptr,
               {"self", "bins", "range", "weight"}});
  t.push_back({"_histogramdd_from_bin_cts", &histogramdd_from_bin_cts_rule, RuleKind::Physical, nullptr,
               {"self", "bins", "range", "weight", "density"}});
  t.push_back({"_histogramdd_from_bin_tensors", &histogramdd_from_bin_tensors_rule, RuleKind::Physical, nullptr,
               {"self", "bins", "weight", "density"}});
  t.push_back({"isin.Tensor_Tensor", &isin_rule, RuleKind::Physical, nullptr,
               {"elements", "test_elements", "assume_unique", "invert"}});
}

} // namespace torchfunc
