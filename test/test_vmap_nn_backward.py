"""Per-example gradients through the backward ops of N-batched nn ops (rules/nn.cpp,
linalg.cpp, pointwise.cpp): upsampling, grid_sample, col2im (F.fold's and F.unfold's
backward), Tensor.unfold, cdist, fractional max pooling, multilabel_margin_loss and rrelu,
and pdist and segment_reduce (linalg.cpp, dims.cpp).
Each runs with the per-example fallback disabled and matches the loop of torch.func.grad
over the examples."""
import pytest
import torch
import torch.func
import torch.nn.functional as F

import torchfunc
from torchfunc._engine import _C

torch.manual_seed(0)
X2 = torch.randn(3, 2, 3, 5, 6, dtype=torch.float64)  # examples [N=2, C=3, H=5, W=6]
X1 = torch.randn(3, 2, 3, 7, dtype=torch.float64)


@pytest.fixture(autouse=True)
def _no_fallback():
    _C.set_fallback_enabled(False)
    yield
    _C.set_fallback_enabled(True)


CASES = {
    "interpolate_nearest_1d": (lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), X1),
    "interpolate_nearest_exact_2d": (lambda x: F.interpolate(x, size=(7, 4), mode="nearest-exact"), X2),
    "interpolate_linear": (lambda x: F.interpolate(x, size=11, mode="linear", align_corners=True), X1),
    "interpolate_bilinear": (lambda x: F.interpolate(x, scale_factor=1.5, mode="bilinear"), X2),
    "interpolate_bicubic": (lambda x: F.interpolate(x, size=(8, 9), mode="bicubic"), X2),
    "interpolate_bilinear_antialias": (lambda x: F.interpolate(x, size=(3, 4), mode="bilinear", antialias=True), X2),
    "interpolate_trilinear": (lambda x: F.interpolate(x.unsqueeze(2).expand(-1, -1, 2, -1, -1), size=(3, 4, 5),
                                                      mode="trilinear"), X2),
    "grid_sample": (lambda x: F.grid_sample(x, torch.linspace(-1, 1, 2 * 4 * 4 * 2, dtype=x.dtype).reshape(2, 4, 4, 2),
                                            align_corners=False), X2),
    "fold_unfold": (lambda x: F.fold(F.unfold(x, kernel_size=2), output_size=(5, 6), kernel_size=2), X2),
    "tensor_unfold": (lambda x: x.unfold(-1, 3, 2), X2),
    "cdist": (lambda x: torch.cdist(x[0, 0], x[1, 1]), X2),
    "fractional_max_pool2d": (lambda x: F.fractional_max_pool2d(
        x, 2, output_size=(3, 3), _random_samples=torch.full((2, 3, 2), 0.3, dtype=x.dtype)), X2),
    "multilabel_margin_loss_mean": (lambda x: F.multilabel_margin_loss(
        x[:, 0, 0], torch.tensor([[3, 0, -1, 1, 2, 4], [5, -1, 0, 0, 0, 0]])), X2),
    "multilabel_margin_loss_sum_1d": (lambda x: F.multilabel_margin_loss(
        x[0, 0, 0], torch.tensor([1, 2, -1, 0, 0, 0]), reduction="sum"), X2),
    "multilabel_margin_loss_none": (lambda x: F.multilabel_margin_loss(
        x[:, 0, 0], torch.tensor([[3, 0, -1, 1, 2, 4], [5, -1, 0, 0, 0, 0]]), reduction="none"), X2),
}


@pytest.mark.parametrize("name", CASES)
def test_per_example_gradients(name):
    func, x = CASES[name]
    weights = torch.linspace(0.5, 1.5, func(x[0]).numel(), dtype=x.dtype).reshape(func(x[0]).shape)

    def loss(example):
        return (func(example) * weights).sum()

    torch.testing.assert_close(torchfunc.vmap(func)(x), torch.stack([func(e) for e in x]))
    expected = torch.stack([torch.func.grad(loss)(e) for e in x])
    torch.testing.assert_close(torchfunc.vmap(torchfunc.grad(loss))(x), expected)
    torch.testing.assert_close(torchfunc.jacrev(loss)(x[0]), expected[0])


