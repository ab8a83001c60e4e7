"""Per-sample gradients over torch's module_db, shared by test/test_module_db.py and
tools/module_db_report.py (no pytest needed here).

For one ModuleInfo, each of its samples (float32, CPU, eval mode, at most MAX_SAMPLES,
evenly spaced among the samples whose module has parameters) becomes a *case*:

* the module is built from the sample's constructor_input (seeded; a lazy module is
  materialized by one forward pass) and put in eval mode;
* B examples (B = 3, 2, 3, ... over the samples) of its forward arguments are drawn by
  regenerating the sample under B seeds (same structure and shapes, other values; an input
  that comes out the same under every seed gets noise instead); every tensor argument is
  stacked along a new dim 0: pytree leaves, so LSTM's (h, c) too, and integer ones too
  (Embedding's indices, loss targets), so a module whose only tensor input is integer is
  still tested; non-tensor arguments and all kwargs are passed unbatched (in_dim None);
* the loss is a fixed random weighting of every floating output of forward,
  sum_i (w_i * out_i).sum(): a plain sum would make the gradients of everything before a
  LayerNorm (which Transformers end with) vanish to rounding noise;
* the reference is a Python loop of torch.autograd.grad over the examples, one at a time
  through the plain module (a fresh copy for each example: Embedding(max_norm) renorms
  its weight in place), stacked;
* the transform under test computes
  vmap(grad(lambda p, b, *x: loss(functional_call(module, (p, b), x, kwargs))),
       in_dims=(None, None, *in_dims))(params, buffers, *batched_args).

check_per_sample_grads runs the cases of one ModuleInfo under torchfunc or torch.func,
with the per-example fallback enabled or disabled, and returns an Outcome or raises:
AssertionError on a mismatch (a failure), SkipCase when there is nothing to compare,
or whatever the transform raised (an error). With the fallback disabled a case also
fails if the fallback counter moved. Cases are built once per ModuleInfo and cached,
so torchfunc and torch.func see exactly the same modules and inputs.
"""
import contextlib
import copy
import functools
import re
import warnings
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.func
import torch.utils._pytree as pytree
from torch.testing._internal.common_modules import module_db

import torchfunc
from opinfo_utils import SkipCase, Table, clone_tree, reseed, seed_all, skip, xfail
from torchfunc import _C

__all__ = ["MODULES", "MAX_SAMPLES", "TOL", "ModuleTable", "Outcome", "SkipCase",
           "check_per_sample_grads", "classify", "module_id", "parametrize_modules",
           "run_cases", "skip", "xfail"]

DEVICE = "cpu"
DTYPE = torch.float32
MODULES = list(module_db)
# Samples per ModuleInfo (None: all). All of them (about 1300 cases over 37 ModuleInfos,
# 857 of them LinearCrossEntropyLoss's) take about 25 s for torchfunc and torch.func,
# fallback on and off, on two cores; a cap takes them evenly spaced.
MAX_SAMPLES = None
BATCH_SIZES = (3, 2)
_SEED = 31337
# Batching reorders float32 reductions (batched matmul, conv): agreement to a few ulps of
# the largest term, through a forward and a backward; a wrong rule is off by O(1).
TOL = dict(rtol=1e-3, atol=1e-4)
IMPLEMENTATIONS = ("torchfunc", "torch.func")


def module_id(module_info) -> str:
    """ModuleInfo.name ('nn.Linear'), plus '.variant' should a ModuleInfo have one."""
    variant = getattr(module_info, "variant_test_name", "") or ""
    return f"{module_info.name}.{variant}" if variant else module_info.name


def _key(module_info) -> tuple:
    return (module_info.name, getattr(module_info, "variant_test_name", "") or "")


class ModuleTable(Table):
    """opinfo_utils.Table keyed by (ModuleInfo name, variant), checked against module_db."""

    _known = {_key(m) for m in module_db}

    def lookup(self, module_info):
        return self.entries.get(_key(module_info))


