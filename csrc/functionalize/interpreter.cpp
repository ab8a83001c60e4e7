// The functionalize interpreter. Its tensors are core's FunctionalTensorWrappers
// (Functionalize key), which torch's own functionalization kernels know how to
// run: while this level processes an op, the Functionalize key is left active
// (not excluded with the rest of the transform range), so an op with a
// FunctionalTensorWrapper argument meets those kernels, which replace mutations by
// out-of-place ops (and, with reapply_views off, views by their *_copy ops). The
// kernels unwrap their arguments and call the op again with Functionalize
// excluded; it falls to the back key and meets the interpreter below, so
// functionalize composes with the other transforms in any order.
//
// NOTE [Functionalize is not TLS-included]
// Core functorch TLS-includes Functionalize instead. With it included, the
// kernels of in-place ops first replay the op on meta tensors, excluding core's
// back key and the Python key but not ours: that replay would fall through our
// back key to the levels below (a grad level refuses it as a mutation of a
// captured tensor; make_fx records it). So the key only comes from the tensors,
// and outputs of ops that met no FunctionalTensorWrapper (factory ops, ops on
// captured tensors) are wrapped here, as the included key would have done. An
// output that is an input (an in-place op on a captured tensor) stays as it is.
#include "../interpreter.h"
#include "../keys.h"
#include "../op_traits.h"

#include <ATen/FunctionalTensorWrapper.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/util/SmallVector.h>

namespace torchfunc {

void functionalize_process(const Interpreter& self, const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  static const auto exclude = keys_to_exclude(c10::DispatchKeySet(c10::DispatchKey::Functionalize));
  const auto& schema = op.schema();
  c10::SmallVector<const c10::TensorImpl*, 8> inputs;
  any_tensor(*stack, schema.arguments().size(), [&](const at::Tensor& t) {
    inputs.push_back(t.unsafeGetTensorImpl());
    return false;
  });
  {
    c10::impl::ExcludeDispatchKeyGuard guard(exclude);
    at::functionalization::impl::FunctionalizationReapplyViewsGuard views(self.functionalize().reapply_views);
    op.callBoxed(stack);
  }
  map_tensors(*stack, schema.returns().size(), [&](const at::Tensor& t) {
    if (!t.defined() || at::functionalization::impl::isFunctionalTensor(t) ||
        std::find(inputs.begin(), inputs.end(), t.unsafeGetTensorImpl()) != inputs.end()) {
      return t;
    }
    return at::functionalization::impl::to_functional_tensor(t);
  });
}

void functionalize_send_to_next(const Interpreter&, const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  op.callBoxed(stack);
}

} // namespace torchfunc
