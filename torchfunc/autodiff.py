"""grad, grad_and_value and vjp: reverse-mode autodiff as function transforms.

A call pushes one grad level, lifts every tensor argument to a GradTensor at that
level, marks the differentiated ones as requiring grad, runs the function and asks
torch.autograd for the derivatives; results are unwrapped back to the level below.
Each level has its own autograd graph, so grad(grad(f)) and vmap(grad(f)) compose.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ._engine import _C
from ._levels import grad_level, outside_inference_mode, refuse_torch_func_mixing
from ._pytree import (
    check_argnums,
    fn_name,
    kind_of,
    named_leaves,
    slice_argnums,
    tree_flatten,
    tree_leaves,
    tree_map,
    tree_unflatten,
    treespec_pprint,
    wrap_argnums,
    wraps,
)

__all__ = ["grad", "grad_and_value", "vjp"]


def grad(func: Callable, argnums: int | tuple[int, ...] = 0, has_aux: bool = False) -> Callable:
    """Gradient of ``func`` with respect to the positional argument(s) ``argnums``.

    Args:
        func: a function returning a scalar (0-dim) Tensor, or ``(scalar, aux)`` when
            ``has_aux`` is True.
        argnums: the argument (int) or arguments (tuple of ints) to differentiate; each
            may be a pytree of floating point or complex Tensors. Default: 0.
        has_aux: ``func`` returns ``(output, aux)``; ``aux`` is returned as is, not
            differentiated. Default: False.

    Returns:
        A function with the arguments of ``func`` returning the gradient (a tuple of
        gradients for tuple ``argnums``), or ``(gradient, aux)`` with ``has_aux``.

    A ``torch.no_grad()`` around the call is ignored; one inside ``func`` is honoured.

    Example::

        >>> x = torch.randn(3)
        >>> torch.allclose(grad(lambda x: x.sin().sum())(x), x.cos())
        True
    """
    check_argnums(argnums, f"grad({fn_name(func)}, argnums={argnums!r})")

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        grads, _, aux = _grad_and_value("grad", func, argnums, has_aux, args, kwargs)
        return (grads, aux) if has_aux else grads

    return wrapper


def grad_and_value(func: Callable, argnums: int | tuple[int, ...] = 0,
                   has_aux: bool = False) -> Callable:
    """Like :func:`grad`, but also returns the value of ``func``: ``(gradient, value)``,
    or ``(gradient, (value, aux))`` with ``has_aux``."""
    check_argnums(argnums, f"grad_and_value({fn_name(func)}, argnums={argnums!r})")

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        grads, value, aux = _grad_and_value("grad_and_value", func, argnums, has_aux, args,
                                            kwargs)
        return (grads, (value, aux)) if has_aux else (grads, value)

    return wrapper


def vjp(func: Callable, *primals: Any, has_aux: bool = False) -> tuple:
    """Vector-Jacobian product: returns ``(func(*primals), vjp_fn)``, or
    ``(output, vjp_fn, aux)`` with ``has_aux``.

    ``vjp_fn(cotangents, retain_graph=True, create_graph=None)`` takes cotangents with
    the structure and shapes of the output and returns a tuple with one VJP per primal.
    ``create_graph=None`` means ``torch.is_grad_enabled()`` at the time of the call.
    All primals are differentiated; keyword arguments of ``func`` keep their defaults.

    Example::

        >>> x = torch.randn(3)
        >>> out, vjp_fn = vjp(torch.sin, x)
        >>> torch.allclose(vjp_fn(torch.ones(3))[0], x.cos())
        True
    """
    output, vjp_fn, aux = vjp_with_argnums("vjp", f"vjp({fn_name(func)}, *primals)", func,
                                           primals, None, has_aux)
    return (output, vjp_fn, aux) if has_aux else (output, vjp_fn)


# --- the transforms -----------------------------------------------------------------------

def _grad_and_value(api: str, func: Callable, argnums: int | tuple[int, ...], has_aux: bool,
                    args: tuple, kwargs: dict) -> tuple[Any, Any, Any]:
    """(gradients, value, aux) of func(*args, **kwargs); aux is None without has_aux."""
    refuse_torch_func_mixing(api)
    name = fn_name(func)
    context = f"{api}({name})(*args)"
    argnums = wrap_argnums(argnums, len(args), f"{api}({name}, argnums={argnums!r})(*args)",
                           name)
    _check_differentiable(context, args, argnums, "or leave it out of argnums")
    with grad_level() as level:
        args, kwargs = _lift(args, level), _lift(kwargs, level)
        diff_args = slice_argnums(args, argnums, as_tuple=False)
        _require_grad(diff_args)
        output, aux = _split_aux(context, name, func(*args, **kwargs), has_aux)
        if not isinstance(output, torch.Tensor):
            hint = (f" If {name} returns (output, aux), pass has_aux=True to {api}."
                    if isinstance(output, tuple) and not has_aux else "")
            raise RuntimeError(
                f"{context}: Expected {name}(*args) to return a Tensor, got {type(output)}.{hint}")
        if output.dim() != 0:
            raise RuntimeError(
                f"{context}: Expected {name}(*args) to return a scalar Tensor, got tensor "
                f"with {output.dim()} dims. Maybe you wanted to use the vjp or jacrev APIs "
                f"instead?")
        flat_diff_args, spec = tree_flatten(diff_args)
        # create_graph=True: the backward ops run at this level with grad enabled, so
        # outer grad levels record them (higher-order derivatives).
        flat_grads = _autograd_grad((output,), flat_diff_args, create_graph=True)
        return (_unwrap(tree_unflatten(flat_grads, spec), level),
                _unwrap(output, level), _unwrap(aux, level))


def vjp_with_argnums(api: str, context: str, func: Callable, primals: tuple,
                     argnums: int | tuple[int, ...] | None, has_aux: bool
                     ) -> tuple[Any, Callable, Any]:
    """(output, vjp_fn, aux) of func(*primals), differentiating the primals `argnums`
    (already wrapped; None: all of them). vjp_fn returns the VJPs in the structure of
    the differentiated primals. `api` and `context` name the caller in errors."""
    refuse_torch_func_mixing(api)
    name = fn_name(func)
    hint = ("or leave it out of argnums" if argnums is not None else
            "or bind it to the function (functools.partial) instead of passing it as a primal")
    _check_differentiable(context, primals, argnums, hint)
    with grad_level() as level:
        primals = _lift(primals, level)
        diff_primals = primals if argnums is None else slice_argnums(primals, argnums,
                                                                     as_tuple=False)
        _require_grad(diff_primals)
        output, aux = _split_aux(context, name, func(*primals), has_aux)
        flat_output, output_spec = tree_flatten(output)
        _check_vjp_outputs(context, name, flat_output)
        flat_diff_primals, primals_spec = tree_flatten(diff_primals)
        result, aux = _unwrap(output, level), _unwrap(aux, level)

    # Runs after the level is popped: flat_output's GradTensors are dead wrappers whose
    # autograd graph is still usable; outer levels are alive and record the backward.
    def vjp_fn(cotangents: Any, retain_graph: bool = True,
               create_graph: bool | None = None) -> Any:
        refuse_torch_func_mixing(api)
        if create_graph is None:
            create_graph = torch.is_grad_enabled()
        flat_cotangents, cotangents_spec = tree_flatten(cotangents)
        if cotangents_spec != output_spec:
            raise RuntimeError(
                f"Expected pytree structure of cotangents to be the same "
                f"as pytree structure of outputs to the function. "
                f"cotangents: {treespec_pprint(cotangents_spec)}, "
                f"primal output: {treespec_pprint(output_spec)}")
        _check_cotangent_shapes(context, name, cotangents, flat_cotangents, flat_output)
        with outside_inference_mode():
            flat_vjps = _autograd_grad(flat_output, flat_diff_primals, flat_cotangents,
                                       retain_graph=retain_graph, create_graph=create_graph)
        return tree_unflatten(flat_vjps, primals_spec)

    return result, vjp_fn, aux


# --- helpers --------------------------------------------------------------------------------

def _lift(tree: Any, level: int) -> Any:
    """Every Tensor in `tree` as a GradTensor at `level`."""
    return tree_map(lambda x: _C.wrap_for_grad(x, level) if isinstance(x, torch.Tensor) else x,
                    tree)


def _unwrap(tree: Any, level: int) -> Any:
    """Every Tensor in `tree` with its GradTensor at `level` unwrapped; non-Tensors as is."""
    return tree_map(lambda x: _C.unwrap_for_grad(x, level) if isinstance(x, torch.Tensor) else x,
                    tree)


def _require_grad(tree: Any) -> None:
    """requires_grad_() on every (lifted) Tensor of `tree`. (A user's own requires_grad_()
    inside a transform is not refused yet: Tensor.requires_grad_ bypasses the dispatcher.)"""
    for leaf in tree_leaves(tree):
        leaf.requires_grad_()


def _check_differentiable(context: str, args: tuple, argnums: int | tuple[int, ...] | None,
                          hint: str) -> None:
    """Every leaf of the differentiated arguments must be a float or complex Tensor."""
    selected = range(len(args)) if argnums is None else (
        (argnums,) if isinstance(argnums, int) else argnums)
    noun = "primals" if argnums is None else "args"
    for i in selected:
        for path, leaf in named_leaves(args[i], f"{noun}[{i}]"):
            if not isinstance(leaf, torch.Tensor):
                raise ValueError(
                    f"{context}: {path} is {kind_of(leaf)}, but only Tensors can be "
                    f"differentiated. Pass it as a Tensor (e.g. torch.tensor(...)), {hint}.")
            if not (leaf.is_floating_point() or leaf.is_complex()):
                raise ValueError(
                    f"{context}: {path} is a Tensor of dtype {leaf.dtype}, but only floating "
                    f"point and complex Tensors can be differentiated. Convert it "
                    f"(e.g. .float()), {hint}.")


def _split_aux(context: str, name: str, output: Any, has_aux: bool) -> tuple[Any, Any]:
    if not has_aux:
        return output, None
    if not (isinstance(output, tuple) and len(output) == 2):
        raise RuntimeError(
            f"{context}: output of function {name} should be a tuple: (output, aux) "
            f"if has_aux is True")
    return output


def _check_vjp_outputs(context: str, name: str, flat_output: list[Any]) -> None:
    if not flat_output or (len(flat_output) == 1 and flat_output[0] is None):
        raise RuntimeError(
            f"{context}: Expected {name} to be a function that has non-empty output "
            f"(got output = {flat_output})")
    for out in flat_output:
        if not isinstance(out, torch.Tensor):
            raise RuntimeError(
                f"{context}: expected {name} to return only tensors, got "
                f"unsupported type {type(out)}")
        if not (out.is_floating_point() or out.is_complex()):
            raise RuntimeError(
                f"{context}: All outputs of {name} must be floating-point or complex "
                f"Tensors, got Tensor with dtype {out.dtype}")


def _check_cotangent_shapes(context: str, name: str, cotangents: Any,
                            flat_cotangents: list[Any], flat_output: list[Any]) -> None:
    for i, (cotangent, out) in enumerate(zip(flat_cotangents, flat_output)):
        if isinstance(cotangent, torch.Tensor) and cotangent.shape != out.shape:
            path = named_leaves(cotangents, "cotangents")[i][0]
            raise RuntimeError(
                f"vjp_fn of {context}: {path} has shape {list(cotangent.shape)}, but the "
                f"matching output of {name} has shape {list(out.shape)}. Each cotangent must "
                f"have the shape of its output.")


def _autograd_grad(outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor],
                   grad_outputs: Sequence[torch.Tensor] | None = None, *,
                   retain_graph: bool = False, create_graph: bool = True
                   ) -> tuple[torch.Tensor, ...]:
    """torch.autograd.grad that skips outputs not requiring grad and gives zeros for
    inputs the outputs do not depend on."""
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    pairs = [(out, g) for out, g in zip(outputs, grad_outputs) if out.requires_grad]
    if not pairs:
        return tuple(torch.zeros_like(inp) for inp in inputs)
    diff_outputs, diff_grad_outputs = zip(*pairs)
    # Through the engine's C++ entry: torch.autograd.grad refuses outputs that carry the
    # subclass marker of GradTensors above a vmap level (csrc/keys.h).
    grads = _C.autograd_grad(list(diff_outputs), list(inputs), list(diff_grad_outputs),
                             retain_graph, create_graph)
    return tuple(torch.zeros_like(inp) if g is None else g for g, inp in zip(grads, inputs))
