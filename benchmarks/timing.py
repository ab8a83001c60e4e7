"""The interleaved timer and the peak-memory probe shared by benchmarks/bench.py.

Every side of a workload (torchfunc, torch.func, ExpandedWeights, a Python loop, ...) is
timed in the same rounds, one after another. Drift on a busy machine (other jobs, CPU
frequency) then reaches every side alike. Each round yields one ratio torchfunc time /
side time per side, and the report gives the median of those ratios, with their
25th-75th percentiles as a spread.

The order turns by one side each round (torchfunc, side 2, side 3; then side 2, side 3,
torchfunc; ...), so every side goes first equally often. With torchfunc always first,
right after the round's gc.collect() and the last side of the round before, the side
going first paid for it (measured, per-sample grads of the 784-128-128-10 MLP, 25 rounds
of torchfunc and ExpandedWeights alone: ratio 1.05 to 1.11 with torchfunc first, 1.00 to
1.02 with ExpandedWeights first, in the same runs).

Each side's turn in a round starts with one untimed call. Without it, the first call after
another side pays for that side's allocations: glibc gives freed blocks back to the system
and the next call faults its pages in again (measured: torchfunc's per-sample MLP 784 took
21 ms a call in rounds of one call, 7 ms in a loop of its own). A training loop calls the
same function over and over, so the steady state is what the suite reports.

steady_heap() goes further, for the whole process (bench.py calls it unless given
--default-malloc): glibc's malloc then keeps freed blocks of up to 32 MiB in its heap
instead of unmapping them, and never trims the heap. Under glibc's defaults, whether a
call faults its large blocks in again depended on what the side before it had left in
the heap, not on the side itself (measured, per-sample grads of the 32-128-128-10 MLP:
torchfunc took 0 to 960 minor page faults per call, torch.func 0 to 940, with
ExpandedWeights's ratio moving from 0.9 to 3 between runs). With steady_heap() every
side took under 10 faults per call. It is what a long training loop reaches, and what
jemalloc or tcmalloc give; it applies to every side alike.
"""
from __future__ import annotations

import ctypes
import gc
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile


@dataclass
class Timing:
    number: int                                   # calls per side per round
    seconds: dict[str, list[float]] = field(default_factory=dict)  # side -> s/call, per round
    fallbacks: int = 0                            # fallback runs during the torchfunc calls

    def ratios(self, side: str) -> list[float]:
        """torchfunc / side, one per round."""
        return [a / b for a, b in zip(self.seconds["torchfunc"], self.seconds[side])]

    def summary(self, side: str) -> dict[str, float]:
        out = {"median_s": statistics.median(self.seconds[side])}
        if side != "torchfunc":
            ratios = sorted(self.ratios(side))
            q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
            out.update(ratio_median=statistics.median(ratios), ratio_p25=q[0], ratio_p75=q[2])
        return out


# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def steady_heap() -> bool:
    """Keep freed memory in the heap (see the module's docstring); False where the C
    library is not glibc, which is then left as it is."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20) and mallopt(_M_TRIM_THRESHOLD, 1 << 30)
                and mallopt(_M_TOP_PAD, 64 << 20))


def _time_calls(fn: Callable[[], Any], number: int) -> float:
    """Seconds per call of fn, over `number` calls, with the garbage collector off."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number
    finally:
        if gc_was_enabled:
            gc.enable()


def calls_per_round(fns: list[Callable[[], Any]], target_s: float) -> int:
    """How many calls make the slowest side take about target_s (at least 1)."""
    slowest = max(_time_calls(fn, 3) for fn in fns)
    return max(1, math.ceil(target_s / max(slowest, 1e-9)))


def time_interleaved(sides: dict[str, Callable[[], Any]], rounds: int, number: int,
                     fallback_count: Callable[[], int]) -> Timing:
    """`rounds` rounds of every side in turn, `number` calls each; round r starts with
    side r mod len(sides) (see the module's docstring)."""
    timing = Timing(number, {name: [] for name in sides})
    order = list(sides.items())
    for r in range(rounds):
        gc.collect()
        shift = r % len(order)
        for name, fn in order[shift:] + order[:shift]:
            before = fallback_count()
            fn()  # untimed: the pages this side's calls reuse are faulted in (see above)
            timing.seconds[name].append(_time_calls(fn, number))
            if name == "torchfunc":
                timing.fallbacks += fallback_count() - before
    return timing


def peak_bytes(fn: Callable[[], Any]) -> int:
    """The most CPU tensor memory held at once during one call of fn, in bytes.

    torch.profiler records every allocation and free of torch's CPU allocator; the peak of
    their running sum is what the call needed beyond what was allocated before it (its
    result included, as the caller holds it)."""
    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
        del result
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    held = peak = 0
    for e in events:
        held += e.nbytes()
        peak = max(peak, held)
    return peak


def geometric_mean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def fmt_seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} us"


def fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"

