"""functionalize, with the signature, semantics and results of torch.func.functionalize.

A call pushes one functionalize level (csrc/functionalize/interpreter.cpp) and wraps
every tensor argument in a FunctionalTensorWrapper; while the level processes an op,
torch's functionalization kernels replace mutations by out-of-place ops (and, with
remove='mutations_and_views', views by their *_copy ops). On the way out the outputs
are unwrapped and any mutation of an input is copied back into the caller's tensor,
after the level is popped, so the copy runs at the level the caller's tensor lives at.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ._engine import _C
from ._levels import functionalize_level, refuse_torch_func_mixing
from ._pytree import tree_flatten, tree_map, wraps

__all__ = ["functionalize"]


def functionalize(func: Callable, *, remove: str = "mutations") -> Callable:
    """Runs ``func`` with its mutations (and, optionally, views) removed: in-place and
    ``out=`` ops become their out-of-place forms; mutations of the inputs are applied
    to the caller's tensors at the end, so the results and side effects are those of
    ``func``. Most useful under tracing (``make_fx(functionalize(f))``).

    Args:
        func: a function of Tensors (pytrees).
        remove: ``'mutations'`` (views stay views) or ``'mutations_and_views'`` (every
            aliasing op is replaced by its ``*_copy`` counterpart). Default:
            ``'mutations'``.

    Returns:
        A function with the arguments and results of ``func``.

    Example::

        >>> def f(x):
        ...     y = x.clone()
        ...     y.view(-1).add_(1)
        ...     return y
        >>> x = torch.zeros(2, 2)
        >>> torch.equal(functionalize(f)(x), f(x))
        True
    """
    if remove == "mutations":
        reapply_views = True
    elif remove == "mutations_and_views":
        reapply_views = False
    else:
        raise RuntimeError(
            f"functionalize(f, remove='mutations'): received invalid argument for "
            f"remove={remove}. Valid options are:\n"
            "     remove='mutations': all inplace and out= operators will be removed from the "
            "program, and replaced with their out-of-place equivalents.\n"
            "     remove='mutations_and_views': In addition to the above, all aliasing "
            "operators {view} will be replaced with their non-aliasing counterparts, "
            "{view}_copy.\n")

    @wraps(func)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        refuse_torch_func_mixing("functionalize")
        if "functionalize" in _C.stack_kinds():
            raise RuntimeError(
                "torchfunc.functionalize was called inside another functionalize: nested "
                "functionalize levels are not supported (torch's functionalization "
                "kernels cannot tell two levels' tensors apart). One functionalize around "
                "the whole composition removes the same mutations.")
        flat_args, _ = tree_flatten((args, kwargs))
        with functionalize_level(reapply_views):
            func_args, func_kwargs = tree_map(_to_functional, (args, kwargs))
            outputs = tree_map(_from_functional, func(*func_args, **func_kwargs))
            flat_func_args, _ = tree_flatten((func_args, func_kwargs))
            mutated = []
            for original, functional in zip(flat_args, flat_func_args):
                if isinstance(functional, torch.Tensor) and torch._is_functional_tensor(functional):
                    torch._sync(functional)
                    value = torch._from_functional_tensor(functional)
                    if value is not original:
                        mutated.append((original, value))
        for original, value in mutated:
            _copy_back(original, value)
        return outputs

    return wrapped


def _to_functional(x: Any) -> Any:
    return torch._to_functional_tensor(x) if isinstance(x, torch.Tensor) else x


def _from_functional(x: Any) -> Any:
    """An output as the tensor it stands for; a tensor that is not functional (a
    global returned as is) is returned unchanged."""
    if not isinstance(x, torch.Tensor) or not torch._is_functional_tensor(x):
        return x
    torch._sync(x)
    return torch._from_functional_tensor(x)


def _copy_back(original: torch.Tensor, value: torch.Tensor) -> None:
    """Apply a functionalized input's new value (and shape) to the caller's tensor."""
    if original.numel() != value.numel():
        original.resize_(value.shape)  # e.g. a zero-size input resized by func
    if original.shape != value.shape:
        original.as_strided_(value.shape, value.stride())
    original.copy_(value)
