"""ctc_loss under vmap (csrc/vmap/rules/ctc_loss.cpp, NOTE [CTC loss by folding the
batch into N]) against the per-example loop and torch.func, with the per-example
fallback disabled."""
import pytest
import torch
import torch.func
import torch.nn.functional as F

import torchfunc
from torchfunc._engine import _C

from helpers import assert_same

B, T, N, C, S = 3, 12, 2, 5, 4


@pytest.fixture(autouse=True)
def _no_fallback():
    _C.set_fallback_enabled(False)
    yield
    _C.set_fallback_enabled(True)


@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("lengths", ["lists", "tensors", "batched_tensors"])
def test_padded_targets_match_loop(lengths, reduction, zero_infinity):
    g = torch.Generator().manual_seed(0)
    log_probs = torch.randn(B, T, N, C, dtype=torch.float64, generator=g).log_softmax(-1)
    targets = torch.randint(1, C, (B, N, S), generator=g)
    input_lengths = torch.tensor([[12, 9], [12, 12], [3, 12]])
    target_lengths = torch.tensor([[4, 2], [3, 4], [4, 1]])  # example 2: 4 targets in 3 steps (inf)
    if lengths == "lists":
        il, tl, dims = [12, 9], [4, 2], (0, 0, None, None)
    elif lengths == "tensors":
        il, tl, dims = input_lengths[0], target_lengths[0], (0, 0, None, None)
    else:
        il, tl, dims = input_lengths, target_lengths, (0, 0, 0, 0)

    def f(lp, t, il, tl):
        return F.ctc_loss(lp, t, il, tl, reduction=reduction, zero_infinity=zero_infinity)

    actual = torchfunc.vmap(f, in_dims=dims)(log_probs, targets, il, tl)
    loop = torch.stack([f(log_probs[b], targets[b], il if dims[2] is None else il[b],
                          tl if dims[3] is None else tl[b]) for b in range(B)])
    assert_same(actual, loop)
    if lengths != "batched_tensors":  # torch.func reads batched lengths: it refuses them
        _C.set_fallback_enabled(True)
        assert_same(actual, torch.func.vmap(f, in_dims=dims)(log_probs, targets, il, tl))


def test_one_sequence_and_concatenated_targets():
    g = torch.Generator().manual_seed(1)
    log_probs = torch.randn(B, T, C, dtype=torch.float64, generator=g).log_softmax(-1)
    targets = torch.randint(1, C, (B, S), generator=g)
    f = lambda lp, t: F.ctc_loss(lp, t, torch.tensor(T), torch.tensor(S))  # noqa: E731
    assert_same(torchfunc.vmap(f)(log_probs, targets), torch.stack([f(log_probs[b], targets[b]) for b in range(B)]))
    lp3 = torch.randn(B, T, N, C, dtype=torch.float64, generator=g).log_softmax(-1)
    flat = torch.randint(1, C, (B, 5), generator=g)  # N=2 sequences of 3 and 2, concatenated
    h = lambda lp, t: F.ctc_loss(lp, t, [T, T], [3, 2], reduction="sum")  # noqa: E731
    assert_same(torchfunc.vmap(h)(lp3, flat), torch.stack([h(lp3[b], flat[b]) for b in range(B)]))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("lengths", ["lists", "batched_same_longest"])
def test_per_sample_gradients_match_loop(lengths, reduction):
    # Under grad, vmap meets _ctc_loss and _ctc_loss_backward.
    g = torch.Generator().manual_seed(2)
    log_probs = torch.randn(B, T, N, C, dtype=torch.float64, generator=g)
    targets = torch.randint(1, C, (B, N, S), generator=g)
    if lengths == "lists":
        il, tl, dims = [12, 9], [4, 2], (0, 0, None, None)
    else:  # each example's longest target has 4 labels
        il, tl, dims = torch.tensor([[12, 9], [10, 12], [12, 12]]), torch.tensor([[4, 2], [3, 4], [4, 4]]), (0, 0, 0, 0)

    def loss(lp, t, il, tl):
        return F.ctc_loss(lp.log_softmax(-1), t, il, tl, reduction=reduction).sum()

    actual = torchfunc.vmap(torchfunc.grad(loss), in_dims=dims)(log_probs, targets, il, tl)
    loop = []  # torch.autograd: torch.func's grad of the mean reads a GradTensor's storage
    for b in range(B):
        lp = log_probs[b].clone().requires_grad_()
        out = loss(lp, targets[b], il if dims[2] is None else il[b], tl if dims[3] is None else tl[b])
        loop.append(torch.autograd.grad(out, lp)[0])
    assert_same(actual, torch.stack(loop))


def test_per_sample_gradients_with_different_longest_targets_raise():
    # log_alpha's shape follows each example's longest target: the loop's clear error.
    log_probs = torch.randn(2, T, N, C, dtype=torch.float64)
    targets = torch.randint(1, C, (2, N, S))
    loss = lambda lp, t, tl: F.ctc_loss(lp.log_softmax(-1), t, torch.tensor([T, T]), tl)  # noqa: E731
    _C.set_fallback_enabled(True)  # the loop is what raises
    with pytest.raises(RuntimeError, match="different shape per example"):
        torchfunc.vmap(torchfunc.grad(loss))(log_probs, targets, torch.tensor([[4, 2], [3, 3]]))
