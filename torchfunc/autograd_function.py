"""torch.autograd.Function under torchfunc's transforms.

NOTE [autograd.Function through the levels]
A custom Function is not an aten op: ``Function.apply`` runs Python before the
dispatcher, so our keys never see it as one call. Left alone, its forward would meet
our wrappers (``.numpy()`` on a BatchedTensor fails) and its ``vmap``/``jvp``
staticmethods would be ignored. ``install()`` therefore puts ``_apply`` in front of
``torch.autograd.Function.apply``: with our stack empty it is torch's apply (dead
GradTensors unwrapped first, as ops do); otherwise the Function is handed to the top
interpreter, like an op, by ``custom_function_call``:

- grad / jvp level L: a single-level Function (``_SingleLevelFunction``, applied with
  autograd's own C++ apply) whose forward unwraps level L, *lowers* the stack and calls
  ``custom_function_call`` again for the levels below, then wraps the outputs at L
  (an output that is an input, e.g. after ``mark_dirty``, is returned as that very
  input object). Its setup_context, backward and jvp are the user's, so the graph of
  level L records the user's backward and forward mode uses the user's jvp.
- vmap level L: no input batched at L: lower and go on. A ``vmap`` staticmethod is
  called with (VmapInfo, in_dims, *values) on the lowered stack and returns
  (outputs, out_dims). ``generate_vmap_rule=True`` builds a Function whose forward,
  setup_context, backward and jvp are the user's run under a fresh vmap level
  (``_restore_vmap``), saving (value, bdim) pairs, and whose gradients are reduced
  back to each input's batching (``_reduce_to_input``).
- no level left: torch's apply on plain tensors, so the user's forward sees exactly the
  tensors of the level below all transforms.

Without ``setup_context`` a Function under a transform raises torch.func's error.
A Function applied by an op's kernel while an interpreter processes that op (the
autograd kernel of a ``torch.library.custom_op`` with ``register_autograd``) is
already at the right level and is applied as is. (Custom ops' ``register_vmap``
rules: torchfunc/custom_ops.py.)
"""
from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any, Callable, Iterator, NamedTuple

import torch
from torch.autograd.forward_ad import _set_fwd_grad_enabled
from torch.autograd.function import _SingleLevelFunction

from ._engine import _C
from ._levels import vmap_level
from ._pytree import broadcast_prefix, tree_flatten, tree_map_tensors, tree_unflatten

__all__ = ["VmapInfo", "custom_function_call", "install"]

_EXTENDING_URL = "https://pytorch.org/docs/main/notes/extending.func.html"

_torch_apply = torch.autograd.Function.__dict__["apply"].__func__


class VmapInfo(NamedTuple):
    """What a Function's ``vmap`` staticmethod learns about the vmap level it runs at."""
    batch_size: int
    randomness: str


# --- entry ---------------------------------------------------------------------------------

def _apply(cls, *args: Any, **kwargs: Any) -> Any:
    if _C.stack_depth() == 0:
        return _torch_apply(cls, *tree_map_tensors(_C.unwrap_if_dead, args), **kwargs)
    if _C.processing_op():
        # A kernel of an op is running at the top level (e.g. the autograd kernel of a
        # torch.library.custom_op at a grad level): the Function is part of that op's
        # processing at this level, so it is applied as it is, like any autograd kernel.
        return _torch_apply(cls, *args, **kwargs)
    if cls.setup_context is _SingleLevelFunction.setup_context:
        kind, level = _C.top_interpreter_info()[:2]
        raise RuntimeError(
            "In order to use an autograd.Function with functorch transforms "
            "(vmap, grad, jvp, jacrev, ...), it must override the setup_context "
            f"staticmethod. For more details, please see {_EXTENDING_URL} "
            f"(torchfunc: {cls.__name__}.apply was called inside torchfunc.{kind} at level "
            f"{level}; move the ctx-setting part of {cls.__name__}.forward into a "
            f"setup_context(ctx, inputs, output) staticmethod.)")
    bound = inspect.signature(cls.forward).bind(*args, **kwargs)
    bound.apply_defaults()
    return custom_function_call(cls, *bound.args, **bound.kwargs)


def install() -> None:
    """Route torch.autograd.Function.apply through our levels (see the NOTE above)."""
    torch.autograd.Function.apply = classmethod(_apply)


def custom_function_call(cls: type, *args: Any, **kwargs: Any) -> Any:
    """Apply the Function `cls` at the top level of the stack (plain apply when empty)."""
    info = _C.top_interpreter_info()
    if info is None:
        return cls.apply(*args, **kwargs)
    if info[0] == "vmap":
        return _vmap_rule(info, cls, args, kwargs)
    return _autodiff_rule(info, cls, args, kwargs)


