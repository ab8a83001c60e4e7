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
