#include "interpreter.h"

#include "keys.h"

namespace torchfunc {

void Interpreter::process(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  switch (kind_) {
    case Kind::Vmap:
      return vmap_process(*this, op, stack);
    case Kind::Grad:
    case Kind::Jvp:
      return autodiff_process(*this, op, stack);
    case Kind::Functionalize:
      return functionalize_process(*this, op, stack);
  }
}

void Interpreter::send_to_next(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  switch (kind_) {
    case Kind::Vmap:
      return vmap_send_to_next(*this, op, stack);
    case Kind::Grad:
    case Kind::Jvp:
      return autodiff_send_to_next(*this, op, stack);
    case Kind::Functionalize:
      return functionalize_send_to_next(*this, op, stack);
  }
}

c10::DispatchKeySet keys_to_exclude(c10::DispatchKeySet own) {
  return transform_range() - c10::DispatchKeySet(kBackKey) - autocast_keys() - own;
}

} // namespace torchfunc
