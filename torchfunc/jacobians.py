"""jacrev, jacfwd and hessian: whole Jacobians from vjp or jvp, and vmap.

jacrev(f)(*args) runs f once under vjp, then applies vjp_fn to every row of the
standard basis of the (flattened) outputs at once, with vmap; the VJP of basis row k
is row k of the Jacobian. jacfwd(f) pushes every column of the standard basis of the
(flattened) inputs through jvp at once, with vmap; the JVP of basis column k is
column k. With chunk_size the basis is processed chunk_size vectors at a time;
chunk_size=1 is a plain loop, without vmap.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator

import torch

from ._levels import grad_level, outside_inference_mode, refuse_torch_func_mixing
from ._pytree import (
    RandomnessError,
    TreeSpec,
    check_argnums,
    fn_name,
    plain_leaves,
    slice_argnums,
    tree_flatten,
    tree_leaves,
    tree_map_tensors,
    tree_unflatten,
    with_torch_func_text,
    wrap_argnums,
    wraps,
)
from .autodiff import (
    _VJP,
    _autograd_grad,
    _check_aux,
    _check_differentiable,
    _check_vjp_outputs,
    _lift,
    _require_grad,
    _split_aux,
    _unwrap,
    vjp_with_argnums,
)
from .forward import jvp_with_context
from .vmap import vmap, vmap_call

__all__ = ["jacrev", "jacfwd", "hessian"]


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
        _error_if_complex("jacrev", args, "inputs")
        wrapped = wrap_argnums(argnums, len(args), f"jacrev({name}, argnums={argnums!r})(*args)",
                               name)
        output, vjp_fn, aux = vjp_with_argnums("jacrev", f"jacrev({name})(*args)", func, args,
                                               wrapped, has_aux)
        flat_output, output_spec = tree_flatten(output)
        _error_if_complex("jacrev", flat_output, "outputs")
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


def jacfwd(func: Callable, argnums: int | tuple[int, ...] = 0, has_aux: bool = False, *,
           randomness: str = "error", chunk_size: int | None = None) -> Callable:
    """Jacobian of ``func`` with respect to the positional argument(s) ``argnums``,
    computed with forward-mode autodiff (one JVP per input element, vmapped).

    Arguments and results are those of :func:`jacrev`; ``randomness`` is passed to the
    vmap over the basis. ``chunk_size`` (beyond torch.func) bounds memory: ``k``
    computes ``k`` columns at a time, ``1`` uses a plain loop without vmap (random ops
    then draw per column as in a Python loop: ``randomness`` applies to vmapped chunks).
    """
    name = fn_name(func)
    check_argnums(argnums, f"jacfwd({name}, argnums={argnums!r})")
    if not (chunk_size is None or chunk_size > 0):
        raise ValueError("jacfwd: `chunk_size` should be greater than 0.")
    if randomness not in ("error", "same", "different"):
        raise RandomnessError(with_torch_func_text(
            f"Only allowed values for randomness are 'error', 'different', or 'same'. "
            f"Got {randomness}",
            f"jacfwd({name}, ..., randomness={randomness!r}): randomness is passed to the "
            f"vmap over the basis of the inputs."))

    @wraps(func)
    def wrapper_fn(*args: Any) -> Any:
        wrapped = _jacfwd_checks(name, argnums, args)
        context = f"jacfwd({name})(*args)"
        diff_positions = (wrapped,) if isinstance(wrapped, int) else wrapped
        flat_primals, primals_spec = tree_flatten(slice_argnums(args, wrapped))

        def of_primals(*leaves: Any) -> Any:
            full = list(args)
            for position, value in zip(diff_positions, tree_unflatten(list(leaves), primals_spec)):
                full[position] = value
            return func(*full)

        def push(*tangents: torch.Tensor) -> tuple:
            return jvp_with_context(context, name, of_primals, tuple(flat_primals), tangents,
                                    False, has_aux)[1:]

        numels = [p.numel() for p in flat_primals]
        # randomness='same' means one draw for every column: each chunk starts from the
        # same RNG state, as vmap(chunk_size=...) does.
        rng_state = torch.get_rng_state() if randomness == "same" else None
        chunks, aux, output_spec = [], None, None
        for basis in _standard_basis(flat_primals, numels, chunk_size):
            if rng_state is not None:
                torch.set_rng_state(rng_state)
            if chunk_size == 1 and basis[0].shape[0] > 0:  # a plain loop: no vmap restrictions
                result = push(*(b[0] for b in basis))
                columns = tree_map_tensors(lambda t: t.unsqueeze(0), result[0])
                chunk_aux = result[1] if has_aux else None
            else:
                result = vmap_call(push, tuple(basis), {}, randomness=randomness)
                columns = result[0]
                chunk_aux = tree_map_tensors(lambda t: t[0], result[1]) if has_aux else None
            flat_columns, output_spec = tree_flatten(columns)
            chunks.append(flat_columns)
            if aux is None:
                aux = chunk_aux
        flat_output_columns = _concatenate(iter(chunks))
        _error_if_complex("jacfwd", flat_output_columns, "outputs")

        # Output o's columns have shape (N, *o.shape), N = all primal elements: split them
        # per primal and move the columns last, giving o.shape + primal.shape.
        per_output = []
        for columns in flat_output_columns:
            out_shape = tuple(columns.shape[1:])
            pieces = (columns,) if len(flat_primals) == 1 else torch.split(columns, numels, dim=0)
            jacs = [piece.movedim(0, -1).reshape(out_shape + tuple(primal.shape))
                    for piece, primal in zip(pieces, flat_primals)]
            jac = tree_unflatten(jacs, primals_spec)
            per_output.append(jac[0] if isinstance(argnums, int) else jac)
        jacobian = tree_unflatten(per_output, output_spec)
        return (jacobian, aux) if has_aux else jacobian

    return wrapper_fn


def _jacfwd_checks(name: str, argnums: int | tuple[int, ...], args: tuple) -> int | tuple[int, ...]:
    """jacfwd's checks of its arguments, in torch.func's order; returns argnums wrapped."""
    refuse_torch_func_mixing("jacfwd")
    _error_if_complex("jacfwd", args, "inputs")
    wrapped = wrap_argnums(argnums, len(args), f"jacfwd({name}, argnums={argnums!r})(*args)", name)
    _check_differentiable(f"jacfwd({name})(*args)", args, wrapped, "or leave it out of argnums",
                          forward=True)
    return wrapped


def hessian(func: Callable, argnums: int | tuple[int, ...] = 0, *, has_aux: bool = False,
            chunk_size: int | None = None) -> Callable:
    """Hessian of ``func`` with respect to the positional argument(s) ``argnums``.

    The result is torch.func's, ``jacfwd(jacrev(func, argnums), argnums)``: for each
    output leaf, for each differentiated argument ``i`` and ``k``, a Tensor of shape
    ``output.shape + arg_i.shape + arg_k.shape``; and its checks raise torch.func's
    errors. It is computed reverse-over-reverse at one grad level (NOTE [hessian at one
    grad level]); values agree with forward-over-reverse up to rounding.

    Beyond torch.func: ``has_aux`` (``func`` returns ``(output, aux)``; the result is
    ``(hessian, aux)``) and ``chunk_size`` (both Jacobians computed ``chunk_size``
    vectors at a time, to bound memory).

    Example::

        >>> x = torch.randn(5)
        >>> torch.allclose(hessian(lambda x: x.sin().sum())(x), torch.diag(-x.sin()))
        True
    """
    if not (chunk_size is None or chunk_size > 0):
        raise ValueError("hessian: `chunk_size` should be greater than 0.")
    name = fn_name(func)
    check_argnums(argnums, f"jacrev({name}, argnums={argnums!r})")

    @wraps(func)
    def wrapper_fn(*args: Any) -> Any:
        # torch.func's checks, in its order: the outer jacfwd's (the inner jacrev's then pass).
        wrapped = _jacfwd_checks(name, argnums, args)
        flat_hessians, flat_primals, primals_spec, output_shapes, output_spec, aux = second_derivatives(
            name, func, args, wrapped, has_aux, chunk_size)

        def per_primal(blocks: list[Any]) -> Any:  # the structure of the differentiated args
            tree = tree_unflatten(list(blocks), primals_spec)
            return tree[0] if isinstance(argnums, int) else tree

        per_output = []
        for o, out_shape in enumerate(output_shapes):
            per_output.append(per_primal([
                per_primal([flat_hessians[o][i][k].view(out_shape + pi.shape + pk.shape)
                            for k, pk in enumerate(flat_primals)])
                for i, pi in enumerate(flat_primals)]))
        result = tree_unflatten(per_output, output_spec)
        return (result, aux) if has_aux else result

    return wrapper_fn


# NOTE [hessian at one grad level]
# torch.func's hessian is jacfwd(jacrev(f)): every op of f, and of its backward, runs under
# a vmap over the input basis and two autodiff levels. torchfunc computes the same matrix
# as torch.autograd.functional.hessian(vectorize=True) does: f and its gradient run once,
# at one grad level, the gradient's graph recorded there (create_graph); then the second
# backward, through that graph, runs under one vmap over the basis of the gradient's
# elements. Rows are indexed as jacfwd(jacrev(f)) indexes them (H[i][j] = d grad_i / d x_j)
# and the checks raise torch.func's errors first. Beyond it, as autograd's hessian: f runs
# outside vmap, so random ops draw once, and f needs no forward-mode formulas.
# The second backward runs once the level is popped, as vjp_fn does: through the graph
# the level recorded, on its dead GradTensors, so every op of it passes one vmap level
# only (kept pushed, the level would send each op on and lift its results: measured,
# benchmarks/bench.py --only hessian,hessian_mlp, hessian / autograd.functional.hessian
# (vectorize=True) went from 1.03 to 0.95 for n=8, 0.97 to 0.87 for the MLP). Nothing
# the level would check is lost: a hook or custom backward that writes into a captured
# tensor runs in the first backward too, at the live level, and is refused there.

def second_derivatives(name: str, func: Callable, args: tuple, argnums: Any, has_aux: bool,
                       chunk_size: int | None) -> tuple:
    """(blocks, flat_primals, primals_spec, output_shapes, output_spec, aux) for hessian:
    blocks[o][i][k] holds d2 output_o / d primal_i d primal_k, flattened as
    (output_o.numel(), primal_i.numel(), primal_k.numel()); the primals are the
    differentiated arguments' leaves, primals_spec their structure (as_tuple, as jacrev
    builds its result), output_spec the output's. The caller has checked args as jacfwd does, so the inner jacrev's
    checks of the arguments pass; those of the outputs are made here, in jacrev's words."""
    context = f"jacrev({name})(*args)"
    record = torch.is_grad_enabled()  # outer levels and autograd record the second backward
    flat_primals, primals_spec = tree_flatten(slice_argnums(args, argnums))
    with grad_level() as level:
        primals = _lift(args, level)
        diff = slice_argnums(primals, argnums, as_tuple=False)
        _require_grad(diff)
        output, aux = _split_aux(_VJP, context, name, func(*primals), has_aux)
        if has_aux:
            _check_aux(context, name, aux)
        flat_output, output_spec = tree_flatten(output)
        _check_vjp_outputs(context, name, output, flat_output, True)
        _error_if_complex("jacrev", flat_output, "outputs")
        flat_diff = plain_leaves(diff)
        first = _jacobian_rows(flat_output, flat_diff, chunk_size, create_graph=True)
        output_shapes = [out.shape for out in flat_output]
        out_numels = [o.numel() for o in flat_output]
        aux = _unwrap(aux, level)
    # The level is popped: the second backward runs through its graph on its dead
    # GradTensors, as vjp_fn does (NOTE [hessian at one grad level]).
    with outside_inference_mode():
        blocks = _second_backward(first, flat_diff, out_numels, chunk_size, record, level)
    return blocks, flat_primals, primals_spec, output_shapes, output_spec, aux


