"""Turns a JUnit XML report of the OpInfo suites into xfail table entries.

    python -m pytest test/test_vmap_opinfo.py --junitxml=report.xml
    python tools/xfail_suggester.py report.xml

prints, per test function, the `xfail(name, variant, reason=...)` lines for its
failing cases, with a reason derived from the error. Paste them into the test's
table after reading them: a reason must say why the case fails, and a failure
that is a bug of the harness belongs fixed, not listed.
"""
import argparse
import collections
import re
import sys
import xml.etree.ElementTree as ET

from torch.testing._internal.common_methods_invocations import op_db

_FULL_NAMES = {op.full_name: (op.name, op.variant_test_name) for op in op_db}


def reason_for(message: str) -> str:
    m = re.search(r"vmap: (\S+) has no batching rule and the per-example fallback is disabled", message)
    if m:
        return f"no batching rule for {m.group(1)}: only the per-example fallback runs it"
    m = re.search(r"called random operation (\S+) while in randomness='error'", message)
    if m:
        return f"random op {m.group(1)}: vmap needs randomness='different' or 'same'"
    m = re.search(r"vmap: (\S+) needs the value of a batched tensor", message)
    if m:
        return f"data-dependent: {m.group(1)} needs the value of a batched tensor"
    m = re.search(r"(\S+) writes in place into a tensor that is not batched", message)
    if m:
        return f"{m.group(1)} writes a batched value into an unbatched tensor"
    first = message.strip().splitlines()[0] if message.strip() else "unknown failure"
    first = re.sub(r"^(E\s+)?(\w+Error: )", "", first)
    return first[:110].replace('"', "'")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+")
    args = parser.parse_args(argv)
    by_test = collections.defaultdict(list)
    for path in args.reports:
        for case in ET.parse(path).getroot().iter("testcase"):
            failure = case.find("failure")
            if failure is None:
                failure = case.find("error")
            if failure is None:
                continue
            m = re.fullmatch(r"(test_\w+)\[(.+)\]", case.get("name", ""))
            if not m or m.group(2) not in _FULL_NAMES:
                continue
            name, variant = _FULL_NAMES[m.group(2)]
            message = failure.get("message") or failure.text or ""
            by_test[m.group(1)].append((name, variant, reason_for(message)))
    for test, entries in sorted(by_test.items()):
        print(f"# {test}: {len(entries)}")
        for name, variant, reason in sorted(entries):
            print(f'    xfail("{name}", "{variant}", reason="{reason}"),')
    return 0


if __name__ == "__main__":
    sys.exit(main())
