// Ops that work along dims of their input: reductions, scans, softmax, sorting, FFTs,
// segment reductions.
// One generic rule reads the schema: arguments named like dims are shifted past
// the batch dim (moved to the front); for reductions, "no dim" means every
// logical dim. Full reductions without a dim argument get one-line rules that
// reduce the flattened example.
#include "../../errors.h"
#include "../../op_traits.h"
#include "../axis.h"
#include "../rule.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/all.h>
#include <ATen/ops/amax.h>
#include <ATen/ops/amin.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/any.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/argmin.h>
#include <ATen/ops/count_nonzero.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/median.h>
#include <ATen/ops/nanmedian.h>
#include <ATen/ops/norm.h>
#include <ATen/ops/prod.h>
#include <ATen/ops/sum.h>

#include <string_view>

namespace torchfunc {
namespace {

bool is_dim_name(const std::string& n) {
  return n == "dim" || n == "dims" || n == "dim0" || n == "dim1" || n == "dim2" ||
      n == "start_dim" || n == "end_dim" || n == "source" || n == "destination" || n == "dimension";
}

c10::IValue all_dims(int64_t rank) {
  std::vector<int64_t> dims;
  for (int64_t d = 1; d <= rank; ++d) dims.push_back(d);
  return c10::IValue(dims);
}

// NOTE [0-dim examples]
// Dims of a 0-dim tensor accept 0 and -1 as if it had one dim of size 1. The
// rule gives 0-dim examples that size-1 dim (physical [B, 1]) and removes it from
// outputs that kept it. Outputs take the rank of argument `shape_from` (self,
// except gather, whose output has the shape of its index).
Outs shift_dims(Call& call, bool none_means_all, size_t shape_from = 0) {
  const auto& sargs = call.schema().arguments();
  const int64_t rank = call.args[0].toTensor().dim();
  const bool zero_dim = rank == 0;
  const int64_t r = std::max<int64_t>(rank, 1);
  torch::jit::Stack physical = call.args;
  for (size_t i = 0; i < physical.size(); ++i) {
    auto& a = physical[i];
    if (a.isTensor() && a.toTensor().defined()) {
      auto [value, bdim] = call.tensor(i);
      auto v = axis::materialize(value, bdim, call.batch_size);
      a = zero_dim && v.dim() == 1 ? v.unsqueeze(1) : v;
      continue;
    }
    if (!is_dim_name(sargs[i].name())) {
      continue;
    }
    if (a.isInt()) {
      a = axis::physical_dim(a.toInt(), r);
    } else if (a.isIntList()) {
      auto dims = a.toDimVector();
      if (dims.empty() && none_means_all) {
        a = all_dims(r);
      } else {
        for (auto& d : dims) d = axis::physical_dim(d, r);
        a = c10::IValue(c10::IntArrayRef(dims));
      }
    } else if (a.isNone() && none_means_all) {
      a = all_dims(r);
    }
  }
  if (is_inplace(call.schema())) {
    TORCH_CHECK(call.tensor(0).second.has_value(), errors::inplace_on_unbatched(call.name()));
    call.call_below(std::move(physical));
    return {{call.args[0], std::nullopt}};
  }
  auto results = call.call_below(std::move(physical));
  Outs outs;
  const bool zero_dim_out = zero_dim && call.args[shape_from].toTensor().dim() == 0;
  for (auto& res : results) {
    if (zero_dim_out && res.isTensor() && res.toTensor().dim() == 2) {
      res = res.toTensor().squeeze(1);
    }
    outs.push_back({std::move(res), 0});
  }
  return outs;
}

Outs reduce_rule(Call& call) { return shift_dims(call, /*none_means_all=*/true); }

// The example flattened to [B, numel]: for full reductions.
at::Tensor flat(const Call& call) {
  auto [value, bdim] = call.tensor(0);
  const auto numel = call.args[0].toTensor().numel();
  return axis::bdim_to_front(value, bdim).reshape({call.batch_size, numel});
}

std::optional<at::ScalarType> dtype_arg(const Call& call, size_t i) {
  return call.args.size() > i && !call.args[i].isNone() ? std::optional(call.args[i].toScalarType())
                                                          : std::nullopt;
}

Outs sum_all(Call& call) { return {{at::sum(flat(call), 1, false, dtype_arg(call, 1)), 0}}; }
Outs mean_all(Call& call) { return {{at::mean(flat(call), 1, false, dtype_arg(call, 1)), 0}}; }
Outs prod_all(Call& call) { return {{at::prod(flat(call), 1, false, dtype_arg(call, 1)), 0}}; }
Outs max_all(Call& call) { return {{at::amax(flat(call), 1), 0}}; }
Outs min_all(Call& call) { return {{at::amin(flat(call), 1), 0}}; }
Outs any_all(Call& call) { return {{at::any(flat(call), 1), 0}}; }
Outs all_all(Call& call) { return {{at::all(flat(call), 1), 0}}; }
Outs median_all(Call& call) { return {{std::get<0>(at::median(flat(call), 1)), 0}}; }
Outs nanmedian_all(Call& call) { return {{std::get<0>(at::nanmedian(flat(call), 1)), 0}}; }
Outs norm_all(Call& call) {
  const auto p = call.arg("p").isNone() ? at::Scalar(2) : call.arg("p").toScalar();
  return {{at::norm(flat(call), p, 1), 0}};
}

// argmax/argmin: dim=None indexes the flattened example.
Outs arg_extremum(Call& call, bool is_max) {
  if (!call.arg("dim").isNone()) {
    return dim_rule(call);
  }
  const bool keepdim = call.arg("keepdim").toBool();
  auto idx = is_max ? at::argmax(flat(call), 1) : at::argmin(flat(call), 1);
  if (keepdim) {
    std::vector<int64_t> sizes(call.arg("self").toTensor().dim() + 1, 1);
    sizes[0] = call.batch_size;
    idx = idx.reshape(sizes);
  }
  return {{idx, 0}};
}
Outs argmax_rule(Call& call) { return arg_extremum(call, true); }

// aminmax and count_nonzero: dim=None reduces the flattened example (keepdim keeps
// every dim, with size 1).
Outs aminmax_rule(Call& call) {
  if (!call.arg("dim").isNone()) return dim_rule(call);
  auto [mn, mx] = at::aminmax(flat(call), 1);
  if (call.arg("keepdim").toBool()) {
    std::vector<int64_t> sizes(call.arg("self").toTensor().dim() + 1, 1);
    sizes[0] = call.batch_size;
    mn = mn.reshape(sizes);
    mx = mx.reshape(sizes);
  }
  return {{mn, 0}, {mx, 0}};
}
Outs count_nonzero_rule(Call& call) {
  if (!call.arg("dim").isNone()) return dim_rule(call);
  return {{at::count_nonzero(flat(call), std::optional<int64_t>(1)), 0}};
}
Outs argmin_rule(Call& call) { return arg_extremum(call, false); }

} // namespace

Outs dim_rule(Call& call) { return shift_dims(call, /*none_means_all=*/false); }
Outs gather_rule(Call& call) { return shift_dims(call, /*none_means_all=*/false, /*shape_from=*/2); }

// NOTE [Segments along one axis]
// segment_reduce reduces segments of `axis` (given by lengths or offsets) and keeps every
// other dim. With the segments shared by all examples, the batch dim goes right after
// axis: data [.., N, B, ..] reduces to [.., S, B, ..], and the backward's grad and output
// take the same place. Segments that differ per example are the kernel's own batched
// lengths (or offsets, one dim more than the examples' lengths, whose last dim is axis):
// every tensor batched in front, axis + 1.
Outs segment_reduce_rule(Call& call) {
  bool batched_segments = false;
  for (const char* name : {"lengths", "indices", "offsets"}) {
    const auto i = call.schema().argumentIndexWithName(name);
    if (!i.has_value()) continue;
    const auto t = call.optional_tensor(*i);
    if (!t.has_value() || !t->second.has_value()) continue;
    if (std::string_view(name) == "indices") return loop_rule(call);
    batched_segments = true;
  }
  const auto& logical = call.arg("data").toTensor();
  const int64_t axis = c10::maybe_wrap_dim(call.arg("axis").toInt(), std::max<int64_t>(logical.dim(), 1));
  if (batched_segments) {
    auto args = call.args;
    for (const char* name : {"data", "grad", "output", "lengths", "offsets"}) {
      const auto i = call.schema().argumentIndexWithName(name);
      if (!i.has_value() || !call.optional_tensor(*i).has_value()) continue;
      auto [value, bdim] = *call.optional_tensor(*i);
      args[*i] = axis::materialize(value, bdim, call.batch_size).contiguous();
    }
    args[call.index("axis")] = axis + 1;
    return {{call.call_below(std::move(args))[0], 0}};
  }
  auto args = call.args;
  for (const char* name : {"data", "grad", "output"}) {
    const auto i = call.schema().argumentIndexWithName(name);
    if (!i.has_value()) continue;
    auto [value, bdim] = call.tensor(*i);
    args[*i] = axis::materialize(value, bdim, call.batch_size).movedim(0, axis + 1).contiguous();
  }
  return {{call.call_below(std::move(args))[0], axis + 1}};
}

void add_dim_rules(std::vector<RuleEntry>& t) {
  t.push_back({"segment_reduce", &segment_reduce_rule, RuleKind::Physical, "with batched indices",
               {"data", "axis"}});
  t.push_back({"_segment_reduce_backward", &segment_reduce_rule, RuleKind::Physical, nullptr,
               {"grad", "output", "data", "axis"}});
  for (const char* op : {"sum.dim_IntList", "mean.dim", "nansum", "amax", "amin", "std.correction",
                         "var.correction", "std_mean.correction", "var_mean.correction", "logsumexp",
                         "linalg_vector_norm", "norm.ScalarOpt_dim", "norm.ScalarOpt_dim_dtype",
                         "any.dims", "all.dims", "any.dim", "all.dim", "count_nonzero.dim_IntList",
                         "prod.dim_int", "max.dim", "min.dim", "median.dim", "nanmedian.dim", "mode",
                         "kthvalue", "hash_tensor"}) {
    t.push_back({op, &reduce_rule});
  }
  for (const char* op : {"cumsum", "cumprod", "cummax", "cummin", "logcumsumexp", "_softmax",
                         "_log_softmax", "_softmax_backward_data", "_log_softmax_backward_data",
                         "sort", "sort.stable", "topk", "glu", "glu_backward", "glu_jvp", "_safe_softmax",
                         "rot90", "_fft_r2c", "_fft_c2c", "_fft_c2r"}) {
    t.push_back({op, &dim_rule});
  }
  t.push_back({"sum", &sum_all});
  t.push_back({"mean", &mean_all});
  t.push_back({"prod", &prod_all});
  t.push_back({"max", &max_all});
  t.push_back({"min", &min_all});
  t.push_back({"any", &any_all});
  t.push_back({"all", &all_all});
  t.push_back({"median", &median_all});
  t.push_back({"nanmedian", &nanmedian_all});
  t.push_back({"norm.Scalar", &norm_all, RuleKind::Physical, nullptr, {"self", "p"}});
  t.push_back({"aminmax", &aminmax_rule, RuleKind::Physical, nullptr, {"self", "dim", "keepdim"}});
  t.push_back({"count_nonzero", &count_nonzero_rule, RuleKind::Physical, nullptr, {"self", "dim"}});
  t.push_back({"argmax", &argmax_rule, RuleKind::Physical, nullptr, {"self", "dim", "keepdim"}});
  t.push_back({"argmin", &argmin_rule, RuleKind::Physical, nullptr, {"self", "dim", "keepdim"}});
}

} // namespace torchfunc
