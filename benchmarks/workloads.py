"""The workloads of benchmarks/bench.py: models, the sides each is run on, and references.

A workload's build() makes fresh inputs and returns Sides: callables taking no arguments,
"torchfunc" first, then the peers it is measured against (torch.func, ExpandedWeights,
Opacus, BackPACK, torch.autograd.functional, a Python loop), and an independent
reference (a loop of torch.autograd calls) that every side's result is checked against
before anything is timed. `targets` are the goals of issue 10: side -> the highest
torchfunc / side time ratio that meets it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.func as ref
import torch.nn.functional as F
from torch import nn

import peers
import torchfunc as tf

Call = Callable[[], Any]


@dataclass
class Sides:
    calls: dict[str, Call]                # "torchfunc" first
    reference: Call                       # independent of every side
    skipped: dict[str, str] = field(default_factory=dict)  # side -> why it did not run
    rtol: float = 1e-4
    atol: float = 1e-5


@dataclass
class Workload:
    name: str
    what: str
    build: Callable[[], Sides]
    targets: dict[str, float] = field(default_factory=dict)
    memory: bool = False                  # also measure each side's peak memory
    note: str = ""


# --- models -----------------------------------------------------------------------------------


def mlp_module(sizes: list[int]) -> nn.Module:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def cnn_module() -> nn.Module:
    """[N, 1, 28, 28] -> [N, 10]: two 3x3 convs with ReLU and 2x2 max pooling, one linear."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10))


def detached_params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.named_parameters()}


def loop_per_sample_grads(model: nn.Module, loss: Callable, x: torch.Tensor, y: torch.Tensor):
    """One torch.autograd.grad per example: the reference every per-sample method must match."""
    names = [k for k, _ in model.named_parameters()]
    params = list(model.parameters())
    per_example = [torch.autograd.grad(loss(model(x[i:i + 1]), y[i:i + 1]), params)
                   for i in range(x.shape[0])]
    return {k: torch.stack([g[j] for g in per_example]) for j, k in enumerate(names)}


def _cross_entropy(out, y):
    return F.cross_entropy(out, y)


# --- per-sample gradients ---------------------------------------------------------------------


def _transform_psg(lib, model: nn.Module, loss: Callable, params, x, y) -> Call:
    def example_loss(p, xi, yi):
        return loss(lib.functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))
    f = lib.vmap(lib.grad(example_loss), in_dims=(None, 0, 0))
    return lambda: f(params, x, y)


def per_sample_sides(model: nn.Module, x: torch.Tensor, y: torch.Tensor, with_peers: bool = True,
                     loss: Callable = _cross_entropy) -> Sides:
    params = detached_params(model)
    sides = Sides({"torchfunc": _transform_psg(tf, model, loss, params, x, y),
                   "torch.func": _transform_psg(ref, model, loss, params, x, y)},
                  reference=lambda: loop_per_sample_grads(model, loss, x, y))
    if with_peers:
        for name, (builder, package) in peers.PER_SAMPLE_PEERS.items():
            run = builder(model, x, y)
            if run is None:
                sides.skipped[name] = f"{package} is not installed ({peers.INSTALL_HINT})"
            else:
                sides.calls[name] = run
    else:
        sides.calls["loop"] = sides.reference
    return sides


def build_mlp_psg():
    return per_sample_sides(mlp_module([32, 128, 128, 10]), torch.randn(64, 32), torch.randint(0, 10, (64,)))


def build_mlp_psg_784():
    return per_sample_sides(mlp_module([784, 128, 128, 10]), torch.randn(64, 784),
                            torch.randint(0, 10, (64,)))


def build_cnn_psg():
    return per_sample_sides(cnn_module(), torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,)))


def build_transformer_psg():
    """One encoder layer (self-attention, feed-forward, two LayerNorms), sequences of 8."""
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.0,
                                       batch_first=True)
    x, y = torch.randn(16, 8, 32), torch.randn(16, 8, 32)
    return per_sample_sides(layer, x, y, with_peers=False, loss=F.mse_loss)


# --- ensembles --------------------------------------------------------------------------------


