// View and reshape ops. The batch dim moves to the front, dim arguments shift
// past it and size arguments gain the batch size; the result stays a view of
// the physical value, so in-place writes through it reach the original.
#include "../../errors.h"
#include "../axis.h"
#include "../batched_tensor.h"
#include "../rule.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/diag_embed.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/accumulate.h>

namespace torchfunc {
namespace {

bool is_dim_name(const std::string& n) {
  return n == "dim" || n == "dims" || n == "dim0" || n == "dim1" || n == "dim2" || n == "source" ||
      n == "destination" || n == "dimension";
}

// The tensor a view rule views is its op's first argument (self, or a backward's
// grad_output): these generic helpers read it from the schema's first slot.
at::Tensor front(const Call& call) {
  auto [value, bdim] = call.tensor(size_t{0});
  return axis::bdim_to_front(value, bdim);
}

int64_t rank(const Call& call) { return call.args[0].toTensor().dim(); }

// view, _unsafe_view and the copies name their sizes `size`; reshape names them `shape`.
size_t sizes_index(const Call& call) {
  const auto i = call.schema().argumentIndexWithName("size");
  return i.has_value() ? *i : call.index("shape");
}

// Shifts dim arguments (wrapped against the logical rank, at least 1).
Outs view_dim_rule(Call& call) {
  const auto& sargs = call.schema().arguments();
  const bool zero_dim = rank(call) == 0; // see NOTE [0-dim examples] in dims.cpp
  const int64_t r = std::max<int64_t>(rank(call), 1);
  torch::jit::Stack physical = call.args;
  physical[0] = zero_dim ? front(call).unsqueeze(1) : front(call);
  for (size_t i = 1; i < physical.size(); ++i) {
    auto& a = physical[i];
    if (!is_dim_name(sargs[i].name())) continue;
    if (a.isInt()) {
      a = axis::physical_dim(a.toInt(), r);
    } else if (a.isIntList()) {
      auto dims = a.toDimVector();
      for (auto& d : dims) d = axis::physical_dim(d, r);
      a = c10::IValue(c10::IntArrayRef(dims));
    }
  }
  auto results = call.call_below(std::move(physical));
  Outs outs;
  for (auto& res : results) {
    if (zero_dim && res.isTensor() && res.toTensor().dim() == 2) res = res.toTensor().squeeze(1);
    outs.push_back({std::move(res), 0});
  }
  return outs;
}

// Prepends the batch size to the `size` argument (view, _unsafe_view, ...).
Outs size_rule(Call& call) {
  torch::jit::Stack physical = call.args;
  physical[0] = front(call);
  const auto i = sizes_index(call);
  auto sizes = call.args[i].toDimVector();
  sizes.insert(sizes.begin(), call.batch_size);
  physical[i] = c10::IValue(c10::IntArrayRef(sizes));
  auto results = call.call_below(std::move(physical));
  return {{std::move(results[0]), 0}};
}

// NOTE [_unsafe_view of batched results]
// Composite kernels call _unsafe_view on a result they just computed, trusting it to
// be contiguous as an eager result is. A batched result need not be: a pointwise op
// over operands batched along different dims lays its physical value out like its
// operands. So the batched _unsafe_view is a reshape (a copy only where needed).
Outs unsafe_view_rule(Call& call) {
  auto sizes = call.arg("size").toDimVector();
  sizes.insert(sizes.begin(), call.batch_size);
  return {{front(call).reshape(sizes), 0}};
}

Outs expand_rule(Call& call) {
  auto sizes = call.arg("size").toDimVector();
  auto x = axis::pad_to_rank(front(call), static_cast<int64_t>(sizes.size()));
  sizes.insert(sizes.begin(), call.batch_size);
  return {{x.expand(sizes, call.arg("implicit").toBool()), 0}};
}

Outs repeat_rule(Call& call) {
  auto repeats = call.arg("repeats").toDimVector();
  auto x = axis::pad_to_rank(front(call), static_cast<int64_t>(repeats.size()));
  repeats.insert(repeats.begin(), 1);
  return {{x.repeat(repeats), 0}};
}

Outs unsqueeze_rule(Call& call) {
  const auto d = axis::physical_dim(call.arg("dim").toInt(), rank(call) + 1);
  return {{front(call).unsqueeze(d), 0}};
}

c10::DimVector squeezable_dims(const Call& call) {
  const auto& t = call.arg("self").toTensor();
  c10::DimVector dims;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.size(d) == 1) dims.push_back(d + 1);
  }
  return dims;
}