def parametrize_modules(modules, table: ModuleTable):
    """pytest.mark.parametrize("module_info", ...), the table's entries as (strict) marks."""
    import pytest

    def param(m):
        entry = table.lookup(m)
        marks = ()
        if entry is not None and entry.action == "skip":
            marks = pytest.mark.skip(reason=entry.reason)
        elif entry is not None:
            marks = pytest.mark.xfail(strict=True, reason=entry.reason)
        return pytest.param(m, marks=marks, id=module_id(m))

    return pytest.mark.parametrize("module_info", [param(m) for m in modules])


# --- cases ---------------------------------------------------------------------------------


@dataclass
class Case:
    what: str                 # "sample 3 (desc)" for messages
    module: torch.nn.Module   # eval mode, materialized
    params: dict
    buffers: dict
    batched_args: tuple
    in_dims: tuple
    kwargs: dict
    weights: list             # one per floating output leaf
    expected: dict            # parameter name -> per-example gradients, stacked
    batch_size: int


def _draw(module_info, seed: int) -> list:
    seed_all(seed)
    return list(module_info.module_inputs_func(
        module_info, device=DEVICE, dtype=DTYPE, requires_grad=False, training=False))


def _fingerprint(sample) -> tuple:
    """Structure of a sample's forward input: tree spec, non-tensor values, shapes, dtypes."""
    fi = sample.forward_input
    leaves, spec = pytree.tree_flatten((fi.args, fi.kwargs))
    return (str(spec), tuple((tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor)
                             else repr(x) for x in leaves))


def _perturbed(args: tuple, k: int) -> tuple:
    """Example k made from args alone: floating tensors get noise, the rest is kept."""
    gen = torch.Generator().manual_seed(_SEED + k)

    def perturb(x):
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            return x + 0.5 * torch.randn(x.shape, dtype=x.dtype, generator=gen)
        return x
    return pytree.tree_map(perturb, args)


def _same_floats(a, b) -> bool:
    floats = lambda t: [x for x in pytree.tree_leaves(t)  # noqa: E731
                        if isinstance(x, torch.Tensor) and x.is_floating_point()]
    return all(torch.equal(x, y) for x, y in zip(floats(a), floats(b)))


def _build(module_info, sample, example: tuple) -> torch.nn.Module:
    ci = sample.constructor_input
    reseed(_SEED)
    module = module_info.module_cls(*ci.args, **ci.kwargs).to(device=DEVICE)
    if module_info.is_lazy:
        with torch.no_grad():
            module(*clone_tree(example), **sample.forward_input.kwargs)
    return module.eval()


def _draws_random_numbers(module, example: tuple, kwargs: dict) -> bool:
    """Whether forward gives other values under another seed. (Eval mode has no dropout;
    opinfo_utils.draws_random_numbers looks at op tags instead, but CPU flash attention is
    tagged nondeterministic_seeded for its dropout_p even when that is 0.)"""
    outs = []
    for seed in (1, 2):
        reseed(seed)
        try:
            with torch.no_grad():
                outs.append(_float_leaves(module(*clone_tree(example), **kwargs)))
        except Exception:
            return False  # the reference will not run either, and says so
    return any(not torch.equal(a, b) for a, b in zip(*outs))


def _float_leaves(out) -> list:
    return [o for o in pytree.tree_leaves(out)
            if isinstance(o, torch.Tensor) and o.is_floating_point()]


def weighted_total(out, weights: list) -> torch.Tensor:
    leaves = _float_leaves(out)
    if len(leaves) != len(weights):
        raise RuntimeError(f"forward returned {len(leaves)} floating tensors, "
                           f"the reference {len(weights)}")
    return sum((o * w).sum() for o, w in zip(leaves, weights))


def _reference_grads(module, example: tuple, kwargs: dict, weights: Optional[list]):
    """(grads by parameter name, weights) of one example through a copy of the module."""
    m = copy.deepcopy(module)
    names, params = zip(*m.named_parameters())
    with torch.enable_grad():
        out = m(*clone_tree(example), **kwargs)
        if weights is None:
            gen = torch.Generator().manual_seed(_SEED)
            weights = [torch.randn(o.shape, dtype=o.dtype, generator=gen)
                       for o in _float_leaves(out)]
        loss = weighted_total(out, weights) if weights else None
        if loss is None or not loss.requires_grad:
            raise SkipCase("its output does not depend on the parameters (not differentiable)")
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    return {n: torch.zeros_like(p) if g is None else g.detach()
            for n, p, g in zip(names, params, grads)}, weights


