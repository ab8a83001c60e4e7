"""Workloads and the interleaved timer shared by benchmarks/bench.py.

A workload builds two callables with the same inputs, one transformed by torchfunc and
one by torch.func. They are timed in alternating rounds within one process
(torchfunc, torch.func, torchfunc, torch.func, ...), which keeps drift on a busy machine
(other jobs, CPU frequency) from affecting only one side. Each round yields one ratio,
torchfunc time / torch.func time, and the report gives the median of these ratios.
"""
from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.func as ref
import torch.nn.functional as F

import torchfunc as tf

# --- the models: pure functions of a parameter dict -------------------------------------


def mlp_params(sizes: list[int]) -> dict[str, torch.Tensor]:
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"w{i}"] = torch.randn(n_out, n_in) / n_in ** 0.5
        params[f"b{i}"] = torch.randn(n_out) * 0.1
    return params


def mlp(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    n_layers = len(params) // 2
    for i in range(n_layers):
        x = F.linear(x, params[f"w{i}"], params[f"b{i}"])
        if i < n_layers - 1:
            x = torch.tanh(x)
    return x


def cnn_params() -> dict[str, torch.Tensor]:
    return {
        "conv1.w": torch.randn(8, 1, 3, 3) / 3, "conv1.b": torch.randn(8) * 0.1,
        "conv2.w": torch.randn(16, 8, 3, 3) / 8.5, "conv2.b": torch.randn(16) * 0.1,
        "fc.w": torch.randn(10, 16 * 7 * 7) / 28, "fc.b": torch.randn(10) * 0.1,
    }


def cnn(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """[N, 1, 28, 28] -> [N, 10]."""
    x = F.max_pool2d(F.relu(F.conv2d(x, params["conv1.w"], params["conv1.b"], padding=1)), 2)
    x = F.max_pool2d(F.relu(F.conv2d(x, params["conv2.w"], params["conv2.b"], padding=1)), 2)
    return F.linear(x.flatten(1), params["fc.w"], params["fc.b"])


def per_example_loss(model: Callable) -> Callable:
    """loss(params, x, y) of one example (x without its batch dim)."""
    def loss(params, x, y):
        return F.cross_entropy(model(params, x.unsqueeze(0)), y.unsqueeze(0))
    return loss


def pointwise_chain(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """20 cheap pointwise and view ops on a [5, 4] and a [4, 5] example."""
    a = x * 2 + 1
    a = a.sin().unsqueeze(0).transpose(1, 2).reshape(-1).exp().view(4, 5)
    a = torch.relu(a - y).t().sigmoid().clamp(0.1, 0.9)
    a = torch.where(a > 0.5, a, -a).permute(1, 0).tanh().pow(2)
    return a.flatten().unsqueeze(-1).squeeze(-1).neg().abs().sum(0)


# --- workloads --------------------------------------------------------------------------------


@dataclass
class Workload:
    name: str
    what: str
    # Builds fresh inputs and returns (torchfunc_call, torch_func_call), each taking no
    # arguments and returning the transform's result.
    build: Callable[[], tuple[Callable[[], Any], Callable[[], Any]]]
    note: str = ""


def _per_sample_grads(model: Callable, params: dict, x: torch.Tensor, y: torch.Tensor):
    loss = per_example_loss(model)
    f_tf = tf.vmap(tf.grad(loss), in_dims=(None, 0, 0))
    f_ref = ref.vmap(ref.grad(loss), in_dims=(None, 0, 0))
    return (lambda: f_tf(params, x, y)), (lambda: f_ref(params, x, y))


def build_mlp_psg():
    sizes = [32, 128, 128, 10]
    return _per_sample_grads(mlp, mlp_params(sizes), torch.randn(64, sizes[0]),
                             torch.randint(0, sizes[-1], (64,)))


def build_cnn_psg():
    return _per_sample_grads(cnn, cnn_params(), torch.randn(32, 1, 28, 28),
                             torch.randint(0, 10, (32,)))


def build_pointwise_chain():
    x, y = torch.randn(16, 5, 4), torch.randn(16, 4, 5)
    f_tf, f_ref = tf.vmap(pointwise_chain), ref.vmap(pointwise_chain)
    return (lambda: f_tf(x, y)), (lambda: f_ref(x, y))


def build_jacrev_mlp():
    params = mlp_params([16, 32, 32, 8])
    x = torch.randn(16)
    f_tf = tf.jacrev(mlp, argnums=1)
    f_ref = ref.jacrev(mlp, argnums=1)
    return (lambda: f_tf(params, x)), (lambda: f_ref(params, x))


def build_jacfwd_mlp():
    """Forward mode on the same MLP as jacrev_mlp: 16 JVPs (one per input element),
    vmapped."""
    params = mlp_params([16, 32, 32, 8])
    x = torch.randn(16)
    f_tf = tf.jacfwd(mlp, argnums=1)
    f_ref = ref.jacfwd(mlp, argnums=1)
    return (lambda: f_tf(params, x)), (lambda: f_ref(params, x))


def _tall_mlp():
    """x [16] -> W2 tanh(W1 x) [64]: the 16->64 Jacobian, forward mode's case."""
    w1, w2 = torch.randn(64, 16) / 4, torch.randn(64, 64) / 8
    return (lambda x: w2 @ torch.tanh(w1 @ x)), torch.randn(16)


def build_jacrev_16_64():
    f, x = _tall_mlp()
    f_tf, f_ref = tf.jacrev(f), ref.jacrev(f)
    return (lambda: f_tf(x)), (lambda: f_ref(x))


def build_jacfwd_16_64():
    f, x = _tall_mlp()
    f_tf, f_ref = tf.jacfwd(f), ref.jacfwd(f)
    return (lambda: f_tf(x)), (lambda: f_ref(x))


def build_mlp_psg_784():
    sizes = [784, 128, 128, 10]
    return _per_sample_grads(mlp, mlp_params(sizes), torch.randn(64, sizes[0]),
                             torch.randint(0, sizes[-1], (64,)))


def _hessian_inputs():
    a = torch.randn(8, 8)

    def f(x):
        return (x.sin() * x.cos()).sum() + x @ a @ x + (x ** 3).sum()

    return f, torch.randn(8)


def build_hessian():
    f, x = _hessian_inputs()
    f_tf, f_ref = tf.hessian(f), ref.hessian(f)
    return (lambda: f_tf(x)), (lambda: f_ref(x))


WORKLOADS = [
    Workload("mlp_psg", "per-sample grads, MLP 32-128-128-10, B=64", build_mlp_psg),
    Workload("mlp_psg_784", "per-sample grads, MLP 784-128-128-10, B=64", build_mlp_psg_784),
    Workload("cnn_psg", "per-sample grads, CNN 2xconv+pool+fc, 28x28, B=32", build_cnn_psg),
    Workload("pointwise_chain", "vmap of 20 pointwise/view ops, [16,5,4]", build_pointwise_chain),
    Workload("jacrev_mlp", "jacrev wrt input, MLP 16-32-32-8", build_jacrev_mlp),
    Workload("jacfwd_mlp", "jacfwd wrt input, MLP 16-32-32-8", build_jacfwd_mlp),
    Workload("jacrev_16_64", "jacrev of W2 tanh(W1 x), 16 -> 64", build_jacrev_16_64),
    Workload("jacfwd_16_64", "jacfwd of W2 tanh(W1 x), 16 -> 64", build_jacfwd_16_64),
    Workload("hessian", "hessian of sin*cos + x'Ax + x^3 sum, n=8", build_hessian,
             note="both sides forward-over-reverse, jacfwd(jacrev(f))"),
]


# --- timing ------------------------------------------------------------------------------------


@dataclass
class Timing:
    number: int                      # calls per side per round
    tf_s: list[float] = field(default_factory=list)   # seconds per call, one per round
    ref_s: list[float] = field(default_factory=list)
    fallbacks: int = 0               # fallback runs during the torchfunc calls

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.tf_s, self.ref_s)]

    def summary(self) -> dict[str, float]:
        ratios = sorted(self.ratios)
        q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
        return {
            "tf_median_s": statistics.median(self.tf_s),
            "ref_median_s": statistics.median(self.ref_s),
            "ratio_median": statistics.median(ratios),
            "ratio_p25": q[0],
            "ratio_p75": q[2],
        }


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


def time_interleaved(fn_tf: Callable[[], Any], fn_ref: Callable[[], Any], rounds: int,
                     number: int, fallback_count: Callable[[], int]) -> Timing:
    """`rounds` rounds of (torchfunc, torch.func), `number` calls of each per round."""
    timing = Timing(number)
    for _ in range(rounds):
        gc.collect()
        before = fallback_count()
        timing.tf_s.append(_time_calls(fn_tf, number))
        timing.fallbacks += fallback_count() - before
        timing.ref_s.append(_time_calls(fn_ref, number))
    return timing


def fmt_seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} us"