@contextlib.contextmanager
def _lowered(info: tuple) -> Iterator[None]:
    """The top interpreter set aside; below a grad (jvp) level whose outside had grad
    (forward grad) disabled, that mode is disabled again, as for ops."""
    kind, prev_mode = info[0], info[4]
    with contextlib.ExitStack() as stack:
        stack.enter_context(_C.lowered())
        if kind == "grad" and not prev_mode:
            stack.enter_context(torch.no_grad())
        if kind == "jvp" and not prev_mode:
            stack.enter_context(_set_fwd_grad_enabled(False))
        yield


def _wrap_keeping_identity(outputs: Any, values: tuple, originals: tuple,
                           wrap: Callable[[torch.Tensor, int], torch.Tensor]) -> Any:
    """outputs with each Tensor wrapped (wrap(tensor, index)); an output that is one of
    the unwrapped inputs `values` is returned as the original input object, so that
    ctx.mark_dirty sees the tensor it was given."""
    original_of = {id(v): o for v, o in zip(tree_flatten(values)[0], tree_flatten(originals)[0])}
    flat, spec = tree_flatten(outputs)
    result = [out if not isinstance(out, torch.Tensor) else
              original_of[id(out)] if id(out) in original_of else wrap(out, i)
              for i, out in enumerate(flat)]
    return tree_unflatten(result, spec)


# --- grad and jvp ----------------------------------------------------------------------------

