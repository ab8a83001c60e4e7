"""torchfunc: composable function transforms for PyTorch (vmap, grad, vjp, jvp, jacrev,
jacfwd, hessian, linearize, functionalize) and the helpers around them (functional_call,
stack_module_state, ...): a drop-in for torch.func 2.13 running on its own C++ engine.

    from torchfunc import vmap, grad
    per_sample_grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
"""
from ._engine import _C
from . import autograd_function as _autograd_function, custom_ops as _custom_ops, debug as _debug
from . import tensor_methods as _tensor_methods, vmap_internals_guard as _vmap_internals_guard
from .autodiff import grad, grad_and_value, vjp
from .debug import debug_unwrap
from .einops import rearrange
from .explain import explain
from .forward import jvp, linearize
from .functionalize import functionalize
from .jacobians import hessian, jacfwd, jacrev
from .modules import functional_call, replace_all_batch_norm_modules_, stack_module_state
from .vmap import vmap
from . import experimental

_autograd_function.install()  # NOTE [autograd.Function through the levels]
_debug.install()  # NOTE [Printing wrapped tensors]
_custom_ops.install()  # NOTE [register_vmap rules on our batched key]
_tensor_methods.install()  # NOTE [Tensor methods that read type ids or storage]
_vmap_internals_guard.install()  # NOTE [Legacy vmap and our subclass marker]


def set_fallback_warning(enabled: bool) -> None:
    """Warn (UserWarning, mentioning "fallback" and the op) whenever vmap runs an op with no
    batching rule through the slow per-example loop. Off by default."""
    _C.set_fallback_warning(bool(enabled))


# torch.func 2.13's 15 names, then ours.
__all__ = ["vmap", "grad", "grad_and_value", "vjp", "jvp", "linearize", "jacrev", "jacfwd", "hessian",
           "functionalize", "functional_call", "stack_module_state", "replace_all_batch_norm_modules_",
           "debug_unwrap", "rearrange", "set_fallback_warning", "explain"]
__version__ = "0.1.0"
