// Joining, splitting and indexing: cat, stack, index_select, gather/scatter,
// advanced indexing.
#include "../axis.h"
#include "../batched_tensor.h"
#include "../rule.h"

#include <ATen/ATen.h>

namespace torchfunc {
namespace {

std::vector<at::Tensor> materialized_list(const Call& call, size_t i, int64_t* rank) {
  std::vector<at::Tensor> out;
  const auto list = call.args[i].toTensorList();
  *rank = list.empty() ? 0 : static_cast<at::Tensor>(list[0]).dim();
  for (const auto& [value, bdim] : call.tensors(i)) {
    out.push_back(axis::materialize(value, bdim, call.batch_size));
  }
  return out;
}

Outs cat_rule(Call& call) {
  int64_t rank = 0;
  auto ts = materialized_list(call, 0, &rank);
  return {{at::cat(ts, axis::physical_dim(call.args[1].toInt(), std::max<int64_t>(rank, 1))), 0}};
}

Outs stack_rule(Call& call) {
  int64_t rank = 0;
  auto ts = materialized_list(call, 0, &rank);
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
    return {{at::index_select(self, d, index), 0}};
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

} // namespace

void add_index_rules(std::vector<RuleEntry>& t) {
  t.push_back({"cat", &cat_rule});
  t.push_back({"stack", &stack_rule});
  t.push_back({"index_select", &index_select_rule});
  t.push_back({"index.Tensor", &index_rule});
  for (const char* op : {"gather", "scatter.src", "scatter.value", "scatter.reduce", "scatter.value_reduce",
                         "scatter_add", "scatter_reduce.two", "scatter_.src", "scatter_.value",
                         "scatter_add_", "scatter_reduce_.two"}) {
    t.push_back({op, &dim_rule});
  }
}

} // namespace torchfunc
