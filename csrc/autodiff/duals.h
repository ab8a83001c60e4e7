#pragma once
// jvp's dual tensors at a jvp level, made and taken apart without dispatching an op
// (NOTE [Dual tensors without make_dual] in duals.cpp).
#include <ATen/core/Tensor.h>

#include <optional>
#include <utility>
#include <vector>

namespace torchfunc {

// GradTensors at `level` for the primals, each with its tangent as forward gradient at
// torch's dual level `dual_level`.
std::vector<at::Tensor> make_duals(const std::vector<at::Tensor>& primals, const std::vector<at::Tensor>& tangents,
                                   int64_t level, int64_t dual_level);

// (primal, tangent) of each output of the function, both unwrapped from `level`. An
// output without a forward gradient at this level gets std::nullopt as tangent, or,
// with `zeros_for_missing`, zeros like it.
std::pair<std::vector<at::Tensor>, std::vector<std::optional<at::Tensor>>> unpack_duals(
    const std::vector<at::Tensor>& outputs, int64_t level, int64_t dual_level, bool zeros_for_missing);

} // namespace torchfunc
