// Pointwise ops: one generic rule for every op tagged pointwise (registered by
// plumbing.cpp for the whole family), plus the few untagged ops that behave the
// same way. Functional, in-place and out= forms share the rule.
#include "../../errors.h"
#include "../axis.h"
#include "../fallback.h"
#include "../rule.h"
#include "../../op_traits.h"

#include <ATen/core/Tensor.h>
#include <ATen/ExpandUtils.h>
#include <ATen/native/TypeProperties.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <ATen/ops/where.h>

namespace torchfunc {
namespace {

bool is_tensor_like(const c10::IValue& v) { return v.isTensor(); }

// Scalars that take part in type promotion (alpha, value, ... do not).
bool promotes(const c10::Argument& arg) {
  const auto& n = arg.name();
  return n == "other" || n == "self" || n == "exponent";
}

// NOTE [Type promotion of 0-dim BatchedTensors]
// A logical 0-dim tensor is a "dimensionless" operand for type promotion, but
// its physical value has the batch dim, which makes it a full operand: for
// float32 x[B] and float64 scalar-tensor s, logically x + s is float64 while the
// physical add would be float32. Compute the logical result type, and cast the
// operands to it where the physical call would disagree.
std::optional<at::ScalarType> logical_promotion(const Call& call) {
  const auto& schema_args = call.schema().arguments();
  bool batched_zero_dim = false;
  at::native::ResultTypeState logical{};
  at::native::ResultTypeState physical{};
  int operands = 0;
  for (size_t i = 0; i < call.args.size(); ++i) {
    const auto& a = call.args[i];
    if (a.isTensor() && a.toTensor().defined()) {
      const auto& t = a.toTensor();
      auto [value, bdim] = call.tensor(i);
      batched_zero_dim |= bdim.has_value() && t.dim() == 0;
      logical = at::native::update_result_type_state(t, logical);
      physical = at::native::update_result_type_state(value, physical);
      ++operands;
    } else if (a.isScalar() && promotes(schema_args[i])) {
      logical = at::native::update_result_type_state(a.toScalar(), logical);
      physical = at::native::update_result_type_state(a.toScalar(), physical);
      ++operands;
    }
  }
  if (!batched_zero_dim || operands < 2) {
    return std::nullopt;
  }
  const auto want = at::native::result_type(logical);
  if (want == at::native::result_type(physical)) {
    return std::nullopt;
  }
  return want;
}

} // namespace

// An out= form whose out tensor is batched but whose inputs are not: the kernel would
// compute the per-example shape and resize the physical out to it. Compute the result
// once and broadcast it into every example.
Outs out_of_unbatched_inputs(Call& call) {
  const auto functional = out_functional_form(call.op);
  TORCH_CHECK(functional.has_value(), errors::out_into_unbatched(call.name()));
  return run_out_op_through(call, *functional, [&](size_t i, const at::Tensor& result) {
    auto [value, bdim] = call.tensor(i);
    axis::bdim_to_front(value, bdim).copy_(result);
  });
}

Outs pointwise_rule(Call& call) {
  const auto& schema = call.schema();
  const auto name = call.name();
  const bool inplace = is_inplace(schema);
  const auto& sargs = schema.arguments();
  if (!inplace && writes_arguments(schema)) {
    bool batched_input = false;
    for (size_t i = 0; i < call.args.size(); ++i) {
      const bool written = sargs[i].alias_info() != nullptr && sargs[i].alias_info()->isWrite();
      batched_input |= !written && is_tensor_like(call.args[i]) && call.tensor(i).second.has_value();
    }
    if (!batched_input) return out_of_unbatched_inputs(call);
  }
  int64_t rank = 0;
  for (size_t i = 0; i < call.args.size(); ++i) {
    if (is_tensor_like(call.args[i]) && call.args[i].toTensor().defined()) {
      rank = std::max<int64_t>(rank, call.args[i].toTensor().dim());
    }
  }
  const auto promote_to = logical_promotion(call);
  torch::jit::Stack physical = call.args;
  Outs written; // out= arguments, returned as the caller's BatchedTensors
  for (size_t i = 0; i < call.args.size(); ++i) {
    if (!is_tensor_like(call.args[i]) || !call.args[i].toTensor().defined()) {
      continue;
    }
    auto [value, bdim] = call.tensor(i);
    const auto* alias = sargs[i].alias_info();
    const bool written_arg = alias != nullptr && alias->isWrite();
    if (written_arg) {
      TORCH_CHECK(bdim.has_value(), errors::inplace_on_unbatched(name));
      physical[i] = axis::bdim_to_front(value, bdim);
      if (!inplace) {
        written.push_back({call.args[i], std::nullopt});
      }
      continue;
    }
    at::Tensor v = bdim.has_value() ? axis::pad_to_rank(axis::bdim_to_front(value, bdim), rank) : value;
    if (promote_to.has_value() && v.scalar_type() != at::kBool && v.scalar_type() != *promote_to) {
      v = v.to(*promote_to);
    }
    physical[i] = v;
  }
  if (inplace) {
    TORCH_CHECK(call.tensor(0).second.has_value(), errors::inplace_on_unbatched(name));
    call.call_below(std::move(physical));
    return {{call.args[0], std::nullopt}};
  }
  auto results = call.call_below(std::move(physical));
  if (!written.empty()) {
    return written;
  }
  Outs outs;
  for (auto& r : results) {
    outs.push_back({std::move(r), 0});
  }
  return outs;
}

// Pointwise kernels that do not broadcast (gelu_backward's oneDNN path): every
// operand expanded to the common physical shape first.
Outs expanded_pointwise_rule(Call& call) {
  int64_t rank = 0;
  for (const auto& a : call.args) {
    if (a.isTensor()) rank = std::max<int64_t>(rank, a.toTensor().dim());
  }
  torch::jit::Stack physical = call.args;
  std::vector<at::Tensor> operands;
  std::vector<size_t> where;
  for (size_t i = 0; i < call.args.size(); ++i) {
    if (!call.args[i].isTensor()) continue;
    auto [value, bdim] = call.tensor(i);
    operands.push_back(axis::pad_to_rank(axis::materialize(value, bdim, call.batch_size), rank));
    where.push_back(i);
  }
  auto shape = at::infer_size_dimvector(operands[0].sizes(), operands[0].sizes());
  for (const auto& t : operands) shape = at::infer_size_dimvector(shape, t.sizes());
  for (size_t k = 0; k < where.size(); ++k) physical[where[k]] = operands[k].expand(shape);
  return {{call.call_below(std::move(physical))[0], 0}};
}

// masked_fill with a tensor value: the value must be 0-dim, which a batched
// value is not physically, so the fill becomes a where. The result broadcasts
// self against the mask.
Outs masked_fill_tensor_rule(Call& call) {
  const int64_t rank = std::max(call.arg("self").toTensor().dim(), call.arg("mask").toTensor().dim());
  auto [self, self_bdim] = call.tensor("self");
  auto [mask, mask_bdim] = call.tensor("mask");
  auto [value, value_bdim] = call.tensor("value");
  auto s = self_bdim ? axis::pad_to_rank(axis::bdim_to_front(self, self_bdim), rank) : self;
  auto m = mask_bdim ? axis::pad_to_rank(axis::bdim_to_front(mask, mask_bdim), rank) : mask;
  auto v = value_bdim ? axis::pad_to_rank(axis::bdim_to_front(value, value_bdim), rank) : value;
  auto filled = at::where(m, v.to(s.scalar_type()), s);
  if (is_inplace(call.schema())) {
    TORCH_CHECK(self_bdim.has_value(), errors::inplace_on_unbatched(call.name()));
    s.copy_(filled);
    return {{call.arg("self"), std::nullopt}};
  }
  return {{filled, 0}};
}

// _to_copy/clone into channels_last: the format is defined for the example's
// rank (4 or 5), not the physical one. Each example gets the format's strides,
// examples one after another.
Outs memory_format_rule(Call& call) {
  const size_t format_arg = call.index("memory_format");
  const auto& arg = call.args[format_arg];
  const auto format = arg.isNone() ? at::MemoryFormat::Preserve : arg.toMemoryFormat();
  if (format != at::MemoryFormat::ChannelsLast && format != at::MemoryFormat::ChannelsLast3d) {
    return pointwise_rule(call);
  }
  auto args = call.args;
  args[format_arg] = c10::IValue();
  auto [value, bdim] = call.tensor("self");
  args[call.index("self")] = axis::bdim_to_front(value, bdim);
  auto converted = call.call_below(std::move(args))[0].toTensor();
  const auto& logical = call.arg("self").toTensor();
  auto strides = at::empty(logical.sizes(), at::TensorOptions().device(at::kMeta).memory_format(format)).strides().vec();
  auto sizes = converted.sizes().vec();
  strides.insert(strides.begin(), std::max<int64_t>(logical.numel(), 1));
  auto out = at::empty_strided(sizes, strides, converted.options());
  out.copy_(converted);
  return {{out, 0}};
}

void add_pointwise_rules(std::vector<RuleEntry>& t) {
  t.push_back({"_to_copy", &memory_format_rule, RuleKind::Physical, nullptr, {"self", "memory_format"}});
  t.push_back({"gelu_backward", &expanded_pointwise_rule});
  t.push_back({"clone", &memory_format_rule, RuleKind::Physical, nullptr, {"self", "memory_format"}});
  for (const char* op : {"masked_fill.Tensor", "masked_fill_.Tensor"}) {
    t.push_back({op, &masked_fill_tensor_rule, RuleKind::Physical, nullptr, {"self", "mask", "value"}});
  }
  // Untagged ops that broadcast their tensor operands like pointwise ops.
  for (const char* op : {"copy_", "zero_", "fill_.Scalar", "masked_fill.Scalar",
                         "masked_fill_.Scalar", "where.self", "lerp.Scalar", "lerp.Tensor",
                         "detach", "alias", "lift_fresh", "positive",
                         "_conj", "_neg_view", "resolve_conj", "resolve_neg", "_conj_physical",
                         "threshold_backward", "sigmoid_backward", "tanh_backward",
                         "silu_backward", "hardtanh_backward", "elu_backward",
                         "leaky_relu_backward", "softplus_backward", "hardsigmoid_backward",
                         "hardswish_backward", "mish_backward", "logit_backward",
                         "log_sigmoid_forward", "log_sigmoid_backward", "rsub.Tensor", "rsub.Scalar",
                         "floor_divide", "floor_divide_.Tensor", "floor_divide.Scalar", "hardswish", "alias_copy", "complex", "polar", "isnan", "isinf", "isfinite", "sign", "nan_to_num", "bitwise_not",
                         "logical_not", "abs", "neg", "reciprocal", "sqrt", "rsqrt", "exp", "log",
                         "softshrink_backward", "hardshrink_backward", "fill.Scalar",
                         "_prelu_kernel", "_prelu_kernel_backward", "rrelu_with_noise_backward"}) {
    t.push_back({op, &pointwise_rule});
  }
}

} // namespace torchfunc
