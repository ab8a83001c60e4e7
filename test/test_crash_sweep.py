"""The crash sweep: every op_db OpInfo under every transform and composition
(test/crash_sweep.py lists them), in worker processes, so that a crash is a counted
failure and never kills the test run. A worker that dies is restarted after the case
it was running; the test fails listing every case that killed a worker or left a level
on the stack. Two workers share the cases (this machine has 2 cores)."""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "crash_sweep.py")
WORKERS = 2
TIMEOUT_S = 1200


def _case_names():
    done = subprocess.run([sys.executable, WORKER, "--list"], capture_output=True, text=True,
                          check=True, timeout=300)
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def _sweep(start: int, step: int, deadline: float) -> tuple[list, int]:
    """Run cases start, start+step, ... restarting after each death: (deaths, ended)."""
    deaths, ended = [], 0
    while True:
        proc = subprocess.Popen([sys.executable, WORKER, "--start", str(start), "--step", str(step)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        running = None
        for line in proc.stdout:
            kind, index = line.split()
            running = int(index) if kind == "START" else None
            ended += kind == "END"
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"the crash sweep ran past {TIMEOUT_S} s (at case {index})")
        stderr = proc.stderr.read()
        code = proc.wait()
        if running is None:
            assert code == 0, f"a worker exited with {code} between cases: {stderr[-2000:]}"
            return deaths, ended
        deaths.append((running, code, stderr.strip().splitlines()[-1:] or [""]))
        start = running + step


def test_no_transform_crashes_on_any_op():
    names = _case_names()
    deadline = time.monotonic() + TIMEOUT_S
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda k: _sweep(k, WORKERS, deadline), range(WORKERS)))
    deaths = sorted(d for r, _ in results for d in r)
    ended = sum(n for _, n in results)
    report = [f"case {i} ({names[str(i)]}): exit {code} {last[0][:300]}" for i, code, last in deaths]
    assert not deaths, f"{len(deaths)} of {len(names)} cases killed a worker:\n" + "\n".join(report)
    assert ended == len(names), (ended, len(names))
