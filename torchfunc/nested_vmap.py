"""vmap over nested tensors: the batch dim is the nested one.

NOTE [vmap over nested tensors]
A nested tensor (``torch.nested.nested_tensor(..., layout=torch.jagged)``, or the
strided layout) is a batch of components whose shapes differ in one dim. Mapped
over its dim 0, each example is one component, a plain tensor of its own shape.
No batched kernel applies to examples of different shapes, so this path runs
``func`` once per example: each run is a vmap of batch size 1 over that example
(the component, and the matching slice of every other mapped input), so
everything vmap refuses it refuses here too (random ops under 'error', in-place writes
into captured tensors), with the same errors; data-dependent code (``.item()``, ``if``
on a tensor) works, since a size-1 batch always shares its values (NOTE
[Data-dependent values that every example shares]).

Each output leaf that depends on the batch (out_dim not None) is a nested tensor
whose dim 0 is the batch, as in torch.func (any other out_dim is refused with its
error), even when every example's output has one shape:
- from a jagged input, a jagged nested tensor ragged in the one dim where the
  examples differ. When that dim and its lengths are those of a nested input, the
  output shares that input's offsets (so its nested int, ``j1``), and
  ``vmap(f)(nt) + nt`` works as in eager code. torch.func returns the strided
  layout here, which does not compose with the jagged input;
- the strided layout where jagged cannot hold the outputs (0-dim examples, or
  examples that differ in more than one dim), and for strided inputs.
An output that depends only on dense mapped inputs is nested too (this path does
not track which input each output came from). Inside another transform (grad of a
loss summed over a nested batch, an outer vmap) the examples' outputs are that
transform's wrapped tensors, which a nested tensor cannot hold: outputs of one shape
are stacked into a plain (wrapped) tensor, and ragged ones are refused.

Randomness: 'different' draws per example as they run; 'same' restores the RNG
state before each example, so all share one draw; 'error' is the size-1 vmap's.
torch.func 2.13 batches nested tensors with a per-op loop and has no rule for view
ops (unsqueeze, transpose, reshape, ... raise there); here they work.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ._engine import _C
from ._pytree import fn_name, kind_of, tree_flatten, tree_unflatten, with_torch_func_text

__all__: list[str] = []


def has_nested_input(flat_args: list[Any], flat_in_dims: list[int | None]) -> bool:
    return any(d is not None and isinstance(a, torch.Tensor) and a.is_nested
               for a, d in zip(flat_args, flat_in_dims))


def run_per_example(vmap: Callable, func: Callable, out_dims: Any, randomness: str,
                    args_spec: Any, flat_in_dims: list[int | None], flat_args: list[Any],
                    kwargs: dict) -> Any:
    """vmap(func, ...)(*args) where some mapped input is a nested tensor."""
    name = fn_name(func)
    nested = [a for a, d in zip(flat_args, flat_in_dims) if d is not None and a.is_nested]
    for arg, in_dim in zip(flat_args, flat_in_dims):
        if in_dim is not None and arg.is_nested and in_dim != 0:
            raise RuntimeError(with_torch_func_text(
                f"Nested tensors can only be vmapped over dim=0, but got dim={in_dim}",
                f"vmap({name}, in_dims=...)(<inputs>): dim 0 is the nested dim; map over it, "
                f"or transpose the nested tensor first."))
    batch_size = nested[0].size(0)
    per_arg = []
    for arg, in_dim in zip(flat_args, flat_in_dims):
        if in_dim is None:
            per_arg.append(None)
        elif arg.is_nested:
            # A nested tensor is never wrapped: its ops skip the transforms around this
            # vmap (their interpreters would ask it for sizes it does not have).
            with _C.transforms_suspended():
                per_arg.append(arg.unbind())
        else:
            per_arg.append(arg.unbind(in_dim))

    rng_state = torch.get_rng_state() if randomness == "same" else None
    # A size-1 vmap over each example: mapped leaves get in_dim 0, the rest None.
    in_dims = tuple(tree_unflatten([None if d is None else 0 for d in flat_in_dims], args_spec))
    example_fn = vmap(func, in_dims=in_dims, out_dims=0, randomness=randomness)
    outputs, spec = [], None
    for i in range(batch_size):
        if rng_state is not None:
            torch.set_rng_state(rng_state)
        example = [arg if pieces is None else pieces[i].unsqueeze(0)
                   for arg, pieces in zip(flat_args, per_arg)]
        out = example_fn(*tree_unflatten(example, args_spec), **kwargs)
        flat_out, out_spec = tree_flatten(out)
        if spec is None:
            spec, first_out = out_spec, out
        elif out_spec != spec:
            raise ValueError(
                f"vmap({name})(<nested inputs>): `{name}` returned outputs of different "
                f"structures for examples 0 and {i} ({_describe(first_out)} and "
                f"{_describe(out)}); every example must return the same structure.")
        outputs.append([o.squeeze(0) if isinstance(o, torch.Tensor) else o for o in flat_out])

    from .vmap import _flat_out_dims, check_output_leaf
    first = tree_unflatten(outputs[0], spec)
    flat_out_dims = _flat_out_dims(func, first, spec, out_dims)
    assembled = []
    for j, (pieces, out_dim) in enumerate(zip(zip(*outputs), flat_out_dims)):
        if out_dim is not None:
            for piece in pieces:
                if not isinstance(piece, torch.Tensor):  # raises torch.func's error
                    check_output_leaf(func, first, spec, out_dims, j, piece, out_dim)
        assembled.append(_assemble(name, list(pieces), out_dim, nested))
    return tree_unflatten(assembled, spec)


def _describe(tree: Any) -> str:
    sized = isinstance(tree, (tuple, list, dict))
    return kind_of(tree) + (f" of {len(tree)} items" if sized else "")


def _assemble(name: str, pieces: list[Any], out_dim: int | None, nested: list[torch.Tensor]) -> Any:
    if out_dim is None:
        return pieces[0]
    if out_dim != 0:
        raise RuntimeError(with_torch_func_text(
            f"Nested tensors can only be vmapped over dim=0, but got dim={out_dim}",
            f"vmap({name}, ..., out_dims={out_dim}): an output of a vmap over a nested "
            f"tensor is a nested tensor, whose nested dim is dim 0; use out_dims=0 for it."))
    shapes = [tuple(p.shape) for p in pieces]
    if any(_C.tensor_level(p) is not None for p in pieces):
        # Inside another transform: a nested tensor holds plain tensors only.
        if len(set(shapes)) > 1:
            raise RuntimeError(
                f"vmap({name})(<nested inputs>) inside another transform: the examples' "
                f"outputs have different shapes ({shapes[:3]}...), and a nested tensor "
                f"cannot hold the transform's wrapped tensors. Reduce each example to one "
                f"shape inside `{name}` (e.g. a sum or a mean over the ragged dim).")
        return torch.stack(pieces)
    with _C.transforms_suspended():  # plain pieces into a nested tensor: no transform applies
        return _nest(name, pieces, shapes, nested)


def _nest(name: str, pieces: list[torch.Tensor], shapes: list[tuple],
          nested: list[torch.Tensor]) -> torch.Tensor:
    if len({len(s) for s in shapes}) > 1:
        raise ValueError(
            f"vmap({name})(<nested inputs>): the examples' outputs have different ranks "
            f"({sorted({len(s) for s in shapes})}); a nested tensor needs one rank.")
    ragged = [d for d in range(len(shapes[0])) if len({s[d] for s in shapes}) > 1]
    if nested[0].layout != torch.jagged or not shapes[0] or len(ragged) > 1:
        # The strided layout holds any shapes of one rank, 0-dim ones included.
        return torch.nested.as_nested_tensor(pieces, layout=torch.strided)
    dim = ragged[0] if ragged else 0
    lengths = [s[dim] for s in shapes]
    for source in nested:
        if (source.layout == torch.jagged and source._lengths is None
                and source._ragged_idx == dim + 1
                and source.offsets().diff().tolist() == lengths):
            return torch.nested.nested_tensor_from_jagged(
                torch.cat(pieces, dim), offsets=source.offsets(), jagged_dim=dim + 1)
    return torch.nested.as_nested_tensor(pieces, layout=torch.jagged)