Outs squeeze_rule(Call& call) { return {{front(call).squeeze(squeezable_dims(call)), 0}}; }

// A 0-dim example unfolds as if it had one dim of size 1 (see NOTE [0-dim examples]
// in dims.cpp): its result has one dim, the window, so the stand-in dim goes.
Outs unfold_rule(Call& call) {
  if (rank(call) != 0) return view_dim_rule(call);
  auto args = call.args;
  args[0] = front(call).unsqueeze(1);
  args[call.index("dimension")] = axis::physical_dim(call.arg("dimension").toInt(), 1);
  return {{call.call_below(std::move(args))[0].toTensor().squeeze(1), 0}};
}

Outs permute_rule(Call& call) {
  const auto r = rank(call);
  c10::DimVector dims{0};
  for (auto d : call.arg("dims").toDimVector()) dims.push_back(axis::physical_dim(d, r));
  return {{front(call).permute(dims), 0}};
}

Outs t_rule(Call& call) {
  auto x = front(call);
  return {{rank(call) == 2 ? x.transpose(1, 2) : x, 0}};
}

// roll without dims rolls the flattened example.
Outs roll_rule(Call& call) {
  if (!call.arg("dims").toDimVector().empty()) return view_dim_rule(call);
  const auto& t = call.arg("self").toTensor();
  auto flat = front(call).reshape({call.batch_size, t.numel()});
  return {{flat.roll(call.arg("shifts").toDimVector(), {1}).reshape(front(call).sizes()), 0}};
}

// The result has one dim more than the example: dims wrap against rank + 1.
Outs diag_embed_rule(Call& call) {
  const auto r = rank(call) + 1;
  return {{at::diag_embed(front(call), call.arg("offset").toInt(), axis::physical_dim(call.arg("dim1").toInt(), r),
                          axis::physical_dim(call.arg("dim2").toInt(), r)), 0}};
}

// In-place views change the BatchedTensor itself: its physical value becomes
// the corresponding view of the old value.
Outs replace_value(Call& call, const at::Tensor& new_value) {
  auto* self = maybe_batched(call.arg("self").toTensor());
  self->set_value(new_value, 0);
  return {{call.arg("self"), std::nullopt}};
}

Outs unsqueeze_inplace(Call& call) {
  return replace_value(call, front(call).unsqueeze(axis::physical_dim(call.arg("dim").toInt(), rank(call) + 1)));
}
// Squeezing a 0-dim example changes nothing.
Outs squeeze_inplace(Call& call) { return replace_value(call, front(call).squeeze(squeezable_dims(call))); }
Outs squeeze_dim_inplace(Call& call) {
  if (rank(call) == 0) return {{call.arg("self"), std::nullopt}};
  return replace_value(call, front(call).squeeze(axis::physical_dim(call.arg("dim").toInt(), rank(call))));
}
Outs squeeze_dims_inplace(Call& call) {
  if (rank(call) == 0) return {{call.arg("self"), std::nullopt}};
  auto dims = call.arg("dim").toDimVector();
  for (auto& d : dims) d = axis::physical_dim(d, rank(call));
  return replace_value(call, front(call).squeeze(dims));
}

// resize_ to another shape reinterprets each example's memory as a C-contiguous
// tensor of that shape (the tail uninitialized when it grows). That is only the
// same for every example when the examples are contiguous and one after another:
// the batch dim at 0 of a contiguous value. The BatchedTensor then gets fresh
// memory holding each example's first elements.
Outs resize_to(Call& call, c10::IntArrayRef new_sizes) {
  auto [value, bdim] = call.tensor("self");
  TORCH_CHECK(bdim.has_value(), errors::inplace_on_unbatched(call.name()));
  const auto& logical = call.arg("self").toTensor();
  if (logical.sizes() == new_sizes) return {{call.arg("self"), std::nullopt}};
  TORCH_CHECK(bdim == 0 && value.is_contiguous(),
              "vmap: ", call.name(), " to a new shape needs each example to be contiguous (the batch dim at 0 "
              "of a contiguous tensor), but this one is batched along dim ", bdim.value_or(-1), " of a tensor "
              "with strides ", value.strides(), ". Resize a copy instead: x = x.clone(memory_format="
              "torch.contiguous_format) inside the function, or vmap with in_dims=0 over a contiguous input.");
  const int64_t numel = c10::multiply_integers(new_sizes);
  auto flat = value.reshape({call.batch_size, logical.numel()});
  auto fresh = at::empty({call.batch_size, numel}, value.options());
  const auto kept = std::min<int64_t>(numel, logical.numel());
  fresh.narrow(1, 0, kept).copy_(flat.narrow(1, 0, kept));
  c10::DimVector sizes(new_sizes.begin(), new_sizes.end());
  sizes.insert(sizes.begin(), call.batch_size);
  return replace_value(call, fresh.view(sizes));
}

