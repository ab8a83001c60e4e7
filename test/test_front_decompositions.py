"""Ops the front key decomposes while a transform is active (NOTE [Decompositions at the
front key]): nn.LSTM (NOTE [LSTM under transforms]) and cross_entropy with label smoothing
(NOTE [cross_entropy's label smoothing under transforms]). Each against the loop of the
eager op, under vmap, per-sample gradients and forward mode; none takes the fallback."""
import pytest
import torch
import torch.func
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import torchfunc
from torchfunc._engine import _C

LSTM_CONFIGS = {
    "plain": dict(),
    "batch_first": dict(batch_first=True),
    "two_layers_bidirectional": dict(num_layers=2, bidirectional=True),
    "proj_size": dict(proj_size=3),
    "no_bias": dict(bias=False, num_layers=2),
}


@pytest.fixture(autouse=True)
def _no_fallback():
    _C.set_fallback_enabled(False)
    yield
    _C.set_fallback_enabled(True)


def _lstm(config):
    torch.manual_seed(0)
    return torch.nn.LSTM(4, 5, **config)


def _seqs(config, examples=3):
    # [examples, T, N, 4] or, batch_first, [examples, N, T, 4]
    return torch.randn(examples, 2, 6, 4) if config.get("batch_first") else torch.randn(examples, 6, 2, 4)


def _params(module):
    return {k: v.detach() for k, v in module.named_parameters()}


def _loss(module):
    def loss(params, seq):
        out, (h, c) = torch.func.functional_call(module, params, (seq,))
        return out.pow(2).sum() + h.sum() + c.sin().sum()
    return loss


def _autograd_grads(loss, params, example):
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    grads = torch.autograd.grad(loss(leaves, example), list(leaves.values()))
    return dict(zip(leaves, grads))


@pytest.mark.parametrize("name", LSTM_CONFIGS)
def test_lstm_vmap_matches_the_loop(name):
    module, seqs = _lstm(LSTM_CONFIGS[name]), _seqs(LSTM_CONFIGS[name])
    out, (h, c) = torchfunc.vmap(module)(seqs)
    for i in range(seqs.shape[0]):
        eo, (eh, ec) = module(seqs[i])
        torch.testing.assert_close(out[i], eo)
        torch.testing.assert_close(h[i], eh)
        torch.testing.assert_close(c[i], ec)


@pytest.mark.parametrize("name", LSTM_CONFIGS)
def test_lstm_per_sample_grads(name):
    module, seqs = _lstm(LSTM_CONFIGS[name]), _seqs(LSTM_CONFIGS[name])
    loss, params = _loss(module), _params(module)
    got = torchfunc.vmap(torchfunc.grad(loss), in_dims=(None, 0))(params, seqs)
    for i in range(seqs.shape[0]):
        expected = _autograd_grads(loss, params, seqs[i])
        for k in params:
            torch.testing.assert_close(got[k][i], expected[k], atol=1e-5, rtol=1e-4)


def test_lstm_forward_mode_matches_reverse_mode():
    module = _lstm({"num_layers": 2})
    seq = torch.randn(5, 1, 4)
    f = lambda s: module(s)[0]  # noqa: E731
    torch.testing.assert_close(torchfunc.jacfwd(f)(seq), torchfunc.jacrev(f)(seq), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torchfunc.jacrev(f)(seq), torch.autograd.functional.jacobian(f, seq),
                               atol=1e-5, rtol=1e-4)


def test_lstm_with_explicit_state_and_grad_of_vmap():
    module = _lstm({})
    seqs, h0, c0 = torch.randn(3, 6, 2, 4), torch.randn(3, 1, 2, 5), torch.randn(3, 1, 2, 5)
    out = torchfunc.vmap(lambda s, h, c: module(s, (h, c))[0])(seqs, h0, c0)
    torch.testing.assert_close(out, torch.stack([module(seqs[i], (h0[i], c0[i]))[0] for i in range(3)]))
    # grad outside, vmap inside: one loss over the batch
    params = _params(module)

    def total(p):
        return torchfunc.vmap(lambda s: torch.func.functional_call(module, p, (s,))[0].sum())(seqs).sum()

    expected = _autograd_grads(lambda p, _: sum(torch.func.functional_call(module, p, (s,))[0].sum() for s in seqs),
                               params, None)
    got = torchfunc.grad(total)(params)
    for k in params:
        torch.testing.assert_close(got[k], expected[k], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_lstm(bidirectional):
    module = torch.nn.LSTM(4, 5, num_layers=2, bidirectional=bidirectional)
    lengths = torch.tensor([6, 4, 2])
    seqs = torch.randn(2, 6, 3, 4)

    def f(seq):
        out, (h, c) = module(pack_padded_sequence(seq, lengths))
        padded, _ = pad_packed_sequence(out)
        return padded, h, c

    got = torchfunc.vmap(f)(seqs)
    for i in range(2):
        for g, e in zip(got, f(seqs[i])):
            torch.testing.assert_close(g[i], e)
    params = _params(module)

    def loss(p, seq):
        out, (h, _) = torch.func.functional_call(module, p, (pack_padded_sequence(seq, lengths),))
        return pad_packed_sequence(out)[0].pow(2).sum() + h.sum()

    per_sample = torchfunc.vmap(torchfunc.grad(loss), in_dims=(None, 0))(params, seqs)
    for i in range(2):
        expected = _autograd_grads(loss, params, seqs[i])
        for k in params:
            torch.testing.assert_close(per_sample[k][i], expected[k], atol=1e-5, rtol=1e-4)


def test_packed_lengths_that_differ_per_example_raise():
    module = torch.nn.LSTM(4, 5)
    lengths = torch.tensor([[6, 4, 2], [6, 5, 2]])
    _C.set_fallback_enabled(True)
    with pytest.raises(RuntimeError):
        torchfunc.vmap(lambda s, n: module(pack_padded_sequence(s, n))[0].data)(torch.randn(2, 6, 3, 4), lengths)
    assert _C.current_level() is None


SMOOTHING_CASES = {
    "mean_weight": dict(weight=True, reduction="mean"),
    "mean_weight_ignore_index": dict(weight=True, reduction="mean", ignore_index=1),
    "sum_weight": dict(weight=True, reduction="sum"),
    "mean_no_weight": dict(weight=False, reduction="mean"),
    "none_weight": dict(weight=True, reduction="none"),
}


@pytest.mark.parametrize("name", SMOOTHING_CASES)
def test_cross_entropy_label_smoothing(name):
    case = dict(SMOOTHING_CASES[name])
    torch.manual_seed(0)
    weight = torch.rand(5) + 0.5 if case.pop("weight") else None
    logits, target = torch.randn(4, 6, 5, dtype=torch.float64), torch.randint(0, 5, (4, 6))
    w = weight.double() if weight is not None else None

    def f(x, t):
        return F.cross_entropy(x, t, weight=w, label_smoothing=0.2, **case)

    expected = torch.stack([f(logits[i], target[i]) for i in range(4)])
    torch.testing.assert_close(torchfunc.vmap(f)(logits, target), expected)
    grads = torchfunc.vmap(torchfunc.grad(lambda x, t: f(x, t).sum()))(logits, target)
    torch.testing.assert_close(grads, torch.stack([torch.func.grad(lambda x: f(x, target[i]).sum())(logits[i])
                                                   for i in range(4)]))
    torch.testing.assert_close(torchfunc.jacfwd(f)(logits[0], target[0]), torch.func.jacrev(f)(logits[0], target[0]))