def _stack_examples(examples: list) -> tuple:
    """(batched args, in_dims): every tensor leaf stacked along a new dim 0."""
    flat = [pytree.tree_flatten(e)[0] for e in examples]
    spec = pytree.tree_flatten(examples[0])[1]
    leaves = [torch.stack([f[i] for f in flat]) if isinstance(x, torch.Tensor) else x
              for i, x in enumerate(flat[0])]
    args = pytree.tree_unflatten(leaves, spec)
    in_dims = tuple(
        pytree.tree_map(lambda x: 0 if isinstance(x, torch.Tensor) else None, arg)
        if any(isinstance(x, torch.Tensor) for x in pytree.tree_leaves(arg)) else None
        for arg in examples[0])
    return args, in_dims


def _has_params(module_info, sample) -> bool:
    ci = sample.constructor_input
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return any(True for _ in module_info.module_cls(*ci.args, **ci.kwargs).parameters())
    except Exception:
        return False


def _spread(items: list, limit: Optional[int]) -> list:
    """At most ``limit`` items, evenly spaced from the first to the last. (Not
    opinfo_utils.thin: module_db lists variants in pairs, e.g. RNN without and with a
    hidden state, and a stride of len/limit would only ever pick one of each pair.)"""
    if limit is None or len(items) <= limit:
        return items
    if limit == 1:
        return items[:1]
    return [items[round(k * (len(items) - 1) / (limit - 1))] for k in range(limit)]


@functools.lru_cache(maxsize=None)
def cases(module_info, max_samples: Optional[int] = MAX_SAMPLES) -> tuple:
    """(cases, reasons samples were left out) of one ModuleInfo; cached."""
    draws = [_draw(module_info, _SEED + k) for k in range(max(BATCH_SIZES))]
    same_count = all(len(d) == len(draws[0]) for d in draws)
    left_out = set()
    eligible = [i for i, s in enumerate(draws[0]) if _has_params(module_info, s)]
    if not eligible:
        left_out.add("the module has no parameters" if draws[0] else "no samples")
    out = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for n, i in enumerate(_spread(eligible, max_samples)):
                case = _make_case(module_info, draws, i, same_count,
                                  BATCH_SIZES[n % len(BATCH_SIZES)], left_out)
                if case is not None:
                    out.append(case)
    finally:
        torch.set_num_threads(threads)
    return tuple(out), frozenset(left_out)


def _make_case(module_info, draws, i, same_count, batch_size, left_out) -> Optional[Case]:
    sample = draws[0][i]
    what = f"sample {i}" + (f" ({sample.desc})" if sample.desc else "")
    args = sample.forward_input.args
    kwargs = sample.forward_input.kwargs
    if not any(isinstance(x, torch.Tensor) for x in pytree.tree_leaves(args)):
        left_out.add("no tensor forward argument to batch")
        return None
    versions = [d[i] for d in draws[:batch_size]] if same_count else [sample] * batch_size
    if all(_fingerprint(v) == _fingerprint(sample) for v in versions[1:]) and same_count:
        examples = [v.forward_input.args for v in versions]
        # an input that does not depend on the seed (arange, ones) is perturbed instead
        for k in range(1, batch_size):
            if _same_floats(examples[k], args):
                examples[k] = _perturbed(examples[k], k)
    else:
        examples = [args] + [_perturbed(args, k) for k in range(1, batch_size)]
    try:
        module = _build(module_info, sample, examples[0])
    except Exception as e:
        left_out.add(f"the module cannot be built: {type(e).__name__}")
        return None
    if _draws_random_numbers(module, examples[0], kwargs):
        left_out.add("forward draws random numbers (a loop cannot reproduce it under vmap)")
        return None
    weights, grads = None, []
    try:
        for ex in examples:
            g, weights = _reference_grads(module, ex, kwargs, weights)
            grads.append(g)
    except SkipCase as e:
        left_out.add(str(e))
        return None
    except Exception as e:
        left_out.add(f"the reference loop does not run: {type(e).__name__}")
        return None
    expected = {n: torch.stack([g[n] for g in grads]) for n in grads[0]}
    batched_args, in_dims = _stack_examples(examples)
    return Case(what=what, module=module,
                params={n: p.detach() for n, p in module.named_parameters()},
                buffers={n: b for n, b in module.named_buffers()},
                batched_args=batched_args, in_dims=in_dims, kwargs=kwargs, weights=weights,
                expected=expected, batch_size=batch_size)