bool contiguous_format(const Call& call) {
  const auto& format = call.arg("memory_format");
  return format.isNone() || format.toMemoryFormat() == at::MemoryFormat::Contiguous;
}

Outs resize_inplace(Call& call) {
  TORCH_CHECK(contiguous_format(call), "vmap: resize_ supports only memory_format=torch.contiguous_format "
              "under vmap; resize the tensor outside vmap instead.");
  return resize_to(call, call.arg("size").toDimVector());
}
// resize_as_ reads only the shape of `the_template`, which every example shares: an
// unbatched self is resized once, to the examples' shape, and stays unbatched.
Outs resize_as_inplace(Call& call) {
  TORCH_CHECK(contiguous_format(call), "vmap: resize_as_ supports only memory_format=torch.contiguous_format "
              "under vmap; resize the tensor outside vmap instead.");
  const auto sizes = call.arg("the_template").toTensor().sizes();
  auto [self, self_bdim] = call.tensor("self");
  if (!self_bdim.has_value()) {
    self.resize_(sizes);
    return {{call.arg("self"), std::nullopt}};
  }
  return resize_to(call, sizes);
}
Outs transpose_inplace(Call& call) {
  if (rank(call) == 0) return {{call.arg("self"), std::nullopt}}; // transposing a 0-dim example changes nothing
  const auto r = rank(call);
  return replace_value(call, front(call).transpose(axis::physical_dim(call.arg("dim0").toInt(), r),
                                                   axis::physical_dim(call.arg("dim1").toInt(), r)));
}
Outs t_inplace(Call& call) {
  auto x = front(call);
  return replace_value(call, rank(call) == 2 ? x.transpose(1, 2) : x);
}

// Backward of select/slice/diagonal: zeros of the input's shape (input_sizes) with the
// gradient written into the part the view selects. `part` takes the zeros and
// the logical rank of the input.
template <typename Part>
Outs into_zeros(Call& call, Part part) {
  auto sizes = call.arg("input_sizes").toDimVector();
  const auto r = static_cast<int64_t>(sizes.size());
  sizes.insert(sizes.begin(), call.batch_size);
  auto [grad, grad_bdim] = call.tensor("grad_output");
  auto g = axis::materialize(grad, grad_bdim, call.batch_size);
  auto out = at::zeros(sizes, g.options());
  part(out, r).copy_(g);
  return {{out, 0}};
}

Outs select_backward_rule(Call& call) {
  return into_zeros(call, [&](const at::Tensor& z, int64_t r) {
    return z.select(axis::physical_dim(call.arg("dim").toInt(), r), call.arg("index").toInt());
  });
}

Outs slice_backward_rule(Call& call) {
  return into_zeros(call, [&](const at::Tensor& z, int64_t r) {
    return z.slice(axis::physical_dim(call.arg("dim").toInt(), r), call.arg("start").toInt(), call.arg("end").toInt(),
                   call.arg("step").toInt());
  });
}

Outs diagonal_backward_rule(Call& call) {
  return into_zeros(call, [&](const at::Tensor& z, int64_t r) {
    return z.diagonal(call.arg("offset").toInt(), axis::physical_dim(call.arg("dim1").toInt(), r),
                      axis::physical_dim(call.arg("dim2").toInt(), r));
  });
}

