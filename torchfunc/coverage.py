"""python -m torchfunc.coverage: how much of the installed torch torchfunc batches and
differentiates, as a regression suite for a torch build (beyond torch.func).

It prints the rule registry's counts (torchfunc.explain for every aten op, by kind),
then runs op_db (torch.testing._internal, float32 on the CPU) under vmap, vjp, jvp,
vmap(vjp), jacrev and jacfwd with the per-example fallback disabled, so an op passes only
through a real rule. Each case is one OpInfo sample, checked against an independent
reference: the per-example loop for vmap, torch.autograd for vjp and vmap(vjp),
torch.autograd.forward_ad for jvp, torch.autograd.functional.jacobian for the Jacobians.

    python -m torchfunc.coverage                    # every OpInfo, up to 3 samples each
    python -m torchfunc.coverage --quick            # every OpInfo, its first sample
    python -m torchfunc.coverage --json out.json --min-rate 0.85
    python -m torchfunc.coverage --registry         # one line per aten op: kind, source, why
    python -m torchfunc.coverage --family-tables    # the ops of each rules/*.cpp file, as markdown

Exit status 1 when a transform's pass rate is below --min-rate. Random ops are left out
(a loop cannot reproduce vmap's draws), as are samples the reference itself cannot run.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import warnings
from typing import Any, Callable

import torch
import torch.autograd.forward_ad as fwAD
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from ._engine import _C
from .autodiff import vjp
from .explain import KINDS, registry
from .forward import jvp
from .jacobians import jacfwd, jacrev
from .vmap import vmap

TRANSFORMS = ("vmap", "vjp", "jvp", "vmapvjp", "jacrev", "jacfwd")
TOL = dict(rtol=1e-3, atol=1e-4)


class Skip(Exception):
    """Nothing to compare for this case (reported as a skip, not counted)."""


class _Seeded(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen |= torch.Tag.nondeterministic_seeded in func.tags
        return func(*args, **(kwargs or {}))


def _call(op: Any, sample: Any) -> tuple[Callable, tuple]:
    """(f, args): f(*args) runs the sample; tensor kwargs become trailing arguments."""
    moved = [k for k, v in sample.kwargs.items() if isinstance(v, torch.Tensor)]
    bound = {k: v for k, v in sample.kwargs.items() if k not in moved}
    n = len(sample.args)

    def f(*a):
        return op(a[0], *a[1:1 + n], **bound, **dict(zip(moved, a[1 + n:])))

    return f, (sample.input, *sample.args, *(sample.kwargs[k] for k in moved))


def _differentiable(op: Any, sample: Any) -> tuple[Callable, tuple]:
    """(g, primals): g(*primals) returns the sample's floating outputs as a tuple."""
    f, args = _call(op, sample)
    leaves, spec = pytree.tree_flatten(args)
    where = [i for i, x in enumerate(leaves) if isinstance(x, torch.Tensor) and x.requires_grad]
    if not where:
        raise Skip("no differentiable input")

    def g(*ps):
        new = list(leaves)
        for i, p in zip(where, ps):
            new[i] = p
        out = sample.output_process_fn_grad(f(*pytree.tree_unflatten(new, spec)))
        return tuple(o for o in pytree.tree_leaves(out)
                     if isinstance(o, torch.Tensor) and (o.is_floating_point() or o.is_complex()))

    return g, tuple(leaves[i].detach() for i in where)


def _close(actual: Any, expected: Any, check_dtype: bool = True) -> None:
    a, e = pytree.tree_leaves(actual), pytree.tree_leaves(expected)
    assert len(a) == len(e), f"{len(a)} outputs, expected {len(e)}"
    for x, y in zip(a, e):
        if isinstance(y, torch.Tensor):
            torch.testing.assert_close(x, y, **TOL, equal_nan=True, check_dtype=check_dtype)


