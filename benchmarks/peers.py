"""The per-sample-gradient libraries torchfunc is measured against, as callables.

Each builder takes an nn.Module, a batch and its targets, and returns a callable that
computes the per-sample gradients of the summed cross-entropy loss (example i's gradient
is that of its own loss), as a dict from parameter name to a [B, *param.shape] tensor,
or None when the library is not installed. The models are deep copies, so that hooks a
library adds never reach another side.

- ExpandedWeights: torch.nn.utils._per_sample_grad.call_for_per_sample_grads, in torch.
- Opacus: GradSampleModule (module hooks). Optional.
- BackPACK: BatchGrad (extended modules). Optional.

Opacus and BackPACK are not runtime dependencies of torchfunc. Install them without
their dependencies, since BackPACK's include torchvision, which pulls in another torch:

    pip install --no-deps opacus backpack-for-pytorch einops unfoldNd opt_einsum
"""
from __future__ import annotations

import copy
import importlib.util
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

PerSampleGrads = Callable[[], dict[str, torch.Tensor]]

INSTALL_HINT = "pip install --no-deps opacus backpack-for-pytorch einops unfoldNd opt_einsum"


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _take_grads(named: Any, attr: str, prefix: str = "") -> dict[str, torch.Tensor]:
    grads = {}
    for name, p in named:
        grads[name.removeprefix(prefix)] = getattr(p, attr)
        setattr(p, attr, None)
        p.grad = None
    return grads


def expanded_weights(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> PerSampleGrads:
    from torch.nn.utils._per_sample_grad import call_for_per_sample_grads
    model = copy.deepcopy(model)
    wrapped = call_for_per_sample_grads(model, loss_reduction="sum")

    def run():
        F.cross_entropy(wrapped(x), y, reduction="sum").backward()
        return _take_grads(model.named_parameters(), "grad_sample")
    return run


def opacus(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Optional[PerSampleGrads]:
    if not installed("opacus"):
        return None
    from opacus import GradSampleModule
    gsm = GradSampleModule(copy.deepcopy(model), loss_reduction="sum")

    def run():
        F.cross_entropy(gsm(x), y, reduction="sum").backward()
        return _take_grads(gsm.named_parameters(), "grad_sample", prefix="_module.")
    return run


def backpack(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Optional[PerSampleGrads]:
    if not installed("backpack"):
        return None
    import backpack as bp
    from backpack.extensions import BatchGrad
    extended = bp.extend(copy.deepcopy(model))
    loss = bp.extend(nn.CrossEntropyLoss(reduction="sum"))

    def run():
        with bp.backpack(BatchGrad()):
            loss(extended(x), y).backward()
        return _take_grads(extended.named_parameters(), "grad_batch")
    return run


# Side name -> (builder, the package whose absence skips it).
PER_SAMPLE_PEERS: dict[str, tuple[Callable[..., Optional[PerSampleGrads]], Optional[str]]] = {
    "expanded_weights": (expanded_weights, None),
    "opacus": (opacus, "opacus"),
    "backpack": (backpack, "backpack"),
}
