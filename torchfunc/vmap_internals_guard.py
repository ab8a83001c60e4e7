"""Refusing torch's legacy vmap (torch._vmap_internals) inside torchfunc's transforms.

NOTE [Legacy vmap and our subclass marker]
Our BatchedTensors (and GradTensors above a vmap level) carry core's legacy ``Batched``
key as a marker (NOTE [BatchedTensors look like tensor subclasses], csrc/keys.h). The
legacy vmap (``torch._vmap_internals.vmap``, which ``torch.autograd.functional.jacobian
/hessian(vectorize=True)`` and gradcheck's batched checks use) takes any tensor with that
key for its own BatchedTensorImpl and casts it: the process would crash. ``install()``
puts a check in front of the legacy vmap's input batching (a module global it looks up
at every call, so every entry point is covered): inside a torchfunc transform, or on
torchfunc's tensors, it raises an error that says what to use instead.
"""
from __future__ import annotations

from typing import Any

import torch
import torch._vmap_internals as _legacy

from ._engine import _C
from ._pytree import tree_leaves

__all__ = ["install"]

_torch_create_batched_inputs = _legacy._create_batched_inputs


def _create_batched_inputs(in_dims: Any, args: Any, vmap_level: int, func: Any) -> Any:
    info = _C.top_interpreter_info()
    wrapped = any(isinstance(a, torch.Tensor) and _C.wrapper_info(a) is not None
                  for a in tree_leaves(args))
    if info is not None or wrapped:
        where = (f"inside torchfunc.{info[0]} at level {info[1]}" if info is not None
                 else "on a tensor of a torchfunc transform")
        raise RuntimeError(
            f"torch._vmap_internals.vmap (the legacy vmap, which "
            f"torch.autograd.functional.jacobian/hessian(vectorize=True) use) was called {where}. "
            "It cannot see torchfunc's levels and would mistake torchfunc's BatchedTensors "
            "for its own. Use torchfunc.vmap, torchfunc.jacrev or torchfunc.jacfwd instead, "
            "or call it outside of the transformed function.")
    return _torch_create_batched_inputs(in_dims, args, vmap_level, func)


def install() -> None:
    """Check the legacy vmap's inputs (NOTE [Legacy vmap and our subclass marker])."""
    _legacy._create_batched_inputs = _create_batched_inputs
