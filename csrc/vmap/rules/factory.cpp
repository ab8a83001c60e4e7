// Factories that take a tensor: *_like keep the example's batch dim, new_* get
// one (so that later in-place writes of batched values into them work).
#include "../axis.h"
#include "../rule.h"

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/where.h>

namespace torchfunc {
namespace {

Outs like_rule(Call& call) {
  auto [value, bdim] = call.tensor(0);
  auto args = call.args;
  args[0] = axis::bdim_to_front(value, bdim);
  return {{call.call_below(std::move(args))[0], 0}};
}

Outs new_rule(Call& call) {
  auto [value, bdim] = call.tensor("self");
  auto args = call.args;
  args[call.index("self")] = value;
  auto sizes = call.arg("size").toDimVector();
  sizes.insert(sizes.begin(), call.batch_size);
  args[call.index("size")] = c10::IValue(c10::IntArrayRef(sizes));
  return {{call.call_below(std::move(args))[0], 0}};
}

// NOTE [Tangents with the layout of their primal]
// Forward AD calls _new_zeros_with_same_feature_meta(tangent, primal, n) to make a
// tangent with the primal's sizes, strides and storage offset, under n leading
// dims of the tangent. Here the examples are the feature part: the batch dim
// joins the leading dims. A batched primal contributes the layout of one
// example, in a storage just large enough for it (not the batched storage,
// which would make the result batch-size times larger than needed).
Outs new_zeros_with_same_feature_meta_rule(Call& call) {
  auto [self, self_bdim] = call.tensor("self");
  auto [other, other_bdim] = call.tensor("other");
  at::Tensor example = other;
  if (other_bdim.has_value()) {
    auto first = other.select(*other_bdim, 0);
    int64_t span = 1;
    for (int64_t d = 0; d < first.dim(); ++d) {
      if (first.size(d) == 0) span = 0;
      if (span > 0) span += (first.size(d) - 1) * first.stride(d);
    }
    example = at::empty({first.storage_offset() + span}, first.options())
                  .as_strided(first.sizes(), first.strides(), first.storage_offset());
  }
  auto args = call.args;
  args[call.index("self")] = axis::materialize(self, self_bdim, call.batch_size);
  args[call.index("other")] = example;
  args[call.index("self_num_batch_dims")] = call.arg("self_num_batch_dims").toInt() + 1;
  return {{call.call_below(std::move(args))[0], 0}};
}

// An endpoint of linspace/logspace as a [B, 1] column: a (batched) 0-dim tensor
// argument, or a Scalar shared by every example.
at::Tensor endpoint(const Call& call, const char* name, const at::TensorOptions& options) {
  const auto& v = call.arg(name);
  if (!v.isTensor()) return at::full({call.batch_size, 1}, v.toScalar(), options);
  auto [value, bdim] = call.tensor(name);
  return axis::materialize(value, bdim, call.batch_size).to(options).reshape({call.batch_size, 1});
}

// linspace/logspace with tensor endpoints: each example's row, computed as the eager
// kernel does (from start for the first half of the steps, from end for the rest);
// integer results (whose eager arithmetic is integral) loop.
Outs spaced_rule(Call& call, bool log) {
  const auto& dtype_arg = call.arg("dtype");
  const auto dtype = dtype_arg.isNone() ? c10::get_default_dtype_as_scalartype() : dtype_arg.toScalarType();
  if (!c10::isFloatingType(dtype)) return loop_rule(call);
  const auto steps = call.arg("steps").toInt();
  std::optional<c10::Device> device;
  for (const char* name : {"start", "end"}) {
    if (call.arg(name).isTensor()) device = call.tensor(name).first.device();
  }
  const auto options = at::TensorOptions().dtype(at::kDouble).device(*device);
  auto start = endpoint(call, "start", options);
  auto end = endpoint(call, "end", options);
  at::Tensor out;
  if (steps == 1) {
    out = start.clone();  // one step is the start (the eager kernel's first half covers it)
  } else {
    auto idx = at::arange(steps, options).unsqueeze(0);
    auto step = (end - start) / static_cast<double>(steps - 1);
    out = at::where(idx < steps / 2, start + idx * step, end - (steps - 1 - idx) * step);
  }
  if (log) out = at::pow(call.arg("base").toDouble(), out);
  return {{out.to(dtype), 0}};
}
Outs linspace_rule(Call& call) { return spaced_rule(call, /*log=*/false); }
Outs logspace_rule(Call& call) { return spaced_rule(call, /*log=*/true); }

} // namespace

void add_factory_rules(std::vector<RuleEntry>& t) {
  for (const char* op : {"linspace.Tensor_Tensor", "linspace.Tensor_Scalar", "linspace.Scalar_Tensor"}) {
    t.push_back({op, &linspace_rule, RuleKind::Physical, "for integer dtypes", {"start", "end", "steps", "dtype"}});
  }
  for (const char* op : {"logspace.Tensor_Tensor", "logspace.Tensor_Scalar", "logspace.Scalar_Tensor"}) {
    t.push_back({op, &logspace_rule, RuleKind::Physical, "for integer dtypes",
                 {"start", "end", "steps", "base", "dtype"}});
  }
  for (const char* op : {"empty_like", "zeros_like", "ones_like", "full_like"}) {
    t.push_back({op, &like_rule});
  }
  for (const char* op : {"new_empty", "new_zeros", "new_ones", "new_full"}) {
    t.push_back({op, &new_rule, RuleKind::Physical, nullptr, {"self", "size"}});
  }
  t.push_back({"_new_zeros_with_same_feature_meta", &new_zeros_with_same_feature_meta_rule, RuleKind::Physical,
               nullptr, {"self", "other", "self_num_batch_dims"}});
}

} // namespace torchfunc
