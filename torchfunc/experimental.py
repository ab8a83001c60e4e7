"""torchfunc.experimental: the names of functorch.experimental (torch 2.13).

chunk_vmap is torchfunc's own; the other names are re-exports of torchfunc's transforms
(functorch.experimental re-exports torch.func's the same way).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ._pytree import broadcast_prefix, fn_name, tree_flatten, wraps
from .forward import jvp
from .functionalize import functionalize
from .jacobians import hessian, jacfwd
from .modules import replace_all_batch_norm_modules_
from .vmap import _vmapped, vmap

__all__ = ["chunk_vmap", "functionalize", "replace_all_batch_norm_modules_", "hessian", "jacfwd",
           "jvp"]

_RANDOMNESS = ("error", "different", "same")


def chunk_vmap(
    func: Callable,
    in_dims: int | tuple = 0,
    out_dims: int | tuple = 0,
    randomness: str = "error",
    chunks: int = 2,
) -> Callable:
    """:func:`vmap` over the batch in ``chunks`` pieces, one after the other: a middle
    ground between vmap (all examples at once) and a loop (one at a time) that bounds
    memory. Prefer ``vmap(func, chunk_size=...)``, which says the chunk size directly.

    The batch of ``B`` examples is split like ``torch.chunk(B, chunks)``: chunks of
    ``ceil(B / chunks)`` examples, the last one smaller, so there may be fewer than
    ``chunks`` of them (5 examples in 3 chunks: 2, 2, 1; 6 in 4: 2, 2, 2). Each chunk
    runs under its own vmap and the outputs are concatenated along ``out_dims``.

    Args:
        func: a function of one or more arguments (pytrees of Tensors) returning one or
            more Tensors, as for :func:`vmap`.
        in_dims: the mapped dim of each positional input (int, or a nested tuple; ``None``
            for an unmapped input), as for :func:`vmap`. Default: 0.
        out_dims: where the mapped dim goes in each output, as for :func:`vmap`.
            Default: 0.
        randomness: ``'error'``, ``'different'`` or ``'same'``, as for :func:`vmap`.
            With ``'same'`` every chunk starts from the same RNG state, so all examples
            see the same draws. Default: ``'error'``.
        chunks: the number of chunks (not their size); ``1`` is a plain :func:`vmap`.
            Default: 2.

    Returns:
        A function taking the same arguments as ``func`` whose outputs have the mapped
        dim inserted at ``out_dims``, as ``vmap(func, in_dims, out_dims, randomness)``'s.

    Example::

        >>> x = torch.randn(10, 3)
        >>> chunk_vmap(torch.sum, chunks=3)(x).shape  # chunks of 4, 4 and 2 examples
        torch.Size([10])
    """
    if randomness not in _RANDOMNESS:
        raise RuntimeError(
            f"Only allowed values for randomness are 'error', 'different', or 'same'. Got "
            f"{randomness}; chunk_vmap({fn_name(func)}, ..., randomness={randomness!r})")
    if chunks == 1:
        return vmap(func, in_dims=in_dims, out_dims=out_dims, randomness=randomness)

    @wraps(func)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        _check_chunks(func, chunks)
        batch_size = _batch_size_or_none(in_dims, args)
        # torch.chunk's split: pieces of ceil(B / chunks) examples, which is vmap's
        # chunk_size (it, too, resets the RNG for every chunk with randomness='same').
        chunk_size = -(-batch_size // chunks) if batch_size else None
        return _vmapped(func, in_dims, out_dims, randomness, chunk_size, plain_examples=False)(
            *args, **kwargs)

    return wrapped


def _check_chunks(func: Callable, chunks: Any) -> None:
    if type(chunks) is not int:
        raise TypeError(
            f"chunk(): argument 'chunks' (position 1) must be int, not "
            f"{type(chunks).__name__}; chunk_vmap({fn_name(func)}, ..., chunks={chunks!r}): "
            f"chunks is the number of chunks to split the batch into")
    if chunks <= 0:
        raise RuntimeError(
            f"chunk expects `chunks` to be greater than 0, got: {chunks}; "
            f"chunk_vmap({fn_name(func)}, ..., chunks={chunks}): chunks is the number of "
            f"chunks to split the batch into")


def _batch_size_or_none(in_dims: Any, args: tuple) -> int | None:
    """The size of the mapped dim, or None when the inputs don't say it plainly (then
    vmap, called without chunks, explains what is wrong with them)."""
    if not isinstance(in_dims, (int, tuple)) or not args:
        return None
    flat_args, spec = tree_flatten(args)
    flat_in_dims = broadcast_prefix(in_dims, spec)
    if flat_in_dims is None:
        return None
    sizes = set()
    for arg, in_dim in zip(flat_args, flat_in_dims):
        if in_dim is None:
            continue
        if not isinstance(in_dim, int) or not isinstance(arg, torch.Tensor) or \
                not -arg.dim() <= in_dim < arg.dim():
            return None
        sizes.add(arg.size(in_dim))
    return sizes.pop() if len(sizes) == 1 else None
