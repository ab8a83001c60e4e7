"""vmap over nested tensors, mapped over their nested dim (NOTE [vmap over nested tensors]).

Each case is checked against the eager loop over the components and, where torch.func
2.13 handles it, against torch.func (which returns the strided layout; ours keeps the
input's). `TORCH_FUNC_RAISES` lists the cases torch.func refuses, and is checked."""
import warnings

import expecttest
import pytest
import torch
import torch.nn.functional as F

import torchfunc
from torchfunc._engine import _C

warnings.filterwarnings("ignore", message=".*nested tensors is in prototype.*")
warnings.filterwarnings("ignore", message=".*nested batching rule.*")

LENGTHS = (2, 3, 1)


def _nt(*inner, lengths=LENGTHS, dtype=torch.float32, layout=torch.jagged, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nested.nested_tensor(
        [torch.randn(n, *inner, generator=g, dtype=dtype) for n in lengths], layout=layout)


def _loop(func, nt, *rest):
    return [func(c, *(r[i] for r in rest)) for i, c in enumerate(nt.unbind())]


def _check(out, expected):
    """`out` (nested or plain, batch dim 0) equals the list of per-example results."""
    pieces = out.unbind() if out.is_nested else out.unbind(0)
    assert len(pieces) == len(expected)
    for got, want in zip(pieces, expected):
        torch.testing.assert_close(got, want)


W = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))

CASES = {
    "sin": torch.sin,
    "add_scalar": lambda t: t + 1,
    "add_row": lambda t: t + torch.arange(4.0),
    "softmax_last": lambda t: t.softmax(-1),
    "softmax_ragged": lambda t: t.softmax(0),
    "log_softmax": lambda t: F.log_softmax(t, dim=-1),
    "sum_last": lambda t: t.sum(-1),
    "sum_ragged": lambda t: t.sum(0),
    "sum_all": lambda t: t.sum(),
    "mean_keepdim": lambda t: t.mean(-1, keepdim=True),
    "cat_last": lambda t: torch.cat([t, t.cos()], -1),
    "cat_ragged": lambda t: torch.cat([t, t], 0),
    "matmul": lambda t: t @ W,
    "linear": lambda t: F.linear(t, W.T, torch.ones(5)),
    "gram": lambda t: t.T @ t,
    "layer_norm": lambda t: F.layer_norm(t, (4,)),
    "transpose": lambda t: t.transpose(0, 1),
    "unsqueeze": lambda t: t.unsqueeze(0),
    "view_flat": lambda t: t.reshape(-1),
    "attention": lambda t: F.scaled_dot_product_attention(t[None], t[None], t[None])[0],
}


# torch.func has no nested rule for these view ops (nor a loop, for views).
TORCH_FUNC_RAISES = {"gram", "transpose", "unsqueeze", "view_flat", "attention"}


@pytest.mark.parametrize("name", CASES)
def test_matches_loop_and_torch_func(name):
    nt = _nt(4)
    func = CASES[name]
    out = torchfunc.vmap(func)(nt)
    assert out.is_nested and out.layout == (torch.jagged if out.unbind()[0].dim() else torch.strided)
    _check(out, _loop(func, nt))
    if name in TORCH_FUNC_RAISES:
        with pytest.raises(RuntimeError):
            torch.func.vmap(func)(nt)
    else:
        _check(out, list(torch.func.vmap(func)(nt).unbind()))


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex64])
def test_dtypes(dtype):
    nt = _nt(4, dtype=dtype)
    out = torchfunc.vmap(lambda t: t * t.sum(-1, keepdim=True))(nt)
    assert out.dtype == dtype
    _check(out, _loop(lambda t: t * t.sum(-1, keepdim=True), nt))


def test_output_shares_the_input_offsets():
    nt = _nt(4)
    out = torchfunc.vmap(torch.sin)(nt)
    assert out.shape == nt.shape  # the same nested int: j1 on both
    assert out.offsets() is nt.offsets()
    _check(out + nt, _loop(lambda t: t.sin() + t, nt))  # composes with the input eagerly


def test_new_ragged_lengths_get_their_own_nested_int():
    nt = _nt(4)
    out = torchfunc.vmap(lambda t: torch.cat([t, t], 0))(nt)
    assert [c.shape[0] for c in out.unbind()] == [2 * n for n in LENGTHS]
    assert out.shape[1] != nt.shape[1]


def test_ragged_dim_not_first():
    nt = _nt(4)
    out = torchfunc.vmap(lambda t: t.T)(nt)
    assert out.is_nested and [c.shape for c in out.unbind()] == [(4, n) for n in LENGTHS]


