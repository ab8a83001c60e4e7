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
    InputError,
    check_argnums,
    fn_name,
    kind_of,
    named_leaves,
    plain_leaves,
    slice_argnums,
    tree_flatten,
    tree_leaves,
    tree_map_tensors,
    tree_unflatten,
    treespec_pprint,
    with_torch_func_text,
    wrap_argnums,
    wraps,
)
from .tensor_methods import require_grad

__all__ = ["grad", "grad_and_value", "vjp"]

# How torch.func names the transform in its messages (users match these texts).
_GRAD = "grad_and_value(f)(*args)"
_VJP = "vjp(f, *primals)"


def grad(func: Callable, argnums: int | tuple[int, ...] = 0, has_aux: bool = False) -> Callable:
    """Gradient of ``func`` with respect to the positional argument(s) ``argnums``.

    Args:
        func: a function returning a scalar (0-dim) Tensor, or ``(scalar, aux)`` when
            ``has_aux`` is True.
        argnums: the argument (int) or arguments (tuple of ints) to differentiate; each
            may be a pytree of floating point or complex Tensors. Default: 0.
        has_aux: ``func`` returns ``(output, aux)``; ``aux`` (Tensors, or a pytree of
            Tensors, as in torch.func) is returned unwrapped, not differentiated.
            Default: False.

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
        args = _lift(args, level)
        if kwargs:
            kwargs = _lift(kwargs, level)
        diff_args = slice_argnums(args, argnums, as_tuple=False)
        inputs = _require_grad(diff_args)
        output, aux = _split_aux(_GRAD, context, name, func(*args, **kwargs), has_aux)
        if not isinstance(output, torch.Tensor):
            hint = (f" If {name} returns (output, aux), pass has_aux=True to {api}."
                    if isinstance(output, tuple) and not has_aux else "")
            raise RuntimeError(with_torch_func_text(
                f"{_GRAD}: Expected f(*args) to return a Tensor, got {type(output)}",
                f"{context}: {name} returned {kind_of(output)}.{hint}"))
        if output.dim() != 0:
            raise RuntimeError(with_torch_func_text(
                f"{_GRAD}: Expected f(*args) to return a scalar Tensor, got tensor with "
                f"{output.dim()} dims. Maybe you wanted to use the vjp or jacrev APIs instead?",
                f"{context}: {name} returned a Tensor of shape {list(output.shape)}."))
        # create_graph=True: the backward ops run with grad enabled, so outer grad levels
        # record them (higher-order derivatives); this level, whose graph dies here, does
        # not (NOTE [A grad level's last backward records nothing at its level]).
        flat_grads = iter(_autograd_grad((output,), inputs, create_graph=True, unrecorded_level=level))
        if has_aux:  # after the gradients, as torch.func
            _check_aux(context, name, aux)
        # Every leaf of diff_args is a Tensor (_check_differentiable): each gets its gradient.
        grads = tree_map_tensors(lambda _: _C.unwrap_for_grad(next(flat_grads), level), diff_args)
        return grads, _unwrap(output, level), _unwrap(aux, level)


def vjp_with_argnums(api: str, context: str, func: Callable, primals: tuple,
                     argnums: int | tuple[int, ...] | None, has_aux: bool
                     ) -> tuple[Any, Callable, Any]:
    """(output, vjp_fn, aux) of func(*primals), differentiating the primals `argnums`
    (already wrapped; None: all of them). vjp_fn returns the VJPs in the structure of
    the differentiated primals. `api` and `context` name the caller in errors; for
    vjp and jacrev the messages start with torch.func's (its jacrev words them as vjp's),
    for linearize (another implementation in torch.func) they are ours alone."""
    refuse_torch_func_mixing(api)
    name = fn_name(func)
    like_torch_func = api != "linearize"
    hint = ("or leave it out of argnums" if argnums is not None else
            "or bind it to the function (functools.partial) instead of passing it as a primal")
    _check_differentiable(context, primals, argnums, hint, forward=not like_torch_func)
    with grad_level() as level:
        primals = _lift(primals, level)
        diff_primals = primals if argnums is None else slice_argnums(primals, argnums,
                                                                     as_tuple=False)
        _require_grad(diff_primals)
        output, aux = _split_aux(_VJP if like_torch_func else None, context, name,
                                 func(*primals), has_aux)
        if has_aux and like_torch_func:  # before the outputs, as torch.func
            _check_aux(context, name, aux)  # (linearize's has_aux is ours: aux may hold anything)
        flat_output, output_spec = tree_flatten(output)
        _check_vjp_outputs(context, name, output, flat_output, like_torch_func)
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
        _check_cotangents(context, name, cotangents, flat_cotangents, flat_output)
        with outside_inference_mode():
            flat_vjps = _autograd_grad(flat_output, flat_diff_primals, flat_cotangents,
                                       retain_graph=retain_graph, create_graph=create_graph)
        return tree_unflatten(flat_vjps, primals_spec)

    return result, vjp_fn, aux


# --- helpers --------------------------------------------------------------------------------

def _lift(tree: Any, level: int) -> Any:
    """Every Tensor in `tree` as a GradTensor at `level`."""
    return tree_map_tensors(lambda x: _C.wrap_for_grad(x, level), tree)


def _unwrap(tree: Any, level: int) -> Any:
    """Every Tensor in `tree` with its GradTensor at `level` unwrapped; non-Tensors as is."""
    return tree_map_tensors(lambda x: _C.unwrap_for_grad(x, level), tree)


def _require_grad(tree: Any) -> list[torch.Tensor]:
    """requires_grad_() on every (lifted) Tensor of `tree` (a user's own requires_grad_()
    inside a transform is refused: NOTE [Tensor methods that read type ids or storage]);
    returns those leaves, in plain_leaves order."""
    leaves = plain_leaves(tree)
    for leaf in leaves:
        require_grad(leaf)
    return leaves


def _check_differentiable(context: str, args: tuple, argnums: int | tuple[int, ...] | None,
                          hint: str, forward: bool = False) -> None:
    """Every leaf of the differentiated arguments must be a float or complex Tensor.
    torch.func's texts are those of requires_grad_ (reverse mode) or of make_dual
    (forward mode: jacfwd, and linearize, which torch.func builds on forward-mode AD);
    for a non-Tensor in forward mode torch.func crashes in its own code, so ours stands
    alone."""
    selected = range(len(args)) if argnums is None else (
        (argnums,) if isinstance(argnums, int) else argnums)
    noun = "primals" if argnums is None else "args"
    for i in selected:
        if all(_differentiable(leaf) for leaf in plain_leaves(args[i])):
            continue  # the paths below are for the error messages only
        for path, leaf in named_leaves(args[i], f"{noun}[{i}]"):
            if not isinstance(leaf, torch.Tensor):
                ours = (f"{context}: {path} is {kind_of(leaf)}, but only Tensors can be "
                        f"differentiated. Pass it as a Tensor (e.g. torch.tensor(...)), {hint}.")
                raise InputError(ours if forward else with_torch_func_text(
                    f"Thing passed to transform API must be Tensor, got {type(leaf)}", ours))
            if not (leaf.is_floating_point() or leaf.is_complex()):
                theirs = (f"Expected primal to be floating point or complex, but got: {leaf.dtype}"
                          if forward else "only Tensors of floating point dtype can require gradients")
                raise InputError(with_torch_func_text(
                    theirs,
                    f"{context}: {path} is a Tensor of dtype {leaf.dtype}, but only floating "
                    f"point and complex Tensors can be differentiated. Convert it "
                    f"(e.g. .float()), {hint}."))


def _differentiable(leaf: Any) -> bool:
    return isinstance(leaf, torch.Tensor) and (leaf.is_floating_point() or leaf.is_complex())


def _split_aux(theirs: str | None, context: str, name: str, output: Any,
               has_aux: bool) -> tuple[Any, Any]:
    """(output, aux). `theirs` is how torch.func names the transform in this message (None
    for a transform torch.func has no has_aux for)."""
    if not has_aux:
        return output, None
    if not (isinstance(output, tuple) and len(output) == 2):
        got = (f"a tuple of {len(output)} elements" if isinstance(output, tuple)
               else kind_of(output))
        if theirs is None:
            raise RuntimeError(
                f"{context}: output of function {name} should be a tuple: (output, aux) "
                f"if has_aux is True; {name} returned {got}.")
        raise RuntimeError(with_torch_func_text(
            f"{theirs}: output of function f should be a tuple: (output, aux) if has_aux is True",
            f"{context}: {name} returned {got}."))
    return output


def _check_aux(context: str, name: str, aux: Any) -> None:
    """With has_aux, aux is Tensors (a pytree of them), as torch.func requires."""
    if all(isinstance(leaf, torch.Tensor) for leaf in tree_flatten(aux)[0]):
        return
    for path, leaf in named_leaves(aux, "aux"):
        if not isinstance(leaf, torch.Tensor):
            raise RuntimeError(with_torch_func_text(
                f"Expected tensors, got unsupported type {type(leaf)}",
                f"{context}: with has_aux=True, {name} must return (output, aux) where aux is "
                f"a Tensor or a pytree of Tensors, but {path} is {kind_of(leaf)}. Return "
                f"other values as Tensors (e.g. torch.tensor(...)), or outside of the "
                f"transformed function."))


def _where(path: str, single: bool) -> str:
    return "the output" if single else path


def _check_vjp_outputs(context: str, name: str, output: Any, flat_output: list[Any],
                       like_torch_func: bool) -> None:
    def error(theirs: str, ours: str) -> RuntimeError:
        return RuntimeError(with_torch_func_text(theirs, f"{context}: {ours}")
                            if like_torch_func else f"{context}: {ours}")

    if not flat_output or (len(flat_output) == 1 and flat_output[0] is None):
        got = "None" if output is None else f"{kind_of(output)} with no Tensor in it"
        raise error(f"{_VJP}: Expected f to be a function that has non-empty output "
                    f"(got output = {flat_output})",
                    f"{name} returned {got}; it must return a Tensor or a pytree of Tensors.")
    if all(_differentiable(out) for out in flat_output):
        return  # the paths below are for the error messages only
    leaves = named_leaves(output, "output")
    for path, out in leaves:
        if not isinstance(out, torch.Tensor):
            raise error(f"{_VJP}: expected f(*primals) to return only tensors, got "
                        f"unsupported type {type(out)}",
                        f"{_where(path, len(leaves) == 1)} of {name} is {kind_of(out)}, but "
                        f"only Tensors can be differentiated.")
    for path, out in leaves:
        if not (out.is_floating_point() or out.is_complex()):
            raise error(f"vjp(f, ...): All outputs of f must be floating-point or complex "
                        f"Tensors, got Tensor with dtype {out.dtype}",
                        f"{_where(path, len(leaves) == 1)} of {name} has dtype {out.dtype}.")


def _check_cotangents(context: str, name: str, cotangents: Any, flat_cotangents: list[Any],
                      flat_output: list[Any]) -> None:
    """Each cotangent is a Tensor (or None) with the shape of its output. torch.func leaves
    this to torch.autograd.grad, which sees only the outputs that require grad (and
    numbers them among those): its text comes first for those; for the others torch.func
    ignores the cotangent, and we still refuse a wrong shape."""
    if all(c is None or (isinstance(c, torch.Tensor) and c.shape == out.shape)
           for c, out in zip(flat_cotangents, flat_output)):
        return  # the paths below are for the error messages only
    paths = [path for path, _ in named_leaves(cotangents, "cotangents")]
    j = 0  # the output's index among those that require grad
    for path, cotangent, out in zip(paths, flat_cotangents, flat_output):
        if cotangent is not None and not isinstance(cotangent, torch.Tensor):
            if out.requires_grad:
                raise TypeError(with_torch_func_text(
                    f"gradients can be either Tensors or None, but got {type(cotangent).__name__}",
                    f"vjp_fn of {context}: {path} is {kind_of(cotangent)}; each cotangent must "
                    f"be a Tensor with the shape of its output."))
        elif cotangent is not None and cotangent.shape != out.shape:
            ours = (f"vjp_fn of {context}: {path} has shape {list(cotangent.shape)}, but the "
                    f"matching output of {name} has shape {list(out.shape)}. Each cotangent "
                    f"must have the shape of its output.")
            raise RuntimeError(with_torch_func_text(
                f"Mismatch in shape: grad_output[{j}] has a shape of {cotangent.shape} and "
                f"output[{j}] has a shape of {out.shape}.", ours) if out.requires_grad else ours)
        j += out.requires_grad


def _autograd_grad(outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor],
                   grad_outputs: Sequence[torch.Tensor] | None = None, *,
                   retain_graph: bool = False, create_graph: bool = True,
                   unrecorded_level: int | None = None) -> tuple[torch.Tensor, ...]:
    """torch.autograd.grad that skips outputs not requiring grad and gives zeros for
    inputs the outputs do not depend on; unrecorded_level: a grad level whose own graph
    the backward need not extend."""
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    pairs = [(out, g) for out, g in zip(outputs, grad_outputs) if out.requires_grad]
    if not pairs:
        return tuple(torch.zeros_like(inp) for inp in inputs)
    diff_outputs, diff_grad_outputs = zip(*pairs)
    # Through the engine's C++ entry: torch.autograd.grad refuses outputs that carry the
    # subclass marker of GradTensors above a vmap level (csrc/keys.h).
    grads = _C.autograd_grad(list(diff_outputs), list(inputs), list(diff_grad_outputs),
                             retain_graph, create_graph, unrecorded_level)
    return tuple(torch.zeros_like(inp) if g is None else g for g, inp in zip(grads, inputs))
