"""vmap, with the signature, semantics and results of torch.func.vmap (torch 2.13).

vmap(func)(*args) pushes one vmap level, turns every mapped input into a
BatchedTensor at that level (its in_dim becomes the level's batch dim), calls func,
and turns each output back into a plain tensor whose batch dim sits at its out_dim.
Keyword arguments are passed through unmapped.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ._engine import _C
from .nested_vmap import has_nested_input, run_per_example
from ._levels import refuse_torch_func_mixing, vmap_level
from ._pytree import (
    OutDimError,
    RandomnessError,
    TreeSpec,
    broadcast_prefix,
    flat_tuple_spec,
    fn_name,
    kind_of,
    named_leaves,
    prefix_mismatch,
    tree_flatten,
    tree_leaves,
    tree_map_tensors,
    tree_unflatten,
    with_torch_func_text,
    wraps,
)

__all__ = ["vmap"]

_RANDOMNESS = ("error", "different", "same")


def vmap(
    func: Callable,
    in_dims: int | tuple = 0,
    out_dims: int | tuple | None = 0,
    randomness: str = "error",
    *,
    chunk_size: int | None = None,
) -> Callable:
    """Vectorizing map: ``vmap(func)`` runs ``func`` on every slice of its inputs along
    the mapped dimension at once, as if by a loop, and stacks the results.

    Args:
        func: a function of one or more arguments (pytrees of Tensors) returning one or
            more Tensors (a pytree).
        in_dims: the mapped dim of each positional input: an int for all of them, or a
            (nested) tuple matching the inputs' structure; ``None`` marks an input that
            is not mapped. Negative dims count from the end. Default: 0.
        out_dims: where the mapped dim goes in each output: an int, or a pytree matching
            the outputs; ``None`` for an output that does not depend on the mapped
            inputs (it is returned as is, and may be a non-Tensor). Default: 0.
        randomness: ``'error'`` (random ops raise), ``'different'`` (independent draws
            per example) or ``'same'`` (one draw shared by all examples). Default:
            ``'error'``.
        chunk_size: ``None`` maps over the whole batch at once; ``k`` runs ``k`` examples
            at a time and concatenates the results, to bound memory. With
            ``randomness='same'`` every chunk sees the same random draws. ``1`` runs
            ``func`` once per example on plain slices (NOTE [chunk_size=1 runs plain
            examples]): data-dependent code (``.item()``, ``nonzero``, Python ``if`` on a
            tensor) works there, slowly.

    Returns:
        A function taking the same arguments as ``func`` whose outputs have the mapped
        dim inserted at ``out_dims``.

    Errors that torch.func also raises have its exception class (or a subclass) and
    start with its message, followed by torchfunc's details.

    Example::

        >>> x, y = torch.randn(8, 3), torch.randn(8, 3)
        >>> vmap(torch.dot)(x, y).shape
        torch.Size([8])
    """
    if randomness not in _RANDOMNESS:
        raise RandomnessError(with_torch_func_text(
            f"Only allowed values for randomness are 'error', 'different', or 'same'. "
            f"Got {randomness}",
            f"vmap({fn_name(func)}, ..., randomness={randomness!r}): 'error' refuses random "
            f"operations, 'different' draws independently per example, 'same' draws once for "
            f"all examples."))
    if not (chunk_size is None or chunk_size > 0):
        raise ValueError(f"vmap: chunk_size should be None or greater than 0. (got {chunk_size})")

    return _vmapped(func, in_dims, out_dims, randomness, chunk_size, plain_examples=chunk_size == 1)


def _vmapped(func: Callable, in_dims: Any, out_dims: Any, randomness: str,
             chunk_size: int | None, plain_examples: bool) -> Callable:
    """vmap's wrapper; plain_examples runs func on plain slices (NOTE [chunk_size=1 runs
    plain examples]), otherwise chunks of chunk_size run under vmap levels (chunk_vmap
    keeps size-1 chunks under vmap, as functorch's does)."""

    @wraps(func)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return vmap_call(func, args, kwargs, in_dims, out_dims, randomness, chunk_size, plain_examples)

    return wrapped


def vmap_call(func: Callable, args: tuple, kwargs: dict, in_dims: Any = 0, out_dims: Any = 0,
              randomness: str = "error", chunk_size: int | None = None,
              plain_examples: bool = False) -> Any:
    """vmap(func, in_dims, out_dims, randomness, chunk_size=...)(*args, **kwargs) with
    arguments already checked, without making the wrapper: for transforms that vmap a
    function of their own once per call (jacfwd's JVPs over the basis)."""
    refuse_torch_func_mixing("vmap")
    _check_out_dims(func, out_dims)
    batch_size, flat_in_dims, flat_args, args_spec = _flatten_inputs(func, in_dims, args)
    if has_nested_input(flat_args, flat_in_dims):  # NOTE [vmap over nested tensors]
        return run_per_example(vmap, func, out_dims, randomness, args_spec, flat_in_dims,
                               flat_args, kwargs)
    call = _Call(func, out_dims, randomness, args_spec, flat_in_dims, kwargs)
    if plain_examples:
        return call.run_per_example(batch_size, flat_args)
    if chunk_size is None or batch_size <= chunk_size:
        return call.run(batch_size, flat_args)
    return call.run_chunked(batch_size, chunk_size, flat_args)


# --- inputs -------------------------------------------------------------------------------

def _flatten_inputs(func: Callable, in_dims: Any, args: tuple
                    ) -> tuple[int, list[int | None], list[Any], TreeSpec]:
    """Check in_dims against the positional inputs; returns the batch size, one in_dim
    (non-negative, or None) per input leaf, the input leaves and their structure."""
    # torch.func's texts format in_dims and in_dim with str() (in_dims='0' shows as 0).
    context = f"vmap({fn_name(func)}, in_dims={in_dims}, ...)(<inputs>)"
    if not isinstance(in_dims, (int, tuple)):
        raise ValueError(
            f"{context}: expected `in_dims` to be int or a (potentially nested) tuple "
            f"matching the structure of inputs, got: {type(in_dims)}.")
    if not args:
        raise ValueError(
            f"vmap({fn_name(func)})(<inputs>): got no inputs. Maybe you forgot to add "
            f"inputs, or you are trying to vmap over a function with no inputs. "
            f"The latter is unsupported.")

    # NOTE [vmap's fast path for flat inputs and outputs]
    # Positional Tensors with an int in_dims, or a flat tuple of ints and Nones with a
    # Tensor wherever it has an int, skip the pytree walk, which cost more than the whole
    # rest of a small vmap call: an input mapped with None is one leaf, passed on as a
    # copy of its plain containers, as flattening and unflattening would give it
    # (per-sample gradients: in_dims=(None, 0, 0) for a dict of parameters). Outputs of
    # plain tuples, lists and dicts of Tensors with an int out_dims skip it too.
    # Anything else, and every error, takes the general path.
    if _flat_dims(in_dims, len(args)) and _mapped_are_tensors(args, in_dims):
        flat_in_dims = [in_dims] * len(args) if type(in_dims) is int else list(in_dims)
        flat_args = [arg if d is not None or isinstance(arg, torch.Tensor) else tree_map_tensors(_same, arg)
                     for arg, d in zip(args, flat_in_dims)]
        args_spec = flat_tuple_spec(len(args))
    else:
        flat_args, args_spec = tree_flatten(args)
        flat_in_dims = broadcast_prefix(in_dims, args_spec)
    if flat_in_dims is None:
        # torch.func goes on with "in_dims has structure TreeSpec(...)": in words here.
        raise ValueError(with_torch_func_text(
            f"{context}: in_dims is not compatible with the structure of `inputs`.",
            f"{prefix_mismatch(in_dims, args, 'in_dims', 'inputs', 'positional input')}."))

    for i, (arg, in_dim) in enumerate(zip(flat_args, flat_in_dims)):
        if in_dim is None:
            continue
        if not isinstance(in_dim, int):
            raise ValueError(with_torch_func_text(
                f"{context}: Got in_dim={in_dim} for an input but in_dim must be either "
                f"an integer dimension or None.",
                f"got {in_dim!r} ({kind_of(in_dim)})."))
        if not isinstance(arg, torch.Tensor):
            raise ValueError(
                f"{context}: Got in_dim={in_dim} for an input but the input is of type "
                f"{type(arg)}. We cannot vmap over non-Tensor arguments, "
                f"please use None as the respective in_dim")
        if not -arg.dim() <= in_dim < arg.dim():
            raise ValueError(
                f"{context}: Got in_dim={in_dim} for some input, but that input is a Tensor "
                f"of dimensionality {arg.dim()} so expected in_dim to satisfy "
                f"-{arg.dim()} <= in_dim < {arg.dim()}.")
        flat_in_dims[i] = in_dim % arg.dim()

    return _batch_size(flat_in_dims, flat_args), flat_in_dims, flat_args, args_spec


def _all_tensors(values: Any) -> bool:
    return type(values) is tuple and all(isinstance(v, torch.Tensor) for v in values)


def _mapped_are_tensors(args: tuple, in_dims: int | tuple) -> bool:
    if type(in_dims) is int:
        return _all_tensors(args)
    return all(d is None or isinstance(a, torch.Tensor) for a, d in zip(args, in_dims))


def _same(x: Any) -> Any:
    return x


def _flat_dims(dims: Any, n: int) -> bool:
    if type(dims) is int:
        return True
    return type(dims) is tuple and len(dims) == n and all(d is None or type(d) is int for d in dims)


def _batch_size(flat_in_dims: list[int | None], flat_args: list[Any]) -> int:
    sizes = [arg.size(d) for d, arg in zip(flat_in_dims, flat_args) if d is not None]
    if not sizes:
        raise ValueError("vmap: Expected at least one Tensor to vmap over")
    if any(size != sizes[0] for size in sizes):
        raise ValueError(
            f"vmap: Expected all tensors to have the same size in the mapped "
            f"dimension, got sizes {sizes} for the mapped dimension")
    return sizes[0]


# --- outputs ------------------------------------------------------------------------------

def _check_out_dims(func: Callable, out_dims: Any) -> None:
    if type(out_dims) is int:
        return
    for out_dim in tree_leaves(out_dims):
        if out_dim is not None and not isinstance(out_dim, int):
            # torch.func formats out_dims with str() (out_dims='0' shows as 0).
            raise ValueError(with_torch_func_text(
                f"vmap({fn_name(func)}, ..., out_dims={out_dims}): `out_dims` must be "
                f"an int, None or a python collection of ints representing where in the "
                f"outputs the vmapped dimension should appear.",
                f"got {out_dim!r} ({kind_of(out_dim)})."))


def _flat_out_dims(func: Callable, outputs: Any, spec: TreeSpec, out_dims: Any
                   ) -> list[int | None]:
    """One out_dim per output leaf (out_dims broadcast against the outputs)."""
    prefix = out_dims
    if isinstance(outputs, torch.Tensor) and isinstance(out_dims, tuple) and len(out_dims) == 1:
        prefix = out_dims[0]  # torch.func accepts a 1-tuple for a single Tensor output
    flat = broadcast_prefix(prefix, spec)
    if flat is None:
        # torch.func goes on with "out_dims has structure TreeSpec(...)": in words here.
        raise ValueError(with_torch_func_text(
            f"vmap({fn_name(func)}, ..., out_dims={out_dims})(<inputs>): out_dims is not "
            f"compatible with the structure of `outputs`.",
            f"{prefix_mismatch(out_dims, outputs, 'out_dims', 'outputs', 'output')}."))
    return flat


def _unbatch(func: Callable, outputs: Any, out_dims: Any, level: int, batch_size: int) -> Any:
    """Each output as a plain tensor with the level's batch dim at its out_dim."""
    if type(out_dims) is int:  # NOTE [vmap's fast path for flat inputs and outputs]
        if isinstance(outputs, torch.Tensor) and -outputs.dim() - 1 <= out_dims <= outputs.dim():
            return _C.remove_batch_dim(outputs, level, batch_size, out_dims % (outputs.dim() + 1))
        try:
            return _unbatch_plain(outputs, out_dims, level, batch_size)
        except _NotPlain:
            pass  # the general path raises torch.func's error, or handles the other nodes
    flat_outputs, spec = tree_flatten(outputs)
    flat_out_dims = _flat_out_dims(func, outputs, spec, out_dims)
    name = fn_name(func)
    unbatched = []
    for i, (out, out_dim) in enumerate(zip(flat_outputs, flat_out_dims)):
        if out_dim is None:
            if isinstance(out, torch.Tensor) and _C.batched_at(out, level):
                raise ValueError(
                    f"vmap({name}, ...): `{name}` can not return a "
                    f"BatchedTensor when out_dim is None")
            unbatched.append(out)
            continue
        rank = check_output_leaf(func, outputs, spec, out_dims, i, out, out_dim)
        unbatched.append(_C.remove_batch_dim(out, level, batch_size, out_dim % rank))
    return tree_unflatten(unbatched, spec)


class _NotPlain(Exception):
    """An output that _unbatch_plain leaves to the general path."""


def _unbatch_plain(outputs: Any, out_dim: int, level: int, batch_size: int) -> Any:
    """Outputs of plain tuples, lists and dicts of Tensors, unbatched with one int
    out_dim, rebuilt as tree_unflatten would; raises _NotPlain at any other leaf or
    node, or an out_dim out of range for a leaf."""
    kind = type(outputs)
    if kind is tuple:
        return tuple([_unbatch_plain(o, out_dim, level, batch_size) for o in outputs])
    if kind is list:
        return [_unbatch_plain(o, out_dim, level, batch_size) for o in outputs]
    if kind is dict:
        return {k: _unbatch_plain(o, out_dim, level, batch_size) for k, o in outputs.items()}
    if isinstance(outputs, torch.Tensor) and -outputs.dim() - 1 <= out_dim <= outputs.dim():
        return _C.remove_batch_dim(outputs, level, batch_size, out_dim % (outputs.dim() + 1))
    raise _NotPlain


def check_output_leaf(func: Callable, outputs: Any, spec: TreeSpec, out_dims: Any, i: int,
                      out: Any, out_dim: int) -> int:
    """The logical rank of output leaf i (one example's `out`) once the mapped dim is at
    out_dim; torch.func's errors for a leaf that is not a Tensor or an out_dim out of range."""
    name = fn_name(func)
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"vmap({name}, ...): `{name}` must only return "
            f"Tensors, got type {type(out)}. "
            "Did you mean to set out_dims= to None for output?")
    rank = out.dim() + 1  # the logical rank once the batch dim is inserted
    if not -rank <= out_dim < rank:
        where = "the output" if spec.is_leaf() else named_leaves(outputs, "outputs")[i][0]
        raise OutDimError(with_torch_func_text(
            f"Dimension out of range (expected to be in range of [{-rank}, {rank - 1}], "
            f"but got {out_dim})",
            f"vmap({name}, ..., out_dims={out_dims!r})(<inputs>): out_dim={out_dim} is "
            f"out of range for {where} of {name}, which has {out.dim()} dims per example "
            f"({rank} with the mapped dim), so expected {-rank} <= out_dim < {rank}."))
    return rank


