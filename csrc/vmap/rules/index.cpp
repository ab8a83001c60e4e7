// Joining, splitting and indexing: cat, stack, index_select, gather/scatter,
// advanced indexing, and the *_scatter ops of views (select/slice/diagonal).
#include "../../errors.h"
#include "../../op_traits.h"
#include "../axis.h"
#include "../batched_tensor.h"
#include "../rule.h"

#include <ATen/core/Tensor.h>
#include <ATen/ExpandUtils.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/_chunk_cat.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/empty_strided.h>
#include <ATen/ops/gather.h>
#include <ATen/ops/index.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <c10/util/accumulate.h>

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
  auto ts = materialized_list(call, call.index("tensors"), &rank, /*skip_legacy_empty=*/true);
  return {{at::cat(ts, axis::physical_dim(call.arg("dim").toInt(), std::max<int64_t>(rank, 1))), 0}};
}

Outs stack_rule(Call& call) {
  int64_t rank = 0;
  auto ts = materialized_list(call, call.index("tensors"), &rank, /*skip_legacy_empty=*/false);
  return {{at::stack(ts, axis::physical_dim(call.arg("dim").toInt(), rank + 1)), 0}};
}

// _chunk_cat chunks each tensor along dim and flattens each chunk's dims from dim on:
// the dims before dim, which all tensors share, gain the batch dim in front.
Outs chunk_cat_rule(Call& call) {
  if (call.arg("tensors").toTensorList().empty()) return loop_rule(call);  // the op's own error
  int64_t rank = 0;
  auto ts = materialized_list(call, call.index("tensors"), &rank, /*skip_legacy_empty=*/false);
  const auto first = call.arg("tensors").toTensorList().get(0);
  const int64_t dim = c10::maybe_wrap_dim(call.arg("dim").toInt(), first.dim()) + 1;
  return {{at::_chunk_cat(ts, dim, call.arg("num_chunks").toInt()), 0}};
}

Outs index_select_rule(Call& call) {
  auto [value, bdim] = call.tensor("self");
  auto [index, index_bdim] = call.tensor("index");
  const bool zero_dim = call.arg("self").toTensor().dim() == 0;
  const int64_t rank = std::max<int64_t>(call.arg("self").toTensor().dim(), 1);
  const auto d = axis::physical_dim(call.arg("dim").toInt(), rank);
  auto self = axis::materialize(value, bdim, call.batch_size);
  if (zero_dim) self = self.unsqueeze(1);
  if (!index_bdim.has_value()) {
    auto out = at::index_select(self, d, index);
    return {{zero_dim ? out.squeeze(1) : out, 0}};
  }
  // A batched index picks different rows per example: a gather along d.
  auto idx = axis::bdim_to_front(index, index_bdim).reshape({call.batch_size, -1});
  std::vector<int64_t> view(self.dim(), 1);
  view[0] = call.batch_size;
  view[d] = idx.size(1);
  auto expanded_sizes = self.sizes().vec();
  expanded_sizes[d] = idx.size(1);
  auto out = at::gather(self, d, idx.view(view).expand(expanded_sizes));
  return {{zero_dim ? out.squeeze(1) : out, 0}};
}