def test_mixed_with_dense_and_unmapped_inputs():
    nt = _nt(4)
    dense = torch.randn(3, 4)
    bias = torch.randn(4)
    func = lambda t, d, b: t * d + b  # noqa: E731
    out = torchfunc.vmap(func, in_dims=(0, 0, None))(nt, dense, bias)
    _check(out, [func(c, dense[i], bias) for i, c in enumerate(nt.unbind())])
    out = torchfunc.vmap(lambda d, t: t * d, in_dims=(1, 0))(dense.T.contiguous(), nt)
    _check(out, [c * dense[i] for i, c in enumerate(nt.unbind())])


def test_two_nested_inputs_and_pytrees():
    a, b = _nt(4), _nt(4, seed=3)
    out = torchfunc.vmap(lambda d: {"s": d["a"] * d["b"], "n": d["a"].norm()})({"a": a, "b": b})
    _check(out["s"], _loop(torch.mul, a, b.unbind()))
    _check(out["n"], _loop(torch.linalg.norm, a))
    assert out["n"].layout == torch.strided  # 0-dim examples: jagged cannot hold them


def test_outputs_of_one_shape_are_nested_too():
    nt = _nt(4)
    out = torchfunc.vmap(lambda t: t.sum(0))(nt)  # (4,) per example, as torch.func: nested
    assert out.is_nested and out.layout == torch.jagged
    _check(out, list(torch.func.vmap(lambda t: t.sum(0))(nt).unbind()))
    out, same = torchfunc.vmap(lambda t: (t.sin(), torch.ones(2)), out_dims=(0, None))(nt)
    assert out.is_nested and torch.equal(same, torch.ones(2))


def test_kwargs_pass_through():
    nt = _nt(4)
    out = torchfunc.vmap(lambda t, *, scale: t * scale)(nt, scale=3.0)
    _check(out, _loop(lambda t: t * 3.0, nt))


def test_module():
    lin = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    nt = _nt(4)
    _check(torchfunc.vmap(lin)(nt), _loop(lin, nt))


def test_grad_flows_back_to_the_nested_input():
    nt = _nt(4)
    nt.requires_grad_(True)
    torch.stack(torchfunc.vmap(lambda t: t.sin().sum())(nt).unbind()).sum().backward()
    _check(nt.grad, _loop(torch.cos, nt.detach()))


def test_composes_with_every_transform_inside():
    nt = _nt(4)
    f = lambda x: (x.sin() * x).sum()  # noqa: E731
    g = lambda x: x.sin().sum(0)  # noqa: E731 (a Jacobian ragged in one dim)
    cases = {
        "grad": (torchfunc.grad(f), torch.func.grad(f)),
        "jacrev": (torchfunc.jacrev(g), torch.func.jacrev(g)),
        "jacfwd": (torchfunc.jacfwd(g), torch.func.jacfwd(g)),
        "hessian": (lambda t: torchfunc.hessian(lambda w: (t @ w).sin().sum())(W[:, 0]),
                    lambda t: torch.func.hessian(lambda w: (t @ w).sin().sum())(W[:, 0])),
        "vmap": (torchfunc.vmap(torch.sin), torch.sin),
        "vmap_in_dims_1": (torchfunc.vmap(torch.sum, in_dims=1), lambda t: t.sum(0)),
        "jvp": (lambda t: torchfunc.jvp(torch.sin, (t,), (torch.ones_like(t),))[1], torch.cos),
    }
    for name, (ours, reference) in cases.items():
        _check(torchfunc.vmap(ours)(nt), _loop(reference, nt))


def test_inside_an_outer_vmap():
    nt = _nt(4)
    scales = torch.tensor([1.0, 2.0])
    out = torchfunc.vmap(lambda s: torchfunc.vmap(lambda t: (t * s).sum())(nt))(scales)
    expected = torch.stack([torch.stack([(c * s).sum() for c in nt.unbind()]) for s in scales])
    torch.testing.assert_close(out, expected)


def test_grad_of_a_loss_over_a_nested_batch():
    nt = _nt(4)
    w = torch.randn(4)
    loss = lambda w: torchfunc.vmap(lambda t: (t @ w).tanh().mean())(nt).sum()  # noqa: E731
    expected = torch.func.grad(lambda w: sum((c @ w).tanh().mean() for c in nt.unbind()))(w)
    torch.testing.assert_close(torchfunc.grad(loss)(w), expected)


