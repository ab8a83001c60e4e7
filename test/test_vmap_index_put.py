"""index_put (self[indices] = values, and the backward of indexing) with indices that a
slice separates (NOTE [Indexing puts separated indices first]), under vmap and per-sample
gradients, with the per-example fallback disabled, against the loop."""
import pytest
import torch
import torch.func

import torchfunc
from torchfunc._engine import _C

X = torch.randn(3, 4, 5, 6, 7, dtype=torch.float64)
I, J = torch.tensor([0, 2]), torch.tensor([1, 3])


@pytest.fixture(autouse=True)
def _no_fallback():
    _C.set_fallback_enabled(False)
    yield
    _C.set_fallback_enabled(True)


def _loop(func, *args):
    return torch.stack([func(*(a[i] for a in args)) for i in range(args[0].shape[0])])


def getitem(a):
    return a[:, I, :, J]


def setitem(a, v):
    z = a.clone()
    z[:, I, :, J] = v
    return z


def accumulate(a, v):
    return torch.ops.aten.index_put(a, [None, I, None, J], v, True)


@pytest.mark.parametrize("values_shape", [(2, 4, 6), (6,), (1, 4, 1)], ids=["full", "broadcast", "size_one"])
@pytest.mark.parametrize("func", [setitem, accumulate], ids=["setitem", "accumulate"])
def test_values_batched_and_unbatched(func, values_shape):
    v = torch.randn(3, *values_shape, dtype=torch.float64)
    torch.testing.assert_close(torchfunc.vmap(func)(X, v), _loop(func, X, v))
    torch.testing.assert_close(torchfunc.vmap(func, in_dims=(0, None))(X, v[0]), _loop(lambda a: func(a, v[0]), X))


def test_per_sample_gradients_of_indexing():
    loss = lambda a: (getitem(a) ** 2).sum()  # noqa: E731 - its backward is an index_put
    torch.testing.assert_close(torchfunc.vmap(getitem)(X), _loop(getitem, X))
    torch.testing.assert_close(torchfunc.vmap(torchfunc.grad(loss))(X), _loop(torch.func.grad(loss), X))


# NOTE [index_put with batched indices]: the indices differ per example.
BATCHED_INDEX_CASES = {
    "adjacent": (lambda i, j: [None, i, j], (2, 1)),
    "first": (lambda i, j: [i, j], (2, 6, 7)),
    "separated": (lambda i, j: [None, i, None, j], (2, 4, 6)),
    "broadcast_2d": (lambda i, j: [i.view(2, 1), j.view(1, 2)], (2, 2, 6, 7)),
}


@pytest.mark.parametrize("accumulate_", [False, True], ids=["put", "accumulate"])
@pytest.mark.parametrize("batched", ["i", "both", "i_and_values"])
@pytest.mark.parametrize("case", BATCHED_INDEX_CASES)
def test_batched_indices_match_loop(case, batched, accumulate_):
    make, values_shape = BATCHED_INDEX_CASES[case]
    g = torch.Generator().manual_seed(1)
    bi = torch.randint(0, 4, (3, 2), generator=g)
    bj = torch.randint(0, 5, (3, 2), generator=g)
    values = torch.randn(3, *values_shape, dtype=torch.float64, generator=g)
    x = X  # examples [4, 5, 6, 7]
    in_dims = (0, 0, 0 if batched == "both" else None, 0 if batched == "i_and_values" else None)
    j = bj if batched == "both" else bj[0]
    v = values if batched == "i_and_values" else values[0]

    def f(a, i, j, v):
        return torch.ops.aten.index_put(a, make(i, j), v, accumulate_)

    actual = torchfunc.vmap(f, in_dims=in_dims)(x, bi, j, v)
    expected = torch.stack([f(x[b], bi[b], j if in_dims[2] is None else j[b],
                              v if in_dims[3] is None else v[b]) for b in range(3)])
    torch.testing.assert_close(actual, expected)


def test_batched_indices_in_place_and_setitem():
    bi = torch.tensor([[0, 1], [3, 3], [2, 0]])

    def f(a, i):
        z = a.clone()
        z[i, 1] = 5.0
        z.index_put_((i,), torch.ones((), dtype=torch.float64), accumulate=True)
        return z

    x = torch.randn(3, 4, 2, dtype=torch.float64)
    torch.testing.assert_close(torchfunc.vmap(f)(x, bi), _loop(f, x, bi))


def test_batched_indices_into_captured_self_in_place_raises():
    captured = torch.zeros(4)
    with pytest.raises(RuntimeError) as info:
        torchfunc.vmap(lambda i: captured.index_put_((i,), torch.ones(())))(torch.tensor([[0], [1]]))
    assert "index_put_" in str(info.value)
    assert captured.eq(0).all()


# NOTE [index_put with a batched mask]
@pytest.mark.parametrize("values", ["scalar", "row", "per_element"])
def test_batched_mask_matches_loop(values):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 5, dtype=torch.float64, generator=g)
    mask = torch.tensor([[True, False, True, False], [False, True, True, False], [True, True, False, False]])
    v = {"scalar": torch.randn(3, dtype=torch.float64, generator=g),
         "row": torch.randn(3, 5, dtype=torch.float64, generator=g),
         "per_element": torch.randn(3, 2, 5, dtype=torch.float64, generator=g)}[values]

    def f(a, m, v):
        return torch.ops.aten.index_put(a, [m], v, False)

    torch.testing.assert_close(torchfunc.vmap(f)(x, mask, v), _loop(f, x, mask, v))

    def after_slice(a, m, v):  # the mask over dim 1, a slice before it
        z = a.clone()
        z[:, m[:5]] = v[..., None] if v.dim() == 0 else v.sum()
        return z

    m2 = torch.tensor([[True, False, True, False, True], [False] * 5, [True] * 5])
    torch.testing.assert_close(torchfunc.vmap(after_slice)(x, m2, v), _loop(after_slice, x, m2, v))


def test_batched_mask_with_different_counts_and_per_element_values_raises():
    mask = torch.tensor([[True, False], [True, True]])
    with pytest.raises(RuntimeError, match="shape mismatch: value tensor of shape"):
        torchfunc.vmap(lambda a, m, v: torch.ops.aten.index_put(a, [m], v, False))(
            torch.zeros(2, 2), mask, torch.ones(2, 2))
