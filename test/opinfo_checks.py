"""One check per (transform, OpInfo), shared by the pytest suites and tools/opinfo_report.py.

A check runs the samples of one OpInfo through one transform and compares with
a reference computed by plain torch. It returns the number of cases compared
(a case is one sample, or one sample under one batch-dim placement) and raises:

* ``AssertionError`` on a mismatch (a *failure*);
* ``SkipCase`` when the OpInfo has nothing the check can compare;
* whatever the transform raised (an *error*).

``allow_fallback=False`` runs the transform with the slow per-example fallback
disabled, so an op without a batching rule raises: the "has batch rule" flavour.

Checks run single-threaded: the samples are tiny, and on a busy machine OpenMP
threads spin-waiting for a core make such ops up to a hundred times slower.
"""
import functools
from typing import Callable, Optional, Sequence

import torch
import torch.func
from torch.autograd.functional import jacobian

from opinfo_utils import (
    AUTODIFF_TOL, CONTIGUOUS_REFERENCE, MAX_AUTODIFF_SAMPLES, VMAP_TOL, SkipCase, as_positional, assert_close,
    batch_size_for, clone_tree, contiguous_inputs, differentiable_fn, draws_random_numbers, example, fallback,
    hessian, jacrev, loop, make_batched, make_cotangents, placements, reference_vjp, sample_variants,
    samples, stack_outputs, tolerance, vjp, vmap,
)

_RANDOM = "draws random numbers, so a loop cannot reproduce it under vmap"


def single_threaded(check: Callable) -> Callable:
    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return check(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)
    return wrapper


class _Tally:
    """Counts compared cases and remembers why samples were left out."""

    def __init__(self):
        self.compared = 0
        self.left_out = set()

    def done(self) -> int:
        if not self.compared:
            why = "; ".join(sorted(self.left_out)) or "the OpInfo has no samples"
            raise SkipCase(f"nothing to compare: {why}")
        return self.compared


# --- the loop reference under every placement ----------------------------------------------


def _reference(fn: Callable, variants: Sequence[tuple], placement: tuple,
               batch_size: int, inplace: bool = False) -> Optional[tuple]:
    """(batched args, in_dims, loop result) for one placement, or None.

    Examples are taken from distinct sample versions; if the op cannot run on
    those (values that must agree across arguments, data-dependent output
    shapes), from copies of the first version; if it cannot run on the examples
    at all (e.g. a view of a non-contiguous slice), the placement is not tested.
    """
    run = _inplace_loop if inplace else loop
    for versions in (variants, [variants[0]] * batch_size):
        args, in_dims = make_batched(versions, placement, batch_size)
        try:
            expected = run(fn, clone_tree(args), in_dims, batch_size)
        except Exception:
            continue
        return args, in_dims, expected
    return None


def _inplace_loop(fn: Callable, args: tuple, in_dims: tuple, batch_size: int) -> tuple:
    """(stacked returned values, mutated self) of an in-place op run per example.

    The mutated self is None when the op changes the metadata of self (an
    in-place view such as t_ or squeeze_): then only the returned values count.
    """
    returned, same_metadata = [], True
    for i in range(batch_size):
        ex = example(args, in_dims, i)
        before = (ex[0].shape, ex[0].stride())
        returned.append(fn(*ex))
        same_metadata &= (ex[0].shape, ex[0].stride()) == before
    return stack_outputs(returned), (args[0] if same_metadata else None)


def _compare_with_loop(tally: _Tally, fn: Callable, reference_fn: Callable,
                       variants: Sequence[tuple], seed: int, tol: dict,
                       allow_fallback: bool) -> None:
    """vmap(fn) over each placement against a loop of reference_fn."""
    found = placements(variants[0], seed)
    if not found:
        tally.left_out.add("no tensor argument to batch")
    for index, placement in enumerate(found):
        size = batch_size_for(index)
        ref = _reference(reference_fn, variants, placement, size)
        if ref is None:
            tally.left_out.add("the op does not run on the examples eagerly")
            continue
        args, in_dims, expected = ref
        with fallback(allow_fallback):
            actual = vmap(fn, in_dims=in_dims)(*args)
        assert_close(actual, expected, tol,
                     f"sample {seed}, in_dims={in_dims}, batch size {size}")
        tally.compared += 1


# --- vmap ------------------------------------------------------------------------------------


@single_threaded
def check_vmap(op, allow_fallback: bool = True) -> int:
    """vmap(op) over every batch-dim placement against the per-example loop."""
    tally = _Tally()
    for i, versions in enumerate(sample_variants(op)):
        calls = [as_positional(op.op, s) for s in versions]
        fn, variants = calls[0][0], [args for _, args in calls]
        if draws_random_numbers(fn, variants[0]):
            tally.left_out.add(_RANDOM)
            continue
        reference = contiguous_inputs(fn) if op.name in CONTIGUOUS_REFERENCE else fn
        _compare_with_loop(tally, fn, reference, variants, seed=i, tol=tolerance(op, VMAP_TOL),
                           allow_fallback=allow_fallback)
    return tally.done()