# --- the transforms under test -------------------------------------------------------------

_TORCHFUNC_OP = re.compile(r"vmap fallback: (\S+) has no batching rule")
_TORCH_FUNC_OP = re.compile(r"batching rule for (\S+?)\. Please")


@contextlib.contextmanager
def _stderr_lines():
    """Yields a list that, on exit, holds the lines written to file descriptor 2 in the
    block. The fallback's warnings from inside a backward pass bypass Python's warnings
    and go straight to stderr from C++; they are read back here, the rest re-emitted."""
    import os
    import sys
    import tempfile
    lines = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode(errors="replace").splitlines())


@contextlib.contextmanager
def watch_fallback(impl: str, allow: bool):
    """Run the block with the per-example fallback of impl enabled or disabled (restored
    to enabled, the default, after). Yields a dict; on exit "count" holds the fallback runs
    in the block (torchfunc's counter; torch.func has none, so its warnings are counted)
    and "ops" the ops that took it, read from the fallback's warnings."""
    seen = {"count": 0, "ops": set()}
    if impl == "torchfunc":
        set_enabled, set_warning = _C.set_fallback_enabled, torchfunc.set_fallback_warning
        pattern = _TORCHFUNC_OP
    else:
        set_enabled = torch._C._functorch._set_vmap_fallback_enabled
        set_warning = torch._C._functorch._set_vmap_fallback_warning_enabled
        pattern = _TORCH_FUNC_OP
    start = _C.fallback_count()
    err, log = [], []
    try:
        with _stderr_lines() as err, warnings.catch_warnings(record=True) as log:
            warnings.simplefilter("always")
            set_enabled(allow)
            set_warning(True)
            try:
                yield seen
            finally:
                set_warning(False)
                set_enabled(True)
    finally:
        other = [line for line in err if not pattern.search(line)]
        if other:
            import sys
            print("\n".join(other), file=sys.stderr)
        found = [m.group(1) for m in map(pattern.search, [str(w.message) for w in log] + err)
                 if m]
        seen["ops"] = set(found)
        seen["count"] = _C.fallback_count() - start if impl == "torchfunc" else len(found)


def per_sample_grads(impl: str, case: Case) -> dict:
    fn = torchfunc if impl == "torchfunc" else torch.func
    module, weights, kwargs = case.module, case.weights, case.kwargs

    def loss(params, buffers, *xs):
        return weighted_total(fn.functional_call(module, (params, buffers), xs, kwargs), weights)

    params = {n: p.clone() for n, p in case.params.items()}
    buffers = {n: b.clone() for n, b in case.buffers.items()}
    return fn.vmap(fn.grad(loss), in_dims=(None, None, *case.in_dims))(
        params, buffers, *clone_tree(case.batched_args))


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:240] if text else type(error).__name__


@dataclass
class Outcome:
    """What the cases of one ModuleInfo did under one implementation and fallback mode."""
    compared: int = 0                                  # cases that matched the loop
    ran: int = 0
    fallback_ops: set = field(default_factory=set)     # ops that took the fallback
    fallback_runs: int = 0
    left_out: frozenset = frozenset()                  # why samples were not cases
    failures: list = field(default_factory=list)       # (kind, case, message, exception)

    def problems(self) -> list:
        """Distinct failure messages (numbers blurred), most frequent first, with counts."""
        groups = {}
        for kind, what, message, _ in self.failures:
            key = (kind, re.sub(r"\d+", "#", message))
            count, first = groups.get(key, (0, message))
            groups[key] = (count + 1, first)
        return sorted(((count, kind, first) for (kind, _), (count, first) in groups.items()),
                      key=lambda t: -t[0])

    def summary(self) -> str:
        return "; ".join(f"{kind} x{count}/{self.ran}: {first}"
                         for count, kind, first in self.problems())


