"""Forward-mode and second-order checks per OpInfo, shared by test_forward_opinfo.py
and tools/opinfo_report.py (same contract as opinfo_checks.py).

* check_jvp:     jvp against torch.autograd.forward_ad (dual tensors, plain tensors);
* check_vmapjvp: vmap over the tangents of jvp against a loop of the reference;
* check_jacfwd:  jacfwd against a forward-mode Jacobian built one column at a time
                 with torch.autograd.forward_ad (the reverse-mode jacobian differs
                 from any forward-mode one by construction on some ops: the dtype of
                 ops with a dtype= argument, nan patterns, inputs outside the
                 symmetric/triangular set an op assumes);
* check_jvpvjp:  jvp of a vjp (forward-over-reverse, what hessian does) against
                 forward_ad through torch.autograd.grad(create_graph=True);
* check_vjpvjp:  vjp of a vjp (reverse-over-reverse) against double backward.

Each returns the number of compared cases and raises AssertionError on a mismatch,
SkipCase when nothing can be compared, or whatever the transform raised.
``allow_fallback=False`` disables the per-example fallback of every vmap inside
(jacfwd is a vmap over basis tangents), so only real batching rules pass.
"""
from typing import Callable

import torch
import torch.autograd.forward_ad as fwAD
import torch.utils._pytree as pytree