# In-place ops whose other tensor arguments contribute only their shape.
SHAPE_ONLY_INPLACE = {"resize_as_"}


@single_threaded
def check_vmap_inplace(op, allow_fallback: bool = True) -> int:
    """The in-place variant under vmap.

    With a batched self it must match the loop (returned values and the mutated
    self); with an unbatched self and another argument batched it must raise, unless
    the op reads only that argument's shape (SHAPE_ONLY_INPLACE).
    """
    if op.inplace_variant is None:
        raise SkipCase("the OpInfo has no in-place variant")
    tally, tol = _Tally(), tolerance(op, VMAP_TOL)
    for i, versions in enumerate(sample_variants(op)):
        if versions[0].broadcasts_input or not isinstance(versions[0].input, torch.Tensor):
            tally.left_out.add("self is broadcast or not a tensor")
            continue
        calls = [as_positional(op.inplace_variant, s) for s in versions]
        fn, variants = calls[0][0], [args for _, args in calls]
        if draws_random_numbers(fn, variants[0]):
            tally.left_out.add(_RANDOM)
            continue
        for index, placement in enumerate(placements(variants[0], seed=i)):
            size = batch_size_for(index)
            ref = _reference(fn, variants, placement, size, inplace=True)
            if ref is None:
                tally.left_out.add("the in-place op does not run on the examples eagerly")
                continue
            args, in_dims, (expected_returned, expected_self) = ref
            what = f"sample {i}, in_dims={in_dims}, batch size {size}"
            if placement[0] is None and op.name in SHAPE_ONLY_INPLACE:
                # Only the shape of the batched argument counts, which every example
                # shares: self stays unbatched and ends as the loop leaves it.
                with fallback(allow_fallback):
                    vmap(fn, in_dims=in_dims)(*args)
                if expected_self is not None:
                    assert_close(args[0], expected_self, tol, what + ", mutated self")
            elif placement[0] is None:
                _assert_inplace_raises(fn, args, in_dims, allow_fallback, what)
            else:
                with fallback(allow_fallback):
                    returned = vmap(fn, in_dims=in_dims)(*args)
                assert_close(returned, expected_returned, tol, what + ", returned")
                if expected_self is not None:
                    assert_close(args[0], expected_self, tol, what + ", mutated self")
            tally.compared += 1
    return tally.done()


def _assert_inplace_raises(fn, args, in_dims, allow_fallback, what):
    try:
        with fallback(allow_fallback):
            vmap(fn, in_dims=in_dims)(*args)
    except RuntimeError:
        return
    raise AssertionError(f"{what}: an in-place op on an unbatched self with a batched "
                         "argument must raise, but it returned")


# --- vjp, vmap(vjp), jacrev --------------------------------------------------------------------


def _differentiable_samples(op, tally: _Tally, versions_needed: bool = False):
    """Yield (index, versions) with versions a list of (f, primals, outputs, sample).

    Only samples with differentiable inputs and outputs are yielded; with
    versions_needed, each sample comes in N_VARIANTS versions.
    """
    if not op.supports_autograd:
        raise SkipCase("the OpInfo does not support autograd")
    if versions_needed:
        drawn = sample_variants(op, requires_grad=True, limit=MAX_AUTODIFF_SAMPLES)
    else:
        drawn = [[s] for s in samples(op, requires_grad=True, limit=MAX_AUTODIFF_SAMPLES)]
    for i, versions in enumerate(drawn):
        fs = [differentiable_fn(op.op, s) for s in versions]
        f, primals = fs[0]
        if not primals:
            tally.left_out.add("no floating-point input requires grad")
            continue
        try:
            outputs = f(*primals)
        except Exception:
            tally.left_out.add("the op fails eagerly on the sample")
            continue
        if not outputs:
            tally.left_out.add("no floating-point output")
            continue
        yield i, [(g, ps, outputs, s) for (g, ps), s in zip(fs, versions)]


@single_threaded
def check_vjp(op, allow_fallback: bool = True) -> int:
    """vjp(f) against torch.autograd.grad: the primal outputs and the cotangent pullback.

    vjp involves no vmap; allow_fallback is accepted for uniformity with the other checks.
    """
    tally, tol = _Tally(), tolerance(op, AUTODIFF_TOL)
    for i, [(f, primals, outputs, _)] in _differentiable_samples(op, tally):
        cotangents = make_cotangents(outputs, seed=i)
        try:
            expected_out, expected_grads = reference_vjp(f, primals, cotangents)
        except Exception:
            tally.left_out.add("torch.autograd.grad fails on the sample")
            continue
        with fallback(allow_fallback):
            out, pullback = vjp(f, *primals)
            grads = pullback(cotangents)
        assert_close(out, expected_out, tol, f"sample {i}, vjp primal outputs")
        assert_close(grads, expected_grads, tol, f"sample {i}, vjp grads")
        tally.compared += 1
    return tally.done()