def _autodiff_rule(info: tuple, cls: type, args: tuple, kwargs: dict) -> Any:
    level = info[1]

    def forward(*operands: Any) -> Any:
        values = tree_map_tensors(lambda x: _C.unwrap_for_grad(x, level), operands)
        with torch.enable_grad(), _set_fwd_grad_enabled(True), _lowered(info):
            outputs = custom_function_call(cls, *values, **kwargs)
        return _wrap_keeping_identity(outputs, values, operands,
                                      lambda out, _: _C.wrap_for_grad(out, level))

    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        return cls.setup_context(ctx, inputs, output)

    def backward(ctx: Any, *grads: Any) -> Any:
        return cls.backward(ctx, *grads)

    def jvp(ctx: Any, *tangents: Any) -> Any:
        return cls.jvp(ctx, *tangents)

    single_level = type(f"{cls.__name__}Generated", (_SingleLevelFunction,), {
        "forward": staticmethod(forward), "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward), "jvp": staticmethod(jvp)})
    return single_level.apply(*args)


# --- vmap ---------------------------------------------------------------------------------------

def _has_vmap_staticmethod(cls: type) -> bool:
    return cls.vmap is not torch.autograd.Function.vmap


def _unwrap_batched(tree: Any, level: int) -> tuple[Any, Any]:
    """(values, in_dims) of every Tensor leaf of `tree` at `level`, in its structure."""
    flat, spec = tree_flatten(tree)
    pairs = [_C.unwrap_batched(x, level) if isinstance(x, torch.Tensor) else (x, None)
             for x in flat]
    return (tree_unflatten([p[0] for p in pairs], spec),
            tree_unflatten([p[1] for p in pairs], spec))


def _wrap_batched(outputs: Any, out_dims: Any, values: tuple, originals: tuple, level: int,
                  what: str) -> Any:
    """outputs batched at `level` along out_dims (None: not batched), keeping identity
    with the inputs (see _wrap_keeping_identity)."""
    flat_dims = broadcast_prefix(out_dims, tree_flatten(outputs)[1])
    if flat_dims is None:
        raise RuntimeError(
            f"The autograd.Function's vmap staticmethod returned an incompatible (output, "
            f"out_dims) tuple. Expected out_dims={out_dims} to be compatible with the "
            f"structure of `output`. For more details, please see {_EXTENDING_URL} "
            f"(torchfunc: {what}.)")
    return _wrap_keeping_identity(
        outputs, values, originals,
        lambda out, i: out if flat_dims[i] is None else _C.add_batch_dim(out, flat_dims[i], level))


def _vmap_rule(info: tuple, cls: type, args: tuple, kwargs: dict) -> Any:
    _, level, batch_size, randomness, _ = info
    name = cls.__name__
    if any(isinstance(v, torch.Tensor) for v in tree_flatten(kwargs)[0]):
        raise NotImplementedError(
            f"Run vmap on autograd.Function with kwarg-only Tensor args. Please do not pass "
            f"kwarg-only Tensors to autograd.Function. Got: {kwargs}")
    if cls.generate_vmap_rule and _has_vmap_staticmethod(cls):
        raise RuntimeError(
            f"You tried to vmap over {name}, but it has both generate_vmap_rule=True and an "
            f"overridden vmap staticmethod. Please set generate_vmap_rule=False or delete the "
            f"overridden vmap staticmethod to avoid ambiguity. For more details, please see "
            f"{_EXTENDING_URL}")
    if not cls.generate_vmap_rule and not _has_vmap_staticmethod(cls):
        raise RuntimeError(
            f"You tried to vmap over {name}, but it does not have vmap support. Please "
            f"override and implement the vmap staticmethod or set generate_vmap_rule=True. "
            f"For more details, please see {_EXTENDING_URL} (torchfunc: {name}.apply was "
            f"called inside torchfunc.vmap at level {level}.)")

    values, in_dims = _unwrap_batched(args, level)
    if all(d is None for d in tree_flatten(in_dims)[0]):
        with _lowered(info):
            return custom_function_call(cls, *args, **kwargs)

    if cls.generate_vmap_rule:
        vmapped = _vmapped_function(cls, in_dims, batch_size, randomness)
        with _lowered(info):
            outputs = custom_function_call(vmapped, *values)
        outputs, out_dims = _split_out_dims(outputs)
        return _wrap_batched(outputs, out_dims, values, args, level,
                             f"the generated vmap rule of {name}")

    with _lowered(info):
        result = cls.vmap(VmapInfo(batch_size, randomness), in_dims, *values, **kwargs)
    if not (isinstance(result, tuple) and len(result) == 2):
        got = f"a {type(result)}" if not isinstance(result, tuple) else f"{len(result)} returns"
        raise RuntimeError(
            "Expected the vmap staticmethod to have two returns, an output and out_dims with "
            "pytree structure compatible with the output. "
            f"Got {got} instead (torchfunc: {name}.vmap).")
    outputs, out_dims = result
    return _wrap_batched(outputs, out_dims, values, args, level,
                         f"{name}.vmap returned out_dims={out_dims!r}")


def _split_out_dims(outputs: tuple) -> tuple[Any, Any]:
    """A generated Function returns (*outputs, out_dims): out_dims is a tuple for tuple
    outputs, an int (or None) for a single output."""
    out_dims = outputs[-1]
    return (outputs[:-1], out_dims) if isinstance(out_dims, tuple) else (outputs[0], out_dims)


def _restore_vmap(func: Callable, in_dims: Any, batch_size: int, randomness: str) -> Callable:
    """func run under a new vmap level over values that are already unbatched
    (value, in_dim) pairs; returns (outputs, out_dims) without moving any batch dim."""
    def run(*args: Any) -> tuple[Any, Any]:
        flat, spec = tree_flatten(args)
        flat_dims = broadcast_prefix(in_dims, spec)
        with vmap_level(batch_size, randomness) as level:
            batched = [x if d is None or not isinstance(x, torch.Tensor)
                       else _C.add_batch_dim(x, d, level) for x, d in zip(flat, flat_dims)]
            return _unwrap_batched(func(*tree_unflatten(batched, spec)), level)
    return run


class _WrappedCtx:
    """A ctx seen through one generated vmap level: attributes go to the real ctx."""
    _own = ("_inner", "_level", "_saved_bdims", "_saved")

    def __init__(self, ctx: Any, level: int | None = None, saved: Any = None) -> None:
        object.__setattr__(self, "_inner", ctx)
        object.__setattr__(self, "_level", level)
        object.__setattr__(self, "_saved_bdims", ())
        object.__setattr__(self, "_saved", saved)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._own:
            object.__setattr__(self, name, value)
        else:
            setattr(self._inner, name, value)

    @property
    def saved_tensors(self) -> tuple:
        return self._saved if self._saved is not None else self._inner.saved_tensors

    # setup_context runs under the level: save the values and remember their bdims.
    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        values, bdims = _unwrap_batched(tensors, self._level)
        self._inner.save_for_backward(*values)
        self._saved_bdims = bdims

    def save_for_forward(self, *tensors: torch.Tensor) -> None:
        values, bdims = _unwrap_batched(tensors, self._level)
        self._inner.save_for_forward(*values)
        self._saved_bdims = bdims

    def mark_non_differentiable(self, *tensors: torch.Tensor) -> None:
        self._inner.mark_non_differentiable(*_unwrap_batched(tensors, self._level)[0])

    def mark_dirty(self, *tensors: torch.Tensor) -> None:
        self._inner.mark_dirty(*_unwrap_batched(tensors, self._level)[0])


def _reduce_to_input(grad: Any, grad_dim: int | None, input_dim: int | None, batch_size: int,
                     input_shape: torch.Size | None) -> Any:
    """A gradient computed under the generated level, as the gradient of an input with
    batch dim `input_dim` and per-example shape `input_shape`: summed over the batch for
    an unbatched input, expanded for a batched input whose gradient is unbatched,
    reduced over broadcast dims."""
    if grad is None:
        return None
    if input_dim is None:
        if grad_dim is not None:
            grad = grad.sum(grad_dim)
        return grad if input_shape is None else grad.sum_to_size(input_shape)
    if grad_dim is None:
        grad = grad.unsqueeze(0).expand(batch_size, *grad.shape)
    else:
        grad = grad.movedim(grad_dim, 0)
    if input_shape is not None and grad.shape[1:] != input_shape:
        extra = grad.dim() - 1 - len(input_shape)
        if extra > 0:
            grad = grad.sum(tuple(range(1, 1 + extra)))
        grad = grad.sum_to_size((batch_size, *input_shape))
    return grad.movedim(0, input_dim)


def _reduce_all(grads: Any, grad_dims: Any, input_dims: tuple, batch_size: int,
                input_shapes: list | None) -> tuple:
    """_reduce_to_input for each position of a Function's (flat) inputs or outputs."""
    if not isinstance(grads, tuple):
        grads, grad_dims = (grads,), (grad_dims,)
    shapes = input_shapes if input_shapes is not None else [None] * len(grads)
    return tuple(_reduce_to_input(g, gd, d, batch_size, s)
                 for g, gd, d, s in zip(grads, grad_dims, input_dims, shapes))


def _vmapped_function(cls: type, in_dims: tuple, batch_size: int, randomness: str) -> type:
    """The Function `cls` with generate_vmap_rule=True, vmapped over in_dims."""
    key = object()  # this generated level's state on a ctx shared by nested levels

    def forward(*operands: Any) -> Any:
        outputs, out_dims = _restore_vmap(cls.forward, in_dims, batch_size, randomness)(*operands)
        return (outputs, out_dims) if isinstance(outputs, torch.Tensor) else (*outputs, out_dims)

    def setup_context(ctx: Any, inputs: tuple, outputs: tuple) -> None:
        outputs, out_dims = _split_out_dims(outputs)
        if not hasattr(ctx, "_torchfunc_vmap_state"):
            ctx._torchfunc_vmap_state = {}

        def under_level(inputs: tuple, outputs: Any) -> None:
            wrapped = _WrappedCtx(ctx, level=_C.current_level())
            cls.setup_context(wrapped, inputs, outputs)
            ctx._torchfunc_vmap_state[key] = dict(
                input_shapes=[x.shape if isinstance(x, torch.Tensor) else None for x in inputs],
                saved_bdims=wrapped._saved_bdims, out_dims=out_dims)

        _restore_vmap(under_level, (in_dims, out_dims), batch_size, randomness)(inputs, outputs)

    def backward(ctx: Any, *grad_outputs: Any) -> tuple:
        state = ctx._torchfunc_vmap_state[key]
        grad_outputs = grad_outputs[:-1]  # the last output is out_dims
        out_dims = state["out_dims"]
        out_dims = out_dims if isinstance(out_dims, tuple) else (out_dims,)
        grad_dims = tuple(None if g is None else d for g, d in zip(grad_outputs, out_dims))

        def no_ctx(saved: tuple, grads: tuple) -> Any:
            return cls.backward(_WrappedCtx(ctx, saved=saved), *grads)

        grads, dims = _restore_vmap(no_ctx, (state["saved_bdims"], grad_dims), batch_size,
                                    randomness)(ctx.saved_tensors, grad_outputs)
        return _reduce_all(grads, dims, in_dims, batch_size, state["input_shapes"])

    def jvp(ctx: Any, *tangents: Any) -> Any:
        state = ctx._torchfunc_vmap_state[key]
        tangent_dims = tuple(None if t is None else d for t, d in zip(tangents, in_dims))

        def no_ctx(saved: tuple, tangents: tuple) -> Any:
            return cls.jvp(_WrappedCtx(ctx, saved=saved), *tangents)

        out, dims = _restore_vmap(no_ctx, (state["saved_bdims"], tangent_dims), batch_size,
                                  randomness)(ctx.saved_tensors, tangents)
        out_dims = state["out_dims"]
        if not isinstance(out, tuple):
            return _reduce_to_input(out, dims, out_dims, batch_size, None), None
        return (*_reduce_all(out, dims, out_dims, batch_size, None), None)

    return type(f"Vmapped{cls.__name__}", (torch.autograd.Function,), {
        "forward": staticmethod(forward), "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward), "jvp": staticmethod(jvp),
        "generate_vmap_rule": True})
