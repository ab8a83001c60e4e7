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

} // namespace torchfunc
