#include "duals.h"

#include "grad_tensor.h"

#include <ATen/ops/zeros_like.h>

namespace torchfunc {

// NOTE [Dual tensors without make_dual]
// jvp attaches each tangent to a fresh GradTensor of its primal at the jvp level, and
// reads the tangent of each output back. torch's _make_dual and _unpack_dual do this
// through the dispatcher: an alias of the primal (and _fw_primal of each output),
// each sent through every level below, cost more than a cheap op of the function.
// The alias buys nothing here: the GradTensor is new, nobody else holds it. So
// make_duals lifts each tangent to the level as the interpreter would (an immutable
// GradTensor: a tangent is a capture, and its own forward gradient, if an outer jvp
// gave it one, stays out of this level) and sets it as the primal's forward gradient
// with torch's own _set_fw_grad, which makes the same layout checks (and the copy
// to the primal's strides) as _make_dual. unpack_duals reads an output's forward
// gradient only where the output is a GradTensor of this level: any other output
// (a capture, a tensor of a level below) does not depend on the primals here, even
// if an outer jvp gave it a forward gradient. The primal out is the output's value
// itself, not an alias. Under torch.export's pre-dispatch tracing, forward.py calls
// fwAD's functions instead, which that tracing intercepts.
std::vector<at::Tensor> make_duals(const std::vector<at::Tensor>& primals, const std::vector<at::Tensor>& tangents,
                                   int64_t level, int64_t dual_level) {
  TORCH_INTERNAL_ASSERT(primals.size() == tangents.size(), "make_duals: ", primals.size(), " primals, ",
                        tangents.size(), " tangents");
  std::vector<at::Tensor> duals;
  duals.reserve(primals.size());
  for (size_t i = 0; i < primals.size(); ++i) {
    auto dual = wrap_for_grad(primals[i], level);
    const auto tangent = wrap_for_grad(unwrap_if_dead(tangents[i]), level, /*is_immutable=*/true);
    dual._set_fw_grad(tangent, static_cast<uint64_t>(dual_level), /*is_inplace_op=*/false);
    duals.push_back(std::move(dual));
  }
  return duals;
}

std::pair<std::vector<at::Tensor>, std::vector<std::optional<at::Tensor>>> unpack_duals(
    const std::vector<at::Tensor>& outputs, int64_t level, int64_t dual_level, bool zeros_for_missing) {
  std::pair<std::vector<at::Tensor>, std::vector<std::optional<at::Tensor>>> result;
  auto& [primals, tangents] = result;
  primals.reserve(outputs.size());
  tangents.reserve(outputs.size());
  for (const auto& out : outputs) {
    auto* g = maybe_grad_tensor(out);
    at::Tensor tangent;
    if (g != nullptr && g->level() == level) {
      tangent = out._fw_grad(static_cast<uint64_t>(dual_level));
    }
    if (!tangent.defined() && zeros_for_missing) {
      tangent = at::zeros_like(out);  // lifted to this level, like the function's own ops
    }
    primals.push_back(unwrap_for_grad(out, level));
    tangents.push_back(tangent.defined() ? std::optional<at::Tensor>(unwrap_for_grad(tangent, level))
                                         : std::nullopt);
  }
  return result;
}

} // namespace torchfunc
