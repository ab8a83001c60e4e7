"""jvp and linearize: forward-mode autodiff as function transforms.

A jvp call pushes one jvp level, lifts the primals to GradTensors at that level and
attaches each tangent as the forward gradient of its primal (torch's forward-mode
AD, on the level's own GradTensors, so nested jvps never mix their tangents). The
function then runs once, carrying tangents along; results are unwrapped back to
the level below.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.autograd.forward_ad as fwAD
from torch._export.utils import _maybe_find_pre_dispatch_tf_mode_for_export as _pre_dispatch_mode

from ._engine import _C
from ._levels import jvp_level, refuse_torch_func_mixing
from ._pytree import (
    InputError,
    fn_name,
    kind_of,
    named_leaves,
    tree_flatten,
    tree_map_tensors,
    tree_unflatten,
    treespec_pprint,
    with_torch_func_text,
)
from .autodiff import _check_aux, _split_aux, vjp, vjp_with_argnums

__all__ = ["jvp", "linearize"]

# How torch.func names jvp in its messages (also when jacfwd calls it); users match these.
_JVP = "jvp(f, primals, tangents)"


def jvp(func: Callable, primals: Any, tangents: Any, *, strict: bool = False,
        has_aux: bool = False) -> tuple:
    """Jacobian-vector product: ``(func(*primals), J @ tangents)``.

    Args:
        func: a function of the primals returning a Tensor or a pytree of Tensors
            (``(output, aux)`` with ``has_aux``).
        primals: a tuple of arguments (pytrees of floating point Tensors):
            ``func(*primals)`` is evaluated.
        tangents: the same structure as ``primals``, one tangent per primal, of the same
            shape, dtype and device.
        strict: raise if an output does not depend on the primals (else its tangent is
            zeros). Default: False.
        has_aux: ``func`` returns ``(output, aux)``; ``aux`` (a Tensor or a pytree of
            Tensors) is returned unwrapped, not differentiated.

    Returns:
        ``(output, jvp_out)``, or ``(output, jvp_out, aux)`` with ``has_aux``.
    """
    refuse_torch_func_mixing("jvp")
    name = fn_name(func)
    context = f"jvp({name}, primals, tangents" + (", strict=True)" if strict else ")")
    return jvp_with_context(context, name, func, primals, tangents, strict, has_aux)


def jvp_with_context(context: str, name: str, func: Callable, primals: Any, tangents: Any,
                     strict: bool, has_aux: bool) -> tuple:
    """jvp, with `context` and `name` naming the caller and the user's function in errors
    (jacfwd calls it on a wrapper of the user's function)."""
    # NOTE [jvp's fast path for flat primals]
    # Primals and tangents that are flat tuples of valid Tensor pairs (jacfwd calls jvp
    # so) skip the checks that name a culprit, and the pytree walks (our tree_flatten
    # does not walk a tuple of Tensors); anything else, and every error, takes the
    # general path.
    if _flat_valid_pairs(primals, tangents):
        flat_primals, primals_spec = tree_flatten(primals)
    else:
        flat_primals, primals_spec = _check_primals_and_tangents(context, primals, tangents)
    flat_tangents = tree_flatten(tangents)[0]
    with jvp_level() as level:
        duals = _make_duals(flat_primals, flat_tangents, level)
        output, aux = _split_aux(_JVP, context, name, func(*tree_unflatten(duals, primals_spec)),
                                 has_aux)
        if has_aux:  # before the outputs, as torch.func
            _check_aux(context, name, aux)
        flat_output, output_spec = tree_flatten(output)
        _check_jvp_outputs(context, name, output, flat_output)
        primal_outs, tangent_outs = _unpack_duals(flat_output, level, zeros_for_missing=not strict)
        missing = next((i for i, t in enumerate(tangent_outs) if t is None), None) if strict else None
        if missing is not None:
            where = "the output" if len(flat_output) == 1 else named_leaves(output, "output")[missing][0]
            raise RuntimeError(with_torch_func_text(
                "jvp(f, primals, tangents, strict=True): The output of f is independent "
                "of the inputs. This is not allowed with strict=True.",
                f"{context}: {where} of {name} does not depend on the primals."))
        aux = tree_map_tensors(lambda x: _C.unwrap_for_grad(x, level), aux)
    result = (tree_unflatten(primal_outs, output_spec), tree_unflatten(tangent_outs, output_spec))
    return result + (aux,) if has_aux else result


def _flat_valid_pairs(primals: Any, tangents: Any) -> bool:
    return (type(primals) is tuple and type(tangents) is tuple and len(primals) == len(tangents)
            and len(primals) > 0 and all(_valid_pair(p, t) for p, t in zip(primals, tangents)))


def _make_duals(primals: list[torch.Tensor], tangents: list[torch.Tensor], level: int) -> list[torch.Tensor]:
    """The primals lifted to GradTensors at `level`, each with its tangent as forward
    gradient at the dual level (NOTE [Dual tensors without make_dual]). The transform has
    made make_dual's checks already (dtypes, a dual level entered). Under torch.export's
    pre-dispatch tracing, fwAD.make_dual itself, which that tracing intercepts."""
    if _export_mode():
        return [fwAD.make_dual(_C.wrap_for_grad(p, level), t) for p, t in zip(primals, tangents)]
    return _C.make_duals(primals, tangents, level, fwAD._current_level)


def _unpack_duals(outputs: list[torch.Tensor], level: int,
                  zeros_for_missing: bool) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """(primals, tangents) of the function's outputs, unwrapped from `level`: an output
    that does not depend on the primals gets None as tangent, or zeros like it with
    `zeros_for_missing`. Under torch.export's pre-dispatch tracing, with fwAD.unpack_dual,
    as _make_duals uses fwAD.make_dual."""
    if not _export_mode():
        return _C.unpack_duals(outputs, level, fwAD._current_level, zeros_for_missing)
    primals, tangents = [], []
    for out in outputs:
        primal, tangent = fwAD.unpack_dual(out)
        if tangent is None and zeros_for_missing:
            tangent = torch.zeros_like(primal)
        primals.append(_C.unwrap_for_grad(primal, level))
        tangents.append(None if tangent is None else _C.unwrap_for_grad(tangent, level))
    return primals, tangents


def _export_mode() -> bool:
    global _decompositions_loaded
    if not _decompositions_loaded:  # what fwAD.make_dual loads on its first call
        fwAD._maybe_load_decompositions()
        _decompositions_loaded = True
    return _pre_dispatch_mode() is not None


_decompositions_loaded = False


def linearize(func: Callable, *primals: Any, has_aux: bool = False) -> tuple:
    """``(func(*primals), jvp_fn)`` where ``jvp_fn(*tangents)`` gives ``J @ tangents``.

    ``func`` runs once, here: jvp_fn computes each product from the recorded reverse-mode
    graph (J t is the VJP of the linear map u -> J^T u), so calling it many times does not
    run ``func`` again. With ``has_aux``, returns ``(output, jvp_fn, aux)``.
    """
    refuse_torch_func_mixing("linearize")
    context = "linearize(func, *primals)"
    name = fn_name(func)
    output, vjp_fn, aux = vjp_with_argnums("linearize", context, func, primals, None, has_aux)
    flat_primals, primals_spec = tree_flatten(primals)
    flat_output, output_spec = tree_flatten(output)

    def jvp_fn(*tangents: Any) -> Any:
        flat_tangents, tangents_spec = tree_flatten(tangents)
        if tangents_spec != primals_spec:
            raise RuntimeError(with_torch_func_text(
                f"Expected the tangents {tangents_spec} to have the same argspec as the "
                f"primals {primals_spec}",
                f"{context}: jvp_fn expects tangents with the structure of the primals "
                f"{treespec_pprint(primals_spec)}, got {treespec_pprint(tangents_spec)}."))
        for i, (p, t) in enumerate(zip(flat_primals, flat_tangents)):
            _check_linearize_tangent(f"{context}: jvp_fn", i, p, t)
        # u -> vjp_fn(u) is the linear map J^T, so J t is its VJP at t: a vjp transform
        # over vjp_fn (at any u, here zeros) replays the recorded graph without running
        # func, and, being a transform, composes with vmap over t and with grad.
        def transpose(*us: torch.Tensor) -> tuple:
            return tuple(tree_flatten(vjp_fn(tree_unflatten(list(us), output_spec),
                                             create_graph=True))[0])

        dummies = [torch.zeros_like(o) for o in flat_output]
        products = vjp(transpose, *dummies)[1](tuple(flat_tangents))
        return tree_unflatten(list(products), output_spec)

    return (output, jvp_fn, aux) if has_aux else (output, jvp_fn)


# --- checks ---------------------------------------------------------------------------------

def _check_primals_and_tangents(context: str, primals: Any, tangents: Any) -> tuple[list, Any]:
    """In torch.func's order: primals a tuple, tangents of the same structure, both only
    Tensors, then each pair as make_dual checks it (and, beyond torch.func, the dtype)."""
    if not isinstance(primals, tuple):
        raise RuntimeError(with_torch_func_text(
            f"{_JVP}: Expected primals to be a tuple. E.g. it should be valid to call f(*primals).",
            f"{context}: primals is {kind_of(primals)}; pass a tuple (one entry per positional "
            f"argument of the function), e.g. (x,) for one."))
    flat_primals, primals_spec = tree_flatten(primals)
    flat_tangents, tangents_spec = tree_flatten(tangents)
    if flat_primals and primals_spec == tangents_spec and all(
            _valid_pair(p, t) for p, t in zip(flat_primals, flat_tangents)):
        return flat_primals, primals_spec  # the checks below name the culprit in their errors
    if primals_spec != tangents_spec:
        # torch.func goes on with "Got primals with structure TreeSpec(...)": in words here.
        raise RuntimeError(with_torch_func_text(
            f"{_JVP}: Expected primals and tangents to have the same python structure. For "
            f"example, if primals is a tuple of 3 tensors, tangents also must be.",
            f"{context}: primals is {treespec_pprint(primals_spec)} but tangents is "
            f"{treespec_pprint(tangents_spec)}."))
    for what, tree in (("primals", primals), ("tangents", tangents)):
        leaves = named_leaves(tree, what)
        if not leaves:
            raise InputError(with_torch_func_text(
                f"{_JVP}: Expected {what} to contain at least one Tensor.",
                f"{context}: {what} has no Tensor to differentiate with respect to."))
        for path, leaf in leaves:
            if not isinstance(leaf, torch.Tensor):
                raise InputError(with_torch_func_text(
                    f"{_JVP}: Expected {what} to only contain Tensors, got {type(leaf)}",
                    f"{context}: {path} is {kind_of(leaf)}."))
    paths = named_leaves(primals, "")
    for (path, _), p, t in zip(paths, flat_primals, flat_tangents):
        _check_jvp_tangent(context, path, p, t)
    return flat_primals, primals_spec


def _valid_pair(primal: Any, tangent: Any) -> bool:
    return (isinstance(primal, torch.Tensor) and isinstance(tangent, torch.Tensor)
            and (primal.is_floating_point() or primal.is_complex())
            and (tangent.is_floating_point() or tangent.is_complex())
            and primal.shape == tangent.shape and primal.device == tangent.device
            and primal.dtype == tangent.dtype)


def _check_jvp_tangent(context: str, path: str, primal: torch.Tensor,
                       tangent: torch.Tensor) -> None:
    """`path` is the pair's place in primals and in tangents, e.g. "[0]"."""
    def error(theirs: str | None, ours: str) -> InputError:
        ours = f"{context}: {ours}"
        return InputError(ours if theirs is None else with_torch_func_text(theirs, ours))

    for what, t in (("primal", primal), ("tangent", tangent)):
        if not (t.is_floating_point() or t.is_complex()):
            raise error(f"Expected {what} to be floating point or complex, but got: {t.dtype}",
                        f"{what}s{path} has dtype {t.dtype}; forward-mode AD needs floating "
                        f"point or complex {what}s.")
    mismatch = "; each tangent must match its primal in shape, dtype and device."
    if primal.shape != tangent.shape:
        raise error(f"Trying to set a forward gradient that has a different size than that of "
                    f"the original Tensor, this is not supported. Tensor is of size "
                    f"{list(primal.shape)} while the given forward gradient is of size "
                    f"{list(tangent.shape)}.",
                    f"tangents{path} has shape {tuple(tangent.shape)} but primals{path} has "
                    f"shape {tuple(primal.shape)}{mismatch}")
    if primal.device != tangent.device:
        raise error(f"Tensor on device {primal.device} is not on the expected device "
                    f"{tangent.device}!",
                    f"tangents{path} has device {tangent.device} but primals{path} has "
                    f"device {primal.device}{mismatch}")
    if primal.dtype != tangent.dtype:  # torch.func accepts it silently
        raise error(None, f"tangents{path} has dtype {tangent.dtype} but primals{path} has "
                          f"dtype {primal.dtype}{mismatch}")


def _check_linearize_tangent(context: str, i: int, primal: torch.Tensor, tangent: Any) -> None:
    """torch.func's linearize checks shape, device, dtype (in that order) of each flattened
    tangent; a non-Tensor makes it crash, so that message is ours alone."""
    if not isinstance(tangent, torch.Tensor):
        raise InputError(f"{context}: tangents[{i}] must be a Tensor, got {kind_of(tangent)}.")
    for what, p, t in (("shape", primal.shape, tangent.shape),
                       ("device", primal.device, tangent.device),
                       ("dtype", primal.dtype, tangent.dtype)):
        if p != t:
            shown = (tuple(t), tuple(p)) if what == "shape" else (t, p)
            raise InputError(with_torch_func_text(
                f"tangent:{i} with {what} {t} in flattened pytree doesn't match the {what} {p} "
                f"of the corresponding primal.",
                f"{context}: tangents[{i}] has {what} {shown[0]} but primals[{i}] has {what} "
                f"{shown[1]}; each tangent must match its primal in shape, dtype and device."))


def _check_jvp_outputs(context: str, name: str, output: Any, flat_output: list[Any]) -> None:
    if not flat_output or (len(flat_output) == 1 and flat_output[0] is None):
        got = "None" if output is None else f"{kind_of(output)} with no Tensor in it"
        raise RuntimeError(with_torch_func_text(
            f"{_JVP}: Expected f to be a function that has non-empty output "
            f"(got output = {flat_output})",
            f"{context}: {name} returned {got}; it must return a Tensor or a pytree of Tensors."))
    if all(isinstance(out, torch.Tensor) for out in flat_output):
        return
    leaves = named_leaves(output, "output")
    for path, out in leaves:
        if not isinstance(out, torch.Tensor):
            where = "the output" if len(leaves) == 1 else path
            raise RuntimeError(with_torch_func_text(
                f"{_JVP}: expected f(*primals) to return only tensors, got unsupported type "
                f"{type(out)}",
                f"{context}: {where} of {name} is {kind_of(out)}."))
