"""Shared machinery of the OpInfo-driven transform tests (no pytest needed, so that
tools/opinfo_report.py uses it too), in the order a test uses it:

* the transforms under test and the fallback switch: torchfunc's, or torch.func's
  when TORCHFUNC_TEST_AGAINST_TORCH_FUNC=1, which runs the harness against the
  reference implementation to check the harness itself;
* op selection (all of op_db, or SAMPLE_OPS) and xfail / skip tables with reasons;
* samples drawn under several seeds, so that the examples of a batch differ;
* batch-dim placements over the tensor arguments, and the per-example loop reference;
* a sample as a function of its differentiable primals, cotangents, the autograd vjp;
* comparison tolerances.
"""
import contextlib
import itertools
import os
import random
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.utils._pytree as pytree
from torch.testing._internal.common_methods_invocations import op_db
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import reseed, seed_all

# --- the implementation under test -----------------------------------------------------

AGAINST_TORCH_FUNC = os.environ.get("TORCHFUNC_TEST_AGAINST_TORCH_FUNC", "") == "1"

if AGAINST_TORCH_FUNC:
    from torch.func import hessian, jacrev, vjp, vmap  # noqa: F401 (re-exported)

    IMPLEMENTATION = "torch.func"
    _set_fallback = torch._C._functorch._set_vmap_fallback_enabled
    torch._C._functorch._set_vmap_fallback_warning_enabled(False)
else:
    import torchfunc._C as _C
    from torchfunc import hessian, jacrev, vjp, vmap  # noqa: F401 (re-exported)

    IMPLEMENTATION = "torchfunc"
    _set_fallback = _C.set_fallback_enabled
    _C.set_fallback_warning(False)

_fallback_enabled = True


@contextlib.contextmanager
def fallback(enabled: bool):
    """Run the block with the slow per-example fallback enabled or disabled."""
    global _fallback_enabled
    previous, _fallback_enabled = _fallback_enabled, enabled
    _set_fallback(enabled)
    try:
        yield
    finally:
        _fallback_enabled = previous
        _set_fallback(previous)


# --- op selection --------------------------------------------------------------------------

DEVICE = "cpu"
DTYPE = torch.float32

# About seventy OpInfo names (each with all its variants) covering the op families
# real models use; the expensive suites run these by default.
SAMPLE_OPS = (
    # pointwise unary and activations
    "abs", "exp", "log", "sin", "tanh", "sigmoid", "clamp", "nn.functional.relu",
    "nn.functional.gelu", "nn.functional.silu", "nn.functional.leaky_relu",
    # pointwise binary and ternary
    "add", "sub", "mul", "div", "pow", "eq", "where", "addcmul",
    # reductions and scans
    "sum", "mean", "max", "var", "logsumexp", "cumsum", "argmax", "linalg.vector_norm",
    # views and reshapes
    "view", "reshape", "transpose", "permute", "squeeze", "unsqueeze", "expand",
    "select", "narrow", "__getitem__",
    # matmul family
    "matmul", "mm", "bmm", "addmm", "einsum", "nn.functional.linear",
    # convolution and pooling
    "nn.functional.conv1d", "nn.functional.conv2d", "nn.functional.conv_transpose2d",
    "nn.functional.max_pool2d", "nn.functional.avg_pool2d",
    "nn.functional.adaptive_avg_pool2d",
    # softmax and normalization
    "softmax", "log_softmax", "nn.functional.layer_norm", "nn.functional.batch_norm",
    "nn.functional.group_norm", "nn.functional.rms_norm",
    # other nn.functional
    "nn.functional.embedding", "nn.functional.pad",
    "nn.functional.scaled_dot_product_attention",
    # losses
    "nn.functional.cross_entropy", "nn.functional.mse_loss", "nn.functional.nll_loss",
    "nn.functional.binary_cross_entropy_with_logits",
    # joining, splitting, indexing
    "cat", "stack", "split", "index_select", "gather", "scatter", "index_add",
    "masked_fill",
    # factories
    "zeros_like", "ones_like", "new_zeros",
)


def op_key(op) -> tuple:
    return (op.name, op.variant_test_name)


def op_id(op) -> str:
    return op.full_name  # 'name' or 'name.variant'


