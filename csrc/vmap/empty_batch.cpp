// NOTE [An empty batch]
// With batch size 0 there is no example to run, and a rule that folds the batch into
// another dim cannot split it back out: B*N = 0 has lost N (the split divided by zero
// and killed the process). So a physical rule's call with an empty batch runs the op's
// meta kernel on one example's shapes instead, below every transform, and returns
// empty tensors of the output shapes with the batch dim (of size 0) in front.
// torch.func runs its rules there and gets shapes wrong (adaptive_avg_pool1d of
// examples [3, 8, 8] gives [0, 0, 8, 5]). Left to the rule: in-place and out= ops (their
// output is an argument), ops with outputs other than tensors, and calls whose meta
// kernel raises (no meta kernel, or an example the op refuses: the rule then raises, or
// returns what it returns for an empty batch).
#include "empty_batch.h"

#include "../op_traits.h"
#include "../stack.h"
#include "batched_tensor.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

namespace torchfunc {
namespace {

bool returns_only_tensors(const c10::FunctionSchema& schema) {
  for (const auto& r : schema.returns()) {
    const auto& type = *r.type();
    if (type.kind() != c10::TypeKind::TensorType &&
        !(type.kind() == c10::TypeKind::ListType &&
          type.castRaw<c10::ListType>()->getElementType()->kind() == c10::TypeKind::TensorType)) {
      return false;
    }
  }
  return !schema.returns().empty();
}

} // namespace

std::optional<Outs> empty_batch_outputs(const Call& call) {
  const auto& schema = call.schema();
  if (call.batch_size != 0 || is_inplace(schema) || writes_arguments(schema) || !returns_only_tensors(schema)) {
    return std::nullopt;
  }
  std::optional<c10::Device> device;
  // One example as a meta tensor: a tensor batched at this level loses its batch dim.
  auto example = [&](const at::Tensor& t) -> at::Tensor {
    if (!t.defined()) return t;
    auto [value, bdim] = unwrap_at(t, call.level);
    std::vector<int64_t> sizes(value.sizes().begin(), value.sizes().end());
    if (bdim) {
      sizes.erase(sizes.begin() + *bdim);
      if (!device) device = value.device();
    }
    return at::empty(sizes, value.options().device(c10::kMeta));
  };
  torch::jit::Stack meta = call.args;
  map_tensors(meta, meta.size(), example);
  if (!device) return std::nullopt;
  try {
    BelowEveryTransform below;
    call.op.callBoxed(meta);
  } catch (const c10::Error&) {
    return std::nullopt;
  }
  auto empty_batch = [&](const at::Tensor& r) {
    std::vector<int64_t> sizes{0};
    sizes.insert(sizes.end(), r.sizes().begin(), r.sizes().end());
    return at::empty(sizes, r.options().device(*device));
  };
  Outs outs;
  for (const auto& r : meta) {
    if (r.isTensor()) {
      outs.push_back({empty_batch(r.toTensor()), 0});
    } else {
      c10::List<at::Tensor> list;
      for (const at::Tensor& t : r.toTensorList()) list.push_back(empty_batch(t));
      outs.push_back({std::move(list), 0});
    }
  }
  return outs;
}

} // namespace torchfunc
