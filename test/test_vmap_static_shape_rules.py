"""Rules for ops whose result shape does not depend on the data although their values
do, or whose operands broadcast in unusual ways: nonzero_static (dynamic.cpp),
linalg_ldl_solve (linalg.cpp), _chunk_cat and hash_tensor (index.cpp, dims.cpp), and
embedding_renorm_ (nn.cpp). Each against the per-example loop, with the per-example
fallback disabled, and against torch.func where it has a rule."""
import pytest
import torch
import torch.func
import torch.nn.functional as F

import torchfunc
from torchfunc._engine import _C

from helpers import assert_same


@pytest.fixture(autouse=True)
def _no_fallback():
    _C.set_fallback_enabled(False)
    yield
    _C.set_fallback_enabled(True)


def _loop(func, *args, in_dims=0):
    dims = in_dims if isinstance(in_dims, tuple) else (in_dims,) * len(args)
    n = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    return torch.stack([func(*(a if d is None else a.select(d, i) for a, d in zip(args, dims)))
                        for i in range(n)])


@pytest.mark.parametrize("size", [0, 1, 3, 12, 20])
@pytest.mark.parametrize("shape", [(3, 4), (12,), (), (0, 3)], ids=["2d", "1d", "0dim", "empty"])
def test_nonzero_static_matches_loop(shape, size):
    n = 3 * torch.Size(shape).numel()
    x = torch.tensor([0.0, 1.0, -2.0]).repeat(40)[:n]
    x = x[torch.randperm(n, generator=torch.Generator().manual_seed(0))].reshape(3, *shape)
    x[1] = 0  # an example with no nonzero element

    def f(t):
        return torch.nonzero_static(t, size=size, fill_value=-7)

    assert_same(torchfunc.vmap(f)(x), _loop(f, x))
    assert_same(torchfunc.vmap(f, in_dims=x.dim() - 1)(x.movedim(0, -1)), _loop(f, x))


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.complex64])
def test_nonzero_static_dtypes(dtype):
    x = (torch.arange(12).reshape(3, 4) % 3).to(dtype)
    f = lambda t: torch.nonzero_static(t, size=3)  # noqa: E731
    assert_same(torchfunc.vmap(f)(x), _loop(f, x))


@pytest.mark.parametrize("in_dims", [(0, 0, 0), (None, None, 0), (0, 0, None), (0, None, 0)])
def test_ldl_solve_broadcasts_batch_dims(in_dims):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 2, 4, 4, dtype=torch.float64, generator=g)
    a = a + a.mT
    ld, pivots = torch.linalg.ldl_factor(a)
    b = torch.randn(3, 4, 2, dtype=torch.float64, generator=g)  # broadcasts against LD's [2]
    args = [t if d is not None else t[0] for t, d in zip((ld, pivots, b), in_dims)]
    f = torch.linalg.ldl_solve
    assert_same(torchfunc.vmap(f, in_dims=in_dims)(*args), _loop(f, *args, in_dims=in_dims))


def test_chunk_cat_matches_loop():
    # torch.func has no rule for _chunk_cat ("We could not generate a fallback").
    xs = [torch.randn(3, 2, 6), torch.randn(3, 2, 4)]
    f = lambda a, b: torch._chunk_cat([a, b], dim=1, num_chunks=2)  # noqa: E731
    assert_same(torchfunc.vmap(f)(*xs), _loop(f, *xs))
    assert_same(torchfunc.vmap(f, in_dims=(2, 0))(xs[0].movedim(0, 2), xs[1]), _loop(f, *xs))
    with pytest.raises(RuntimeError):
        torchfunc.vmap(lambda a: torch._chunk_cat([], dim=0, num_chunks=1))(xs[0])


@pytest.mark.parametrize("dim", [None, 0, 1])
def test_hash_tensor_matches_loop(dim):
    x = torch.randint(-1000, 1000, (3, 4, 5))
    f = (lambda t: torch.hash_tensor(t)) if dim is None else (lambda t: torch.hash_tensor(t, dim=dim))
    assert_same(torchfunc.vmap(f)(x), _loop(f, x))


# NOTE [embedding_renorm_ under vmap]
@pytest.mark.parametrize("weight_batched", [False, True], ids=["shared_table", "batched_table"])
def test_embedding_max_norm_matches_loop(weight_batched):
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 6, 4, generator=g) * 3 if weight_batched else torch.randn(6, 4, generator=g) * 3
    idx = torch.tensor([[0, 2, 2], [5, 0, 1], [3, 3, 3]])
    ours, loop = weight.clone(), weight.clone()
    in_dims = (0, 0 if weight_batched else None)

    def f(i, w):
        return F.embedding(i, w, max_norm=1.0)

    actual = torchfunc.vmap(f, in_dims=in_dims)(idx, ours)
    expected = _loop(f, idx, loop, in_dims=in_dims)
    assert_same(actual, expected)
    # The table is renormalized in place: rows any example looked up now have norm <= 1.
    assert_same(ours, loop)


# NOTE [Histograms of every example at once]
@pytest.mark.parametrize("kwargs", [dict(), dict(range=(-1.0, 2.0)), dict(density=True),
                                    dict(weight=True), dict(weight=True, density=True)],
                         ids=["own_range", "range", "density", "weight", "weight_density"])