def _reference(compute: Callable) -> Any:
    """The reference's result; a sample the reference cannot run is a skip."""
    try:
        return compute()
    except Skip:
        raise
    except Exception as e:  # noqa: BLE001
        raise Skip(f"the reference fails: {type(e).__name__}") from e


def _check_vmap(op, sample) -> None:
    f, args = _call(op, sample)
    leaves, spec = pytree.tree_flatten(args)
    if not any(isinstance(x, torch.Tensor) for x in leaves):
        raise Skip("no tensor input")
    second = [x + 0.5 * torch.rand_like(x) if isinstance(x, torch.Tensor) and x.is_floating_point()
              else x for x in leaves]
    batched = [torch.stack([x.detach(), y.detach()]) if isinstance(x, torch.Tensor) else x
               for x, y in zip(leaves, second)]
    in_dims = [0 if isinstance(x, torch.Tensor) else None for x in leaves]
    examples = [[x.detach() if isinstance(x, torch.Tensor) else x for x in leaves],
                [y.detach() if isinstance(y, torch.Tensor) else y for y in second]]
    expected = _reference(lambda: [f(*pytree.tree_unflatten(ex, spec)) for ex in examples])
    expected = pytree.tree_map(lambda *o: torch.stack(o) if isinstance(o[0], torch.Tensor) else o[0],
                               *expected)
    actual = vmap(lambda *a: f(*a), in_dims=tuple(pytree.tree_unflatten(in_dims, spec)))(
        *pytree.tree_unflatten(batched, spec))
    _close(actual, expected)


def _cotangents(outputs: tuple, seed: int) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(o.shape, dtype=o.dtype, generator=gen) for o in outputs)


def _reference_vjp(g, primals, cotangents):
    ps = [p.clone().requires_grad_() for p in primals]
    outs = g(*ps)
    pairs = [(o, c) for o, c in zip(outs, cotangents) if o.requires_grad]
    if not pairs:
        raise Skip("no output depends on the inputs")
    grads = torch.autograd.grad([o for o, _ in pairs], ps, [c for _, c in pairs], allow_unused=True)
    return tuple(torch.zeros_like(p) if d is None else d for p, d in zip(ps, grads))


def _check_vjp(op, sample) -> None:
    g, primals = _differentiable(op, sample)
    outs = _reference(lambda: g(*primals))
    if not outs:
        raise Skip("no floating output")
    cot = _cotangents(outs, 0)
    expected = _reference(lambda: _reference_vjp(g, primals, cot))
    _close(vjp(g, *primals)[1](cot), expected)


def _check_vmapvjp(op, sample) -> None:
    g, primals = _differentiable(op, sample)
    outs = _reference(lambda: g(*primals))
    if not outs:
        raise Skip("no floating output")
    cots = [_cotangents(outs, k) for k in range(2)]
    expected = _reference(lambda: [_reference_vjp(g, primals, c) for c in cots])
    _, vjp_fn = vjp(g, *primals)
    batched = tuple(torch.stack(c) for c in zip(*cots))
    _close(vmap(vjp_fn)(batched), tuple(torch.stack(e) for e in zip(*expected)))


def _check_jvp(op, sample) -> None:
    g, primals = _differentiable(op, sample)
    tangents = _cotangents(primals, 1)

    def forward_ad():
        with fwAD.dual_level():
            duals = [fwAD.make_dual(p, t) for p, t in zip(primals, tangents)]
            return tuple(fwAD.unpack_dual(o).tangent for o in g(*duals))

    expected = _reference(forward_ad)
    if not expected:
        raise Skip("no floating output")
    if any(t is None for t in expected):
        raise Skip("an output has no tangent in forward-mode autograd")
    _close(jvp(g, primals, tangents)[1], expected)


