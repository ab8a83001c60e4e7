"""scaled_dot_product_attention under vmap (csrc/vmap/rules/attention.cpp), with the
per-example fallback disabled: against a loop and torch.func, with masks batched and not,
causal, through grad; the Transformer layers under per-sample gradients."""
import pytest
import torch
import torch.func
import torch.nn as nn
import torch.nn.functional as F

import torchfunc
from torchfunc._engine import _C

from helpers import assert_same

B, N, H, L, S, E = 3, 2, 2, 4, 5, 8


@pytest.fixture(autouse=True)
def no_fallback():
    _C.set_fallback_enabled(False)
    yield
    _C.set_fallback_enabled(True)


def _qkv(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(B, N, H, n, E, generator=g, dtype=dtype) for n in (L, S, S)]


MASKS = {
    "none": None,
    "bool_unbatched": torch.rand(L, S, generator=torch.Generator().manual_seed(1)) > 0.3,
    "float_unbatched_full": torch.randn(N, H, L, S, generator=torch.Generator().manual_seed(2)),
    "bool_batched": torch.rand(B, L, S, generator=torch.Generator().manual_seed(3)) > 0.3,
}


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("mask", MASKS)
def test_matches_loop_and_torch_func(mask, is_causal):
    if is_causal and mask != "none":
        pytest.skip("is_causal excludes an explicit mask")
    q, k, v = _qkv()
    m = MASKS[mask]
    batched_mask = mask.endswith("_batched")

    def f(q, k, v, m):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=is_causal)

    in_dims = (0, 0, 0, 0 if batched_mask else None)
    actual = torchfunc.vmap(f, in_dims=in_dims)(q, k, v, m)
    loop = torch.stack([f(q[i], k[i], v[i], m[i] if batched_mask else m) for i in range(B)])
    torch.testing.assert_close(actual, loop)
    _C.set_fallback_enabled(True)
    assert_same(actual, torch.func.vmap(f, in_dims=in_dims)(q, k, v, m))


def test_grad_through_attention():
    q, k, v = _qkv(torch.float64)

    def loss(q, k, v):
        return F.scaled_dot_product_attention(q, k, v).sin().sum()

    grads = torchfunc.vmap(torchfunc.grad(loss, argnums=(0, 1, 2)))(q, k, v)
    for i in range(B):
        args = [t[i].clone().requires_grad_() for t in (q, k, v)]
        for g, ref in zip(grads, torch.autograd.grad(loss(*args), args)):
            torch.testing.assert_close(g[i], ref)


def test_dropout_draws_per_example_under_different_and_raises_under_error():
    q, k, v = _qkv()
    f = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    out = torchfunc.vmap(f, randomness="different")(q.expand(B, -1, -1, -1, -1).contiguous(), k[:1].expand(B, -1, -1, -1, -1),
                                                    v[:1].expand(B, -1, -1, -1, -1))
    assert out.shape == (B, N, H, L, E) and not torch.equal(out[0], out[1])
    with pytest.raises(RuntimeError, match="random operation"):
        torchfunc.vmap(f)(q, k, v)
    with pytest.raises(RuntimeError, match="random operation"):  # unbatched inputs too
        torchfunc.vmap(lambda d: f(q[0], k[0], v[0]) + d)(torch.zeros(B, 1, 1, 1))


@pytest.mark.parametrize("make", [
    lambda: nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0),
    lambda: nn.TransformerDecoderLayer(8, 2, dim_feedforward=16, dropout=0.0),
    lambda: nn.MultiheadAttention(8, 2),
], ids=["encoder_layer", "decoder_layer", "multihead_attention"])
def test_transformer_layers_per_sample_grads_match_torch_func(make):
    torch.manual_seed(0)
    layer = make().eval()
    params = {k: v.detach() for k, v in layer.named_parameters()}
    x = torch.randn(3, 5, 1, 8)
    if isinstance(layer, nn.TransformerDecoderLayer):
        call = lambda lib, p, a: lib.functional_call(layer, p, (a, a))
    elif isinstance(layer, nn.MultiheadAttention):
        call = lambda lib, p, a: lib.functional_call(layer, p, (a, a, a))[0]
    else:
        call = lambda lib, p, a: lib.functional_call(layer, p, (a,))
    ours = torchfunc.vmap(torchfunc.grad(lambda p, a: call(torchfunc, p, a).sin().sum()), in_dims=(None, 0))(params, x)
    _C.set_fallback_enabled(True)
    theirs = torch.func.vmap(torch.func.grad(lambda p, a: call(torch.func, p, a).sin().sum()),
                             in_dims=(None, 0))(params, x)
    assert_same(ours, theirs)