def build_ensemble():
    """8 MLPs 32-64-64-10 on one shared batch of 64, as in torch.func's ensembling tutorial."""
    models = [mlp_module([32, 64, 64, 10]) for _ in range(8)]
    x = torch.randn(64, 32)
    base = mlp_module([32, 64, 64, 10]).to("meta")

    def stacked(lib):
        params, buffers = lib.stack_module_state(models)
        f = lib.vmap(lambda p, b, xi: lib.functional_call(base, (p, b), (xi,)), in_dims=(0, 0, None))
        return lambda: f(params, buffers, x)

    def loop():
        return torch.stack([m(x) for m in models])
    return Sides({"torchfunc": stacked(tf), "torch.func": stacked(ref), "loop": loop}, reference=loop)


# --- Jacobians and Hessians -------------------------------------------------------------------


def _two_layers(n_in: int, n_out: int):
    """x [n_in] -> W2 tanh(W1 x) [n_out], hidden width 64."""
    w1, w2 = torch.randn(64, n_in) / n_in ** 0.5, torch.randn(n_out, 64) / 8
    return (lambda x: w2 @ torch.tanh(w1 @ x)), torch.randn(n_in)


def _jacobian_sides(f, x, transform: str) -> Sides:
    f_tf, f_ref = getattr(tf, transform)(f), getattr(ref, transform)(f)
    return Sides({"torchfunc": lambda: f_tf(x), "torch.func": lambda: f_ref(x)},
                 reference=lambda: torch.autograd.functional.jacobian(f, x))


def build_jacrev_16_64():
    return _jacobian_sides(*_two_layers(16, 64), "jacrev")


def build_jacfwd_16_64():
    return _jacobian_sides(*_two_layers(16, 64), "jacfwd")


def build_jacrev_64_16():
    return _jacobian_sides(*_two_layers(64, 16), "jacrev")


def build_jacfwd_64_16():
    return _jacobian_sides(*_two_layers(64, 16), "jacfwd")


def build_jac_modes_16_64():
    """torchfunc's two modes on the tall Jacobian: forward mode must win here."""
    f, x = _two_layers(16, 64)
    fwd, rev = tf.jacfwd(f), tf.jacrev(f)
    return Sides({"torchfunc": lambda: fwd(x), "torchfunc.jacrev": lambda: rev(x)},
                 reference=lambda: torch.autograd.functional.jacobian(f, x))


def build_jacrev_mlp():
    model = mlp_module([16, 32, 32, 8])
    return _jacobian_sides(model, torch.randn(16), "jacrev")


def build_jacfwd_mlp():
    model = mlp_module([16, 32, 32, 8])
    return _jacobian_sides(model, torch.randn(16), "jacfwd")


def build_vmap_jacrev():
    """Batched Jacobians: vmap(jacrev(f)) over 32 inputs of an MLP 16-32-32-8."""
    model = mlp_module([16, 32, 32, 8])
    xs = torch.randn(32, 16)
    f_tf, f_ref = tf.vmap(tf.jacrev(model)), ref.vmap(ref.jacrev(model))
    return Sides({"torchfunc": lambda: f_tf(xs), "torch.func": lambda: f_ref(xs)},
                 reference=lambda: torch.stack([torch.autograd.functional.jacobian(model, x) for x in xs]))


def _hessian_sides(f, x) -> Sides:
    h_tf, h_ref = tf.hessian(f), ref.hessian(f)
    return Sides({"torchfunc": lambda: h_tf(x), "torch.func": lambda: h_ref(x),
                  "autograd_vectorized": lambda: torch.autograd.functional.hessian(f, x, vectorize=True)},
                 reference=lambda: torch.autograd.functional.hessian(f, x))


def build_hessian():
    a = torch.randn(8, 8)
    return _hessian_sides(lambda x: (x.sin() * x.cos()).sum() + x @ a @ x + (x ** 3).sum(), torch.randn(8))


def build_hessian_mlp():
    model = mlp_module([16, 32, 32, 1])
    return _hessian_sides(lambda x: model(x).sum(), torch.randn(16))


# --- vmap's own cost --------------------------------------------------------------------------


