"""Matrix products under vmap (csrc/vmap/rules/linalg.cpp, NOTE [Products with one
unbatched operand] and NOTE [addmm adds in the product's pass]): every batched
combination of addmm's operands and bias shapes against the loop and torch.func, with
the per-example fallback disabled."""
import itertools

import expecttest

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


# --- outer products (csrc/vmap/outer_product.cpp, NOTE [Large outer products stream their
# result]): k = 1 products of two batched operands, streamed from 1 MiB of result.

STREAMED = 1 << 20


def outer_operands(b, r, c, dtype, col_layout="contiguous", row_layout="contiguous", seed=0):
    """Batched [r, 1] and [1, c] examples, as the per-example weight gradient of a linear
    layer has them (grad_out^T of a transposed [1, r] row, and the input row)."""
    g = torch.Generator().manual_seed(seed)
    col = torch.randn(b, 1, r, dtype=dtype, generator=g).transpose(1, 2)  # [b, r, 1], strides (r, 1, r)
    if col_layout == "strided":
        col = torch.randn(b, r, 3, dtype=dtype, generator=g)[..., 1:2]
    row = torch.randn(b, 1, c, dtype=dtype, generator=g)
    if row_layout == "strided":
        row = torch.randn(b, 1, 2 * c, dtype=dtype, generator=g)[..., ::2]
    elif row_layout == "offset":
        row = torch.randn(b, 1, c + 1, dtype=dtype, generator=g)[..., 1:]  # rows not 32-byte aligned
    return col, row


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c", [8, 1003, 1024], ids=lambda c: f"c{c}")
@pytest.mark.parametrize("layout", [("contiguous", "contiguous"), ("strided", "strided"), ("contiguous", "offset")],
                         ids="-".join)
def test_outer_product_is_bitwise_col_times_row(dtype, c, layout):
    # Above and below the streaming threshold, rows of every alignment and a tail past
    # the last whole vector (c = 1003), strided operands.
    b, r = 64, 40
    col, row = outer_operands(b, r, c, dtype, *layout)
    streamed = b * r * c * col.element_size() >= STREAMED
    assert streamed == (c != 8)
    with torch.profiler.profile() as prof:
        actual = torchfunc.vmap(torch.mm)(col, row)
    ran = {e.name for e in prof.events()}
    assert ("torchfunc::streamed_outer_product" in ran) == streamed and ("aten::mul" in ran) != streamed
    assert actual.shape == (b, r, c) and actual.is_contiguous()
    assert torch.equal(actual, col * row)
    assert torch.equal(actual, torch.stack([torch.mm(col[i], row[i]) for i in range(b)]))


def test_outer_product_threads_agree_with_one():
    col, row = outer_operands(64, 128, 784, torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torchfunc.vmap(torch.mm)(col, row)
        torch.set_num_threads(2)
        two = torchfunc.vmap(torch.mm)(col, row)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two) and torch.equal(one, col * row)


def test_linear_per_sample_weight_gradients_stream_and_match_the_loop():
    # The case the kernel is for: vmap(grad) of a linear layer whose gradient is 2.5 MiB.
    g = torch.Generator().manual_seed(2)
    w = torch.randn(20, 256, generator=g, dtype=torch.float64)
    x = torch.randn(64, 256, generator=g, dtype=torch.float64)

    def loss(w, xi):
        return torch.nn.functional.linear(xi.unsqueeze(0), w).tanh().sum()

    actual = torchfunc.vmap(torchfunc.grad(loss), in_dims=(None, 0))(w, x)
    loop = torch.stack([torch.func.grad(loss)(w, x[i]) for i in range(64)])
    torch.testing.assert_close(actual, loop)
    torch.testing.assert_close(actual, torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(w, x))


def test_outer_product_under_an_outer_grad_records_its_history():
    # The physical operands are GradTensors of the outer grad level (or require grad):
    # the product must go through the dispatcher, so that its gradient is recorded.
    col, row = outer_operands(64, 64, 300, torch.float64)
    expected = torch.func.grad(lambda c, r: torch.func.vmap(torch.mm)(c, r).sin().sum(), argnums=(0, 1))(col, row)
    actual = torchfunc.grad(lambda c, r: torchfunc.vmap(torch.mm)(c, r).sin().sum(), argnums=(0, 1))(col, row)
    assert_same(actual, expected)
    leaf_col, leaf_row = col.clone().requires_grad_(), row.clone().requires_grad_()
    out = torchfunc.vmap(torch.mm)(leaf_col, leaf_row)
    assert out.grad_fn is not None
    out.sin().sum().backward()
    assert_same((leaf_col.grad, leaf_row.grad), expected)


def test_outer_product_of_dual_tensors_carries_their_tangents():
    import torch.autograd.forward_ad as fwAD
    col, row = outer_operands(64, 64, 300, torch.float64)
    t_col, t_row = outer_operands(64, 64, 300, torch.float64, seed=1)
    with fwAD.dual_level():
        out = torchfunc.vmap(torch.mm)(fwAD.make_dual(col, t_col), fwAD.make_dual(row, t_row))
        primal, tangent = fwAD.unpack_dual(out)
    assert torch.equal(primal, col * row)
    torch.testing.assert_close(tangent, t_col * row + col * t_row)


def test_outer_product_is_seen_by_a_dispatch_mode():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Seen(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func)
            return func(*args, **(kwargs or {}))

    col, row = outer_operands(64, 64, 300, torch.float32)
    with Seen() as seen:
        out = torchfunc.vmap(torch.mm)(col, row)
    assert torch.ops.aten.mul.Tensor in seen.ops
    assert torch.equal(out, col * row)


def test_outer_product_in_inference_mode_and_on_meta_tensors():
    col, row = outer_operands(64, 64, 300, torch.float32)
    with torch.inference_mode():
        out = torchfunc.vmap(torch.mm)(col, row)
    assert out.is_inference() and torch.equal(out, col * row)
    meta = torchfunc.vmap(torch.mm)(col.to("meta"), row.to("meta"))
    assert meta.device.type == "meta" and meta.shape == (64, 64, 300)


class TestProductErrors(expecttest.TestCase):
    def test_a_k_1_product_with_a_mismatched_inner_dim_raises_mms_error(self):
        # [3, 1] @ [3, 4] has no value: it raised nothing before (a broadcast multiply).
        for f in (torch.mm, lambda a, m: torch.addmm(torch.zeros(3, 4), a, m)):
            with self.assertRaises(RuntimeError) as caught:
                torchfunc.vmap(f)(torch.randn(2, 3, 1), torch.randn(2, 3, 4))
            self.assertExpectedInline(str(caught.exception), """mat1 and mat2 shapes cannot be multiplied (3x1 and 3x4)""")
        with self.assertRaises(RuntimeError) as caught:
            torchfunc.vmap(torch.mm, in_dims=(None, 0))(torch.randn(3, 2), torch.randn(2, 3, 4))
        self.assertExpectedInline(str(caught.exception), """mat1 and mat2 shapes cannot be multiplied (3x2 and 3x4)""")