def select_ops(scope: str = "all", filter: Optional[Callable] = None) -> list:
    """OpInfos that support float32 on CPU; scope 'all' (op_db) or 'sample' (SAMPLE_OPS)."""
    if scope not in ("all", "sample"):
        raise ValueError(f"scope must be 'all' or 'sample', not {scope!r}")
    unknown = set(SAMPLE_OPS) - {op.name for op in op_db}
    assert not unknown, f"SAMPLE_OPS names not in op_db: {sorted(unknown)}"
    ops = [op for op in op_db if DTYPE in op.supported_dtypes(DEVICE)]
    if scope == "sample":
        ops = [op for op in ops if op.name in SAMPLE_OPS]
    if filter is not None:
        ops = [op for op in ops if filter(op)]
    return ops


# Which OpInfos each pytest test runs, from the environment variable TORCHFUNC_OPINFO_OPS:
#   "default": all of op_db for the tests that are cheap enough or whose pass rate
#              over op_db is a goal (vmap, vmap in place, vjp, jvp, vjp(vjp), jacfwd, hessian)
#              and SAMPLE_OPS for the others (vmapvjp, jacrev, vmapjvp, jvpvjp);
#   "all":     all of op_db everywhere;   "sample": SAMPLE_OPS everywhere.
OPS_SCOPE = os.environ.get("TORCHFUNC_OPINFO_OPS", "default")
_ALL_OPS_TESTS = ("vmap", "vmap_inplace", "vjp", "jvp", "vjpvjp", "jacfwd", "hessian")


def ops_for(test: str) -> list:
    """The OpInfos a test ('vmap', 'jacfwd', ...: the keys of the CHECKS tables) runs."""
    if OPS_SCOPE not in ("default", "all", "sample"):
        raise ValueError(f"TORCHFUNC_OPINFO_OPS must be default, all or sample, "
                         f"not {OPS_SCOPE!r}")
    if OPS_SCOPE == "default":
        return select_ops("all" if test in _ALL_OPS_TESTS else "sample")
    return select_ops(OPS_SCOPE)


# --- xfail / skip tables ------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    action: str  # "xfail": must fail (strict: a pass is an error); "skip": not run
    name: str
    variant: str
    reason: str


def xfail(name: str, variant: str = "", *, reason: str) -> Entry:
    return Entry("xfail", name, variant, reason)


def skip(name: str, variant: str = "", *, reason: str) -> Entry:
    return Entry("skip", name, variant, reason)


class Table:
    """Expected failures and skips of one test, keyed by (OpInfo name, variant).

    ``Table(xfail(...), skip(...), base=[OTHER])`` also holds OTHER's entries.
    Entries are validated: a reason is required, the OpInfo must exist in op_db,
    and an OpInfo may appear only once (counting the base tables).
    """

    _known = {op_key(op) for op in op_db}

    def __init__(self, *entries: Entry, base: Sequence["Table"] = ()):
        self.entries = {}
        for entry in [e for table in base for e in table.entries.values()] + list(entries):
            key = (entry.name, entry.variant)
            if not entry.reason.strip():
                raise ValueError(f"{entry.action}{key} needs a reason")
            if key not in self._known:
                raise ValueError(f"{entry.action}{key}: no such OpInfo in op_db")
            if key in self.entries:
                raise ValueError(f"{key} is listed twice")
            self.entries[key] = entry

    def lookup(self, op) -> Optional[Entry]:
        return self.entries.get(op_key(op))


def parametrize_ops(ops: Sequence, table: Table):
    """pytest.mark.parametrize("op", ...) with the table's entries as marks.

    An xfail is strict: a case that passes fails the run, so a table can only shrink.
    xfails describe torchfunc, so they are not applied against torch.func.
    """
    import pytest  # only the pytest suites use this

    def param(op):
        entry = table.lookup(op)
        marks = ()
        if entry is not None and entry.action == "skip":
            marks = pytest.mark.skip(reason=entry.reason)
        elif entry is not None and not AGAINST_TORCH_FUNC:
            marks = pytest.mark.xfail(strict=True, reason=entry.reason)
        return pytest.param(op, marks=marks, id=op_id(op))

    return pytest.mark.parametrize("op", [param(op) for op in ops])