@single_threaded
def check_vmapvjp(op, allow_fallback: bool = True) -> int:
    """vmap over vjp (per-example gradients) against a loop of torch.autograd.grad.

    Primals and cotangents are batched over every placement; the op's other
    arguments are bound, unbatched.
    """
    tally = _Tally()
    for i, versions in _differentiable_samples(op, tally, versions_needed=True):
        f, primals, outputs, sample = versions[0]
        if draws_random_numbers(*as_positional(op.op, sample)):
            tally.left_out.add(_RANDOM)
            continue
        n = len(primals)
        variants = [ps + make_cotangents(outputs, seed=100 * i + k)
                    for k, (_, ps, _, _) in enumerate(versions)]

        def pullback(*xs):
            return vjp(f, *xs[:n])[1](xs[n:])

        def reference(*xs):
            return reference_vjp(f, xs[:n], xs[n:])[1]

        _compare_with_loop(tally, pullback, reference, variants, seed=i,
                           tol=tolerance(op, AUTODIFF_TOL), allow_fallback=allow_fallback)
    return tally.done()


# The reference jacobian takes one backward pass per output element.
MAX_JACOBIAN_ROWS = 1000


@single_threaded
def check_jacrev(op, allow_fallback: bool = True) -> int:
    """jacrev with respect to every primal against torch.autograd.functional.jacobian."""
    tally, tol = _Tally(), tolerance(op, AUTODIFF_TOL)
    for i, [(f, primals, outputs, _)] in _differentiable_samples(op, tally):
        if any(x.is_complex() for x in (*primals, *outputs)):
            tally.left_out.add("complex inputs or outputs have no real jacobian")
            continue
        rows = [o.numel() for o in outputs]
        if sum(rows) > MAX_JACOBIAN_ROWS or not all(rows):
            tally.left_out.add("outputs too large or empty for the reference jacobian")
            continue
        try:
            expected = jacobian(f, primals)
        except Exception:
            tally.left_out.add("torch.autograd.functional.jacobian fails on the sample")
            continue
        with fallback(allow_fallback):
            actual = jacrev(f, argnums=tuple(range(len(primals))))(*primals)
        assert_close(actual, expected, tol, f"sample {i}, jacrev")
        tally.compared += 1
    return tally.done()


MAX_HESSIAN_INPUTS = 64  # primal elements: the reference takes one double backward per element


@single_threaded
def check_hessian(op, allow_fallback: bool = True) -> int:
    """hessian of a weighted sum of the outputs, with respect to every primal, against
    torch.autograd.functional.hessian (double backward, one row at a time). Where that
    reference fails, against torch.func.hessian (forward-over-reverse): wherever torch.func
    computes a Hessian, torchfunc must too. (Where both compute one, torch.func can be the
    one that is wrong: nn.functional.layer_norm's weight-input block, for one.)"""
    tally, tol = _Tally(), tolerance(op, AUTODIFF_TOL)
    for i, [(f, primals, outputs, _)] in _differentiable_samples(op, tally):
        if any(x.is_complex() for x in (*primals, *outputs)):
            tally.left_out.add("complex inputs or outputs have no real hessian")
            continue
        if sum(p.numel() for p in primals) > MAX_HESSIAN_INPUTS or not all(p.numel() for p in primals):
            tally.left_out.add("inputs too large or empty for the reference hessian")
            continue
        gen = torch.Generator().manual_seed(i)
        weights = [torch.randn(o.shape, generator=gen, dtype=o.dtype) for o in outputs]

        def scalar(*ps):
            return sum((o * w).sum() for o, w in zip(f(*ps), weights))
        argnums = tuple(range(len(primals)))
        try:
            expected, against = torch.autograd.functional.hessian(scalar, primals), "autograd"
        except Exception:
            try:
                expected, against = torch.func.hessian(scalar, argnums=argnums)(*primals), "torch.func"
            except Exception:
                tally.left_out.add("neither autograd's hessian nor torch.func's computes the sample")
                continue
        with fallback(allow_fallback):
            actual = hessian(scalar, argnums=argnums)(*primals)
        assert_close(actual, expected, tol, f"sample {i}, hessian against {against}")
        tally.compared += 1
    return tally.done()


CHECKS = {
    "vmap": check_vmap,
    "vmap_inplace": check_vmap_inplace,
    "vjp": check_vjp,
    "vmapvjp": check_vmapvjp,
    "jacrev": check_jacrev,
    "hessian": check_hessian,
}
