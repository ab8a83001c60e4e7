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

from ._engine import _C
from ._levels import jvp_level, refuse_torch_func_mixing
from ._pytree import fn_name, tree_flatten, tree_map, tree_unflatten, treespec_pprint
from .autodiff import _split_aux, vjp, vjp_with_argnums

__all__ = ["jvp", "linearize"]


def jvp(func: Callable, primals: Any, tangents: Any, *, strict: bool = False,
        has_aux: bool = False) -> tuple:
    """Jacobian-vector product: ``(func(*primals), J @ tangents)``.

    Args:
        func: a function of the primals returning a Tensor or a pytree of Tensors
            (``(output, aux)`` with ``has_aux``).
        primals: a tuple or list of arguments (pytrees of floating point Tensors):
            ``func(*primals)`` is evaluated.
        tangents: the same structure as ``primals``, one tangent per primal, of the same
            shape, dtype and device.
        strict: raise if an output does not depend on the primals (else its tangent is
            zeros). Default: False.
        has_aux: ``func`` returns ``(output, aux)``; ``aux`` is returned as is.

    Returns:
        ``(output, jvp_out)``, or ``(output, jvp_out, aux)`` with ``has_aux``.
    """
    refuse_torch_func_mixing("jvp")
    context = "jvp(f, primals, tangents" + (", strict=True)" if strict else ")")
    name = fn_name(func)
    flat_primals, primals_spec = _check_primals_and_tangents(context, primals, tangents)
    flat_tangents = tree_flatten(tangents)[0]
    with jvp_level() as level:
        duals = [fwAD.make_dual(_C.wrap_for_grad(p, level), t)
                 for p, t in zip(flat_primals, flat_tangents)]
        output, aux = _split_aux(context, name, func(*tree_unflatten(duals, primals_spec)),
                                 has_aux)
        flat_output, output_spec = tree_flatten(output)
        primal_outs, tangent_outs = [], []
        for i, out in enumerate(flat_output):
            if not isinstance(out, torch.Tensor):
                raise RuntimeError(f"{context}: expected {name} to return only tensors, got "
                                   f"unsupported type {type(out)} at output {i}")
            primal, tangent = fwAD.unpack_dual(out)
            if tangent is None:
                if strict:
                    raise RuntimeError(f"{context}: The output of {name} is independent of "
                                       "the inputs. This is not allowed with strict=True.")
                tangent = torch.zeros_like(primal)
            primal_outs.append(_C.unwrap_for_grad(primal, level))
            tangent_outs.append(_C.unwrap_for_grad(tangent, level))
        aux = tree_map(lambda x: _C.unwrap_for_grad(x, level) if isinstance(x, torch.Tensor)
                       else x, aux)
    result = (tree_unflatten(primal_outs, output_spec), tree_unflatten(tangent_outs, output_spec))
    return result + (aux,) if has_aux else result


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
            raise RuntimeError(
                f"{context}: jvp_fn expects tangents with the structure of the primals "
                f"{treespec_pprint(primals_spec)}, got {treespec_pprint(tangents_spec)}.")
        for i, (p, t) in enumerate(zip(flat_primals, flat_tangents)):
            _check_tangent(f"{context}: jvp_fn", i, p, t)
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


def _check_primals_and_tangents(context: str, primals: Any, tangents: Any) -> tuple[list, Any]:
    if not isinstance(primals, (tuple, list)):
        raise RuntimeError(f"{context}: Expected primals to be a tuple. "
                           "E.g. it should be valid to call f(*primals).")
    flat_primals, primals_spec = tree_flatten(tuple(primals))
    flat_tangents, tangents_spec = tree_flatten(tuple(tangents) if isinstance(tangents, list)
                                                else tangents)
    if primals_spec != tangents_spec:
        raise RuntimeError(
            f"{context}: Expected primals and tangents to have the same python structure: "
            f"primals is {treespec_pprint(primals_spec)} but tangents is "
            f"{treespec_pprint(tangents_spec)}.")
    for i, (p, t) in enumerate(zip(flat_primals, flat_tangents)):
        _check_tangent(context, i, p, t)
    return flat_primals, primals_spec


def _check_tangent(context: str, i: int, primal: Any, tangent: Any) -> None:
    """Tangent i matches primal i in type, shape, dtype and device (torch.func accepts a
    tangent of another dtype silently; we do not)."""
    if not isinstance(primal, torch.Tensor) or not isinstance(tangent, torch.Tensor):
        bad = "primals" if not isinstance(primal, torch.Tensor) else "tangents"
        raise ValueError(f"{context}: {bad}[{i}] must be a Tensor, got "
                         f"{type(primal if bad == 'primals' else tangent).__name__}.")
    if not (primal.is_floating_point() or primal.is_complex()):
        raise ValueError(f"{context}: primals[{i}] has dtype {primal.dtype}; forward-mode AD "
                         "needs floating point or complex primals.")
    for what, p, t in (("shape", tuple(primal.shape), tuple(tangent.shape)),
                       ("dtype", primal.dtype, tangent.dtype),
                       ("device", primal.device, tangent.device)):
        if p != t:
            raise ValueError(f"{context}: tangents[{i}] has {what} {t} but primals[{i}] has "
                             f"{what} {p}; each tangent must match its primal in shape, "
                             "dtype and device.")