def run_check(check: Callable, op, **kwargs) -> None:
    """Run a check of opinfo_checks in a pytest test: SkipCase becomes a pytest skip."""
    import pytest

    try:
        check(op, **kwargs)
    except SkipCase as e:
        pytest.skip(str(e))


# OpInfos whose results cannot be compared with a reference by construction. These are
# skips of the harness, shared by every suite, not expected failures of the
# implementation. (Samples that draw random numbers are detected and skipped one by
# one instead, see draws_random_numbers.)
_UNINITIALIZED = "the output holds uninitialized memory, so values cannot be compared"
UNCOMPARABLE = Table(*(skip(name, reason=_UNINITIALIZED) for name in (
    "empty", "empty_like", "empty_permuted", "empty_strided", "new_empty",
    "new_empty_strided")))

# OpInfos whose eager kernel is wrong on non-contiguous inputs: their per-example
# reference runs on contiguous copies of the examples (the loop's slices are views).
# test_opinfo_harness.py checks that each bug is still there.
CONTIGUOUS_REFERENCE = {
    "native_group_norm": "torch's CPU native_group_norm reads a non-contiguous weight (or bias) as if it "
                         "were contiguous",
}


def contiguous_inputs(fn: Callable) -> Callable:
    """fn on contiguous copies of its tensor arguments."""
    def call(*args):
        return fn(*pytree.tree_map_only(torch.Tensor, lambda t: t.contiguous(), args))
    return call


# --- samples -----------------------------------------------------------------------------

N_VARIANTS = 3  # the largest batch size used
_SEED = 20240
# Compositions (vjp, vmapvjp, jacrev) use at most this many samples of an OpInfo,
# evenly spaced: a few OpInfos (max_pool*) have over a thousand.
MAX_AUTODIFF_SAMPLES = 32


class SkipCase(Exception):
    """Raised by a check when an OpInfo has nothing this test can run."""


