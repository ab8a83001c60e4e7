#include "op_traits.h"

namespace torchfunc {

bool is_inplace(const c10::FunctionSchema& schema) {
  const auto& args = schema.arguments();
  const auto& rets = schema.returns();
  if (args.empty() || rets.size() != 1) {
    return false;
  }
  const auto* arg_alias = args[0].alias_info();
  const auto* ret_alias = rets[0].alias_info();
  return arg_alias != nullptr && arg_alias->isWrite() && ret_alias != nullptr &&
      ret_alias->isWrite() && arg_alias->beforeSets() == ret_alias->beforeSets();
}

bool writes_arguments(const c10::FunctionSchema& schema) {
  const auto& args = schema.arguments();
  for (size_t i = is_inplace(schema) ? 1 : 0; i < args.size(); ++i) {
    const auto* alias = args[i].alias_info();
    if (alias != nullptr && alias->isWrite()) {
      return true;
    }
  }
  return false;
}

std::string display_name(const c10::OperatorHandle& op) {
  const auto& n = op.schema().operator_name();
  return n.overload_name.empty() ? n.name : n.name + "." + n.overload_name;
}

bool is_composite_implicit(const c10::OperatorHandle& op) {
  return op.hasKernelForDispatchKey(c10::DispatchKey::CompositeImplicitAutograd);
}

void map_tensors(torch::jit::Stack& stack, size_t n,
                 const std::function<at::Tensor(const at::Tensor&)>& fn) {
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

bool any_tensor(const torch::jit::Stack& stack, size_t n,
                const std::function<bool(const at::Tensor&)>& pred) {
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
