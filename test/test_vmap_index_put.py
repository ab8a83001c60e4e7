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
