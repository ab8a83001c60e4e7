// Joining, splitting and indexing: cat, stack, index_select, gather/scatter,
// advanced indexing.
#include "../../errors.h"
#include "../../op_traits.h"
#include "../axis.h"
#include "../batched_tensor.h"
#include "../rule.h"

#include <ATen/ATen.h>

namespace torchfunc {
namespace {

// The list's tensors batch-materialized at the front. cat skips 1-D empty tensors
// whatever the others' rank (a legacy rule); so do we, before they gain a batch dim.
std::vector<at::Tensor> materialized_list(const Call& call, size_t i, int64_t* rank, bool skip_legacy_empty) {
  std::vector<at::Tensor> out;
  const auto list = call.args[i].toTensorList();
  *rank = 0;
  for (const at::Tensor& t : list) *rank = std::max<int64_t>(*rank, t.dim());
  const auto unwrapped = call.tensors(i);
  for (size_t k = 0; k < unwrapped.size(); ++k) {
    const at::Tensor& logical = list[k];
    if (skip_legacy_empty && *rank > 1 && logical.dim() == 1 && logical.size(0) == 0) continue;
    out.push_back(axis::materialize(unwrapped[k].first, unwrapped[k].second, call.batch_size));
  }
  return out;
}

Outs cat_rule(Call& call) {
  int64_t rank = 0;
  auto ts = materialized_list(call, 0, &rank, /*skip_legacy_empty=*/true);
  return {{at::cat(ts, axis::physical_dim(call.args[1].toInt(), std::max<int64_t>(rank, 1))), 0}};
}

Outs stack_rule(Call& call) {
  int64_t rank = 0;
  auto ts = materialized_list(call, 0, &rank, /*skip_legacy_empty=*/false);
  return {{at::stack(ts, axis::physical_dim(call.args[1].toInt(), rank + 1)), 0}};
}

Outs index_select_rule(Call& call) {
  auto [value, bdim] = call.tensor(0);
  auto [index, index_bdim] = call.tensor(2);
  const int64_t rank = std::max<int64_t>(call.args[0].toTensor().dim(), 1);
  const auto d = axis::physical_dim(call.args[1].toInt(), rank);
  auto self = axis::materialize(value, bdim, call.batch_size);
  if (call.args[0].toTensor().dim() == 0) self = self.unsqueeze(1);
  if (!index_bdim.has_value()) {
    auto out = at::index_select(self, d, index);
    return {{call.args[0].toTensor().dim() == 0 ? out.squeeze(1) : out, 0}};
  }
  // A batched index picks different rows per example: a gather along d.
  auto idx = axis::bdim_to_front(index, index_bdim).reshape({call.batch_size, -1});
  std::vector<int64_t> view(self.dim(), 1);
  view[0] = call.batch_size;
  view[d] = idx.size(1);
  auto expanded_sizes = self.sizes().vec();
  expanded_sizes[d] = idx.size(1);
  return {{at::gather(self, d, idx.view(view).expand(expanded_sizes)), 0}};
}

// self[indices]. Unbatched indices: a None in front keeps the batch dim (when the
// advanced indices are not adjacent, torch puts their result dims first, so the
// batch dim lands after them). Batched indices starting at dim 0 and adjacent:
// an arange over the batch becomes one more index in front. Other layouts loop.
Outs index_rule(Call& call) {
  auto [value, bdim] = call.tensor(0);
  auto self = axis::materialize(value, bdim, call.batch_size);
  const auto indices = call.args[1].toOptionalTensorList();
  std::vector<size_t> positions;
  bool any_batched = false;
  int64_t index_rank = 0;
  for (size_t i = 0; i < indices.size(); ++i) {
    const std::optional<at::Tensor> idx = indices[i];
    if (idx.has_value() && idx->defined()) {
      positions.push_back(i);
      any_batched |= batched_at(*idx, call.level);
      index_rank = std::max<int64_t>(index_rank, idx->dim());
    }
  }
  bool adjacent = true;
  for (size_t k = 1; k < positions.size(); ++k) adjacent &= positions[k] == positions[k - 1] + 1;
  c10::List<std::optional<at::Tensor>> physical;
  if (!any_batched) {
    physical.push_back(std::nullopt);
    for (size_t i = 0; i < indices.size(); ++i) physical.push_back(indices[i]);
    return {{at::index(self, physical), adjacent ? 0 : index_rank}};
  }
  if (!adjacent || positions.empty() || positions[0] != 0) {
    return loop_rule(call);
  }
  std::vector<int64_t> shape(index_rank + 1, 1);
  shape[0] = call.batch_size;
  physical.push_back(at::arange(call.batch_size, self.options().dtype(at::kLong)).view(shape));
  for (size_t i = 0; i < indices.size(); ++i) {
    const std::optional<at::Tensor> idx = indices[i];
    if (!idx.has_value() || !idx->defined()) {
      physical.push_back(std::nullopt);
      continue;
    }
    auto [iv, ib] = unwrap_at(*idx, call.level);
    physical.push_back(ib.has_value() ? axis::pad_to_rank(axis::bdim_to_front(iv, ib), index_rank) : iv);
  }
  return {{at::index(self, physical), 0}};
}

// self[indices] = values with unbatched integer indices that are adjacent: a None
// in front keeps the batch dim, and batched values gain size-1 dims up to the rank
// of the indexed region. Other cases loop.
Outs index_put_rule(Call& call) {
  const auto indices = call.args[1].toOptionalTensorList();
  std::vector<size_t> positions;
  int64_t index_rank = 0;
  for (size_t i = 0; i < indices.size(); ++i) {
    const std::optional<at::Tensor> idx = indices[i];
    if (!idx.has_value() || !idx->defined()) continue;
    if (batched_at(*idx, call.level) || idx->scalar_type() == at::kBool || idx->scalar_type() == at::kByte) {
      return loop_rule(call);
    }
    positions.push_back(i);
    index_rank = std::max<int64_t>(index_rank, idx->dim());
  }
  for (size_t k = 1; k < positions.size(); ++k) {
    if (positions[k] != positions[k - 1] + 1) return loop_rule(call);
  }
  const bool inplace = is_inplace(call.schema());
  auto [self, self_bdim] = call.tensor(0);
  TORCH_CHECK(!inplace || self_bdim.has_value(), errors::inplace_on_unbatched(call.name()));
  const int64_t indexed_rank =
      index_rank + call.args[0].toTensor().dim() - static_cast<int64_t>(positions.size());
  auto [values, values_bdim] = call.tensor(2);
  c10::List<std::optional<at::Tensor>> physical_indices;
  physical_indices.push_back(std::nullopt);
  for (size_t i = 0; i < indices.size(); ++i) physical_indices.push_back(indices[i]);
  auto args = call.args;
  args[0] = axis::materialize(self, self_bdim, call.batch_size);
  args[1] = physical_indices;
  args[2] = values_bdim ? axis::pad_to_rank(axis::bdim_to_front(values, values_bdim), indexed_rank) : values;
  if (inplace) {
    call.call_below(std::move(args));
    return {{call.args[0], std::nullopt}};
  }
  return {{call.call_below(std::move(args))[0], 0}};
}

// index_add/index_copy/index_fill: self (and source) batched along a shifted dim;
// a batched index picks different rows per example, which only the loop does.
Outs index_dim_rule(Call& call) {
  const auto& sargs = call.schema().arguments();
  const bool has_source = sargs.size() > 3 && sargs[3].name() == "source";
  const bool batched_fill_value = !has_source && sargs.size() > 3 && call.args[3].isTensor() &&
      call.tensor(3).second.has_value();
  if (call.tensor(2).second.has_value() || batched_fill_value) {
    return loop_rule(call);
  }
  // 0-dim examples index along a size-1 dim (see NOTE [0-dim examples] in dims.cpp).
  const bool zero_dim = call.args[0].toTensor().dim() == 0;
  const int64_t r = std::max<int64_t>(call.args[0].toTensor().dim(), 1);
  auto args = call.args;
  for (size_t i : {size_t{0}, size_t{3}}) {
    if (i == 0 || has_source) {
      auto [value, bdim] = call.tensor(i);
      auto v = axis::materialize(value, bdim, call.batch_size);
      args[i] = zero_dim && v.dim() == 1 ? v.unsqueeze(1) : v;
    }
  }
  args[1] = axis::physical_dim(call.args[1].toInt(), r);
  if (is_inplace(call.schema())) {
    TORCH_CHECK(call.tensor(0).second.has_value(), errors::inplace_on_unbatched(call.name()));
    call.call_below(std::move(args));
    return {{call.args[0], std::nullopt}};
  }
  auto out = call.call_below(std::move(args))[0].toTensor();
  return {{zero_dim ? out.squeeze(1) : out, 0}};
}

} // namespace

void add_index_rules(std::vector<RuleEntry>& t) {
  t.push_back({"cat", &cat_rule});
  t.push_back({"stack", &stack_rule});
  t.push_back({"index_select", &index_select_rule});
  t.push_back({"index.Tensor", &index_rule});
  for (const char* op : {"index_put", "index_put_", "_index_put_impl_"}) {
    t.push_back({op, &index_put_rule});
  }
  for (const char* op : {"index_add", "index_add_", "index_copy", "index_copy_", "index_fill.int_Scalar",
                         "index_fill_.int_Scalar", "index_fill.int_Tensor", "index_fill_.int_Tensor"}) {
    t.push_back({op, &index_dim_rule});
  }
  for (const char* op : {"gather", "scatter.src", "scatter.value", "scatter.reduce", "scatter.value_reduce",
                         "scatter_add", "scatter_reduce.two", "scatter_.src", "scatter_.value",
                         "scatter_add_", "scatter_reduce_.two"}) {
    t.push_back({op, &dim_rule});
  }
}

} // namespace torchfunc
