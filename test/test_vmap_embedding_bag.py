"""_embedding_bag_forward_only under vmap (csrc/vmap/rules/embedding_bag.cpp, NOTE
[embedding_bag by folding the batch into the bags]): all four outputs against the
per-example loop, with the per-example fallback disabled."""
import pytest
import torch
import torch.func
import torch.nn.functional as F

import torchfunc
from torchfunc._engine import _C

from helpers import assert_same

B, V, D = 3, 7, 4


@pytest.fixture(autouse=True)
def _no_fallback():
    _C.set_fallback_enabled(False)
    yield
    _C.set_fallback_enabled(True)


def _forward(weight, indices, offsets, psw, mode, last_offset, padding_idx):
    return torch.ops.aten._embedding_bag_forward_only(weight, indices, offsets, False, mode, False, psw,
                                                      last_offset, padding_idx)


@pytest.mark.parametrize("padding_idx", [-1, 2])
@pytest.mark.parametrize("last_offset", [False, True])
@pytest.mark.parametrize("mode", [0, 1, 2], ids=["sum", "mean", "max"])
@pytest.mark.parametrize("batched", ["indices", "weight", "both"])
def test_all_outputs_match_loop(batched, mode, last_offset, padding_idx):
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(B, V, D, dtype=torch.float64, generator=g)
    indices = torch.randint(0, V, (B, 8), generator=g)
    indices[0, :2] = 2  # padding entries (when padding_idx is 2)
    offsets = torch.tensor([0, 3, 3, 8] if last_offset else [0, 3, 3])
    psw = torch.rand(B, *indices.shape[1:], dtype=torch.float64, generator=g) if mode == 0 else None
    w_dim, i_dim = (0 if batched in ("weight", "both") else None), (0 if batched in ("indices", "both") else None)
    w = weight if w_dim == 0 else weight[0]
    i = indices if i_dim == 0 else indices[0]
    p = psw if psw is None or i_dim == 0 else psw[0]
    p_dim = None if psw is None else i_dim

    def f(w, i, p):
        return _forward(w, i, offsets, p, mode, last_offset, padding_idx)

    actual = torchfunc.vmap(f, in_dims=(w_dim, i_dim, p_dim))(w, i, p)
    loop = [f(w if w_dim is None else w[b], i if i_dim is None else i[b],
              p if p_dim is None else p[b]) for b in range(B)]
    assert_same(tuple(actual), tuple(torch.stack(t) for t in zip(*loop)))


def test_functional_embedding_bag_with_batched_offsets():
    weight = torch.randn(V, D)
    indices = torch.randint(0, V, (B, 6))
    offsets = torch.tensor([[0, 2], [0, 5], [0, 0]])
    f = lambda i, o: F.embedding_bag(i, weight, o, mode="mean")  # noqa: E731
    assert_same(torchfunc.vmap(f)(indices, offsets), torch.stack([f(indices[b], offsets[b]) for b in range(B)]))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_functional_embedding_bag_with_2d_indices_and_a_batched_table(mode):
    weight = torch.randn(B, V, D, dtype=torch.float64)
    indices = torch.randint(0, V, (B, 2, 3))
    f = lambda i, w: F.embedding_bag(i, w, mode=mode, padding_idx=1)  # noqa: E731
    assert_same(torchfunc.vmap(f)(indices, weight), torch.stack([f(indices[b], weight[b]) for b in range(B)]))


@pytest.mark.parametrize("padding_idx", [None, 2])
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("weight_batched", [False, True], ids=["shared_table", "batched_table"])
def test_per_sample_gradients_match_loop(weight_batched, mode, padding_idx):
    # _embedding_bag, _embedding_bag_backward and the per_sample_weights backward.
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(B, V, D, dtype=torch.float64, generator=g)
    indices = torch.randint(0, V, (B, 8), generator=g)
    indices[0, :2] = 2
    offsets = torch.tensor([0, 3, 3, 6])  # an empty bag
    psw = torch.rand(B, 8, dtype=torch.float64, generator=g)
    w = weight if weight_batched else weight[0]

    def loss(w, i, p):
        out = F.embedding_bag(i, w, offsets, mode=mode, padding_idx=padding_idx,
                              per_sample_weights=p if mode == "sum" else None)
        return out.sin().sum()

    in_dims = (0 if weight_batched else None, 0, 0)
    argnums = (0, 2) if mode == "sum" else 0
    actual = torchfunc.vmap(torchfunc.grad(loss, argnums=argnums), in_dims=in_dims)(w, indices, psw)
    _C.set_fallback_enabled(True)
    loop = [torch.func.grad(loss, argnums=argnums)(w[b] if weight_batched else w, indices[b], psw[b])
            for b in range(B)]
    expected = (tuple(torch.stack(t) for t in zip(*loop)) if mode == "sum" else torch.stack(loop))
    assert_same(actual, expected)
