"""torchfunc against torch.func on the same workloads, in one process.

    python benchmarks/bench.py [--rounds N] [--only NAME[,NAME...]] [--json out.json]
                               [--threads T] [--target-ms MS]

For each workload (see benchmarks/common.py):
  1. both results are computed and compared (torch.testing.assert_close); a mismatch
     stops the run before any number is printed;
  2. torchfunc and torch.func are timed in alternating rounds, each round calling each
     side the same number of times (about --target-ms per side);
  3. the table gives the median time per call of each side and the median of the
     per-round ratios torchfunc / torch.func (below 1: torchfunc is faster), with the
     25th-75th percentile of the ratios as a spread;
  4. torchfunc._C.fallback_count() must not move during the torchfunc calls: a workload
     that runs an op through the slow per-example loop fails the run.
Exit status: 0 if every workload was checked and ran without the fallback, else 1.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys

import torch
from torch.utils._pytree import tree_leaves

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
# Benchmark the checkout this file belongs to when its engine is built in place
# (setup.py build_ext --inplace), rather than whichever torchfunc is installed.
_ROOT = os.path.dirname(_HERE)
if glob.glob(os.path.join(_ROOT, "torchfunc", "_C*.so")):
    sys.path.insert(0, _ROOT)
import common  # noqa: E402

import torchfunc  # noqa: E402
from torchfunc import _C  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = [w.name for w in common.WORKLOADS]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds per workload (default 15)")
    p.add_argument("--only", default=None,
                   help=f"comma-separated workload names, among: {', '.join(names)}")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results to this JSON file")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads (default 1, for stable numbers; 0 keeps torch's default)")
    p.add_argument("--target-ms", type=float, default=40.0,
                   help="time per side per round, in ms, used to choose the calls per round (default 40)")
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


def run_workload(w: common.Workload, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    call_tf, call_ref = w.build()
    before = _C.fallback_count()
    out_tf, out_ref = call_tf(), call_ref()
    torch.testing.assert_close(out_tf, out_ref, msg=lambda m: f"{w.name}: torchfunc differs from torch.func: {m}")
    max_err = max((a - b).abs().max().item() for a, b in
                  zip(tree_leaves(out_tf), tree_leaves(out_ref)))
    number = common.calls_per_round([call_tf, call_ref], args.target_ms / 1e3)
    timing = common.time_interleaved(call_tf, call_ref, args.rounds, number, _C.fallback_count)
    fallbacks = _C.fallback_count() - before
    assert _C.stack_depth() == 0, f"{w.name}: a level leaked (stack depth {_C.stack_depth()})"
    return {"name": w.name, "what": w.what, "note": w.note, "rounds": args.rounds,
            "calls_per_round": number, "max_abs_err": max_err, "fallbacks": fallbacks,
            **timing.summary(), "ratios": timing.ratios}


def print_table(results: list[dict]) -> None:
    header = ("workload", "torchfunc", "torch.func", "ratio", "p25..p75", "fallback", "what")
    rows = [(r["name"], common.fmt_seconds(r["tf_median_s"]), common.fmt_seconds(r["ref_median_s"]),
             f"{r['ratio_median']:.2f}x", f"{r['ratio_p25']:.2f}..{r['ratio_p75']:.2f}",
             "none" if r["fallbacks"] == 0 else f"{r['fallbacks']} RUNS", r["what"]) for r in results]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = "  ".join(f"{{:<{w}}}" if i in (0, 6) else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(line.format(*header).rstrip())
    print(line.format(*("-" * w for w in widths)).rstrip())
    for row in rows:
        print(line.format(*row).rstrip())
    for r in results:
        if r["note"]:
            print(f"  {r['name']}: {r['note']}")
    print("ratio = torchfunc time / torch.func time per call, median over rounds (<1: torchfunc faster).")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    workloads = [w for w in common.WORKLOADS if args.only is None or w.name in args.only]
    print(f"torchfunc {torchfunc.__version__} (engine built with torch {_C.built_with_torch()}, "
          f"from {os.path.dirname(torchfunc.__file__)}) "
          f"vs torch.func, torch {torch.__version__}, Python {platform.python_version()}")
    print(f"{torch.get_num_threads()} thread(s), {args.rounds} interleaved rounds per workload, "
          f"~{args.target_ms:g} ms per side per round")
    results = []
    for w in workloads:
        print(f"  {w.name} ...", end="", flush=True)
        results.append(run_workload(w, args))
        r = results[-1]
        print(f" checked (max abs err {r['max_abs_err']:.1e}), {r['calls_per_round']} calls/round")
    print()
    print_table(results)
    if args.json:
        meta = {"torch": torch.__version__, "torchfunc": torchfunc.__version__,
                "built_with_torch": _C.built_with_torch(), "threads": torch.get_num_threads(),
                "rounds": args.rounds, "target_ms": args.target_ms, "python": platform.python_version(),
                "machine": platform.machine()}
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
