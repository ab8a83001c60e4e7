"""jacrev and hessian: whole Jacobians from vjp and vmap.

jacrev(f)(*args) runs f once under vjp, then applies vjp_fn to every row of the
standard basis of the (flattened) outputs at once, with vmap; the VJP of basis row k
is row k of the Jacobian. With chunk_size the basis is processed chunk_size rows at a
time; chunk_size=1 is a plain loop, without vmap.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator

import torch

from ._pytree import (
    TreeSpec,
    check_argnums,
    fn_name,
    slice_argnums,
    tree_flatten,
    tree_leaves,
    tree_unflatten,
    wrap_argnums,
    wraps,
)
from .autodiff import vjp_with_argnums
from .vmap import vmap

__all__ = ["jacrev", "hessian"]


def jacrev(func: Callable, argnums: int | tuple[int, ...] = 0, *, has_aux: bool = False,
           chunk_size: int | None = None, _preallocate_and_copy: bool = False) -> Callable:
    """Jacobian of ``func`` with respect to the positional argument(s) ``argnums``,
    computed with reverse-mode autodiff.

    Args:
        func: a function of one or more arguments returning one or more Tensors (a
            pytree), or ``(output, aux)`` when ``has_aux`` is True.
        argnums: the argument (int) or arguments (tuple of ints) to differentiate; each
            may be a pytree of real floating point Tensors. Default: 0.
        has_aux: ``func`` returns ``(output, aux)``; ``aux`` is returned as is.
        chunk_size: ``None`` computes all rows of the Jacobian in one vmap; ``k``
            computes ``k`` rows at a time to bound memory; ``1`` uses a plain loop, so
            vmap's restrictions do not apply.
        _preallocate_and_copy: copy the chunks into preallocated Jacobians instead of
            concatenating them (a memory strategy; results are identical).

    Returns:
        A function with the positional arguments of ``func`` returning the Jacobian:
        for each output leaf, a Tensor of shape ``output.shape + arg.shape`` per
        differentiated argument leaf, arranged like the outputs (outer) and the
        arguments (inner; a tuple for tuple ``argnums``). With ``has_aux``,
        ``(jacobian, aux)``.

    Example::

        >>> x = torch.randn(5)
        >>> torch.allclose(jacrev(torch.sin)(x), torch.diag(x.cos()))
        True
    """
    name = fn_name(func)
    check_argnums(argnums, f"jacrev({name}, argnums={argnums!r})")
    if not (chunk_size is None or chunk_size > 0):
        raise ValueError("jacrev: `chunk_size` should be greater than 0.")

    @wraps(func)
    def wrapper_fn(*args: Any) -> Any:
        _error_if_complex(args, "inputs")
        wrapped = wrap_argnums(argnums, len(args), f"jacrev({name}, argnums={argnums!r})(*args)",
                               name)
        output, vjp_fn, aux = vjp_with_argnums("jacrev", f"jacrev({name})(*args)", func, args,
                                               wrapped, has_aux)
        flat_output, output_spec = tree_flatten(output)
        _error_if_complex(flat_output, "outputs")
        flat_primals, primals_spec = tree_flatten(slice_argnums(args, wrapped))

        numels = [out.numel() for out in flat_output]
        total = sum(numels)
        chunks = (_vjp_rows(vjp_fn, basis, output_spec, chunk_size)
                  for basis in _standard_basis(flat_output, numels, chunk_size))
        if total == 0:
            rows = [primal.new_zeros((0, *primal.shape)) for primal in flat_primals]
        elif _preallocate_and_copy and chunk_size is not None and chunk_size < total:
            rows = _copy_into_preallocated(chunks, flat_primals, total, chunk_size)
        else:
            rows = _concatenate(chunks)

        # rows[j] holds the Jacobian of all outputs w.r.t. primal j, outputs flattened
        # along dim 0: split it per output and give each piece out.shape + primal.shape.
        per_primal = [
            [piece.view(out.shape + primal.shape)
             for piece, out in zip(torch.split(r, numels, dim=0), flat_output)]
            for r, primal in zip(rows, flat_primals)
        ]
        per_output = [tree_unflatten(list(jacs), primals_spec) for jacs in zip(*per_primal)]
        if isinstance(argnums, int):
            per_output = [jac[0] for jac in per_output]
        jacobian = tree_unflatten(per_output, output_spec)
        return (jacobian, aux) if has_aux else jacobian

    return wrapper_fn


def hessian(func: Callable, argnums: int | tuple[int, ...] = 0) -> Callable:
    """Hessian of ``func`` with respect to the positional argument(s) ``argnums``: the
    Jacobian of its Jacobian, with the structure :func:`jacrev` gives twice.

    Example::

        >>> x = torch.randn(5)
        >>> torch.allclose(hessian(lambda x: x.sin().sum())(x), torch.diag(-x.sin()))
        True
    """
    # torch.func computes jacfwd(jacrev(func, argnums), argnums) (forward-over-reverse).
    # Until torchfunc has forward-mode levels (jacfwd), the outer Jacobian is reverse
    # mode too: same results, only speed and op coverage differ. Switch here.
    return jacrev(jacrev(func, argnums), argnums)


# --- the standard basis and its VJPs ----------------------------------------------------------

def _standard_basis(flat_output: list[torch.Tensor], numels: list[int],
                    chunk_size: int | None) -> Iterator[list[torch.Tensor]]:
    """The N x N identity, N = sum(numels), chunk_size rows at a time; each chunk split
    by columns into one tensor per output, of shape (rows, *output.shape)."""
    total = sum(numels)
    step = total if chunk_size is None else min(chunk_size, total)
    starts = [0, *itertools.accumulate(numels)][:-1]  # first column of each output
    for first_row in range(0, total, step):
        rows = min(step, total - first_row)
        chunk = []
        for out, numel, first_col in zip(flat_output, numels, starts):
            piece = out.new_zeros(rows, numel)
            piece.diagonal(first_row - first_col).fill_(1)
            chunk.append(piece.view(rows, *out.shape))
        yield chunk


def _vjp_rows(vjp_fn: Callable, basis: list[torch.Tensor], output_spec: TreeSpec,
              chunk_size: int | None) -> list[torch.Tensor]:
    """VJPs of the basis rows, one tensor per primal leaf with the rows as dim 0."""
    if chunk_size == 1:  # a plain loop: vmap's restrictions do not apply
        vjps = vjp_fn(tree_unflatten([row[0] for row in basis], output_spec))
        return [v.unsqueeze(0) for v in tree_leaves(vjps)]
    return tree_leaves(vmap(vjp_fn)(tree_unflatten(basis, output_spec)))


def _concatenate(chunks: Iterator[list[torch.Tensor]]) -> list[torch.Tensor]:
    chunks = list(chunks)
    if len(chunks) == 1:
        return chunks[0]
    return [torch.cat(pieces) for pieces in zip(*chunks)]


def _copy_into_preallocated(chunks: Iterator[list[torch.Tensor]], flat_primals: list[Any],
                            total: int, chunk_size: int) -> list[torch.Tensor]:
    rows = [primal.new_zeros(total, *primal.shape) for primal in flat_primals]
    for i, chunk in enumerate(chunks):
        for r, piece in zip(rows, chunk):
            r[i * chunk_size:(i + 1) * chunk_size].copy_(piece)
    return rows


def _error_if_complex(tree: Any, what: str) -> None:
    for idx, leaf in enumerate(tree_leaves(tree)):
        if isinstance(leaf, torch.Tensor) and leaf.dtype.is_complex:
            raise RuntimeError(
                f"jacrev: Expected all {what} to be real but received complex tensor at "
                f"flattened input idx: {idx}")
