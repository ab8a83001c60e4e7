"""Forward-mode checks per OpInfo, shared by test_forward_opinfo.py and reports.

* check_jvp:     jvp against torch.autograd.forward_ad (dual tensors, plain tensors);
* check_vmapjvp: vmap over the tangents of jvp against a loop of the reference;
* check_jacfwd:  jacfwd against torch.autograd.functional.jacobian;
* check_jvpvjp:  jvp of a vjp (forward-over-reverse, what hessian does) against
                 forward_ad through torch.autograd.grad(create_graph=True).

Each returns the number of compared cases and raises AssertionError on a mismatch,
SkipCase when nothing can be compared, or whatever the transform raised.
"""
from typing import Callable

import torch
import torch.autograd.forward_ad as fwAD
from torch.autograd.functional import jacobian

from opinfo_utils import (
    AGAINST_TORCH_FUNC, AUTODIFF_TOL, MAX_AUTODIFF_SAMPLES, SkipCase, assert_close,
    differentiable_fn, draws_random_numbers, fallback, make_cotangents, samples, vjp, vmap,
)

if AGAINST_TORCH_FUNC:
    from torch.func import jacfwd, jvp
else:
    from torchfunc import jacfwd, jvp

MAX_JACOBIAN_COLUMNS = 256


def _tangents(primals: tuple, seed: int) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(p.shape, dtype=p.dtype, generator=gen) for p in primals)


def reference_jvp(f: Callable, primals: tuple, tangents: tuple) -> tuple:
    """Output tangents of f with torch's forward-mode AD (None where independent)."""
    with fwAD.dual_level():
        outs = f(*(fwAD.make_dual(p, t) for p, t in zip(primals, tangents)))
        return tuple(fwAD.unpack_dual(o).tangent for o in outs)


def _forward_samples(op):
    """(seed, f, primals) for the samples whose outputs have forward gradients."""
    if not op.supports_forward_ad:
        raise SkipCase("the OpInfo does not support forward-mode AD")
    for seed, sample in enumerate(samples(op, requires_grad=True, limit=MAX_AUTODIFF_SAMPLES)):
        f, primals = differentiable_fn(op.op, sample)
        primals = tuple(p.detach() for p in primals)
        if not primals or draws_random_numbers(f, primals):
            continue
        try:
            expected = reference_jvp(f, primals, _tangents(primals, seed))
        except (RuntimeError, NotImplementedError):
            continue  # the reference itself cannot run this sample
        if expected and all(e is not None for e in expected):
            yield seed, f, primals


def _done(compared: int) -> int:
    if not compared:
        raise SkipCase("nothing to compare: no sample with forward gradients")
    return compared


def check_jvp(op) -> int:
    compared = 0
    for seed, f, primals in _forward_samples(op):
        tangents = _tangents(primals, seed)
        expected = reference_jvp(f, primals, tangents)
        _, actual = jvp(f, primals, tangents)
        assert_close(tuple(actual), expected, AUTODIFF_TOL, f"sample {seed}")
        compared += 1
    return _done(compared)


def check_vmapjvp(op, allow_fallback: bool = True) -> int:
    """Per-example tangents (a batch of 2) through jvp at fixed primals."""
    compared = 0
    for seed, f, primals in _forward_samples(op):
        batch = [_tangents(primals, seed), _tangents(primals, seed + 1000)]
        stacked = tuple(torch.stack(ts) for ts in zip(*batch))
        with fallback(allow_fallback):
            actual = vmap(lambda *ts: tuple(jvp(f, primals, ts)[1]))(*stacked)
        expected = tuple(torch.stack(ts) for ts in zip(*(reference_jvp(f, primals, t) for t in batch)))
        assert_close(tuple(actual), expected, AUTODIFF_TOL, f"sample {seed}")
        compared += 1
    return _done(compared)


def check_jvpvjp(op) -> int:
    """Tangent of the VJP (at fixed cotangents) as the primals move along a tangent."""
    compared = 0
    for seed, f, primals in _forward_samples(op):
        outputs = f(*primals)
        cotangents = make_cotangents(outputs, seed)
        tangents = _tangents(primals, seed)

        def vjp_of(*ps):
            return tuple(vjp(f, *ps)[1](cotangents))

        try:
            with fwAD.dual_level(), torch.enable_grad():
                duals = [fwAD.make_dual(p.clone().requires_grad_(), t) for p, t in zip(primals, tangents)]
                outs = f(*duals)
                grads = torch.autograd.grad(outs, duals, cotangents, create_graph=True, allow_unused=True)
                expected = tuple(None if g is None else fwAD.unpack_dual(g).tangent for g in grads)
        except (RuntimeError, NotImplementedError):
            continue  # forward-over-reverse not supported by the reference
        if any(e is None for e in expected):
            continue
        _, actual = jvp(vjp_of, primals, tangents)
        assert_close(tuple(actual), expected, AUTODIFF_TOL, f"sample {seed}")
        compared += 1
    return _done(compared)


def check_jacfwd(op, allow_fallback: bool = True) -> int:
    """jacfwd with respect to every primal against torch.autograd.functional.jacobian."""
    compared = 0
    for seed, f, primals in _forward_samples(op):
        outputs = f(*primals)
        if any(x.is_complex() for x in (*primals, *outputs)):
            continue  # no real Jacobian
        if not all(p.numel() for p in primals) or sum(p.numel() for p in primals) > MAX_JACOBIAN_COLUMNS:
            continue  # empty, or too large for the reference
        try:
            expected = jacobian(f, primals)
        except Exception:
            continue  # the reference fails on the sample
        with fallback(allow_fallback):
            actual = jacfwd(f, argnums=tuple(range(len(primals))))(*primals)
        assert_close(actual, expected, AUTODIFF_TOL, f"sample {seed}")
        compared += 1
    return _done(compared)
