#!/usr/bin/env python
"""Pass rates of the transforms over OpInfos, without pytest.

Runs each transform check of test/opinfo_checks.py (vmap, vmap_inplace, vjp,
vmapvjp, jacrev) and test/opinfo_forward_checks.py (jvp, vmapjvp, jvpvjp, vjpvjp,
jacfwd) over the float32 OpInfos of op_db, once with the slow
per-example fallback enabled and once with it disabled, and prints pass / fail /
error / skip counts per transform, for all of op_db and for SAMPLE_OPS. A case
is one OpInfo under one transform; the pass rate is passes over the cases that
ran (skips left out). In the fallback-disabled run only ops with a batching rule
(or a decomposition) pass: "no fallback" counts as a pass there. The xfail
tables of the pytest suites are not consulted: this measures raw behaviour.

    python tools/opinfo_report.py                        # torchfunc, everything
    python tools/opinfo_report.py --against-torch-func   # the reference, torch.func
    python tools/opinfo_report.py --ops sample --transforms vmap,vjp --json out.json
    python tools/opinfo_report.py -k conv --list         # list what does not pass
    python tools/opinfo_report.py --transforms jvp,jacfwd --fallback off   # forward mode

Everything runs in this process: if the engine crashes, --verbose shows the case
that was running.
"""
import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch

TRANSFORMS = ("vmap", "vmap_inplace", "vjp", "vmapvjp", "jacrev",
              "jvp", "vmapjvp", "jvpvjp", "vjpvjp", "jacfwd")
DEFAULT_TRANSFORMS = ("vmap", "vmap_inplace", "vjp", "vmapvjp", "jacrev")
STATUSES = ("pass", "fail", "error", "skip")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--against-torch-func", action="store_true",
                   help="measure torch.func, the reference, instead of torchfunc")
    p.add_argument("--ops", choices=("all", "sample"), default="all",
                   help="all of op_db (also summarized over SAMPLE_OPS), or SAMPLE_OPS only")
    p.add_argument("--transforms", default=",".join(DEFAULT_TRANSFORMS),
                   help=f"comma-separated subset of {','.join(TRANSFORMS)} "
                        f"(default {','.join(DEFAULT_TRANSFORMS)})")
    p.add_argument("--fallback", choices=("both", "on", "off"), default="both",
                   help="run with the fallback enabled, disabled, or both (default)")
    p.add_argument("-k", dest="keyword", default="",
                   help="only OpInfos whose name.variant contains this string")
    p.add_argument("--json", metavar="PATH", help="write every case's result as JSON")
    p.add_argument("--list", action="store_true", help="list the cases that do not pass")
    p.add_argument("--verbose", action="store_true", help="print each case as it runs")
    args = p.parse_args(argv)
    args.transforms = args.transforms.split(",")
    unknown = set(args.transforms) - set(TRANSFORMS)
    if unknown:
        p.error(f"unknown transforms: {sorted(unknown)}")
    return args


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


@contextlib.contextmanager
def count_fallbacks(U):
    """Yields a dict whose "count" is set, on exit, to the fallback runs in the block.

    torch.func has no counter, so there the fallback's warnings are counted.
    """
    counter = {"count": 0}
    if U.AGAINST_TORCH_FUNC:
        set_warning = torch._C._functorch._set_vmap_fallback_warning_enabled
        with warnings.catch_warnings(record=True) as log:
            warnings.simplefilter("always")
            set_warning(True)
            try:
                yield counter
            finally:
                set_warning(False)
                counter["count"] = sum("performance drop" in str(w.message) for w in log)
    else:
        from torchfunc import _C
        start = _C.fallback_count()
        try:
            yield counter
        finally:
            counter["count"] = _C.fallback_count() - start


def run_case(U, check, op, allow_fallback: bool) -> dict:
    """Classify one OpInfo under one check: pass / fail / error / skip."""
    entry = U.UNCOMPARABLE.lookup(op)
    if entry is not None:
        return dict(status="skip", detail=entry.reason, seconds=0.0, fallback_runs=0)
    start = time.perf_counter()
    with count_fallbacks(U) as counter:
        try:
            status, detail = "pass", f"{check(op, allow_fallback=allow_fallback)} compared"
        except U.SkipCase as e:
            status, detail = "skip", str(e)
        except AssertionError as e:
            status, detail = "fail", first_line(e)
        except Exception as e:  # noqa: BLE001 - anything the transform raises is an error
            status, detail = "error", f"{type(e).__name__}: {first_line(e)}"
    return dict(status=status, detail=detail, seconds=round(time.perf_counter() - start, 3),
                fallback_runs=counter["count"])


