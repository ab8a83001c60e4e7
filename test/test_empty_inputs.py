"""Empty, zero-size and 0-dim inputs through every transform, against torch.func."""
import pytest
import torch
import torch.func

import torchfunc

from helpers import assert_same

CASES = {
    "jacfwd_empty_input": lambda L: L.jacfwd(torch.sin)(torch.randn(0, 3)),
    "jacrev_empty_input": lambda L: L.jacrev(torch.sin)(torch.randn(0, 3)),
    "jacfwd_empty_output": lambda L: L.jacfwd(lambda x: x[:0])(torch.randn(3)),
    "jacrev_empty_output": lambda L: L.jacrev(lambda x: x[:0])(torch.randn(3)),
    "jacfwd_two_args_one_empty": lambda L: L.jacfwd(lambda a, b: a.sum() + b.sum(), argnums=(0, 1))(
        torch.randn(0), torch.randn(2)),
    "hessian_empty": lambda L: L.hessian(lambda x: x.sum())(torch.randn(0)),
    "jacfwd_0dim": lambda L: L.jacfwd(torch.sin)(torch.tensor(1.0)),
    "jacrev_0dim": lambda L: L.jacrev(torch.sin)(torch.tensor(1.0)),
    "hessian_0dim": lambda L: L.hessian(torch.sin)(torch.tensor(1.0)),
    "jvp_empty": lambda L: L.jvp(torch.sin, (torch.randn(0, 3),), (torch.randn(0, 3),)),
    "vjp_empty": lambda L: L.vjp(torch.sin, torch.randn(0, 3))[1](torch.randn(0, 3)),
    "grad_empty": lambda L: L.grad(lambda x: x.sum())(torch.randn(0, 3)),
    "grad_0dim": lambda L: L.grad(torch.sin)(torch.tensor(0.5)),
    "vmap_zero_batch": lambda L: L.vmap(torch.sin)(torch.randn(0, 3)),
    "vmap_zero_size_examples": lambda L: L.vmap(lambda x: x.sum(0))(torch.randn(2, 0, 3)),
    "vmap_0dim_examples": lambda L: L.vmap(lambda x: x * 2)(torch.randn(4)),
    "vmap_grad_zero_batch": lambda L: L.vmap(L.grad(lambda x: x.sin().sum()))(torch.randn(0, 3)),
    "vmap_jacrev_zero_size_example": lambda L: L.vmap(L.jacrev(torch.sin))(torch.randn(2, 0)),
    "vmap_jacfwd_zero_size_example": lambda L: L.vmap(L.jacfwd(torch.sin))(torch.randn(2, 0)),
    "functionalize_empty": lambda L: L.functionalize(lambda x: x.add_(1))(torch.randn(0, 2)),
}


@pytest.mark.parametrize("name", CASES)
def test_matches_torch_func(name):
    torch.manual_seed(0)
    expected = CASES[name](torch.func)
    torch.manual_seed(0)
    assert_same(CASES[name](torchfunc), expected)


@pytest.mark.parametrize("chunk_size", [1, 2])
def test_jacfwd_chunked_empty_input(chunk_size):
    out = torchfunc.jacfwd(torch.sin, chunk_size=chunk_size)(torch.randn(0, 3))
    assert_same(out, torch.func.jacfwd(torch.sin)(torch.randn(0, 3)))


@pytest.mark.parametrize("chunk_size", [1, 2])
def test_jacrev_chunked_empty_output(chunk_size):
    out = torchfunc.jacrev(lambda x: x[:0], chunk_size=chunk_size)(torch.randn(3))
    assert_same(out, torch.func.jacrev(lambda x: x[:0])(torch.randn(3)))
