#pragma once
// Facts about an operator read off its schema and registrations, and walkers over
// the tensors among its arguments on a boxed stack.
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <functional>

namespace torchfunc {

// `self` is written and returned (add_, copy_, unsqueeze_, ...).
bool is_inplace(const c10::FunctionSchema& schema);
// Some argument other than a returned self is written (out= variants, ...).
bool writes_arguments(const c10::FunctionSchema& schema);
// "aten::name.overload" (or "aten::name"), as error messages show an op.
std::string display_name(const c10::OperatorHandle& op);
// Has a CompositeImplicitAutograd kernel: decomposes into other ops.
bool is_composite_implicit(const c10::OperatorHandle& op);

// Calls fn on every tensor among the top `n` IValues of `stack` (tensors, tensor
// lists, optional tensors), replacing it with the result.
void map_tensors(torch::jit::Stack& stack, size_t n,
                 const std::function<at::Tensor(const at::Tensor&)>& fn);
// True if pred holds for some tensor among the top `n` IValues.
bool any_tensor(const torch::jit::Stack& stack, size_t n,
                const std::function<bool(const at::Tensor&)>& pred);

} // namespace torchfunc
