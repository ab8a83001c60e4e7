"""torchfunc against torch.func and the per-sample-gradient libraries, in one process.

    python benchmarks/bench.py [--quick] [--rounds N] [--only NAME[,NAME...]] [--json out.json]
                               [--threads T] [--target-ms MS] [--default-malloc]

For each workload (see benchmarks/workloads.py):
  1. every side's result is computed and compared with an independent reference (a loop
     of torch.autograd calls); a mismatch stops the run before any number is printed;
  2. with --quick, that is all (CI runs it: correctness only, a few seconds);
  3. otherwise the sides are timed in interleaved rounds, each round calling each side the
     same number of times (about --target-ms for the slowest); the table gives each side's
     median time per call and the median of the per-round ratios torchfunc / side (below 1:
     torchfunc is faster), with the 25th-75th percentiles of the ratios as a spread, and
     whether the workload's target (the goals of issue 10) is met;
  4. workloads marked for it also report each side's peak CPU tensor memory for one call;
  5. torchfunc._C.fallback_count() must not move during the torchfunc calls: a workload
     that runs an op through the slow per-example loop fails the run.
Opacus and BackPACK are sides when installed (see benchmarks/peers.py); otherwise the table
says they were skipped.
Exit status: 0 if every workload was checked and ran without the fallback, else 1.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import warnings

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
# Benchmark the checkout this file belongs to when its engine is built in place
# (setup.py build_ext --inplace), rather than whichever torchfunc is installed.
_ROOT = os.path.dirname(_HERE)
if glob.glob(os.path.join(_ROOT, "torchfunc", "_C*.so")):
    sys.path.insert(0, _ROOT)
import timing  # noqa: E402
import workloads  # noqa: E402

import torchfunc  # noqa: E402
from torchfunc import _C  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = [w.name for w in workloads.WORKLOADS]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="check every side's result, time nothing")
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds per workload (default 15)")
    p.add_argument("--only", default=None,
                   help=f"comma-separated workload names, among: {', '.join(names)}")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results to this JSON file")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads (default 1, for stable numbers; 0 keeps torch's default)")
    p.add_argument("--target-ms", type=float, default=40.0,
                   help="time of the slowest side per round, in ms, used to choose the calls per round "
                        "(default 40)")
    p.add_argument("--default-malloc", action="store_true",
                   help="leave glibc's malloc settings as they are (by default the run keeps freed "
                        "memory in the heap, so that page faults do not depend on the side timed "
                        "before; see timing.py)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            p.error(f"unknown workload(s) {', '.join(unknown)}; choose among {', '.join(names)}")
        args.only = wanted
    return args


def check(w: workloads.Workload, sides: workloads.Sides) -> float:
    """Every side against the reference; returns the largest absolute difference."""
    want = sides.reference()
    worst = 0.0
    for name, call in sides.calls.items():
        got = call()
        torch.testing.assert_close(got, want, rtol=sides.rtol, atol=sides.atol,
                                   msg=lambda m: f"{w.name}: {name} differs from the reference: {m}")
        got_leaves, want_leaves = torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want)
        worst = max([worst] + [(a - b).abs().max().item() for a, b in zip(got_leaves, want_leaves) if a.numel()])
    return worst


def run_workload(w: workloads.Workload, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    sides = w.build()
    before = _C.fallback_count()
    result = {"name": w.name, "what": w.what, "note": w.note, "skipped": sides.skipped,
              "max_abs_err": check(w, sides)}
    fallbacks = _C.fallback_count() - before
    if not args.quick:
        number = timing.calls_per_round(list(sides.calls.values()), args.target_ms / 1e3)
        t = timing.time_interleaved(sides.calls, args.rounds, number, _C.fallback_count)
        fallbacks += t.fallbacks
        result.update(rounds=args.rounds, calls_per_round=number,
                      sides={name: t.summary(name) for name in sides.calls},
                      ratios={name: t.ratios(name) for name in sides.calls if name != "torchfunc"})
        if w.memory:
            for name, call in sides.calls.items():
                result["sides"][name]["peak_bytes"] = timing.peak_bytes(call)
        result["targets"] = {side: {"at_most": limit, "met": result["sides"][side]["ratio_median"] <= limit}
                             for side, limit in w.targets.items() if side in sides.calls}
    result["fallbacks"] = fallbacks
    assert _C.stack_depth() == 0, f"{w.name}: a level leaked (stack depth {_C.stack_depth()})"
    return result


def print_table(results: list[dict]) -> None:
    header = ("workload", "side", "time", "torchfunc/side", "p25..p75", "target", "peak memory")
    rows = []
    for r in results:
        for i, (side, s) in enumerate(r["sides"].items()):
            target = r["targets"].get(side)
            ratio = s.get("ratio_median")
            peak = s.get("peak_bytes")
            rows.append((r["name"] if i == 0 else "", side, timing.fmt_seconds(s["median_s"]),
                         "" if ratio is None else f"{ratio:.2f}",
                         "" if ratio is None else f"{s['ratio_p25']:.2f}..{s['ratio_p75']:.2f}",
                         "" if target is None else f"<={target['at_most']:.2f} {'met' if target['met'] else 'MISSED'}",
                         "" if peak is None else timing.fmt_bytes(peak)))
        for side, why in r["skipped"].items():
            rows.append(("", side, "skipped", "", "", "", why))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = "  ".join(f"{{:<{w}}}" if i in (0, 1, 6) else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(line.format(*header).rstrip())
    print(line.format(*("-" * w for w in widths)).rstrip())
    for row in rows:
        print(line.format(*row).rstrip())
    for r in results:
        print(f"  {r['name']}: {r['what']}" + (f"; {r['note']}" if r["note"] else ""))
    print("time: median per call; torchfunc/side: median over rounds of the per-round ratio (<1: torchfunc faster)")


def print_summary(results: list[dict]) -> None:
    vs_torch_func = [r["sides"]["torch.func"]["ratio_median"] for r in results if "torch.func" in r["sides"]]
    if vs_torch_func:
        print(f"geometric mean of torchfunc / torch.func over {len(vs_torch_func)} workloads: "
              f"{timing.geometric_mean(vs_torch_func):.2f}")
    memory = [(r["name"], r["sides"]["torchfunc"]["peak_bytes"] / r["sides"]["torch.func"]["peak_bytes"])
              for r in results if "peak_bytes" in r["sides"]["torchfunc"] and "torch.func" in r["sides"]]
    for name, ratio in memory:
        print(f"peak memory torchfunc / torch.func, {name}: {ratio:.2f}")
    targets = [(r["name"], side, t) for r in results for side, t in r["targets"].items()]
    missed = [f"{name} vs {side}" for name, side, t in targets if not t["met"]]
    print(f"targets met: {len(targets) - len(missed)} of {len(targets)}"
          + (f"; missed: {', '.join(missed)}" if missed else ""))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Peers' warnings on every call: Opacus's hooks on inputs without grad, torch.func's
    # per-example fallback (its timing shows that cost already).
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    chosen = workloads.find(args.only)
    print(f"torchfunc {torchfunc.__version__} (engine built with torch {_C.built_with_torch()}, "
          f"from {os.path.dirname(torchfunc.__file__)}), torch {torch.__version__}, "
          f"Python {platform.python_version()}")
    if args.quick:
        print("--quick: checking every side against its reference, timing nothing")
    else:
        heap = ("glibc's default malloc settings" if args.default_malloc or not timing.steady_heap()
                else "freed memory kept in the heap (timing.steady_heap)")
        print(f"{torch.get_num_threads()} thread(s), {args.rounds} interleaved rounds per workload, "
              f"~{args.target_ms:g} ms for the slowest side per round, {heap}")
    results = []
    for w in chosen:
        print(f"  {w.name} ...", end="", flush=True)
        results.append(run_workload(w, args))
        r = results[-1]
        skipped = f", skipped: {', '.join(r['skipped'])}" if r["skipped"] else ""
        print(f" checked (max abs err {r['max_abs_err']:.1e}){skipped}"
              + ("" if args.quick else f", {r['calls_per_round']} calls/round"))
    if not args.quick:
        print()
        print_table(results)
        print_summary(results)
    if args.json:
        meta = {"torch": torch.__version__, "torchfunc": torchfunc.__version__,
                "built_with_torch": _C.built_with_torch(), "threads": torch.get_num_threads(),
                "rounds": args.rounds, "target_ms": args.target_ms, "quick": args.quick,
                "default_malloc": args.default_malloc,
                "python": platform.python_version(), "machine": platform.machine()}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
        print(f"wrote {args.json}")
    slow = [r["name"] for r in results if r["fallbacks"]]
    if slow:
        print(f"FAIL: the slow per-example fallback ran in: {', '.join(slow)} "
              "(torchfunc.set_fallback_warning(True) names the ops)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