// An uninitialized tensor with per-example strides: examples are laid out one
// after another, each spanning what its strides reach.
Outs new_empty_strided_rule(Call& call) {
  auto sizes = call.arg("size").toDimVector();
  auto strides = call.arg("stride").toDimVector();
  int64_t span = 1;
  for (size_t d = 0; d < sizes.size(); ++d) span += (sizes[d] - 1) * strides[d];
  sizes.insert(sizes.begin(), call.batch_size);
  strides.insert(strides.begin(), std::max<int64_t>(span, 1));
  auto args = call.args;
  args[call.index("self")] = front(call);
  args[call.index("size")] = c10::IValue(c10::IntArrayRef(sizes));
  args[call.index("stride")] = c10::IValue(c10::IntArrayRef(strides));
  return {{call.call_below(std::move(args))[0], 0}};
}

// Views with explicit strides: the batch dim keeps the value's own stride; the
// storage offset is example 0's (a BatchedTensor reports its value's offset).
Outs as_strided_rule(Call& call) {
  auto x = front(call);
  auto sizes = call.arg("size").toDimVector();
  auto strides = call.arg("stride").toDimVector();
  sizes.insert(sizes.begin(), call.batch_size);
  strides.insert(strides.begin(), x.stride(0));
  // _reshape_alias has no storage_offset: the value's own.
  const auto i = call.schema().argumentIndexWithName("storage_offset");
  const auto offset = i.has_value() && !call.args[*i].isNone() ? call.args[*i].toInt() : x.storage_offset();
  return {{x.as_strided(sizes, strides, offset), 0}};
}

} // namespace

void add_view_rules(std::vector<RuleEntry>& t) {
  for (const char* op : {"select.int", "slice.Tensor", "transpose.int", "diagonal", "unbind.int",
                         "split.Tensor", "split_with_sizes", "movedim.int", "movedim.intlist", "squeeze.dim",
                         "squeeze.dims", "flip", "narrow_copy", "view.dtype", "select_copy.int",
                         "slice_copy.Tensor", "transpose_copy.int", "diagonal_copy", "unbind_copy.int",
                         "split_copy.Tensor", "split_with_sizes_copy", "squeeze_copy.dim",
                         "squeeze_copy.dims", "unsafe_split.Tensor", "unsafe_split_with_sizes", "view_as_complex",
                         "view_as_real"}) {
    t.push_back({op, &view_dim_rule});
  }
  t.push_back({"_unsafe_view", &unsafe_view_rule});
  for (const char* op : {"view", "view_copy", "_reshape_copy", "reshape"}) {
    t.push_back({op, &size_rule});
  }
  t.push_back({"expand", &expand_rule});
  t.push_back({"expand_copy", &expand_rule});
  t.push_back({"repeat", &repeat_rule});
  t.push_back({"unsqueeze", &unsqueeze_rule});
  t.push_back({"unsqueeze_copy", &unsqueeze_rule});
  t.push_back({"squeeze", &squeeze_rule});
  t.push_back({"squeeze_copy", &squeeze_rule});
  t.push_back({"permute", &permute_rule});
  t.push_back({"permute_copy", &permute_rule});
  t.push_back({"t", &t_rule});
  t.push_back({"roll", &roll_rule});
  t.push_back({"diag_embed", &diag_embed_rule});
  t.push_back({"t_copy", &t_rule});
  t.push_back({"unsqueeze_", &unsqueeze_inplace});
  t.push_back({"squeeze_", &squeeze_inplace});
  t.push_back({"squeeze_.dim", &squeeze_dim_inplace});
  t.push_back({"squeeze_.dims", &squeeze_dims_inplace});
  t.push_back({"resize_", &resize_inplace});
  t.push_back({"resize_as_", &resize_as_inplace, RuleKind::Physical, nullptr, {"self", "the_template"}});
  t.push_back({"unfold", &unfold_rule});
  t.push_back({"unfold_copy", &unfold_rule});
  t.push_back({"transpose_", &transpose_inplace});
  t.push_back({"t_", &t_inplace});
  t.push_back({"select_backward", &select_backward_rule});
  t.push_back({"slice_backward", &slice_backward_rule});
  t.push_back({"as_strided", &as_strided_rule});
  t.push_back({"diagonal_backward", &diagonal_backward_rule});
  t.push_back({"new_empty_strided", &new_empty_strided_rule});
  t.push_back({"_reshape_alias", &as_strided_rule});
}

} // namespace torchfunc