@pytest.mark.parametrize("bins", [4, "tensor", "batched_tensor"])
def test_histogram_matches_loop(bins, kwargs):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, dtype=torch.float64, generator=g)
    x[1] = 0.5  # an example whose min equals its max
    w = torch.rand(3, 7, dtype=torch.float64, generator=g)
    edges = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], dtype=torch.float64)
    b = {4: None, "tensor": edges, "batched_tensor": torch.stack([edges, edges * 2, edges + 0.25])}[bins]
    if isinstance(bins, str) and "range" in kwargs:
        pytest.skip("range goes with a number of bins")
    weighted = kwargs.pop("weight", False)

    def f(x, w, b):
        return torch.histogram(x, 4 if b is None else b, weight=w if weighted else None, **kwargs)

    in_dims = (0, 0, 0 if bins == "batched_tensor" else None)
    args = (x, w, b)
    actual = torchfunc.vmap(f, in_dims=in_dims)(*args)
    loop = [f(x[i], w[i], b if in_dims[2] is None else b[i]) for i in range(3)]
    assert_same(tuple(actual), tuple(torch.stack(t) for t in zip(*loop)))


@pytest.mark.parametrize("bins", [[2, 3], "tensors"])
def test_histogramdd_matches_loop(bins):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 2, dtype=torch.float64, generator=g)
    b = [2, 3] if bins != "tensors" else [torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64),
                                          torch.tensor([-2.0, 2.0], dtype=torch.float64)]
    f = lambda x: torch.histogramdd(x, b, density=True)  # noqa: E731
    hist, edges = torchfunc.vmap(f)(x)
    loop = [f(x[i]) for i in range(3)]
    assert_same(hist, torch.stack([h for h, _ in loop]))
    assert_same(list(edges), [torch.stack([e[d] for _, e in loop]) for d in range(2)])


def test_histogram_errors_name_the_example_values():
    x = torch.tensor([[0.0, 1.0], [0.0, float("inf")]])
    with pytest.raises(RuntimeError, match=r"torch.histogramdd: dimension 0's range \[0, inf\] is not finite"):
        torchfunc.vmap(lambda t: torch.histogram(t, 3))(x)
    with pytest.raises(RuntimeError, match="bins must be > 0"):
        torchfunc.vmap(lambda t: torch.histogram(t, 0))(x[:1])


# NOTE [cov's degrees of freedom under transforms]
@pytest.mark.filterwarnings("ignore:.*degrees of freedom is")
@pytest.mark.parametrize("weights", ["none", "fweights", "aweights", "both"])
@pytest.mark.parametrize("correction", [0, 1, 4])
def test_cov_matches_loop_through_vmap_and_grad(weights, correction):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 4, dtype=torch.float64, generator=g)
    fw = torch.tensor([[1, 2, 0, 1], [3, 0, 0, 0], [1, 1, 1, 1]])  # example 1: 3 observations
    aw = torch.rand(3, 4, dtype=torch.float64, generator=g) + 0.1

    def f(x, fw, aw):
        return torch.cov(x, correction=correction, fweights=fw if weights in ("fweights", "both") else None,
                         aweights=aw if weights in ("aweights", "both") else None)

    # correction 4 leaves example 1 (3 observations with fweights) no degrees of freedom:
    # inf and NaN there, as in the loop.
    actual = torchfunc.vmap(f)(x, fw, aw)
    torch.testing.assert_close(actual, _loop(f, x, fw, aw), equal_nan=True)
    per_example = torchfunc.vmap(torchfunc.grad(lambda *a: f(*a).sum()))(x, fw, aw)
    _C.set_fallback_enabled(True)
    expected = torch.stack([torch.func.grad(lambda *a: f(*a).sum())(x[i], fw[i], aw[i]) for i in range(3)])
    torch.testing.assert_close(per_example, expected, equal_nan=True)


def test_cov_warns_when_an_example_has_no_degrees_of_freedom():
    fw = torch.tensor([[1, 1, 1], [1, 0, 0]])  # example 1: one observation
    with pytest.warns(UserWarning, match="degrees of freedom is <= 0"):
        torchfunc.vmap(lambda x, w: torch.cov(x, fweights=w))(torch.randn(2, 3), fw)


def test_resize_as_into_an_unbatched_tensor_takes_the_examples_shape():
    captured = torch.zeros(2)
    out = torchfunc.vmap(lambda t: captured.resize_as_(t))(torch.randn(4, 3, 5))
    assert captured.shape == (3, 5) and out.shape == (4, 3, 5)
    batched = torch.randn(4, 6)
    torchfunc.vmap(lambda s, t: s.resize_as_(t))(batched, torch.randn(4, 2, 3))
    assert batched.shape == (4, 6)  # the BatchedTensor took fresh memory (resize_to)


def test_tensor_split_with_shared_tensor_indices():
    x = torch.randn(3, 6, 4)
    idx = torch.tensor([[1, 4], [1, 4], [1, 4]])
    f = lambda t, i: torch.tensor_split(t, i, dim=0)  # noqa: E731
    actual = torchfunc.vmap(f)(x, idx)
    assert_same(actual, tuple(torch.stack(p) for p in zip(*[f(x[b], idx[b]) for b in range(3)])))
    sections = torchfunc.vmap(f, in_dims=(0, 0))(x, torch.tensor([2, 2, 2]))
    assert [p.shape for p in sections] == [(3, 3, 4), (3, 3, 4)]
    with pytest.raises(RuntimeError, match="examples 0 and 2 give different split points"):
        torchfunc.vmap(f)(x, torch.tensor([[1, 4], [1, 4], [2, 4]]))
