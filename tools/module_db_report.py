#!/usr/bin/env python
"""Pass rates of per-sample gradients over torch's module_db, without pytest.

Runs the check of test/module_db_checks.py (vmap(grad(functional_call)) of each
ModuleInfo's samples in eval mode, against a loop of torch.autograd.grad) for torchfunc
and for torch.func, each with the per-example fallback enabled and disabled, and prints
passed / ran per configuration. A ModuleInfo passes when all its cases match the loop;
ModuleInfos with nothing to compare (no parameters, no tensor forward argument) are
skipped and left out of "ran". With the fallback disabled only modules whose every op has
a batching rule pass. The xfail tables of test/test_module_db.py are not consulted: this
measures raw behaviour. Then it lists, per implementation, every ModuleInfo that does not
pass with the distinct reasons over its cases, and the ones that pass only through the
fallback with the ops that looped.

    python tools/module_db_report.py
    python tools/module_db_report.py -k LSTM --max-samples 4 --json out.json
"""
import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

CONFIGS = (("torchfunc", True), ("torchfunc", False), ("torch.func", True),
           ("torch.func", False))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-k", dest="keyword", default="",
                   help="only ModuleInfos whose name contains this string")
    p.add_argument("--max-samples", type=int, default=None,
                   help="at most this many samples per ModuleInfo, evenly spaced "
                        "(default: all, as the tests do)")
    p.add_argument("--json", metavar="PATH", help="write every result as JSON")
    p.add_argument("--verbose", action="store_true", help="print each module as it runs")
    return p.parse_args(argv)


def rate(passed: int, ran: int) -> str:
    return f"{passed}/{ran} ({100.0 * passed / ran:.1f}%)" if ran else f"{passed}/0"


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
    warnings.simplefilter("ignore")
    import module_db_checks as M

    modules = [m for m in M.MODULES if args.keyword in M.module_id(m)]
    print(f"torch {torch.__version__}, {len(modules)} ModuleInfos of module_db, float32 CPU, "
          f"eval mode, samples per module: {args.max_samples or 'all'}", flush=True)
    results = {config: {} for config in CONFIGS}
    start = time.perf_counter()
    for m in modules:
        for impl, fallback in CONFIGS:
            t = time.perf_counter()
            r = M.classify(m, impl, fallback, max_samples=args.max_samples)
            r["seconds"] = round(time.perf_counter() - t, 2)
            results[(impl, fallback)][M.module_id(m)] = r
        if args.verbose:
            statuses = [f"{impl}{'' if fb else ' (no fallback)'} "
                        f"{results[(impl, fb)][M.module_id(m)]['status']}" for impl, fb in CONFIGS]
            print(f"  {M.module_id(m)}: {', '.join(statuses)}", flush=True)
    elapsed = time.perf_counter() - start

    def counts(config):
        rs = results[config].values()
        ran = [r for r in rs if r["status"] != "skip"]
        return sum(r["status"] == "pass" for r in ran), len(ran), \
            sum(r["compared"] for r in ran), sum(r["cases"] for r in ran)

    skipped = sum(r["status"] == "skip" for r in results[CONFIGS[0]].values())
    print(f"{len(modules) - skipped} ran, {skipped} skipped (nothing to compare), "
          f"{elapsed:.0f}s\n")
    c = {config: counts(config) for config in CONFIGS}
    tf_on, tf_off = c[("torchfunc", True)], c[("torchfunc", False)]
    tc_on, tc_off = c[("torch.func", True)], c[("torch.func", False)]
    print(f"torchfunc per-sample grads: {rate(*tf_on[:2])} with fallback, "
          f"{rate(*tf_off[:2])} without; torch.func: {rate(*tc_on[:2])} with fallback, "
          f"{rate(*tc_off[:2])} without")
    print("\nmodules passed / ran, and cases (one sample, one batch) compared / ran:")
    for impl, fallback in CONFIGS:
        passed, ran, compared, cases = c[(impl, fallback)]
        print(f"  {impl:10} fallback {'on ' if fallback else 'off'}: "
              f"modules {rate(passed, ran):>15}   cases {rate(compared, cases):>18}")

    for impl in ("torchfunc", "torch.func"):
        on, off = results[(impl, True)], results[(impl, False)]
        print(f"\n{impl}: not passing with the fallback enabled:")
        bad = [(i, r) for i, r in on.items() if r["status"] in ("fail", "error")]
        for i, r in bad:
            print(f"  {i}: {r['status']}: {r['detail']}")
        if not bad:
            print("  (none)")
        print(f"{impl}: passing only through the fallback (fails with it disabled):")
        only = [(i, r) for i, r in on.items()
                if r["status"] == "pass" and off[i]["status"] != "pass"]
        for i, r in only:
            ops = ", ".join(r["fallback_ops"]) or "(no op recorded)"
            print(f"  {i}: loops {ops}")
        if not only:
            print("  (none)")
        wrong = [(i, r) for i, r in list(on.items()) + list(off.items())
                 if r["status"] == "fail"]
        if wrong:
            print(f"{impl}: WRONG results (a mismatch with the loop, not an error):")
            for i, r in wrong:
                print(f"  {i}: {r['detail']}")

    ours, theirs = results[("torchfunc", True)], results[("torch.func", True)]
    differ = [i for i in ours if ours[i]["status"] != theirs[i]["status"]]
    print("\nwhere torchfunc and torch.func differ (fallback enabled):")
    for i in differ:
        print(f"  {i}: torchfunc {ours[i]['status']}, torch.func {theirs[i]['status']}")
    if not differ:
        print("  (none)")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "max_samples": args.max_samples,
                       "results": {f"{impl} fallback={'on' if fb else 'off'}": rs
                                   for (impl, fb), rs in results.items()}}, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
