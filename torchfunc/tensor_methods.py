"""Tensor methods that bypass the dispatcher, made to see through our wrappers.

NOTE [Tensor methods that read type ids or storage]
A few Tensor methods are implemented in torch's Python bindings without dispatching
an op, and so never meet our keys:
- ``tolist()`` reads the storage; torch unwraps core functorch's GradTrackingTensors
  first. Ours read through GradTensors the same way (their values are the tensor's
  values) and refuse a BatchedTensor (there is no per-example storage), like
  torch.func.
- ``new_tensor(data)`` and the legacy ``new(...)`` pick the new tensor's device from
  the highest dispatch key of ``self``, ignoring core functorch's keys but not ours
  ("DispatchKey DeferredInit doesn't correspond to a device"). They only read self's
  dtype and device, which the innermost plain tensor has too, so they are called on it.
- ``requires_grad_()`` inside a transform is refused with torch.func's error (torch.func
  checks its own stack in that binding): a tensor made to require grad behind a
  transform's back would be differentiated by no level, or by the wrong one. Our
  transforms mark their inputs with ``require_grad`` below.
- ``backward()`` (``torch.autograd.backward``) and ``retain_grad()`` of a GradTensor
  inside a transform are refused with torch.func's errors, which torch raises only
  for core functorch's transforms: ``backward()`` would accumulate into ``.grad`` of
  tensors that no level returns (and, under vmap, mix the examples' gradients).
``install()`` defines these methods on ``torch.Tensor``; for a plain tensor outside the
transforms they are torch's own, at the cost of one check.
"""
from __future__ import annotations

import torch

from ._engine import _C
from .debug import debug_unwrap

__all__ = ["install"]

_torch_tolist = torch.Tensor.tolist
_torch_new_tensor = torch.Tensor.new_tensor
_torch_new = torch.Tensor.new
_torch_requires_grad_ = torch.Tensor.requires_grad_
_torch_retain_grad = torch.Tensor.retain_grad
_torch_autograd_backward = torch.autograd.backward

_REQUIRES_GRAD_INSIDE = (
    "You are attempting to call Tensor.requires_grad_() (or perhaps using "
    "torch.autograd.functional.* APIs) inside of a function being transformed by a functorch "
    "transform. This is unsupported, please attempt to use the functorch transforms (e.g. grad, "
    "vjp, jacrev, jacfwd, hessian) or call requires_grad_() outside of a function being "
    "transformed instead.")


def _tolist(self: torch.Tensor) -> object:
    info = _C.wrapper_info(self)
    while info is not None and info[0] == "grad":
        self = _C.unwrap_one(self)
        info = _C.wrapper_info(self)
    if _C.stack_depth() == 0 or info is not None:
        return _torch_tolist(self)  # a BatchedTensor refuses it, with torch's sentence
    with _C.transforms_suspended():  # its ops (resolve_conj, ...) on the plain value
        return _torch_tolist(self)


def _new_tensor(self: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return _torch_new_tensor(debug_unwrap(self), *args, **kwargs)


def _new(self: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return _torch_new(debug_unwrap(self), *args, **kwargs)


def require_grad(tensor: torch.Tensor) -> torch.Tensor:
    """requires_grad_() for torchfunc's own transforms (they mark their lifted inputs)."""
    return _torch_requires_grad_(tensor)


def _requires_grad_(self: torch.Tensor, requires_grad: bool = True) -> torch.Tensor:
    info = _C.top_interpreter_info()
    if info is not None:
        raise RuntimeError(
            f"{_REQUIRES_GRAD_INSIDE} torchfunc: requires_grad_() was called inside "
            f"torchfunc.{info[0]} at level {info[1]}; to differentiate with respect to this "
            "tensor, make it an input of a grad/vjp/jacrev-transformed function (argnums).")
    return _torch_requires_grad_(self, requires_grad)


_BACKWARD_INSIDE = (
    "backward() called inside a functorch transform. This is not supported, please use "
    "functorch.grad or functorch.vjp instead or call backward() outside of functorch "
    "transforms.")
_RETAIN_GRAD_INSIDE = (
    "You are attempting to call Tensor.retain_grad() inside of a function being transformed "
    "by a functorch transform. This is unsupported, please attempt to use the functorch "
    "transforms (e.g. grad, vjp, jacrev, jacfwd, hessian) or call retain_grad() outside of a "
    "function being transformed instead.")


def _backward(*args, **kwargs) -> None:
    info = _C.top_interpreter_info()
    if info is not None and not _C.processing_op():
        raise RuntimeError(
            f"{_BACKWARD_INSIDE} torchfunc: backward() was called inside torchfunc.{info[0]} at "
            f"level {info[1]}; return the loss from the function and differentiate it with "
            "torchfunc.grad / torchfunc.vjp, or call backward() on the transform's result.")
    return _torch_autograd_backward(*args, **kwargs)


def _grad_level(tensor: torch.Tensor) -> int | None:
    info = _C.wrapper_info(tensor)
    while info is not None:
        if info[0] == "grad" and info[2]:
            return info[1]
        tensor = _C.unwrap_one(tensor)
        info = _C.wrapper_info(tensor)
    return None


def _retain_grad(self: torch.Tensor) -> None:
    level = _grad_level(self) if _C.stack_depth() else None
    if level is not None:
        raise RuntimeError(
            f"{_RETAIN_GRAD_INSIDE} torchfunc: this tensor is tracked by the grad transform at "
            f"level {level}; return it from the function (has_aux=True) to see its gradient "
            "instead.")
    return _torch_retain_grad(self)


def install() -> None:
    """Define the methods above on torch.Tensor (NOTE [Tensor methods that read type ids
    or storage])."""
    _tolist.__doc__ = _torch_tolist.__doc__
    _new_tensor.__doc__ = _torch_new_tensor.__doc__
    _new.__doc__ = _torch_new.__doc__
    _requires_grad_.__doc__ = _torch_requires_grad_.__doc__
    torch.Tensor.tolist = _tolist
    torch.Tensor.requires_grad_ = _requires_grad_
    torch.Tensor.new_tensor = _new_tensor
    torch.Tensor.new = _new
    _retain_grad.__doc__ = _torch_retain_grad.__doc__
    _backward.__doc__ = _torch_autograd_backward.__doc__
    torch.Tensor.retain_grad = _retain_grad
    torch.autograd.backward = _backward
