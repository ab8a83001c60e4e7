"""Empty, zero-size and 0-dim inputs through every transform, against torch.func."""
import pytest
import torch
import torch.func

import torch.nn.functional as F
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


EMPTY_BATCH_OPS = {
    "adaptive_avg_pool1d": (lambda t: F.adaptive_avg_pool1d(t, 5), (3, 8, 8)),
    "avg_pool2d": (lambda t: F.avg_pool2d(t, 2), (2, 3, 8, 8)),
    "conv2d": (lambda t: F.conv2d(t, torch.ones(4, 3, 3, 3)), (2, 3, 8, 8)),
    "max_pool1d": (lambda t: F.max_pool1d(t, 2), (3, 8)),
    "batch_norm_eval": (lambda t: F.batch_norm(t, torch.zeros(3), torch.ones(3)), (2, 3, 4)),
    "sdpa": (lambda t: F.scaled_dot_product_attention(t, t, t), (2, 5, 4)),
}


@pytest.mark.parametrize("name", EMPTY_BATCH_OPS)
def test_vmap_over_an_empty_batch_has_the_examples_output_shape(name):
    """NOTE [An empty batch]: rules that fold the batch into another dim cannot split an
    empty batch back out; the shape comes from the op's meta kernel instead (torch.func
    gives adaptive_avg_pool1d [0, 0, 8, 5] here, dropping the example's 3)."""
    func, example_shape = EMPTY_BATCH_OPS[name]
    expected = func(torch.randn(example_shape)).shape
    out = torchfunc.vmap(func)(torch.randn(0, *example_shape))
    assert out.shape == (0, *expected)
