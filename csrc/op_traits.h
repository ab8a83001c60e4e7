#pragma once
// Facts about an operator read off its schema and registrations, and walkers over
// the tensors among its arguments on a boxed stack.
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>


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
// lists, optional tensors), replacing it with the result. (Templates, not
// std::function: they run on every op at every level, and a std::function of a
// lambda capturing more than two pointers allocates.)
template <typename Fn>
void map_tensors(torch::jit::Stack& stack, size_t n, Fn&& fn) {
  const auto begin = stack.size() - n;
  for (size_t i = begin; i < stack.size(); ++i) {
    auto& iv = stack[i];
    if (iv.isTensor()) {
      iv = fn(iv.toTensor());
    } else if (iv.isTensorList()) {
      // Build a new list: a boxed list may share its storage with the caller's.
      c10::List<at::Tensor> out;
      for (const at::Tensor& t : iv.toTensorList()) {
        out.push_back(fn(t));
      }
      iv = std::move(out);
    } else if (iv.isList() &&
               iv.toList().elementType()->isSubtypeOf(*c10::OptionalType::ofTensor())) {
      c10::List<std::optional<at::Tensor>> out;
      for (const c10::IValue& e : iv.toListRef()) {
        out.push_back(e.isTensor() ? std::optional<at::Tensor>(fn(e.toTensor())) : std::nullopt);
      }
      iv = std::move(out);
    }
  }
}

// True if pred holds for some tensor among the top `n` IValues.
template <typename Pred>
bool any_tensor(const torch::jit::Stack& stack, size_t n, Pred&& pred) {
  const auto begin = stack.size() - n;
  for (size_t i = begin; i < stack.size(); ++i) {
    const auto& iv = stack[i];
    if (iv.isTensor()) {
      if (pred(iv.toTensor())) return true;
    } else if (iv.isTensorList()) {
      for (const at::Tensor& t : iv.toTensorList()) {
        if (pred(t)) return true;
      }
    } else if (iv.isList()) {
      for (const c10::IValue& e : iv.toListRef()) {
        if (e.isTensor() && pred(e.toTensor())) return true;
      }
    }
  }
  return false;
}

} // namespace torchfunc