def _compare(case: Case, actual: dict) -> None:
    assert set(actual) == set(case.expected), \
        f"{case.what}: gradients for {sorted(actual)}, expected {sorted(case.expected)}"
    for name, expected in case.expected.items():
        torch.testing.assert_close(
            actual[name], expected, **TOL, equal_nan=True,
            msg=lambda m, name=name: f"{case.what}, batch size {case.batch_size}, "
                                     f"grad of {name}: {m}")


def run_cases(module_info, impl: str = "torchfunc", allow_fallback: bool = True,
              max_samples: Optional[int] = MAX_SAMPLES) -> Outcome:
    """Every case of module_info under impl, against the loop; failures are collected.

    With the fallback disabled, a case whose fallback counter moved is a failure too.
    Raises SkipCase when there is no case.
    """
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, not {impl!r}")
    found, left_out = cases(module_info, max_samples)
    if not found:
        raise SkipCase("nothing to compare: " + ("; ".join(sorted(left_out)) or "no samples"))
    outcome = Outcome(left_out=left_out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for case in found:
            outcome.ran += 1
            try:
                with watch_fallback(impl, allow_fallback) as seen:
                    actual = per_sample_grads(impl, case)
                if not allow_fallback and seen["count"]:
                    raise AssertionError(
                        f"{case.what}: the fallback ran {seen['count']} times although "
                        f"disabled, for {', '.join(sorted(seen['ops']))}")
                _compare(case, actual)
                outcome.compared += 1
            except AssertionError as e:
                outcome.failures.append(("fail", case.what, first_line(e), e))
            except Exception as e:  # noqa: BLE001 - whatever the transform raised
                outcome.failures.append(("error", case.what, f"{type(e).__name__}: "
                                         f"{first_line(e)}", e))
            finally:
                outcome.fallback_ops |= seen["ops"]
                outcome.fallback_runs += seen["count"]
    finally:
        torch.set_num_threads(threads)
    return outcome


def check_per_sample_grads(module_info, impl: str = "torchfunc", allow_fallback: bool = True,
                           max_samples: Optional[int] = MAX_SAMPLES) -> Outcome:
    """run_cases, raising on any failure: the first error if any case raised (an
    *error*), else the first mismatch (an AssertionError, a *failure*), with a note
    listing every distinct problem over the cases."""
    outcome = run_cases(module_info, impl, allow_fallback, max_samples)
    if outcome.failures:
        errors = [f for f in outcome.failures if f[0] == "error"]
        kind, what, _, exc = (errors or outcome.failures)[0]
        exc.add_note(f"{module_id(module_info)} under {impl} "
                     f"({'fallback enabled' if allow_fallback else 'fallback disabled'}), "
                     f"first at {what}: {outcome.summary()}")
        raise exc
    return outcome


def classify(module_info, impl: str, allow_fallback: bool,
             max_samples: Optional[int] = MAX_SAMPLES) -> dict:
    """One ModuleInfo under one implementation: status pass / fail / error / skip, detail."""
    try:
        o = run_cases(module_info, impl, allow_fallback, max_samples)
    except SkipCase as e:
        return dict(status="skip", detail=str(e), fallback_ops=[], cases=0, compared=0)
    ops = sorted(o.fallback_ops)
    if not o.failures:
        detail = f"{o.compared} cases compared"
        if ops:
            detail += f"; through the fallback: {', '.join(ops)}"
        return dict(status="pass", detail=detail, fallback_ops=ops, cases=o.ran,
                    compared=o.compared)
    status = "error" if any(f[0] == "error" for f in o.failures) else "fail"
    return dict(status=status, detail=o.summary(), fallback_ops=ops, cases=o.ran,
                compared=o.compared)