def _fingerprint(sample) -> tuple:
    """Structure of a sample: tree spec, non-tensor values, tensor shapes and dtypes."""
    leaves, spec = pytree.tree_flatten((sample.input, sample.args, sample.kwargs))
    return (str(spec), tuple(
        (tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else repr(x)
        for x in leaves))


def thin(items: list, limit: Optional[int]) -> list:
    """At most ``limit`` items, evenly spaced, first and order kept."""
    if limit is None or len(items) <= limit:
        return items
    return [items[i * len(items) // limit] for i in range(limit)]


def _draw(op, requires_grad: bool, seed: int) -> list:
    """The OpInfo's samples, drawn after seeding the RNGs.

    This calls sample_inputs_func directly: OpInfo.sample_inputs wraps it in an
    iterator that inspects the whole call stack per call, which is slow under pytest.
    """
    seed_all(seed)
    return list(op.sample_inputs_func(op, DEVICE, DTYPE, requires_grad))


def samples(op, requires_grad: bool = False, limit: Optional[int] = None) -> list:
    return thin(_draw(op, requires_grad, _SEED), limit)


def sample_variants(op, requires_grad: bool = False, limit: Optional[int] = None) -> list:
    """For each OpInfo sample, N_VARIANTS versions of it drawn under different seeds.

    Example k of a batch is taken from version k, so that a batching rule that
    mixes up examples is caught. Versions agree in structure and shapes; where a
    sample's structure depends on the seed, its first version is repeated.
    """
    draws = [_draw(op, requires_grad, _SEED + k) for k in range(N_VARIANTS)]
    if any(len(d) != len(draws[0]) for d in draws):
        return [[s] * N_VARIANTS for s in thin(draws[0], limit)]
    out = []
    for versions in thin(list(zip(*draws)), limit):
        same = all(_fingerprint(v) == _fingerprint(versions[0]) for v in versions)
        out.append(list(versions) if same else [versions[0]] * N_VARIANTS)
    return out


class _SeededOpDetector(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen |= torch.Tag.nondeterministic_seeded in func.tags
        return func(*args, **(kwargs or {}))


def draws_random_numbers(call: Callable, args: tuple) -> bool:
    """Whether call(*args) runs an aten op tagged nondeterministic_seeded (dropout, normal...).

    vmap's default randomness="error" rejects such ops, and a loop cannot
    reproduce vmap's other modes, so vmap checks leave these samples out;
    vmap randomness has its own tests.
    """
    detector = _SeededOpDetector()
    detector.seen = False
    try:
        with detector:
            call(*clone_tree(args))
    except Exception:
        pass  # the loop reference will not run either
    return detector.seen


def has_tensor(tree) -> bool:
    return any(isinstance(x, torch.Tensor) for x in pytree.tree_leaves(tree))


def as_positional(fn: Callable, sample) -> tuple:
    """(call, args) with call(*args) == fn(sample.input, *sample.args, **sample.kwargs).

    Tensor-valued kwargs become trailing positional arguments, so that vmap can
    batch them; other kwargs are bound in the closure.
    """
    moved = tuple(k for k, v in sample.kwargs.items() if has_tensor(v))
    bound = {k: v for k, v in sample.kwargs.items() if k not in moved}
    n_args = len(sample.args)

    def call(*args):
        kwargs = dict(bound, **dict(zip(moved, args[1 + n_args:])))
        return fn(args[0], *args[1:1 + n_args], **kwargs)

    return call, (sample.input, *sample.args, *(sample.kwargs[k] for k in moved))


# --- placements, batching and the loop reference ----------------------------------------------

MAX_PLACEMENTS = 6


def placements(args: tuple, seed: int, cap: int = MAX_PLACEMENTS) -> list:
    """Batch-dim placements over the tensor leaves of ``args``.

    A placement gives each pytree leaf of ``args`` a batch dim: 0 (front), the
    tensor's ndim (last), or None (not batched); non-tensors always get None.
    At least one tensor is batched. Every placement is returned when there are at
    most ``cap``; otherwise all-front, all-last, each tensor batched alone at the
    front, then random ones, up to ``cap``.
    """
    leaves = pytree.tree_leaves(args)
    choices = [((0, x.dim(), None) if x.dim() else (0, None))
               if isinstance(x, torch.Tensor) else (None,) for x in leaves]
    is_batched = lambda p: any(d is not None for d in p)  # noqa: E731
    total = 1
    for c in choices:
        total *= len(c)
    if total <= cap + 1:
        return [p for p in itertools.product(*choices) if is_batched(p)]
    tensors = [i for i, c in enumerate(choices) if len(c) > 1]
    picked = [tuple(c[0] for c in choices), tuple(c[-2] if len(c) > 1 else c[0] for c in choices)]
    for i in tensors:
        picked.append(tuple(0 if j == i else None for j in range(len(leaves))))
    rng = random.Random(seed)
    for _ in range(20 * cap):
        picked.append(tuple(rng.choice(c) for c in choices))
    out = []
    for p in picked:
        if is_batched(p) and p not in out:
            out.append(p)
    return out[:cap]


def batch_size_for(index: int) -> int:
    """Alternate batch sizes 3 and 2 over the placements of a sample."""
    return N_VARIANTS - index % 2


def make_batched(variants: Sequence[tuple], placement: tuple, batch_size: int) -> tuple:
    """(batched args, in_dims): leaf i at dim placement[i] stacks example k from variants[k]."""
    flat = [pytree.tree_flatten(v)[0] for v in variants[:batch_size]]
    spec = pytree.tree_flatten(variants[0])[1]
    leaves = [
        x if d is None else torch.stack([f[i] for f in flat], dim=d)
        for i, (x, d) in enumerate(zip(flat[0], placement))
    ]
    args = pytree.tree_unflatten(leaves, spec)
    dims = iter(placement)
    in_dims = []
    for arg in variants[0]:
        arg_leaves, arg_spec = pytree.tree_flatten(arg)
        arg_dims = [next(dims) for _ in arg_leaves]
        in_dims.append(pytree.tree_unflatten(arg_dims, arg_spec) if has_tensor(arg) else None)
    return args, tuple(in_dims)


def example(args: tuple, in_dims: tuple, index: int) -> tuple:
    """Example ``index`` of a batch: select the batch dim of every batched tensor."""
    def pick(arg, dim):
        if dim is None:
            return arg
        if isinstance(arg, torch.Tensor):
            return arg.select(dim, index)
        leaves, spec = pytree.tree_flatten(arg)
        dims = pytree.tree_leaves(dim, is_leaf=lambda x: x is None)
        return pytree.tree_unflatten([pick(a, d) for a, d in zip(leaves, dims)], spec)
    return tuple(pick(a, d) for a, d in zip(args, in_dims))


def stack_outputs(outputs: list):
    """Stack per-example outputs (same pytree structure) along a new dim 0."""
    flat = [pytree.tree_flatten(o) for o in outputs]
    spec = flat[0][1]
    columns = zip(*(leaves for leaves, _ in flat))
    stacked = [torch.stack([torch.as_tensor(x) for x in col]) for col in columns]
    return pytree.tree_unflatten(stacked, spec)


def clone_tree(tree):
    return pytree.tree_map_only(torch.Tensor, torch.clone, tree)


def loop(fn: Callable, args: tuple, in_dims: tuple, batch_size: int):
    """The per-example reference: call fn on each example and stack the results."""
    return stack_outputs([fn(*example(args, in_dims, i)) for i in range(batch_size)])


# --- differentiable normalization ------------------------------------------------------------


def differentiable_fn(op_fn: Callable, sample) -> tuple:
    """(f, primals): f(*primals) runs the sample and returns its differentiable outputs.

    The primals are the sample's tensors that require grad (detached); the other
    arguments are bound. f applies the sample's output_process_fn_grad, keeps the
    floating-point and complex tensor outputs as a tuple, and reseeds the RNG
    first so that random ops give the same result on every call.
    """
    call, args = as_positional(op_fn, sample)
    leaves, spec = pytree.tree_flatten(args)
    where = [i for i, x in enumerate(leaves)
             if isinstance(x, torch.Tensor) and x.requires_grad]
    primals = tuple(leaves[i].detach() for i in where)

    def f(*ps):
        new = list(leaves)
        for i, p in zip(where, ps):
            new[i] = p
        reseed(_SEED)
        out = sample.output_process_fn_grad(call(*pytree.tree_unflatten(new, spec)))
        return tuple(o for o in pytree.tree_leaves(out) if isinstance(o, torch.Tensor)
                     and (o.is_floating_point() or o.is_complex()))

    return f, primals


def make_cotangents(outputs: Sequence[torch.Tensor], seed: int) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(o.shape, dtype=o.dtype, generator=gen) for o in outputs)


def reference_vjp(f: Callable, primals: tuple, cotangents: tuple) -> tuple:
    """(outputs, grads) of f with torch.autograd; unused primals get zero grads."""
    ps = tuple(p.detach().requires_grad_() for p in primals)
    with torch.enable_grad():
        outs = f(*ps)
    used = [(o, c) for o, c in zip(outs, cotangents) if o.requires_grad]
    grads = (None,) * len(ps)
    if used:
        grads = torch.autograd.grad([o for o, _ in used], ps, [c for _, c in used],
                                    allow_unused=True)
    grads = tuple(torch.zeros_like(p) if g is None else g for p, g in zip(ps, grads))
    return tuple(o.detach() for o in outs), grads


# --- comparison ---------------------------------------------------------------------------

# Batching changes the order of float32 reductions (batched matmul, fused kernels),
# so results agree to a few ulps of the largest term, not bitwise; a wrong batching
# rule is off by O(1). Gradients chain several such ops and need a little more.
VMAP_TOL = dict(rtol=1e-3, atol=1e-4)
AUTODIFF_TOL = dict(rtol=1e-3, atol=1e-3)
# Looser tolerances for OpInfos known to lose more float32 precision: key -> (tol, reason).
TOLERANCE_OVERRIDES = {
    ("linalg.householder_product", ""): (
        dict(rtol=5e-2, atol=1e-2), "its float32 backward loses three digits on some samples: on sample 7 "
        "(gradients up to 2e3) one element of vmap(vjp) differs from the loop by 1.8% in float32, while "
        "in float64 the two agree to 1e-10, so it is rounding, not batching"),
}


def tolerance(op, default: dict) -> dict:
    return TOLERANCE_OVERRIDES.get(op_key(op), (default,))[0]


def assert_close(actual, expected, tol: dict, what: str) -> None:
    torch.testing.assert_close(actual, expected, equal_nan=True, **tol,
                               msg=lambda m: f"{what}: {m}")
