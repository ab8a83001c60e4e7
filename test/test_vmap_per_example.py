"""vmap(..., chunk_size=1) runs func once per example on plain slices (NOTE [chunk_size=1
runs plain examples]): the way out for data-dependent code, which torch.func refuses."""
import expecttest
import pytest
import torch
import torch.func

import torchfunc
from torchfunc._engine import _C

X = torch.linspace(-2.0, 2.0, 12).reshape(4, 3)


def _loop(func, *args):
    return torch.stack([func(*(a[i] for a in args)) for i in range(args[0].shape[0])])


DATA_DEPENDENT = {
    "item": lambda t: t * t.sum().item(),
    "python_if": lambda t: t.sin() if t.sum() > 0 else t.cos(),
    "boolean_mask": lambda t: t[t > 0].sum(),
    "nonzero": lambda t: t.nonzero().shape[0] * t,
    "unique": lambda t: torch.unique(t.round()).numel() + t,
}


@pytest.mark.parametrize("name", DATA_DEPENDENT)
def test_data_dependent_code_works_and_matches_the_loop(name):
    func = DATA_DEPENDENT[name]
    torch.testing.assert_close(torchfunc.vmap(func, chunk_size=1)(X), _loop(func, X))
    with pytest.raises(RuntimeError):  # torch.func (and our batched vmap) refuse it
        torch.func.vmap(func, chunk_size=1)(X)
    with pytest.raises(RuntimeError, match="chunk_size=1"):  # our error names this way out
        torchfunc.vmap(func)(X)


@pytest.mark.parametrize("func", [torch.sin, lambda t: t.sum(), lambda t: t.outer(t)])
def test_valid_programs_match_torch_func(func):
    torch.testing.assert_close(torchfunc.vmap(func, chunk_size=1)(X), torch.func.vmap(func, chunk_size=1)(X))


def test_in_dims_out_dims_pytrees_and_kwargs():
    w = torch.randn(3)
    out = torchfunc.vmap(lambda d, v, *, scale: {"a": d["x"] * v * scale, "b": d["x"].sum()},
                         in_dims=({"x": 1}, None), out_dims={"a": 1, "b": 0}, chunk_size=1)(
        {"x": X.T.contiguous()}, w, scale=2.0)
    torch.testing.assert_close(out["a"], (X * w * 2.0).T)
    torch.testing.assert_close(out["b"], X.sum(1))
    same, per = torchfunc.vmap(lambda t: (torch.ones(2), t * 2), out_dims=(None, 0), chunk_size=1)(X)
    assert torch.equal(same, torch.ones(2)) and torch.equal(per, X * 2)


def test_randomness():
    with pytest.raises(RuntimeError, match="called random operation while in randomness error mode"):
        torchfunc.vmap(lambda t: torch.nn.functional.dropout(t, 0.5), chunk_size=1)(X)
    assert torch.equal(torchfunc.vmap(lambda t: torch.nn.functional.dropout(t, 0.0), chunk_size=1)(X), X)
    same = torchfunc.vmap(lambda t: t * 0 + torch.rand(3), randomness="same", chunk_size=1)(X)
    assert torch.equal(same, same[:1].expand_as(same))
    different = torchfunc.vmap(lambda t: t * 0 + torch.rand(3), randomness="different", chunk_size=1)(X)
    assert different.unique(dim=0).shape[0] == 4


def test_empty_batch():
    assert torchfunc.vmap(torch.sin, chunk_size=1)(torch.randn(0, 3)).shape == (0, 3)


def test_per_sample_gradients_through_data_dependent_code():
    w = torch.randn(3)

    def loss(w, x):
        y = x @ w
        return y.relu() if y.item() > 0 else -y  # data-dependent branch

    ours = torchfunc.vmap(torchfunc.grad(loss), in_dims=(None, 0), chunk_size=1)(w, X)
    expected = torch.stack([torch.func.grad(loss)(w, x) for x in X])
    torch.testing.assert_close(ours, expected)
    outer = torchfunc.grad(lambda w: torchfunc.vmap(lambda x: loss(w, x), chunk_size=1)(X).sum())(w)
    torch.testing.assert_close(outer, expected.sum(0))


def test_inside_another_vmap():
    scales = torch.tensor([1.0, -1.0])
    out = torchfunc.vmap(lambda s: torchfunc.vmap(lambda t: t.sum() * s, chunk_size=1)(X))(scales)
    torch.testing.assert_close(out, scales[:, None] * X.sum(1))


def test_no_level_leaks_after_an_error():
    with pytest.raises(RuntimeError):
        torchfunc.vmap(lambda t: t[: int(t.sum().item() > 0) + 1], chunk_size=1)(X)
    assert _C.stack_depth() == 0


class TestMessages(expecttest.TestCase):
    def test_outputs_of_different_shapes(self):
        with self.assertRaises(RuntimeError) as ctx:
            torchfunc.vmap(lambda t: t[t > 0], chunk_size=1)(X)
        self.assertExpectedInline(str(ctx.exception), """vmap(<lambda>, chunk_size=1): output 0 has a different shape per example ([(0,), (3,)]...), which cannot be stacked. Return one shape per example (pad, or reduce), or map over a nested tensor.""")

    def test_outputs_of_different_structures(self):
        with self.assertRaises(ValueError) as ctx:
            torchfunc.vmap(lambda t: (t,) if t.sum() > 0 else t, chunk_size=1)(X)
        self.assertExpectedInline(str(ctx.exception), """vmap(<lambda>, chunk_size=1): `<lambda>` returned outputs of different structures for examples 0 and 2; every example must return the same structure.""")