from opinfo_checks import single_threaded
from opinfo_utils import (
    AGAINST_TORCH_FUNC, AUTODIFF_TOL, MAX_AUTODIFF_SAMPLES, SkipCase, assert_close,
    differentiable_fn, draws_random_numbers, fallback, make_cotangents, op_id, samples, tolerance,
    vjp, vmap,
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


def reference_jacfwd(f: Callable, primals: tuple) -> tuple:
    """Jacobian of every output with respect to every primal, one forward_ad pass per column.

    Result [i][j] has shape outputs[i].shape + primals[j].shape, like jacfwd with
    argnums=tuple(range(len(primals))) on a function returning a tuple.
    """
    outputs = f(*primals)
    jac = []
    for p_index, p in enumerate(primals):
        columns = []
        for k in range(p.numel()):
            tangents = [torch.zeros_like(q) for q in primals]
            tangents[p_index].view(-1)[k] = 1
            out_tangents = reference_jvp(f, primals, tuple(tangents))
            columns.append([torch.zeros_like(o) if t is None else t
                            for o, t in zip(outputs, out_tangents)])
        jac.append([torch.stack([c[i] for c in columns], dim=-1).reshape(o.shape + p.shape)
                    for i, o in enumerate(outputs)])
    return tuple(tuple(jac[j][i] for j in range(len(primals))) for i in range(len(outputs)))


def _forward_samples(op, drawn=None):
    """(seed, f, primals) for the samples (drawn here unless given) whose outputs have
    forward gradients."""
    if not op.supports_forward_ad:
        raise SkipCase("the OpInfo does not support forward-mode AD")
    if drawn is None:
        drawn = samples(op, requires_grad=True, limit=MAX_AUTODIFF_SAMPLES)
    for seed, sample in enumerate(drawn):
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


@single_threaded
def check_jvp(op, allow_fallback: bool = True) -> int:
    """jvp involves no vmap; allow_fallback is accepted for uniformity and still applied."""
    compared, tol = 0, tolerance(op, AUTODIFF_TOL)
    for seed, f, primals in _forward_samples(op):
        tangents = _tangents(primals, seed)
        expected = reference_jvp(f, primals, tangents)
        with fallback(allow_fallback):
            _, actual = jvp(f, primals, tangents)
        assert_close(tuple(actual), expected, tol, f"sample {seed}")
        compared += 1
    return _done(compared)


@single_threaded
def check_vmapjvp(op, allow_fallback: bool = True) -> int:
    """Per-example tangents (a batch of 2) through jvp at fixed primals."""
    compared, tol = 0, tolerance(op, AUTODIFF_TOL)
    for seed, f, primals in _forward_samples(op):
        batch = [_tangents(primals, seed), _tangents(primals, seed + 1000)]
        stacked = tuple(torch.stack(ts) for ts in zip(*batch))
        with fallback(allow_fallback):
            actual = vmap(lambda *ts: tuple(jvp(f, primals, ts)[1]))(*stacked)
        expected = tuple(torch.stack(ts) for ts in zip(*(reference_jvp(f, primals, t) for t in batch)))
        assert_close(tuple(actual), expected, tol, f"sample {seed}")
        compared += 1
    return _done(compared)


@single_threaded
def check_jvpvjp(op, allow_fallback: bool = True) -> int:
    """Tangent of the VJP (at fixed cotangents) as the primals move along a tangent."""
    compared, tol = 0, tolerance(op, AUTODIFF_TOL)
    for seed, f, primals in _forward_samples(op):
        cotangents = make_cotangents(f(*primals), seed)
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
        with fallback(allow_fallback):
            _, actual = jvp(vjp_of, primals, tangents)
        assert_close(tuple(actual), expected, tol, f"sample {seed}")
        compared += 1
    return _done(compared)


@single_threaded
def check_vjpvjp(op, allow_fallback: bool = True) -> int:
    """vjp of the pullback (as a function of primals and cotangents) against double backward.

    g(primals, cotangents) = vjp(f, *primals)[1](cotangents); its vjp with a second set of
    cotangents (one per primal) is compared with torch.autograd.grad of the first
    torch.autograd.grad(create_graph=True), with respect to primals and cotangents.
    """
    if not op.supports_gradgrad:
        raise SkipCase("the OpInfo does not support double backward")
    compared, tol = 0, tolerance(op, AUTODIFF_TOL)
    for seed, sample in enumerate(samples(op, requires_grad=True, limit=MAX_AUTODIFF_SAMPLES)):
        f, primals = differentiable_fn(op.op, sample)
        if not primals or draws_random_numbers(f, primals):
            continue
        try:
            outputs = f(*primals)
        except Exception:
            continue
        if not outputs:
            continue
        n = len(primals)
        cotangents = make_cotangents(outputs, seed)
        second = make_cotangents(primals, seed + 1000)
        try:
            ps = tuple(p.detach().requires_grad_() for p in primals)
            cs = tuple(c.detach().requires_grad_() for c in cotangents)
            with torch.enable_grad():
                outs = f(*ps)
                used = [k for k, o in enumerate(outs) if o.requires_grad]
                if not used:
                    continue
                first = torch.autograd.grad([outs[k] for k in used], ps, [cs[k] for k in used],
                                            create_graph=True, allow_unused=True)
                pairs = [(g, s) for g, s in zip(first, second) if g is not None and g.requires_grad]
                if not pairs:
                    continue  # the gradient does not depend on anything differentiable
                expected = torch.autograd.grad([g for g, _ in pairs], ps + cs, [s for _, s in pairs],
                                               allow_unused=True)
            expected = tuple(torch.zeros_like(x) if e is None else e
                             for x, e in zip(ps + cs, expected))
        except (RuntimeError, NotImplementedError):
            continue  # the reference cannot run double backward on this sample

        def pullback(*xs):
            grads = vjp(f, *xs[:n])[1](xs[n:])
            return tuple(torch.zeros_like(p) if g is None else g for p, g in zip(xs[:n], grads))

        detached = tuple(p.detach() for p in primals) + cotangents
        with fallback(allow_fallback):
            _, pullback2 = vjp(pullback, *detached)
            actual = pullback2(second)
        assert_close(tuple(actual), expected, tol, f"sample {seed}")
        compared += 1
    return _done(compared)


# Reference Jacobians by (OpInfo, sample, values of the sample's tensors): the slow
# part of check_jacfwd, which runs twice per OpInfo (with and without the fallback).
# Samples are drawn with fixed seeds, but some share tensors that a previous sample
# updates in place (batch norm's running stats), hence the values in the key.
_JACOBIAN_CACHE: dict = {}


def _fingerprint(sample) -> tuple:
    leaves = pytree.tree_leaves((sample.input, sample.args, sample.kwargs))
    return tuple((tuple(t.shape), t.detach().double().sum().item()) if isinstance(t, torch.Tensor) else repr(t)
                 for t in leaves)


@single_threaded
def check_jacfwd(op, allow_fallback: bool = True) -> int:
    """jacfwd with respect to every primal against reference_jacfwd."""
    compared, tol = 0, tolerance(op, AUTODIFF_TOL)
    sample_state = samples(op, requires_grad=True, limit=MAX_AUTODIFF_SAMPLES)
    for seed, f, primals in _forward_samples(op, sample_state):
        outputs = f(*primals)
        if any(x.is_complex() for x in (*primals, *outputs)):
            continue  # no real Jacobian
        if not all(p.numel() for p in primals) or sum(p.numel() for p in primals) > MAX_JACOBIAN_COLUMNS:
            continue  # empty, or too many reference passes
        key = (op_id(op), seed, _fingerprint(sample_state[seed]))
        if key not in _JACOBIAN_CACHE:
            try:
                _JACOBIAN_CACHE[key] = reference_jacfwd(f, primals)
            except (RuntimeError, NotImplementedError):
                _JACOBIAN_CACHE[key] = None
        expected = _JACOBIAN_CACHE[key]
        if expected is None:
            continue  # the reference fails on the sample
        with fallback(allow_fallback):
            actual = jacfwd(f, argnums=tuple(range(len(primals))))(*primals)
        assert_close(actual, expected, tol, f"sample {seed}")
        compared += 1
    return _done(compared)


FORWARD_CHECKS = {
    "jvp": check_jvp,
    "vmapjvp": check_vmapjvp,
    "jvpvjp": check_jvpvjp,
    "vjpvjp": check_vjpvjp,
    "jacfwd": check_jacfwd,
}