def _second_backward(first: list[torch.Tensor], flat_diff: list[torch.Tensor], out_numels: list[int],
                     chunk_size: int | None, create_graph: bool, level: int) -> list[list[list[torch.Tensor]]]:
    """second_derivatives' blocks from the first derivatives `first` (one per primal,
    rows over the outputs' elements), recorded at the popped grad level `level`."""
    blocks: list[list[list[torch.Tensor]]] = [[[] for _ in flat_diff] for _ in out_numels]
    # One backward per primal's first derivative, as autograd's hessian differentiates
    # one gradient at a time: a zero cotangent for another gradient would multiply
    # its infinite partials (masked -inf) into NaNs.
    for i, first_i in enumerate(first):
        for k, rows in enumerate(_jacobian_rows([first_i], flat_diff, chunk_size, create_graph)):
            # rows: d first_i[m, a] / d primal_k, for every output element m and a.
            # (A formula may return a saved tensor as it is: a dead GradTensor of the level.)
            rows = _unwrap(rows, level).reshape(sum(out_numels), flat_diff[i].numel(),
                                                flat_diff[k].numel())
            for o, block in enumerate(_split(rows, out_numels)):
                blocks[o][i].append(block)
    return blocks


def _split(t: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    return [t] if len(sizes) == 1 else list(torch.split(t, sizes, dim=0))


def _jacobian_rows(flat_output: list[torch.Tensor], flat_inputs: list[torch.Tensor],
                   chunk_size: int | None, create_graph: bool) -> list[torch.Tensor]:
    """The Jacobian of the outputs with respect to the inputs, at the current grad level or
    through the graph of a popped one (hessian's second backward), one tensor per input
    of shape (total output elements, *input.shape)."""
    numels = [out.numel() for out in flat_output]
    if sum(numels) == 0:
        return [inp.new_zeros((0, *inp.shape)) for inp in flat_inputs]
    if sum(numels) == 1:  # one row: the gradient itself (its rows dim left implicit)
        scalar = [out for out, numel in zip(flat_output, numels) if numel == 1]
        return list(_autograd_grad(scalar, flat_inputs, retain_graph=True, create_graph=create_graph))
    def vjp_fn(cotangents: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(_autograd_grad(flat_output, flat_inputs, cotangents, retain_graph=True,
                                   create_graph=create_graph))

    return _concatenate(_vjp_rows(vjp_fn, basis, None, chunk_size)
                        for basis in _standard_basis(flat_output, numels, chunk_size))


# --- the standard basis and its VJPs ----------------------------------------------------------

def _standard_basis(flat_output: list[torch.Tensor], numels: list[int],
                    chunk_size: int | None) -> Iterator[list[torch.Tensor]]:
    """The N x N identity, N = sum(numels), chunk_size rows at a time; each chunk split
    by columns into one tensor per output, of shape (rows, *output.shape)."""
    total = sum(numels)
    if total == 0:  # no basis vector: one chunk of zero rows (an empty Jacobian)
        yield [out.new_zeros(0, *out.shape) for out in flat_output]
        return
    step = total if chunk_size is None else min(chunk_size, total)
    if len(flat_output) == 1 and step == total:  # the identity itself
        out = flat_output[0]
        yield [torch.eye(total, dtype=out.dtype, device=out.device).view(total, *out.shape)]
        return
    starts = [0, *itertools.accumulate(numels)][:-1]  # first column of each output
    for first_row in range(0, total, step):
        rows = min(step, total - first_row)
        chunk = []
        for out, numel, first_col in zip(flat_output, numels, starts):
            # Plain tensors, not out's wrappers: no level records the basis.
            piece = torch.zeros((rows, numel), dtype=out.dtype, device=out.device)
            piece.diagonal(first_row - first_col).fill_(1)
            chunk.append(piece.view(rows, *out.shape))
        yield chunk


def _vjp_rows(vjp_fn: Callable, basis: list[torch.Tensor], output_spec: TreeSpec | None,
              chunk_size: int | None) -> list[torch.Tensor]:
    """VJPs of the basis rows, one tensor per primal leaf with the rows as dim 0.
    vjp_fn takes the cotangents in the structure output_spec, or as a list (None)."""
    def structured(cotangents: list[torch.Tensor]) -> Any:
        return cotangents if output_spec is None else tree_unflatten(cotangents, output_spec)

    if basis[0].shape[0] == 1 or (chunk_size == 1 and basis[0].shape[0] > 0):
        # One row (a scalar output, or chunk_size=1): a plain call, without a vmap level
        # whose every op would only add and remove a batch dim of size 1.
        vjps = vjp_fn(structured([row[0] for row in basis]))
        return [v.unsqueeze(0) for v in plain_leaves(vjps)]

    # Flat positional Tensors in, a tuple of Tensors out: vmap's fast path (no pytree walks).
    def rows(*cotangents: torch.Tensor) -> tuple:
        return tuple(plain_leaves(vjp_fn(structured(list(cotangents)))))

    return list(vmap_call(rows, tuple(basis), {}))


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


def _error_if_complex(api: str, tree: Any, what: str) -> None:
    for idx, leaf in enumerate(plain_leaves(tree)):
        if isinstance(leaf, torch.Tensor) and leaf.dtype.is_complex:
            raise RuntimeError(
                f"{api}: Expected all {what} to be real but received complex tensor at "
                f"flattened input idx: {idx}")
