"""Randomness under vmap (NOTE [Randomness under vmap], NOTE [Composite random ops under
vmap]): every random OpInfo raises under randomness='error' with batched and with
unbatched inputs; 'different' gives each example its own draw even when the random op's
input is unbatched; 'same' gives one draw; ops that draw nothing (dropout in eval mode,
attention with dropout_p=0) are no random ops."""
import pytest
import torch
import torch.func
import torch.nn.functional as F
from torch.testing._internal.common_methods_invocations import op_db
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import torchfunc
from torchfunc._engine import _C


def _samples(op):
    for i, sample in enumerate(op.sample_inputs("cpu", torch.float32, requires_grad=False)):
        if i >= 6:
            return
        if isinstance(sample.input, torch.Tensor) and sample.input.numel() > 1 and \
                sample.input.layout == torch.strided:
            yield sample


def _run(op, sample):
    return op(sample.input, *sample.args, **sample.kwargs)


class _RecordRandomOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.random = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if torch.Tag.nondeterministic_seeded in func.tags:
            bound = dict(zip([a.name for a in func._schema.arguments], args), **kwargs)
            if bound.get("dropout_p", 1.0) != 0.0:  # attention without dropout draws nothing
                self.random.append(func)
        return func(*args, **kwargs)


def _random_sample(op):
    """The first sample of an OpInfo that runs an aten op tagged nondeterministic_seeded
    (the OpInfos of random ops seed the RNG themselves, so their outputs cannot tell)."""
    try:
        for sample in _samples(op):
            with _RecordRandomOps() as mode:
                _run(op, sample)
            if mode.random:
                return sample
    except Exception:  # noqa: BLE001 - not runnable eagerly: not in this test
        pass
    return None


RANDOM_OPS = {op.full_name: (op, sample) for op in op_db if op.dtypes and torch.float32 in op.dtypes
              for sample in [_random_sample(op)] if sample is not None}


def test_found_the_random_ops():
    names = {op.name for op, _ in RANDOM_OPS.values()}
    assert {"bernoulli", "nn.functional.dropout", "nn.functional.alpha_dropout", "multinomial",
            "randn_like", "normal"} <= names, names


@pytest.mark.parametrize("batched", [False, True], ids=["unbatched_input", "batched_input"])
@pytest.mark.parametrize("name", RANDOM_OPS)
def test_error_mode_raises(name, batched):
    op, sample = RANDOM_OPS[name]
    x = sample.input
    if batched:
        def call():
            torchfunc.vmap(lambda a: _run(op, sample.transform(lambda t: a if t is x else t)))(
                torch.stack([x, x]))
    else:
        def call():
            torchfunc.vmap(lambda d: (_run(op, sample), d), out_dims=(None, 0))(torch.zeros(2))
    with pytest.raises(RuntimeError, match="random"):
        call()


@pytest.mark.parametrize("fn", [
    lambda t: F.dropout(t, 0.5, training=True),
    lambda t: F.alpha_dropout(t, 0.5, training=True),
    lambda t: F.feature_alpha_dropout(t, 0.5, training=True),
    lambda t: F.dropout2d(t, 0.5, training=True),
    lambda t: torch.bernoulli(t * 0.5),
    lambda t: torch.rand_like(t),
], ids=["dropout", "alpha_dropout", "feature_alpha_dropout", "dropout2d", "bernoulli", "rand_like"])
def test_different_draws_per_example_from_an_unbatched_input(fn):
    t = torch.ones(4, 6, 5)
    out = torchfunc.vmap(lambda a: fn(t) + a, randomness="different")(torch.zeros(8, 1, 1, 1))
    assert out.shape == (8, 4, 6, 5)
    assert len({tuple(row.flatten().tolist()) for row in out}) > 1  # not one draw for all
    same = torchfunc.vmap(lambda a: fn(t) + a, randomness="same")(torch.zeros(8, 1, 1, 1))
    assert all(torch.equal(row, same[0]) for row in same)


@pytest.mark.parametrize("like", [torch.randn_like, torch.rand_like, lambda a: torch.randint_like(a, 10)],
                         ids=["randn_like", "rand_like", "randint_like"])
def test_same_randomness_of_like_ops_on_batched_input(like):
    x = torch.randn(5, 3, 2)
    for lib in (torch.func, torchfunc):
        torch.manual_seed(3)
        out = lib.vmap(like, randomness="same")(x)
        assert out.shape == x.shape and all(torch.equal(row, out[0]) for row in out)


def test_multinomial_of_batched_2d_probabilities():
    p = torch.rand(3, 4, 5)
    out = torchfunc.vmap(lambda q: torch.multinomial(q, 2), randomness="different")(p)
    assert out.shape == (3, 4, 2) and out.dtype == torch.int64
    assert torch.func.vmap(lambda q: torch.multinomial(q, 2), randomness="different")(p).shape == out.shape
    zero = p.clone()
    zero[..., :3] = 0  # only the last two categories can be drawn
    draws = torchfunc.vmap(lambda q: torch.multinomial(q, 2), randomness="different")(zero)
    assert set(draws.flatten().tolist()) <= {3, 4}


def test_ops_that_draw_nothing_are_not_random():
    x = torch.randn(3, 2, 4, 8)
    _C.set_fallback_enabled(False)
    try:
        torch.testing.assert_close(torchfunc.vmap(lambda a: F.dropout(a, 0.5, training=False))(x), x)
        q = torch.randn(3, 2, 2, 4, 8)
        attn = torchfunc.vmap(lambda a: F.scaled_dot_product_attention(a, a, a, dropout_p=0.0))(q)
        torch.testing.assert_close(attn, torch.stack([F.scaled_dot_product_attention(e, e, e) for e in q]))
    finally:
        _C.set_fallback_enabled(True)
