"""torchfunc.testing: checks for users' own test suites (pytest, unittest or plain asserts).

Each check runs a transform and the per-example loop it stands for, on the same inputs,
and raises AssertionError when they differ, or when the transform only worked because
an op ran through the slow per-example fallback (the message names the op), or when the
transform raised (the message carries the error). A passing check returns the
transform's result, so a test can go on with it.

    from torchfunc.testing import assert_vmap_matches_loop, assert_per_sample_grads

    def test_my_layer_batches():
        assert_vmap_matches_loop(my_layer, torch.randn(8, 16), in_dims=0)

    def test_my_model_per_sample_grads():
        assert_per_sample_grads(model, F.cross_entropy, (x, y))
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ._engine import _C
from ._pytree import fn_name, tree_flatten, tree_unflatten
from .autodiff import grad
from .modules import functional_call
from .vmap import vmap

__all__ = ["assert_vmap_matches_loop", "assert_per_sample_grads"]

def _run_watching_the_loop(what: str, run: Callable[[], Any], allow_loop: bool) -> Any:
    """run(), failing on an exception or (unless allow_loop) on any per-example loop."""
    before = _C.fallback_count()
    _C.take_fallback_ops()
    try:
        result = run()
    except Exception as e:  # noqa: BLE001 - reported as the check's failure
        raise AssertionError(f"{what} raised {type(e).__name__}: {e}") from e
    looped = _C.take_fallback_ops()
    if not allow_loop and (looped or _C.fallback_count() != before):
        raise AssertionError(
            f"{what} ran {', '.join(looped) or 'an op'} through the per-example fallback (no "
            f"batching rule: slow). torchfunc.explain(op) says why; pass allow_loop=True to "
            f"accept it.")
    return result


def _example(flat_args: list, flat_in_dims: list, i: int) -> list:
    return [a if d is None else a.select(d, i) for a, d in zip(flat_args, flat_in_dims)]


def _assert_close(actual: Any, expected: Any, what: str, rtol: float | None, atol: float | None) -> None:
    flat_actual, spec_actual = tree_flatten(actual)
    flat_expected, spec_expected = tree_flatten(expected)
    if spec_actual != spec_expected:
        raise AssertionError(f"{what}: the outputs' structures differ: {spec_actual} vs {spec_expected}")
    for k, (a, e) in enumerate(zip(flat_actual, flat_expected)):
        if isinstance(e, torch.Tensor):
            try:
                torch.testing.assert_close(a, e, rtol=rtol, atol=atol)
            except AssertionError as err:
                raise AssertionError(f"{what}, output {k}: {err}") from None
        elif a != e:
            raise AssertionError(f"{what}, output {k}: {a!r} != {e!r}")


def assert_vmap_matches_loop(func: Callable, *args: Any, in_dims: Any = 0, out_dims: Any = 0,
                             rtol: float | None = None, atol: float | None = None,
                             allow_loop: bool = False, **kwargs: Any) -> Any:
    """vmap(func, in_dims, out_dims)(*args, **kwargs) equals the loop that calls
    func on each example (the slices of the mapped inputs) and stacks the results at
    out_dims (random ops raise, as under vmap's default randomness='error': a loop cannot
    reproduce vmap's draws). Fails naming the op when an op ran through the per-example
    fallback (unless allow_loop) or when vmap raised. rtol/atol as in torch.testing.assert_close. Returns
    vmap's result."""
    what = f"vmap({fn_name(func)})"
    result = _run_watching_the_loop(
        what, lambda: vmap(func, in_dims, out_dims)(*args, **kwargs), allow_loop)
    flat_args, args_spec = tree_flatten(args)
    flat_in_dims = _broadcast_in_dims(in_dims, args, len(flat_args))
    sizes = {a.shape[d] for a, d in zip(flat_args, flat_in_dims) if d is not None}
    (batch_size,) = sizes
    flat_in_dims = [None if d is None else d % flat_args[i].dim() for i, d in enumerate(flat_in_dims)]
    outputs = [func(*tree_unflatten(_example(flat_args, flat_in_dims, i), args_spec), **kwargs)
               for i in range(batch_size)]
    _assert_close(result, _stack(func, outputs, out_dims, result),
                  f"{what} against the per-example loop", rtol, atol)
    return result


def _stack(func: Callable, outputs: list, out_dims: Any, result: Any) -> Any:
    """The loop's outputs stacked leaf by leaf at their out_dims (None: the first)."""
    from .vmap import _flat_out_dims
    if not outputs:
        return result  # an empty batch: nothing to compare
    spec = tree_flatten(outputs[0])[1]
    flat = [tree_flatten(o)[0] for o in outputs]
    dims = _flat_out_dims(func, outputs[0], spec, out_dims)
    return tree_unflatten([pieces[0] if d is None else torch.stack(pieces, d)
                           for d, pieces in zip(dims, zip(*flat))], spec)


def _broadcast_in_dims(in_dims: Any, args: tuple, n_leaves: int) -> list:
    from ._pytree import broadcast_prefix
    flat = broadcast_prefix(in_dims, tree_flatten(args)[1])
    if flat is None or len(flat) != n_leaves:
        raise ValueError(f"assert_vmap_matches_loop: in_dims={in_dims!r} does not match the inputs")
    return flat


def assert_per_sample_grads(model: torch.nn.Module, loss_fn: Callable, batch: Any, *,
                            rtol: float | None = None, atol: float | None = None,
                            allow_loop: bool = False) -> dict[str, torch.Tensor]:
    """Per-sample gradients of loss_fn(model(x), y) over a batch, by
    vmap(grad(functional_call)), equal those of a loop of torch.autograd.grad through
    the model, one example at a time (each given to the model with a batch dim of 1).

    batch: (inputs, targets), where inputs is a Tensor or a tuple of Tensors and targets
    a Tensor (or None: loss_fn then takes the output alone); dim 0 is the batch. Fails
    naming the op when an op ran through the per-example fallback (unless allow_loop),
    or when the transform raised. Returns {parameter name: per-sample gradients}."""
    inputs, targets = batch if isinstance(batch, (tuple, list)) and len(batch) == 2 else (batch, None)
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    if not params:
        raise ValueError("assert_per_sample_grads: the model has no parameters that require grad")

    def loss(p, *example):
        xs, y = example[:-1], example[-1]
        out = functional_call(model, (p, buffers), tuple(x.unsqueeze(0) for x in xs))
        return loss_fn(out, y.unsqueeze(0)) if targets is not None else loss_fn(out)

    example_args = (*inputs, targets if targets is not None else torch.zeros(inputs[0].shape[0]))
    in_dims = (None, *[0] * len(example_args))
    what = f"per-sample gradients of {type(model).__name__}"
    result = _run_watching_the_loop(what, lambda: vmap(grad(loss), in_dims)(params, *example_args),
                                    allow_loop)
    names, tensors = list(params), [dict(model.named_parameters())[k] for k in params]
    per_example = []
    for i in range(inputs[0].shape[0]):
        xs = tuple(x[i:i + 1] for x in inputs)
        out = model(*xs)
        value = loss_fn(out, targets[i:i + 1]) if targets is not None else loss_fn(out)
        grads = torch.autograd.grad(value, tensors, allow_unused=True)
        per_example.append({k: torch.zeros_like(t) if g is None else g
                            for k, t, g in zip(names, tensors, grads)})
    expected = {k: torch.stack([g[k] for g in per_example]) for k in names}
    _assert_close(result, expected, f"{what} against a loop of torch.autograd.grad", rtol, atol)
    return result