def summarize(results: dict, op_ids: list) -> dict:
    counts = {s: sum(results[i]["status"] == s for i in op_ids) for s in STATUSES}
    ran = counts["pass"] + counts["fail"] + counts["error"]
    counts["cases"] = len(op_ids)
    counts["rate"] = round(100.0 * counts["pass"] / ran, 1) if ran else None
    counts["used_fallback"] = sum(results[i]["status"] == "pass" and
                                  results[i]["fallback_runs"] > 0 for i in op_ids)
    counts["seconds"] = round(sum(results[i]["seconds"] for i in op_ids), 1)
    return counts


def print_table(runs: dict, groups: dict, modes: list) -> None:
    head = f"{'transform':13}{'ops':8}{'cases':>6}"
    for mode in modes:
        title = "fallback enabled" if mode == "fallback" else "no fallback (disabled)"
        head += f" | {title:^44}"
    print(head)
    sub = " " * 27
    for mode in modes:
        extra = "fb-used" if mode == "fallback" else ""
        sub += f" | {'pass':>5}{'fail':>5}{'error':>6}{'skip':>5}{'pass%':>7}{extra:>8}{'time':>8}"
    print(sub)
    for transform, by_mode in runs.items():
        for group, ids in groups.items():
            line = f"{transform:13}{group:8}{len(ids):>6}"
            for mode in modes:
                c = summarize(by_mode[mode], ids)
                used = str(c["used_fallback"]) if mode == "fallback" else ""
                rate = "-" if c["rate"] is None else f"{c['rate']:.1f}%"
                line += (f" | {c['pass']:>5}{c['fail']:>5}{c['error']:>6}{c['skip']:>5}"
                         f"{rate:>7}{used:>8}{c['seconds']:>7.0f}s")
            print(line)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.against_torch_func:
        os.environ["TORCHFUNC_TEST_AGAINST_TORCH_FUNC"] = "1"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
    warnings.simplefilter("ignore")
    import opinfo_utils as U
    from opinfo_checks import CHECKS
    from opinfo_forward_checks import FORWARD_CHECKS
    checks = {**CHECKS, **FORWARD_CHECKS}

    keep = (lambda op: args.keyword in U.op_id(op)) if args.keyword else None
    ops = U.select_ops(args.ops, filter=keep)
    sample_ids = [U.op_id(op) for op in ops if op.name in U.SAMPLE_OPS]
    groups = {"sample": sample_ids} if args.ops == "sample" else {
        "op_db": [U.op_id(op) for op in ops], "sample": sample_ids}
    modes = {"both": ["fallback", "no_fallback"], "on": ["fallback"],
             "off": ["no_fallback"]}[args.fallback]

    print(f"implementation: {U.IMPLEMENTATION}, torch {torch.__version__}, "
          f"{len(ops)} float32 OpInfos ({len(sample_ids)} of them from SAMPLE_OPS)",
          flush=True)
    runs = {}
    for transform in args.transforms:
        runs[transform] = {}
        for mode in modes:
            results = {}
            for op in ops:
                if args.verbose:
                    print(f"  {transform} {mode} {U.op_id(op)} ...", end=" ", flush=True)
                results[U.op_id(op)] = run_case(
                    U, checks[transform], op, allow_fallback=(mode == "fallback"))
                if args.verbose:
                    print(results[U.op_id(op)]["status"], flush=True)
            runs[transform][mode] = results
            c = summarize(results, list(results))
            print(f"{transform} ({mode}): {c['pass']} pass, {c['fail']} fail, "
                  f"{c['error']} error, {c['skip']} skip in {c['seconds']:.0f}s", flush=True)

    print()
    print_table(runs, groups, modes)
    if args.list:
        print("\nCases that do not pass:")
        for transform, by_mode in runs.items():
            for mode, results in by_mode.items():
                for op_id, r in results.items():
                    if r["status"] in ("fail", "error"):
                        print(f"  {transform:12} {mode:11} {r['status']:5} {op_id}: {r['detail']}")
    if args.json:
        summary = {t: {m: {g: summarize(runs[t][m], ids) for g, ids in groups.items()}
                       for m in modes} for t in runs}
        with open(args.json, "w") as f:
            json.dump(dict(implementation=U.IMPLEMENTATION, torch=torch.__version__,
                           sample_ops=list(U.SAMPLE_OPS), summary=summary, results=runs),
                      f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