def _check_jacobian(transform: Callable, strategy: str) -> Callable:
    """Against torch.autograd.functional.jacobian in the same mode (reverse for jacrev,
    forward for jacfwd): ops whose derivative formulas differ between the modes
    (cholesky symmetrizes its gradient) agree with their own mode. Dtypes are not
    compared (a float64 output of float32 inputs: either is a valid Jacobian dtype)."""
    def check(op, sample) -> None:
        g, primals = _differentiable(op, sample)
        if sum(p.numel() for p in primals) > 200:
            raise Skip("too large for a dense Jacobian")
        outs = _reference(lambda: g(*primals))
        if not outs or any(o.is_complex() for o in outs) or any(o.numel() == 0 for o in outs):
            raise Skip("complex, empty or no floating outputs")
        expected = _reference(lambda: torch.autograd.functional.jacobian(
            g, primals, strategy=strategy, vectorize=strategy == "forward-mode"))
        actual = transform(g, argnums=tuple(range(len(primals))))(*primals)
        _close(actual, expected, check_dtype=False)
    return check


CHECKS = {"vmap": _check_vmap, "vjp": _check_vjp, "jvp": _check_jvp, "vmapvjp": _check_vmapvjp,
          "jacrev": _check_jacobian(jacrev, "reverse-mode"),
          "jacfwd": _check_jacobian(jacfwd, "forward-mode")}


def _samples(op, requires_grad: bool, limit: int) -> list:
    torch.manual_seed(0)
    try:
        return list(op.sample_inputs_func(op, "cpu", torch.float32, requires_grad))[:limit]
    except Exception:  # noqa: BLE001 - an OpInfo without CPU float32 samples
        return []


def _random(op, sample) -> bool:
    f, args = _call(op, sample)
    mode = _Seeded()
    try:
        with mode:
            f(*pytree.tree_map(lambda x: x.detach().clone() if isinstance(x, torch.Tensor) else x, args))
    except Exception:  # noqa: BLE001
        pass
    return mode.seen


def run(transforms: list[str], limit: int, keyword: str = "", verbose: bool = False) -> list[dict]:
    """One result per (OpInfo, sample, transform): status pass | fail | error | skip."""
    from torch.testing._internal.common_methods_invocations import op_db
    results = []
    _C.set_fallback_enabled(False)
    try:
        for op in op_db:
            if torch.float32 not in op.supported_dtypes("cpu") or keyword not in op.full_name:
                continue
            for transform in transforms:
                grad = transform != "vmap"
                if grad and not op.supports_autograd or transform in ("jvp", "jacfwd") and not op.supports_forward_ad:
                    continue
                for i, sample in enumerate(_samples(op, grad, limit)):
                    status, detail = "pass", ""
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        try:
                            if _random(op, sample):
                                raise Skip("random op")
                            CHECKS[transform](op, sample)
                        except Skip as s:
                            status, detail = "skip", str(s)
                        except AssertionError as e:
                            status, detail = "fail", str(e).splitlines()[0][:200]
                        except Exception as e:  # noqa: BLE001 - an error of the transform
                            status, detail = "error", f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                    assert _C.stack_depth() == 0, f"{op.full_name} under {transform} left a level"
                    results.append(dict(op=op.full_name, sample=i, transform=transform,
                                        status=status, detail=detail))
                    if verbose:
                        print(f"  {transform:8s} {op.full_name} [{i}]: {status} {detail}", flush=True)
    finally:
        _C.set_fallback_enabled(True)
    return results


def summarize(results: list[dict], transforms: list[str]) -> dict[str, dict]:
    table = {}
    for t in transforms:
        counts = collections.Counter(r["status"] for r in results if r["transform"] == t)
        ran = counts["pass"] + counts["fail"] + counts["error"]
        table[t] = dict(counts, ran=ran, rate=(counts["pass"] / ran) if ran else None)
    return table