# --- one call -------------------------------------------------------------------------------

class _RandomOpWatch(TorchDispatchMode):
    """Raises vmap's randomness error at the first random op (for chunk_size=1)."""

    def __init__(self, func: Callable) -> None:
        super().__init__()
        self.func = func

    def __torch_dispatch__(self, op, types, args=(), kwargs=None):
        if torch.Tag.nondeterministic_seeded in op.tags and not _draws_nothing(op, args, kwargs):
            raise RuntimeError(with_torch_func_text(
                "vmap: called random operation while in randomness error mode. Please either use "
                "the 'same' or 'different' randomness flags on vmap or perform the randomness "
                "operation out of vmap",
                f"{op} ran inside vmap({fn_name(self.func)}, chunk_size=1)."))
        return op(*args, **(kwargs or {}))


def _draws_nothing(op, args, kwargs) -> bool:
    """A dropout_p of 0 draws nothing (as in the engine's draws_nothing)."""
    for i, a in enumerate(op._schema.arguments):
        if a.name == "dropout_p":
            value = (kwargs or {}).get("dropout_p", args[i] if i < len(args) else a.default_value)
            return value == 0
    return False


class _Call:
    """One call of a vmapped function: everything but the (chunk of the) input leaves."""

    def __init__(self, func: Callable, out_dims: Any, randomness: str, args_spec: TreeSpec,
                 flat_in_dims: list[int | None], kwargs: dict) -> None:
        self.func, self.out_dims, self.randomness = func, out_dims, randomness
        self.args_spec, self.flat_in_dims, self.kwargs = args_spec, flat_in_dims, kwargs

    def run(self, batch_size: int, flat_args: list[Any]) -> Any:
        with vmap_level(batch_size, self.randomness) as level:
            batched = [arg if in_dim is None else _C.add_batch_dim(arg, in_dim, level)
                       for arg, in_dim in zip(flat_args, self.flat_in_dims)]
            args = batched if self.args_spec is flat_tuple_spec(len(batched)) else tree_unflatten(batched, self.args_spec)
            outputs = self.func(*args, **self.kwargs)
            return _unbatch(self.func, outputs, self.out_dims, level, batch_size)

    def run_per_example(self, batch_size: int, flat_args: list[Any]) -> Any:
        """NOTE [chunk_size=1 runs plain examples]
        With chunk_size=1 there is nothing to batch, so func runs once per example on
        plain slices (no vmap level), as the loop that vmap stands for: code that needs
        the values of the mapped tensors (.item(), nonzero, Python control flow) works.
        The outputs are stacked at their out_dims and must have one shape per leaf.
        Randomness keeps its meaning: 'different' draws per example as the calls run,
        'same' restores the RNG state before each example, and 'error' raises at the
        first random op (a dispatch mode watches the calls). torch.func runs size-1
        vmaps here, which refuse data-dependent code."""
        rng_state = torch.get_rng_state() if self.randomness == "same" else None
        outputs = []
        for i in range(batch_size):
            if rng_state is not None:
                torch.set_rng_state(rng_state)
            example = [arg if d is None else arg.select(d, i)
                       for arg, d in zip(flat_args, self.flat_in_dims)]
            watch = _RandomOpWatch(self.func) if self.randomness == "error" else contextlib.nullcontext()
            with watch:
                outputs.append(self.func(*tree_unflatten(example, self.args_spec), **self.kwargs))
        if not outputs:  # an empty batch: vmap it, which handles size 0
            return self.run(batch_size, flat_args)
        flat_per_example = []
        spec = tree_flatten(outputs[0])[1]
        for i, out in enumerate(outputs):
            flat, out_spec = tree_flatten(out)
            if out_spec != spec:
                raise ValueError(
                    f"vmap({fn_name(self.func)}, chunk_size=1): `{fn_name(self.func)}` returned "
                    f"outputs of different structures for examples 0 and {i}; every example must "
                    f"return the same structure.")
            flat_per_example.append(flat)
        flat_out_dims = _flat_out_dims(self.func, outputs[0], spec, self.out_dims)
        stacked = []
        for j, (out_dim, pieces) in enumerate(zip(flat_out_dims, zip(*flat_per_example))):
            if out_dim is None:
                stacked.append(pieces[0])
                continue
            for piece in pieces:  # raises for a non-Tensor or an out_dim out of range
                check_output_leaf(self.func, outputs[0], spec, self.out_dims, j, piece, out_dim)
            shapes = {tuple(p.shape) for p in pieces}
            if len(shapes) > 1:
                raise RuntimeError(
                    f"vmap({fn_name(self.func)}, chunk_size=1): output {j} has a different shape "
                    f"per example ({sorted(shapes)[:3]}...), which cannot be stacked. Return one "
                    f"shape per example (pad, or reduce), or map over a nested tensor.")
            stacked.append(torch.stack(pieces, out_dim))
        return tree_unflatten(stacked, spec)

    def run_chunked(self, batch_size: int, chunk_size: int, flat_args: list[Any]) -> Any:
        """Run chunk_size examples at a time (the last chunk may be smaller) and
        concatenate the outputs along their out_dims. With randomness='same' every
        chunk starts from the same RNG state, so all examples share the draws."""
        split_at = list(range(chunk_size, batch_size, chunk_size))
        n_chunks = len(split_at) + 1
        per_arg = [[arg] * n_chunks if in_dim is None else arg.tensor_split(split_at, in_dim)
                   for arg, in_dim in zip(flat_args, self.flat_in_dims)]
        rng_state = torch.get_rng_state() if self.randomness == "same" else None
        chunk_outputs = []
        for chunk_args in zip(*per_arg):
            if rng_state is not None:
                torch.set_rng_state(rng_state)
            chunk_outputs.append(self.run(_batch_size(self.flat_in_dims, chunk_args),
                                          list(chunk_args)))

        flat_per_chunk = [tree_flatten(out)[0] for out in chunk_outputs]
        spec = tree_flatten(chunk_outputs[0])[1]
        flat_out_dims = _flat_out_dims(self.func, chunk_outputs[0], spec, self.out_dims)
        del chunk_outputs
        flat = [pieces[0] if out_dim is None else torch.cat(pieces, dim=out_dim)
                for out_dim, pieces in zip(flat_out_dims, zip(*flat_per_chunk))]
        return tree_unflatten(flat, spec)
