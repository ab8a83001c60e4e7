"""python -m torchfunc: what this torchfunc runs on, and a per-sample-gradient self-check.

Prints the torch and torchfunc versions, the torch the engine was built with and the
dispatch keys it borrows. Then computes per-sample gradients of a small MLP and a small
CNN with vmap(grad(loss)), checks them against a Python loop of torch.autograd.grad,
checks that vmap never took its slow per-example fallback, and times torchfunc against
that loop and against torch.func. Exit status 1 if a check fails.
"""
import statistics
import sys
import time

import torch
import torch.func
import torch.nn.functional as F

import torchfunc
from torchfunc import _C

ROUNDS = 7  # interleaved timing rounds per model
CALLS = 3  # calls of each side per round


def mlp(p, x):
    x = torch.tanh(F.linear(x, p["w0"], p["b0"]))
    x = torch.tanh(F.linear(x, p["w1"], p["b1"]))
    return F.linear(x, p["w2"], p["b2"])


def cnn(p, x):
    x = F.max_pool2d(F.relu(F.conv2d(x, p["c1.w"], p["c1.b"], padding=1)), 2)
    x = F.max_pool2d(F.relu(F.conv2d(x, p["c2.w"], p["c2.b"], padding=1)), 2)
    return F.linear(x.flatten(1), p["fc.w"], p["fc.b"])


def example_loss(model):
    """Cross-entropy of one example (x and y without their batch dim)."""
    return lambda p, x, y: F.cross_entropy(model(p, x.unsqueeze(0)), y.unsqueeze(0))


def setups():
    """(name, loss, params, inputs, targets) for each model."""
    mlp_p = {"w0": torch.randn(128, 32) / 32**0.5, "b0": torch.zeros(128),
             "w1": torch.randn(128, 128) / 128**0.5, "b1": torch.zeros(128),
             "w2": torch.randn(10, 128) / 128**0.5, "b2": torch.zeros(10)}
    cnn_p = {"c1.w": torch.randn(8, 1, 3, 3) / 3, "c1.b": torch.zeros(8),
             "c2.w": torch.randn(16, 8, 3, 3) / 8.5, "c2.b": torch.zeros(16),
             "fc.w": torch.randn(10, 16 * 7 * 7) / 28, "fc.b": torch.zeros(10)}
    return [
        ("MLP 32-128-128-10, batch 64", example_loss(mlp), mlp_p,
         torch.randn(64, 32), torch.randint(0, 10, (64,))),
        ("CNN conv-pool-conv-pool-fc, 1x28x28, batch 32", example_loss(cnn), cnn_p,
         torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))),
    ]


def loop_grads(loss, params, xs, ys):
    """Per-example gradients the plain way: one backward pass per example."""
    leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
    per_example = [torch.autograd.grad(loss(leaves, x, y), list(leaves.values()))
                   for x, y in zip(xs, ys)]
    return {k: torch.stack([g[i] for g in per_example]) for i, k in enumerate(leaves)}


def seconds_per_call(fn):
    start = time.perf_counter()
    for _ in range(CALLS):
        fn()
    return (time.perf_counter() - start) / CALLS


def check_model(name, loss, params, xs, ys):
    """Prints the check and timings for one model; returns True if it passed."""
    ours = torchfunc.vmap(torchfunc.grad(loss), in_dims=(None, 0, 0))
    theirs = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))
    fallbacks_before = _C.fallback_count()

    got, want = ours(params, xs, ys), loop_grads(loss, params, xs, ys)
    err = max((got[k] - want[k]).abs().max().item() for k in params)
    close = all(torch.allclose(got[k], want[k], rtol=1e-4, atol=1e-5) for k in params)

    # Interleaved rounds (torchfunc, loop, torch.func), after one warm-up call each.
    calls = {"torchfunc": lambda: ours(params, xs, ys),
             "loop": lambda: loop_grads(loss, params, xs, ys),
             "torch.func": lambda: theirs(params, xs, ys)}
    for fn in calls.values():
        fn()
    times = {k: [] for k in calls}
    for _ in range(ROUNDS):
        for k, fn in calls.items():
            times[k].append(seconds_per_call(fn))
    no_fallback = _C.fallback_count() == fallbacks_before

    def ratio(other):
        return statistics.median(a / b for a, b in zip(times["torchfunc"], times[other]))

    def ms(k):
        return f"{statistics.median(times[k]) * 1e3:.2f} ms"

    print(f"  {name}")
    print(f"    vs loop of torch.autograd.grad: max abs error {err:.1e}  "
          f"{'PASS' if close else 'FAIL'}")
    print(f"    slow per-example fallback:      "
          f"{'never taken  PASS' if no_fallback else 'TAKEN  FAIL'}")
    print(f"    time per call: torchfunc {ms('torchfunc')}, loop {ms('loop')}, "
          f"torch.func {ms('torch.func')}")
    print(f"    torchfunc / loop = {ratio('loop'):.2f}x   "
          f"torchfunc / torch.func = {ratio('torch.func'):.2f}x")
    return close and no_fallback


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # steadier timings; this is a check, not a tuned run
    built = _C.built_with_torch()
    same_torch = built.split("+")[0] == torch.__version__.split("+")[0]
    print(f"torchfunc {torchfunc.__version__}")
    print(f"  torch              {torch.__version__}")
    print(f"  engine built with  torch {built}{'' if same_torch else '  (MISMATCH)'}")
    print("  dispatch keys      " + "\n                     ".join(
        f"{role:<8} -> {key}" for role, key in _C.key_map()))
    print(f"per-sample gradients: vmap(grad(loss), in_dims=(None, 0, 0)), 1 thread, "
          f"median of {ROUNDS} interleaved rounds (ratio < 1: torchfunc faster)")
    ok = same_torch
    for setup in setups():
        ok &= check_model(*setup)
    ok &= _C.stack_depth() == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