def family_tables(records: list) -> str:
    """Markdown: the ops of each family file of csrc/vmap/rules/, from the registry
    (NOTE [The rule registry]), so the per-file lists always match the installed build."""
    by_file: dict[str, list] = collections.defaultdict(list)
    for r in records:
        if r.source.startswith("vmap/rules/"):
            by_file[r.source.split(" ")[0][len("vmap/"):]].append(r)
    lines = ["# Batching rules by family file", "",
             "Generated from the rule registry by `python -m torchfunc.coverage --family-tables`. "
             "`torchfunc.explain(op)` gives one op's record.", ""]
    for file in sorted(by_file):
        rows = sorted(by_file[file], key=lambda r: r.op)
        lines += [f"## `{file}` ({len(rows)} ops)", "", "| op | kind | loops |", "|---|---|---|"]
        for r in rows:
            loops = r.why.split("runs the per-example loop ", 1)[1] if "runs the per-example loop " in r.why else ""
            generic = f" ({r.source.split(' ', 1)[1][1:-1]})" if " " in r.source else ""
            lines.append(f"| `{r.op[len('aten::'):]}` | {r.kind}{generic} | {loops} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m torchfunc.coverage", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the first sample of each OpInfo only")
    p.add_argument("--samples", type=int, default=3, help="samples per OpInfo (default 3)")
    p.add_argument("--transforms", default=",".join(TRANSFORMS))
    p.add_argument("-k", dest="keyword", default="", help="only OpInfos whose name contains this")
    p.add_argument("--json", metavar="PATH", help="write every case and the summary as JSON")
    p.add_argument("--min-rate", type=float, default=None, help="exit 1 if a pass rate is below this")
    p.add_argument("--registry", action="store_true", help="print the registry record of every aten op")
    p.add_argument("--family-tables", action="store_true",
                   help="print the ops of each rules/*.cpp file as markdown tables, and exit")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)
    transforms = a.transforms.split(",")
    unknown = set(transforms) - set(TRANSFORMS)
    if unknown:
        p.error(f"unknown transforms {sorted(unknown)}; choose from {','.join(TRANSFORMS)}")

    records = registry("aten")
    if a.family_tables:
        print(family_tables(records))
        return 0
    kinds = collections.Counter(r.kind for r in records)
    print(f"torchfunc {sys.modules['torchfunc'].__version__} on torch {torch.__version__}: "
          f"{len(records)} aten ops, by how vmap handles them: "
          + ", ".join(f"{k} {kinds[k]}" for k in KINDS))
    if a.registry:
        for r in records:
            print(f"{r.op}\t{r.kind}\t{r.source}\t{r.why}")

    start = time.perf_counter()
    results = run(transforms, 1 if a.quick else a.samples, a.keyword, a.verbose)
    table = summarize(results, transforms)
    print(f"\n{'transform':10s} {'pass':>6s} {'fail':>6s} {'error':>6s} {'skip':>6s} {'rate':>7s}"
          f"   (op_db, float32 CPU, fallback disabled)")
    for t, row in table.items():
        rate = "-" if row["rate"] is None else f"{100 * row['rate']:.1f}%"
        print(f"{t:10s} {row.get('pass', 0):6d} {row.get('fail', 0):6d} {row.get('error', 0):6d} "
              f"{row.get('skip', 0):6d} {rate:>7s}")
    failing = collections.Counter((r["transform"], r["op"]) for r in results if r["status"] in ("fail", "error"))
    below = [t for t, row in table.items() if a.min_rate is not None and row["rate"] is not None
             and row["rate"] < a.min_rate]
    print(f"\nsummary: {len(results)} cases in {time.perf_counter() - start:.0f} s; "
          + "; ".join(f"{t} {100 * row['rate']:.1f}%" for t, row in table.items() if row["rate"] is not None)
          + (f"; below --min-rate {a.min_rate}: {', '.join(below)}" if below else ""))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(torch=torch.__version__, summary=table, cases=results,
                           failing=[dict(transform=t, op=o, cases=n) for (t, o), n in sorted(failing.items())]),
                      f, indent=1)
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