// self[indices]. Unbatched indices: a None in front keeps the batch dim (when the
// advanced indices are not adjacent, torch puts their result dims first, so the
// batch dim lands after them). Batched indices starting at dim 0 and adjacent:
// an arange over the batch becomes one more index in front. Other layouts loop.
Outs index_rule(Call& call) {
  auto [value, bdim] = call.tensor("self");
  auto self = axis::materialize(value, bdim, call.batch_size);
  const auto indices = call.arg("indices").toOptionalTensorList();
  std::vector<size_t> positions;
  bool any_batched = false;
  int64_t index_rank = 0;
  for (size_t i = 0; i < indices.size(); ++i) {
    const std::optional<at::Tensor> idx = indices[i];
    if (idx.has_value() && idx->defined()) {
      positions.push_back(i);
      const bool batched = batched_at(*idx, call.level);
      // A per-example mask selects a different number of elements per example.
      TORCH_CHECK(!batched || (idx->scalar_type() != at::kBool && idx->scalar_type() != at::kByte),
                  errors::data_dependent(call.name()));
      any_batched |= batched;
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

// self[indices] = values with unbatched integer indices: a None in front keeps the
// batch dim, and batched values gain size-1 dims up to the rank of the indexed region.
// Batched integer indices take index_put_batched_indices, a batched mask alone
// index_put_batched_mask; a batched mask beside other indices loops.
//
// NOTE [Indexing puts separated indices first]
// When indices are separated by a slice (x[:, i, :, j]), advanced indexing puts the
// broadcast index dims first and the sliced dims after them, in order. Physically the
// batch dim is the first sliced dim, so it sits right after the index dims: values
// [B, *index, *sliced] become [*index, B, *sliced].
// NOTE [index_put with batched indices]
// Per example, x[i0, .., ik] = v writes v, broadcast to the indexed shape, where the
// example's indexed shape is: the sliced dims before the indices, the indices'
// broadcast shape S, the dims after (adjacent indices); or S, then every sliced dim
// in order (indices separated by a slice). Physically every dim up to the last index
// gets an index tensor: an arange over the batch in front, an arange for each sliced
// dim among them, each placed where its dim sits in that indexed shape, and each
// original index (batched ones with their batch dim in front) viewed with size-1 dims
// around S. The broadcast of all of them is [B, indexed shape up to the trailing
// dims], so the values, batch in front, broadcast to it unchanged: one index_put.
Outs index_put_batched_indices(Call& call, const c10::List<std::optional<at::Tensor>>& indices) {
  const auto B = call.batch_size;
  std::vector<size_t> positions;
  int64_t index_rank = 0;
  for (size_t i = 0; i < indices.size(); ++i) {
    const std::optional<at::Tensor> idx = indices[i];
    if (!idx.has_value() || !idx->defined()) continue;
    positions.push_back(i);
    index_rank = std::max<int64_t>(index_rank, idx->dim());
  }
  bool adjacent = true;
  for (size_t k = 1; k < positions.size(); ++k) adjacent &= positions[k] == positions[k - 1] + 1;
  const size_t last = positions.back();
  const auto& logical = call.arg("self").toTensor();
  // The sliced dims up to the last index: before the indices (adjacent) or among them.
  std::vector<size_t> sliced;
  for (size_t d = 0; d < last; ++d) {
    if (!indices[d].has_value() || !indices[d]->defined()) sliced.push_back(d);
  }
  // Layout of the broadcast index shape: [B, sliced..., S] (adjacent) or [B, S, sliced...].
  const int64_t rank = 1 + static_cast<int64_t>(sliced.size()) + index_rank;
  const int64_t first_sliced = adjacent ? 1 : 1 + index_rank;
  const int64_t first_index = adjacent ? 1 + static_cast<int64_t>(sliced.size()) : 1;
  auto longs = call.tensor("self").first.options().dtype(at::kLong);
  auto placed = [&](const at::Tensor& t, int64_t at_dim) {
    std::vector<int64_t> shape(rank, 1);
    shape[at_dim] = t.size(0);
    return t.view(shape);
  };
  c10::List<std::optional<at::Tensor>> physical;
  physical.push_back(placed(at::arange(B, longs), 0));
  size_t next_sliced = 0;
  for (size_t d = 0; d <= last; ++d) {
    const std::optional<at::Tensor> idx = indices[d];
    if (!idx.has_value() || !idx->defined()) {
      physical.push_back(placed(at::arange(logical.size(d), longs), first_sliced + next_sliced++));
      continue;
    }
    auto [iv, ib] = unwrap_at(*idx, call.level);
    auto front = axis::pad_to_rank(ib.has_value() ? axis::bdim_to_front(iv, ib) : iv.unsqueeze(0), index_rank);
    // [B|1, S] -> [B|1, 1 (each sliced dim before S), S, 1 (each sliced dim after S)]
    auto shape = front.sizes().vec();
    shape.insert(shape.begin() + 1, first_index - 1, 1);
    shape.resize(rank, 1);
    physical.push_back(front.reshape(shape));
  }
  const bool inplace = is_inplace(call.schema());
  auto [self, self_bdim] = call.tensor("self");
  TORCH_CHECK(!inplace || self_bdim.has_value(), errors::inplace_on_unbatched(call.name()));
  auto [values, values_bdim] = call.tensor("values");
  // The example's indexed shape: the broadcast index shape, then the trailing dims.
  const int64_t indexed_rank = rank - 1 + logical.dim() - static_cast<int64_t>(last) - 1;
  auto args = call.args;
  args[call.index("self")] = axis::materialize(self, self_bdim, B);
  args[call.index("indices")] = physical;
  args[call.index("values")] = axis::pad_to_rank(axis::materialize(values, values_bdim, B), indexed_rank);
  if (inplace) {
    call.call_below(std::move(args));
    return {{call.arg("self"), std::nullopt}};
  }
  return {{call.call_below(std::move(args))[0], 0}};
}

size_t defined_count(const c10::List<std::optional<at::Tensor>>& indices) {
  size_t n = 0;
  for (const std::optional<at::Tensor> idx : indices) n += idx.has_value() && idx->defined();
  return n;
}

// NOTE [index_put with a batched mask]
// Per example, x[:, .., mask] = v (p sliced dims, then a mask over k dims) writes
// the rows the mask picks, in row-major order, with v broadcast to [*pre, count,
// *post]. Moving the batch dim of x to just before the masked dims makes the
// batched mask [B, *mask] one mask over k + 1 dims whose rows are the examples'
// rows in order. The values follow: broadcast along the count (a size-1 dim there)
// they are gathered by each row's example; otherwise every example must pick the
// same number of rows, its values' count, and the examples' values lie one after
// another. A mask mixed with other indices loops.
Outs index_put_batched_mask(Call& call, size_t p) {
  const auto B = call.batch_size;
  const auto& logical = call.arg("self").toTensor();
  auto [mask, mask_bdim] = unwrap_at(*call.arg("indices").toOptionalTensorList().get(p), call.level);
  mask = axis::bdim_to_front(mask, mask_bdim);
  if (mask.scalar_type() != at::kBool) mask = mask.to(at::kBool);
  const int64_t k = mask.dim() - 1;
  const int64_t pre = static_cast<int64_t>(p);
  const int64_t post = logical.dim() - pre - k;
  const bool inplace = is_inplace(call.schema());
  auto [self, self_bdim] = call.tensor("self");
  TORCH_CHECK(!inplace || self_bdim.has_value(), errors::inplace_on_unbatched(call.name()));
  auto moved = axis::materialize(self, self_bdim, B).movedim(0, pre);
  // The values, batch in front, over an example's indexed shape [*pre, count, *post].
  auto [values, values_bdim] = call.tensor("values");
  auto v = axis::pad_to_rank(axis::materialize(values, values_bdim, B), pre + 1 + post);
  const auto counts = mask.reshape({B, -1}).sum(1);
  at::Tensor rows;
  if (v.size(pre + 1) == 1) {
    // Broadcast along the count: row j takes the values of its example.
    const auto example_of_row = at::repeat_interleave(counts);
    rows = v.squeeze(pre + 1).index_select(0, example_of_row).movedim(0, pre);
  } else {
    const int64_t count = v.size(pre + 1);
    const auto differs = (counts != count).nonzero();
    if (differs.numel() > 0) {
      const auto b = differs[0].item<int64_t>();
      std::vector<int64_t> result(logical.sizes().begin(), logical.sizes().begin() + pre);
      result.push_back(counts[b].item<int64_t>());
      result.insert(result.end(), logical.sizes().end() - post, logical.sizes().end());
      TORCH_CHECK(false, "shape mismatch: value tensor of shape ", call.arg("values").toTensor().sizes(),
                  " cannot be broadcast to indexing result of shape ", c10::IntArrayRef(result),
                  " (torchfunc: ", call.name(), " at vmap level ", call.level, ", example ", b,
                  ": a batched mask must pick the same number of elements in every example unless the values "
                  "broadcast over them)");
    }
    auto shape = v.sizes().vec();
    for (int64_t d = 1; d <= pre; ++d) shape[d] = logical.size(d - 1);
    for (int64_t d = 0; d < post; ++d) shape[pre + 2 + d] = logical.size(pre + k + d);
    rows = v.expand(shape).movedim(0, pre).flatten(pre, pre + 1);
  }
  c10::List<std::optional<at::Tensor>> physical;
  for (int64_t d = 0; d < pre; ++d) physical.push_back(std::nullopt);
  physical.push_back(mask);
  auto args = call.args;
  args[call.index("self")] = moved;
  args[call.index("indices")] = physical;
  args[call.index("values")] = rows;
  if (inplace) {
    call.call_below(std::move(args));
    return {{call.arg("self"), std::nullopt}};
  }
  return {{call.call_below(std::move(args))[0], pre}};
}

Outs index_put_rule(Call& call) {
  // An unbatched boolean mask over k dims selects the same positions in every
  // example: its k lists of coordinates, as torch expands it.
  c10::List<std::optional<at::Tensor>> indices;
  for (const std::optional<at::Tensor> idx : call.arg("indices").toOptionalTensorList()) {
    const bool is_mask = idx.has_value() && idx->defined() &&
        (idx->scalar_type() == at::kBool || idx->scalar_type() == at::kByte);
    if (!is_mask || batched_at(*idx, call.level)) {
      indices.push_back(idx);
      continue;
    }
    for (const auto& coords : idx->nonzero().unbind(1)) indices.push_back(coords);
  }
  std::vector<size_t> positions;
  int64_t index_rank = 0;
  for (size_t i = 0; i < indices.size(); ++i) {
    const std::optional<at::Tensor> idx = indices[i];
    if (!idx.has_value() || !idx->defined()) continue;
    if (idx->scalar_type() == at::kBool || idx->scalar_type() == at::kByte) {
      return positions.empty() && defined_count(indices) == 1 ? index_put_batched_mask(call, i) : loop_rule(call);
    }
    if (batched_at(*idx, call.level)) return index_put_batched_indices(call, indices);
    positions.push_back(i);
    index_rank = std::max<int64_t>(index_rank, idx->dim());
  }
  // Indices separated by a slice put the indexed dims first (NOTE [Indexing puts
  // separated indices first]): the batch dim, a slice, then comes right after them.
  bool adjacent = true;
  for (size_t k = 1; k < positions.size(); ++k) adjacent &= positions[k] == positions[k - 1] + 1;
  const bool inplace = is_inplace(call.schema());
  auto [self, self_bdim] = call.tensor("self");
  TORCH_CHECK(!inplace || self_bdim.has_value(), errors::inplace_on_unbatched(call.name()));
  const int64_t indexed_rank =
      index_rank + call.arg("self").toTensor().dim() - static_cast<int64_t>(positions.size());
  auto [values, values_bdim] = call.tensor("values");
  c10::List<std::optional<at::Tensor>> physical_indices;
  physical_indices.push_back(std::nullopt);
  for (size_t i = 0; i < indices.size(); ++i) physical_indices.push_back(indices[i]);
  auto args = call.args;
  args[call.index("self")] = axis::materialize(self, self_bdim, call.batch_size);
  args[call.index("indices")] = physical_indices;
  if (adjacent) {
    args[call.index("values")] =
        values_bdim ? axis::pad_to_rank(axis::bdim_to_front(values, values_bdim), indexed_rank) : values;
  } else {
    auto front = values_bdim ? axis::bdim_to_front(values, values_bdim) : values.unsqueeze(0);
    args[call.index("values")] = axis::pad_to_rank(front, indexed_rank).movedim(0, index_rank);
  }
  if (inplace) {
    call.call_below(std::move(args));
    return {{call.arg("self"), std::nullopt}};
  }
  return {{call.call_below(std::move(args))[0], 0}};
}

// index_fill with a per-example (0-dim) value: a where over the rows the index picks.
Outs index_fill_batched_value(Call& call) {
  const auto& logical = call.arg("self").toTensor();
  const int64_t r = std::max<int64_t>(logical.dim(), 1);
  const int64_t d = c10::maybe_wrap_dim(call.arg("dim").toInt(), r);
  auto [self, self_bdim] = call.tensor("self");
  auto [index, index_bdim] = call.tensor("index");
  auto [value, value_bdim] = call.tensor("value");
  const int64_t rows = logical.dim() == 0 ? 1 : logical.size(d);
  auto picked = at::zeros({rows}, index.options().dtype(at::kBool)).index_fill_(0, index, true);
  std::vector<int64_t> shape(logical.dim() + 1, 1);
  if (logical.dim() > 0) shape[d + 1] = rows;
  auto s = axis::materialize(self, self_bdim, call.batch_size);
  auto v = axis::pad_to_rank(axis::bdim_to_front(value, value_bdim), logical.dim()).to(s.scalar_type());
  auto filled = at::where(picked.view(shape), v, s);
  if (is_inplace(call.schema())) {
    TORCH_CHECK(self_bdim.has_value(), errors::inplace_on_unbatched(call.name()));
    s.copy_(filled);
    return {{call.arg("self"), std::nullopt}};
  }
  return {{filled, 0}};
}

// A batched index picks other rows in each example: index_add, index_copy, index_fill
// and index_reduce become scatter_add / scatter / scatter_reduce along the shifted dim, the index viewed
// along that dim and expanded to the source's (index_fill: the filled) example shape.
Outs index_dim_batched_index(Call& call, bool has_source) {
  const auto B = call.batch_size;
  const auto& logical = call.arg("self").toTensor();
  const bool zero_dim = logical.dim() == 0;
  const int64_t d = c10::maybe_wrap_dim(call.arg("dim").toInt(), std::max<int64_t>(logical.dim(), 1)) + 1;
  auto [self, self_bdim] = call.tensor("self");
  auto [index, index_bdim] = call.tensor("index");
  auto s = axis::materialize(self, self_bdim, B);
  if (zero_dim) s = s.unsqueeze(1);
  auto idx = axis::materialize(index, index_bdim, B).reshape({B, -1});
  std::vector<int64_t> along(s.dim(), 1);
  along[0] = B;
  along[d] = idx.size(1);
  idx = idx.view(along);
  at::Tensor out;
  const auto& op = call.schema().name();
  if (has_source) {
    auto [source, source_bdim] = call.tensor("source");
    auto src = axis::materialize(source, source_bdim, B);
    if (src.dim() < s.dim()) src = src.unsqueeze(1);  // 0-dim examples
    idx = idx.expand(src.sizes());
    if (op == "aten::index_copy" || op == "aten::index_copy_") {
      out = s.scatter(d, idx, src);
    } else if (op == "aten::index_reduce" || op == "aten::index_reduce_") {
      out = s.scatter_reduce(d, idx, src, call.arg("reduce").toStringRef(), call.arg("include_self").toBool());
    } else {
      const auto alpha = call.arg("alpha").toScalar();
      out = s.scatter_add(d, idx, alpha.equal(1) ? src : src * alpha);
    }
  } else {
    auto shape = s.sizes().vec();
    shape[d] = along[d];
    idx = idx.expand(shape);
    const auto& value = call.arg("value");
    if (value.isTensor()) {
      auto [v, v_bdim] = call.tensor("value");
      std::vector<int64_t> column(s.dim(), 1);  // each example's 0-dim value
      column[0] = B;
      auto filled = axis::materialize(v, v_bdim, B).to(s.scalar_type()).view(column);
      out = s.scatter(d, idx, filled.expand(shape));
    } else {
      out = s.scatter(d, idx, value.toScalar());
    }
  }
  if (zero_dim) out = out.squeeze(1);
  if (is_inplace(call.schema())) {
    TORCH_CHECK(self_bdim.has_value(), errors::inplace_on_unbatched(call.name()));
    axis::bdim_to_front(self, self_bdim).copy_(out);
    return {{call.arg("self"), std::nullopt}};
  }
  return {{out, 0}};
}

// index_reduce: always the scatter_reduce form (unbatched indices expand too).
Outs index_reduce_rule(Call& call) { return index_dim_batched_index(call, /*has_source=*/true); }

// index_add/index_copy/index_fill: self (and source) batched along a shifted dim.
Outs index_dim_rule(Call& call) {
  const bool has_source = call.schema().argumentIndexWithName("source").has_value();
  const bool batched_fill_value = !has_source && call.arg("value").isTensor() && call.tensor("value").second.has_value();
  if (call.tensor("index").second.has_value()) {
    return index_dim_batched_index(call, has_source);
  }
  if (batched_fill_value) return index_fill_batched_value(call);
  // 0-dim examples index along a size-1 dim (see NOTE [0-dim examples] in dims.cpp).
  const bool zero_dim = call.arg("self").toTensor().dim() == 0;
  const int64_t r = std::max<int64_t>(call.arg("self").toTensor().dim(), 1);
  auto args = call.args;
  for (const char* name : {"self", "source"}) {
    if (name == std::string_view("self") || has_source) {
      auto [value, bdim] = call.tensor(name);
      auto v = axis::materialize(value, bdim, call.batch_size);
      args[call.index(name)] = zero_dim && v.dim() == 1 ? v.unsqueeze(1) : v;
    }
  }
  args[call.index("dim")] = axis::physical_dim(call.arg("dim").toInt(), r);
  if (is_inplace(call.schema())) {
    TORCH_CHECK(call.tensor("self").second.has_value(), errors::inplace_on_unbatched(call.name()));
    call.call_below(std::move(args));
    return {{call.arg("self"), std::nullopt}};
  }
  auto out = call.call_below(std::move(args))[0].toTensor();
  return {{zero_dim ? out.squeeze(1) : out, 0}};
}

// --- flat indexing: take, put, masked_scatter ---

// In-place forms compute the functional result, then write it into self.
Outs write_back_if_inplace(Call& call, const at::Tensor& result) {
  if (!is_inplace(call.schema())) return {{result, 0}};
  auto [self, self_bdim] = call.tensor("self");
  TORCH_CHECK(self_bdim.has_value(), errors::inplace_on_unbatched(call.name()));
  axis::bdim_to_front(self, self_bdim).copy_(result);
  return {{call.arg("self"), std::nullopt}};
}

// Example-flat [B, numel] view (or copy) of tensor argument `name`, materialized.
at::Tensor flat_examples(const Call& call, std::string_view name) {
  auto [value, bdim] = call.tensor(name);
  return axis::materialize(value, bdim, call.batch_size).reshape({call.batch_size, call.arg(name).toTensor().numel()});
}

// Flat indices of every example into examples of `numel` elements, negatives wrapped.
at::Tensor wrapped_flat_index(const Call& call, int64_t numel) {
  auto idx = flat_examples(call, "index");
  return at::where(idx < 0, idx + numel, idx);
}

Outs take_rule(Call& call) {
  const auto numel = call.arg("self").toTensor().numel();
  auto out = at::gather(flat_examples(call, "self"), 1, wrapped_flat_index(call, numel));
  auto sizes = call.arg("index").toTensor().sizes().vec();
  sizes.insert(sizes.begin(), call.batch_size);
  return {{out.view(sizes), 0}};
}

Outs put_rule(Call& call) {
  const auto& self = call.arg("self").toTensor();
  auto out = flat_examples(call, "self").clone(at::MemoryFormat::Contiguous);
  auto idx = wrapped_flat_index(call, self.numel());
  auto source = flat_examples(call, "source").to(out.scalar_type());
  if (call.arg("accumulate").toBool()) {
    out.scatter_add_(1, idx, source);
  } else {
    out.scatter_(1, idx, source);
  }
  auto sizes = self.sizes().vec();
  sizes.insert(sizes.begin(), call.batch_size);
  return write_back_if_inplace(call, out.view(sizes));
}

// Tensor argument `values` (self, or masked_scatter_backward's grad_output) and the
// mask broadcast against each other, as [B, numel] each, and the broadcast physical shape.
struct Masked {
  at::Tensor values;
  at::Tensor mask;
  std::vector<int64_t> sizes;
};

Masked broadcast_with_mask(const Call& call, std::string_view values) {
  auto [value, value_bdim] = call.tensor(values);
  auto [mask, mask_bdim] = call.tensor("mask");
  const int64_t rank = std::max(call.arg(values).toTensor().dim(), call.arg("mask").toTensor().dim());
  auto v = axis::pad_to_rank(axis::materialize(value, value_bdim, call.batch_size), rank);
  auto m = axis::pad_to_rank(axis::materialize(mask, mask_bdim, call.batch_size), rank);
  auto sizes = at::infer_size(v.sizes(), m.sizes());
  return {v.expand(sizes).reshape({call.batch_size, -1}), m.expand(sizes).reshape({call.batch_size, -1}),
          sizes};
}

// The k-th selected element of an example takes the k-th element of its source:
// the running count of the mask picks the source element, with no data-dependent shape.
Outs masked_scatter_rule(Call& call) {
  auto [s, m, sizes] = broadcast_with_mask(call, "self");
  auto source = flat_examples(call, "source").to(s.scalar_type());
  auto count = at::cumsum(m, 1);
  TORCH_CHECK(count.numel() == 0 || count.select(1, -1).max().item<int64_t>() <= source.size(1),
              "masked_scatter: the mask selects more elements than the source has (", source.size(1), ")");
  auto picked = source.size(1) > 0 ? at::gather(source, 1, (count - 1).clamp_min(0))
                                   : at::zeros(m.sizes(), s.options());
  return write_back_if_inplace(call, at::where(m, picked, s).view(sizes));
}

// With an unbatched mask every example selects the same positions, so the
// result has a shape and is one index over the examples' dims. A batched mask
// selects a different number of elements per example: a data-dependent shape.
Outs masked_select_rule(Call& call) {
  auto [mask, mask_bdim] = call.tensor("mask");
  TORCH_CHECK(!mask_bdim.has_value(), errors::data_dependent(call.name()));
  auto [self, self_bdim] = call.tensor("self");
  const int64_t rank = std::max(call.arg("self").toTensor().dim(), mask.dim());
  auto s = axis::pad_to_rank(axis::materialize(self, self_bdim, call.batch_size), rank);
  auto shape = at::infer_size(s.sizes().slice(1), mask.sizes());
  std::vector<int64_t> full(shape.begin(), shape.end());
  full.insert(full.begin(), call.batch_size);
  auto flat_mask = mask.expand(shape).reshape({-1});
  return {{s.expand(full).reshape({call.batch_size, -1}).index_select(1, flat_mask.nonzero().squeeze(1)), 0}};
}

// The gradient of masked_scatter's source: the selected elements of the gradient
// in order, zero-padded to the source's size.
Outs masked_scatter_backward_rule(Call& call) {
  auto [gf, mf, shape] = broadcast_with_mask(call, "grad_output");
  auto sizes = call.arg("sizes").toDimVector();
  const int64_t numel = c10::multiply_integers(sizes);
  // Unselected elements (and selections beyond the source) land in a spare slot.
  auto slot = at::where(mf, at::cumsum(mf, 1) - 1, numel).clamp_max(numel);
  auto out = at::zeros({call.batch_size, numel + 1}, gf.options()).scatter_(1, slot, gf);
  sizes.insert(sizes.begin(), call.batch_size);
  return {{out.narrow(1, 0, numel).reshape(sizes), 0}};
}

// out = self.clone(); out.as_strided(size, stride, offset).copy_(src), per example.
// Each example of the result is laid out as its clone would be (the example's
// strides when dense, else contiguous), examples one after another.
Outs as_strided_scatter_rule(Call& call) {
  const auto& logical = call.arg("self").toTensor();
  auto [self, self_bdim] = call.tensor("self");
  auto batched_self = axis::materialize(self, self_bdim, call.batch_size);
  auto sizes = logical.sizes().vec();
  auto strides = at::empty_like(batched_self.select(0, 0)).strides().vec();
  sizes.insert(sizes.begin(), call.batch_size);
  strides.insert(strides.begin(), std::max<int64_t>(logical.numel(), 1));
  auto out = at::empty_strided(sizes, strides, self.options());
  out.copy_(batched_self);
  auto view_sizes = call.arg("size").toDimVector();
  auto view_strides = call.arg("stride").toDimVector();
  view_sizes.insert(view_sizes.begin(), call.batch_size);
  view_strides.insert(view_strides.begin(), strides[0]);
  // An explicit offset counts from the example's own offset (the BatchedTensor
  // reports its value's), as as_strided's does under vmap.
  const auto& storage_offset = call.arg("storage_offset");
  const int64_t offset = storage_offset.isNone() ? 0 : storage_offset.toInt() - logical.storage_offset();
  TORCH_CHECK(offset >= 0, "vmap: as_strided_scatter with storage_offset ", storage_offset.toInt(),
              " before the tensor's own offset ", logical.storage_offset(), " is not supported under vmap.");
  auto [src, src_bdim] = call.tensor("src");
  out.as_strided(view_sizes, view_strides, offset).copy_(axis::materialize(src, src_bdim, call.batch_size));
  return {{out, 0}};
}

} // namespace

void add_index_rules(std::vector<RuleEntry>& t) {
  t.push_back({"cat", &cat_rule, RuleKind::Physical, nullptr, {"tensors", "dim"}});
  t.push_back({"stack", &stack_rule, RuleKind::Physical, nullptr, {"tensors", "dim"}});
  t.push_back({"_chunk_cat", &chunk_cat_rule, RuleKind::Physical, nullptr, {"tensors", "dim", "num_chunks"}});
  t.push_back({"index_select", &index_select_rule, RuleKind::Physical, nullptr, {"self", "dim", "index"}});
  t.push_back({"index.Tensor", &index_rule, RuleKind::Physical,
               "with batched indices that are not adjacent or do not start at the first indexed dim",
               {"self", "indices"}});
  for (const char* op : {"index_put", "index_put_", "_index_put_impl_"}) {
    t.push_back({op, &index_put_rule, RuleKind::Physical, "with a batched mask beside other indices",
                 {"self", "indices", "values"}});
  }
  for (const char* op : {"index_add", "index_add_", "index_copy", "index_copy_", "index_fill.int_Scalar",
                         "index_fill_.int_Scalar", "index_fill.int_Tensor", "index_fill_.int_Tensor"}) {
    t.push_back({op, &index_dim_rule, RuleKind::Physical, nullptr, {"self", "dim", "index"}});
  }
  for (const char* op : {"index_reduce", "index_reduce_"}) {
    t.push_back({op, &index_reduce_rule, RuleKind::Physical, nullptr,
                 {"self", "dim", "index", "source", "reduce", "include_self"}});
  }
  t.push_back({"gather", &gather_rule});
  t.push_back({"take", &take_rule, RuleKind::Physical, nullptr, {"self", "index"}});
  for (const char* op : {"put", "put_"}) {
    t.push_back({op, &put_rule, RuleKind::Physical, nullptr, {"self", "index", "source", "accumulate"}});
  }
  for (const char* op : {"masked_scatter", "masked_scatter_"}) {
    t.push_back({op, &masked_scatter_rule, RuleKind::Physical, nullptr, {"self", "mask", "source"}});
  }
  t.push_back({"masked_scatter_backward", &masked_scatter_backward_rule, RuleKind::Physical, nullptr,
               {"grad_output", "mask", "sizes"}});
  t.push_back({"masked_select", &masked_select_rule, RuleKind::Physical, nullptr, {"self", "mask"}});
  t.push_back({"as_strided_scatter", &as_strided_scatter_rule, RuleKind::Physical, nullptr,
               {"self", "src", "size", "stride", "storage_offset"}});
  for (const char* op : {"scatter.src", "scatter.value", "scatter.reduce", "scatter.value_reduce",
                         "scatter_add", "scatter_reduce.two", "scatter_.src", "scatter_.value",
                         "scatter_add_", "scatter_reduce_.two", "select_scatter", "slice_scatter",
                         "diagonal_scatter"}) {
    t.push_back({op, &dim_rule});
  }
}

} // namespace torchfunc
