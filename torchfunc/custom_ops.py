"""Vmap rules of torch.library custom ops (``register_vmap``) under torchfunc.vmap.

NOTE [register_vmap rules on our batched key]
``torch.library.register_vmap(op, rule)`` and ``CustomOpDef.register_vmap(rule)`` put
a kernel on core functorch's batched key, which our BatchedTensors do not carry, so
under our vmap such an op would take the per-example loop. ``install()`` wraps both
registration functions so that each rule is also registered, as a Python kernel, on
our batched key (csrc/keys.h); custom ops whose rule was registered before torchfunc
was imported are found in torch's custom-op table. The kernel runs while our vmap
level processes the op, exactly like a physical batching rule: it unwraps the
level's BatchedTensors into (value, in_dim) pairs, calls the rule with
``VmapInfo(batch_size, randomness)`` with our batched key excluded (its ops go to the
level below), and batches the outputs along the returned out_dims. With no input
batched at the level, the op itself is called below the level.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch._library.custom_ops as _custom_ops

from ._engine import _C
from ._pytree import tree_flatten
from .autograd_function import VmapInfo, _unwrap_batched, _wrap_batched

__all__ = ["install"]

_LIBRARIES: dict[str, torch.library.Library] = {}
_REGISTERED: set[str] = set()


def _register(qualname: str, rule: Callable[[], Callable | None]) -> None:
    """Register our batched-key kernel for `qualname`; `rule()` gives the current rule."""
    if qualname in _REGISTERED:
        return
    namespace, name = qualname.split("::")
    lib = _LIBRARIES.setdefault(namespace, torch.library.Library(namespace, "IMPL"))
    op = torch._library.utils.lookup_op(qualname)

    def kernel(*args: Any, **kwargs: Any) -> Any:
        _, level, batch_size, randomness, _ = _C.top_interpreter_info()
        values, in_dims = _unwrap_batched(args, level)
        with _C.batched_key_excluded():
            if all(d is None for d in tree_flatten(in_dims)[0]):
                return op(*args, **kwargs)
            result = rule()(VmapInfo(batch_size, randomness), in_dims, *values, **kwargs)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise RuntimeError(
                "Expected the vmap staticmethod to have two returns, an output and out_dims "
                "with pytree structure compatible with the output. "
                f"Got {'a ' + str(type(result)) if not isinstance(result, tuple) else str(len(result)) + ' returns'} "
                f"instead (torchfunc: the vmap rule registered for {qualname}).")
        outputs, out_dims = result
        return _wrap_batched(outputs, out_dims, values, args, level,
                             f"the vmap rule registered for {qualname} returned out_dims={out_dims!r}")

    lib.impl(name, kernel, _C.batched_key_name())
    _REGISTERED.add(qualname)
    _C.record_rule(qualname, "python", "torchfunc/custom_ops.py (register_vmap)",
                   "a vmap rule registered in Python (torch.library.register_vmap) for this op")


def _register_custom_op(opdef: Any) -> None:
    _register(opdef._qualname, lambda: opdef._vmap_fn)


def _and_then(result: Any, func: Callable | None, also: Callable[[Callable], None]) -> Any:
    """What torch's register_vmap returned, with also(rule) run once the rule is
    registered: at once, or, when used as a decorator (func None), when it is applied."""
    if func is not None:
        also(func)
        return result

    def decorator(rule: Callable) -> Any:
        out = result(rule)
        also(rule)
        return out
    return decorator


def install() -> None:
    """Wrap torch's register_vmap entry points (NOTE [register_vmap rules on our batched key])."""
    custom_op_register = _custom_ops.CustomOpDef.register_vmap

    def register_vmap_of_custom_op(self: Any, func: Callable | None = None) -> Any:
        return _and_then(custom_op_register(self, func), func, lambda rule: _register_custom_op(self))

    library_register = torch.library.register_vmap

    def register_vmap(op: Any, func: Callable | None = None, /, *, lib: Any = None) -> Any:
        result = library_register(op, func, lib=lib)
        if isinstance(op, _custom_ops.CustomOpDef):
            return result  # its register_vmap (above) registered ours
        qualname = (op._schema.name if isinstance(op, torch._ops.OpOverload) else
                    op._qualified_op_name if isinstance(op, torch._ops.OpOverloadPacket) else op)
        return _and_then(result, func, lambda rule: _register(qualname, lambda: rule))

    register_vmap.__doc__ = library_register.__doc__
    _custom_ops.CustomOpDef.register_vmap = register_vmap_of_custom_op
    torch.library.register_vmap = register_vmap
    for opdef in list(_custom_ops.OPDEFS.values()):
        if opdef._vmap_fn is not None:
            _register_custom_op(opdef)