def pointwise_chain(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """20 cheap pointwise and view ops on a [5, 4] and a [4, 5] example."""
    a = x * 2 + 1
    a = a.sin().unsqueeze(0).transpose(1, 2).reshape(-1).exp().view(4, 5)
    a = torch.relu(a - y).t().sigmoid().clamp(0.1, 0.9)
    a = torch.where(a > 0.5, a, -a).permute(1, 0).tanh().pow(2)
    return a.flatten().unsqueeze(-1).squeeze(-1).neg().abs().sum(0)


def _vmap_sides(f, *args) -> Sides:
    f_tf, f_ref = tf.vmap(f), ref.vmap(f)
    return Sides({"torchfunc": lambda: f_tf(*args), "torch.func": lambda: f_ref(*args)},
                 reference=lambda: torch.stack([f(*(a[i] for a in args)) for i in range(args[0].shape[0])]))


def build_pointwise_chain():
    return _vmap_sides(pointwise_chain, torch.randn(16, 5, 4), torch.randn(16, 4, 5))


def hundred_sines(x: torch.Tensor) -> torch.Tensor:
    for _ in range(100):
        x = x.sin()
    return x


def build_vmap_per_op():
    return _vmap_sides(hundred_sines, torch.randn(16, 5, 4))


# --- the suite --------------------------------------------------------------------------------

PSG_TARGETS = {"torch.func": 1.0, "expanded_weights": 1.0, "opacus": 1.0, "backpack": 1.0}
VS_TORCH_FUNC = {"torch.func": 1.0}

WORKLOADS = [
    Workload("mlp_psg", "per-sample grads, MLP 32-128-128-10, B=64", build_mlp_psg, PSG_TARGETS),
    Workload("mlp_psg_784", "per-sample grads, MLP 784-128-128-10, B=64", build_mlp_psg_784, PSG_TARGETS,
             memory=True),
    Workload("cnn_psg", "per-sample grads, CNN 2x(conv+relu+pool)+fc, 1x28x28, B=32", build_cnn_psg,
             PSG_TARGETS, memory=True),
    Workload("transformer_psg", "per-sample grads, TransformerEncoderLayer d=32 h=4 ff=64, seq 8, B=16",
             build_transformer_psg, VS_TORCH_FUNC, memory=True),
    Workload("ensemble", "8 MLPs 32-64-64-10 stacked (stack_module_state), one batch of 64",
             build_ensemble, {"torch.func": 1.0, "loop": 1.0}),
    Workload("jacrev_16_64", "jacrev of W2 tanh(W1 x), 16 -> 64 (tall)", build_jacrev_16_64, VS_TORCH_FUNC),
    Workload("jacfwd_16_64", "jacfwd of W2 tanh(W1 x), 16 -> 64 (tall)", build_jacfwd_16_64, VS_TORCH_FUNC),
    Workload("jacrev_64_16", "jacrev of W2 tanh(W1 x), 64 -> 16 (wide)", build_jacrev_64_16, VS_TORCH_FUNC),
    Workload("jacfwd_64_16", "jacfwd of W2 tanh(W1 x), 64 -> 16 (wide)", build_jacfwd_64_16, VS_TORCH_FUNC),
    Workload("jac_modes_16_64", "torchfunc jacfwd / torchfunc jacrev on the tall 16 -> 64 Jacobian",
             build_jac_modes_16_64, {"torchfunc.jacrev": 1.0}),
    Workload("jacrev_mlp", "jacrev wrt input, MLP 16-32-32-8", build_jacrev_mlp, VS_TORCH_FUNC),
    Workload("jacfwd_mlp", "jacfwd wrt input, MLP 16-32-32-8", build_jacfwd_mlp, VS_TORCH_FUNC),
    Workload("vmap_jacrev", "vmap(jacrev) over 32 inputs, MLP 16-32-32-8", build_vmap_jacrev, VS_TORCH_FUNC),
    Workload("hessian", "hessian of sin*cos + x'Ax + x^3 sum, n=8", build_hessian,
             {"torch.func": 1.0, "autograd_vectorized": 1.0}),
    Workload("hessian_mlp", "hessian wrt input, MLP 16-32-32-1", build_hessian_mlp,
             {"torch.func": 1.0, "autograd_vectorized": 1.0}),
    Workload("pointwise_chain", "vmap of 20 pointwise/view ops, [16,5,4]", build_pointwise_chain, VS_TORCH_FUNC),
    Workload("vmap_per_op", "vmap of 100 chained sin, [16,5,4]: vmap's cost per op", build_vmap_per_op,
             VS_TORCH_FUNC, note="time / 100 is the cost of one op under vmap"),
]


def find(names: Optional[list[str]]) -> list[Workload]:
    return [w for w in WORKLOADS if names is None or w.name in names]
