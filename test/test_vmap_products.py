"""Matrix products under vmap (csrc/vmap/rules/linalg.cpp, NOTE [Products with one
unbatched operand] and NOTE [addmm adds in the product's pass]): every batched
combination of addmm's operands and bias shapes against the loop and torch.func, with
the per-example fallback disabled."""
import itertools

import pytest
import torch
import torch.func

import torchfunc
from torchfunc._engine import _C

from helpers import assert_same

B, R, K, N = 3, 4, 5, 6


@pytest.fixture(autouse=True)
def _no_fallback():
    _C.set_fallback_enabled(False)
    yield
    _C.set_fallback_enabled(True)


BIAS_SHAPES = {"row": (N,), "row_2d": (1, N), "scalar": (), "one": (1,), "matrix": (R, N), "column": (R, 1)}


@pytest.mark.parametrize("batched", list(itertools.product([False, True], repeat=3)),
                         ids=lambda b: "".join("B" if x else "-" for x in b))
@pytest.mark.parametrize("bias", BIAS_SHAPES)
@pytest.mark.parametrize("scale", [(1, 1), (0.5, 2.0)], ids=["fused", "scaled"])
def test_addmm_matches_loop_and_torch_func(bias, batched, scale):
    if not any(batched):
        pytest.skip("nothing batched")
    g = torch.Generator().manual_seed(0)
    shapes = (BIAS_SHAPES[bias], (R, K), (K, N))
    args = [torch.randn((B, *s) if b else s, dtype=torch.float64, generator=g) for s, b in zip(shapes, batched)]
    in_dims = tuple(0 if b else None for b in batched)
    beta, alpha = scale

    def f(s, a, m):
        return torch.addmm(s, a, m, beta=beta, alpha=alpha)

    actual = torchfunc.vmap(f, in_dims=in_dims)(*args)
    loop = torch.stack([f(*[x[i] if d == 0 else x for x, d in zip(args, in_dims)]) for i in range(B)])
    assert_same(actual, loop)
    assert actual[0].is_contiguous()  # as eager's result: callers may view() it
    _C.set_fallback_enabled(True)
    assert_same(actual, torch.func.vmap(f, in_dims=in_dims)(*args))


def test_linear_with_a_shared_input_and_per_example_weights():
    # An ensemble's first layer: x shared, W and b per model, one addmm over the columns.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(R, K, generator=g)
    w, b = torch.randn(B, N, K, generator=g), torch.randn(B, N, generator=g)
    f = torch.nn.functional.linear
    actual = torchfunc.vmap(f, in_dims=(None, 0, 0))(x, w, b)
    assert_same(actual, torch.stack([f(x, w[i], b[i]) for i in range(B)]))