def test_ragged_outputs_inside_another_transform_are_refused():
    nt = _nt(4)
    with pytest.raises(RuntimeError, match="a nested tensor cannot hold the transform's wrapped"):
        torchfunc.grad(lambda w: torchfunc.vmap(lambda t: t * w)(nt).sum())(torch.randn(4))


def test_strided_layout():
    nt = _nt(4, layout=torch.strided)
    out = torchfunc.vmap(lambda t: t.softmax(-1))(nt)
    assert out.layout == torch.strided and out.is_nested
    _check(out, _loop(lambda t: t.softmax(-1), nt))


def test_zero_length_components():
    nt = _nt(4, lengths=(0, 2, 0))
    _check(torchfunc.vmap(torch.sin)(nt), _loop(torch.sin, nt))
    _check(torchfunc.vmap(lambda t: t.sum(0))(nt), _loop(lambda t: t.sum(0), nt))


def test_randomness():
    nt = _nt(4)
    with pytest.raises(RuntimeError, match="called random operation while in randomness error mode"):
        torchfunc.vmap(lambda t: F.dropout(t, 0.5))(nt)
    same = torchfunc.vmap(lambda t: t * 0 + torch.rand(4), randomness="same")(nt)
    rows = torch.cat(same.unbind())
    assert torch.equal(rows, rows[:1].expand_as(rows))
    different = torchfunc.vmap(lambda t: t * 0 + torch.rand(()), randomness="different")(nt)
    firsts = torch.stack([c[0, 0] for c in different.unbind()])
    assert firsts.unique().numel() == len(LENGTHS)


def test_what_vmap_refuses_is_refused_per_example():
    nt = _nt(4)
    # Each example is a size-1 vmap, so its values are ones all "examples" share: .item()
    # works (NOTE [Data-dependent values that every example shares]).
    out = torchfunc.vmap(lambda t: t * t.sum().item())(nt)
    _check(out, _loop(lambda t: t * t.sum().item(), nt))
    captured = torch.zeros(4)
    with pytest.raises(RuntimeError, match="writes in place into a tensor that is not batched"):
        torchfunc.vmap(lambda t: captured.add_(t[0]))(nt)


def test_no_level_leaks_after_an_error():
    nt = _nt(4)
    captured = torch.zeros(4)
    with pytest.raises(RuntimeError):
        torchfunc.vmap(lambda t: captured.add_(t[0]))(nt)
    assert _C.current_level() is None


class TestMessages(expecttest.TestCase):
    def _message(self, func, *args, **kwargs):
        with self.assertRaises(Exception) as ctx:
            torchfunc.vmap(func, **kwargs)(*args)
        return f"{type(ctx.exception).__name__}: {ctx.exception}"

    def test_in_dim_not_the_nested_dim(self):
        self.assertExpectedInline(self._message(torch.sin, _nt(4), in_dims=1), """\
RuntimeError: Nested tensors can only be vmapped over dim=0, but got dim=1. torchfunc: vmap(sin, in_dims=...)(<inputs>): dim 0 is the nested dim; map over it, or transpose the nested tensor first.""")

    def test_ragged_in_two_dims_is_strided(self):
        nt = _nt(4)
        out = torchfunc.vmap(lambda t: t[:, None, :1] * t[None, :, :1])(nt)
        assert out.layout == torch.strided
        _check(out, _loop(lambda t: t[:, None, :1] * t[None, :, :1], nt))

    def test_out_dim_of_a_ragged_output(self):
        self.assertExpectedInline(self._message(torch.sin, _nt(4), out_dims=1), """RuntimeError: Nested tensors can only be vmapped over dim=0, but got dim=1. torchfunc: vmap(sin, ..., out_dims=1): an output of a vmap over a nested tensor is a nested tensor, whose nested dim is dim 0; use out_dims=0 for it.""")

    def test_different_ranks(self):
        self.assertExpectedInline(self._message(lambda t: t.sum() if t.shape[0] == 1 else t, _nt(4)), """ValueError: vmap(<lambda>)(<nested inputs>): the examples' outputs have different ranks ([0, 2]); a nested tensor needs one rank.""")

    def test_different_structures(self):
        self.assertExpectedInline(
            self._message(lambda t: (t,) if t.shape[0] == 1 else t, _nt(4)), """ValueError: vmap(<lambda>)(<nested inputs>): `<lambda>` returned outputs of different structures for examples 0 and 2 (a Tensor and a tuple of 1 items); every example must return the same structure.""")