def test_rrelu_in_training_mode():
    x = X1[:, 0]
    # rrelu draws its slopes: one draw per example, checked against its own noise.
    out = torchfunc.vmap(lambda e: F.rrelu(e, training=True), randomness="different")(x)
    slopes = out[x < 0] / x[x < 0]
    assert ((slopes >= 1 / 8) & (slopes <= 1 / 3)).all()
    grads = torchfunc.vmap(torchfunc.grad(lambda e: F.rrelu(e, training=True).sum()), randomness="different")(x)
    torch.testing.assert_close(grads[x > 0], torch.ones_like(grads[x > 0]))
    assert ((grads[x < 0] >= 1 / 8) & (grads[x < 0] <= 1 / 3)).all()


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, float("inf")])
def test_pdist(p):
    # NOTE [pdist as pairs of rows]: a repeated row gives a zero distance.
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    x[:, 3] = x[:, 1]
    f = lambda a: F.pdist(a, p)  # noqa: E731
    torch.testing.assert_close(torchfunc.vmap(f)(x), torch.stack([f(a) for a in x]))
    torch.testing.assert_close(torchfunc.vmap(torchfunc.jacrev(f))(x),
                               torch.stack([torch.autograd.functional.jacobian(f, a) for a in x]))


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "prod"])
@pytest.mark.parametrize("batched_lengths", [False, True], ids=["shared_segments", "per_example_segments"])
def test_segment_reduce(reduce, batched_lengths):
    # NOTE [Segments along one axis]
    data = torch.randn(3, 6, 2, dtype=torch.float64)
    lengths = torch.tensor([[1, 3, 2], [2, 2, 2], [0, 4, 2]]) if batched_lengths else torch.tensor([1, 3, 2])
    in_dims = (0, 0) if batched_lengths else (0, None)
    f = lambda d, n: torch.segment_reduce(d, reduce, lengths=n, axis=0, initial=0.0)  # noqa: E731
    loop_lengths = lengths if batched_lengths else lengths.expand(3, 3)
    torch.testing.assert_close(torchfunc.vmap(f, in_dims=in_dims)(data, lengths),
                               torch.stack([f(d, n) for d, n in zip(data, loop_lengths)]))
    loss = lambda d, n: (f(d, n) ** 2).sum()  # noqa: E731
    torch.testing.assert_close(torchfunc.vmap(torchfunc.grad(loss), in_dims=in_dims)(data, lengths),
                               torch.stack([torch.func.grad(loss)(d, n) for d, n in zip(data, loop_lengths)]))


@pytest.mark.parametrize("invert", [False, True])
def test_isin_with_a_test_set_per_example(invert):
    # search.cpp: each example's sorted test set; NaN is in no set, as in eager isin.
    elements = torch.tensor([[1.0, 2.0, float("nan"), 4.0], [0.0, 5.0, 5.0, 1.0]])
    tests = torch.tensor([[2.0, float("nan"), 4.0], [5.0, 7.0, 9.0]])
    f = lambda e, t: torch.isin(e, t, invert=invert)  # noqa: E731
    torch.testing.assert_close(torchfunc.vmap(f)(elements, tests), torch.stack([f(e, t) for e, t in zip(elements, tests)]))
    ints = torch.tensor([[1, 2], [5, 4]])  # promoted to the test set's dtype
    torch.testing.assert_close(torchfunc.vmap(f)(ints, tests), torch.stack([f(e, t) for e, t in zip(ints, tests)]))
    empty = torchfunc.vmap(f)(elements, torch.zeros(2, 0))
    torch.testing.assert_close(empty, torch.full((2, 4), invert))
