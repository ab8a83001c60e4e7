"""Tensor methods that bypass the dispatcher (torchfunc/tensor_methods.py): tolist,
new_tensor and new see through our wrappers as torch.func's do through its own."""
import pytest
import torch
import torch.func

import torchfunc
from torchfunc._engine import _C

X = torch.arange(6.0).reshape(2, 3)


def test_tolist_reads_through_grad_tensors_and_refuses_batched_tensors():
    got = {}
    for lib in (torch.func, torchfunc):
        lib.grad(lambda a: got.setdefault(lib.__name__, a.tolist()) and a.sum())(X[0])
    assert got["torchfunc"] == got["torch.func"] == [0.0, 1.0, 2.0]
    for lib in (torch.func, torchfunc):
        with pytest.raises(RuntimeError, match="Cannot access data pointer of Tensor that doesn't have storage"):
            lib.vmap(lambda a: a.tolist() and a)(X)
        with pytest.raises(RuntimeError, match="Cannot access data pointer of Tensor that doesn't have storage"):
            lib.grad(lambda a: a.detach().numpy() and a.sum())(X[0])
    assert _C.stack_depth() == 0


METHODS = {
    "new_tensor_list": lambda a: a.new_tensor([1.0, 2.0, 3.0]),
    "new_tensor_tensor": lambda a: a.new_tensor(torch.ones(3, dtype=torch.float64)),
    "new_tensor_dtype": lambda a: a.new_tensor([1, 2, 3], dtype=torch.int32),
    "new_sizes": lambda a: a.new(3).fill_(2.0),
    "new_data": lambda a: a.new([1.0, 2.0, 3.0]),
}
TRANSFORMS = {
    "vmap": lambda lib, f: lib.vmap(lambda a: a * f(a).to(a.dtype))(X),
    "grad": lambda lib, f: lib.grad(lambda a: (a * f(a).to(a.dtype)).sum())(X[0]),
    "jvp": lambda lib, f: lib.jvp(lambda a: a * f(a).to(a.dtype), (X[0],), (torch.ones(3),)),
    "vmap_grad": lambda lib, f: lib.vmap(lib.grad(lambda a: (a * f(a).to(a.dtype)).sum()))(X),
    "jacrev": lambda lib, f: lib.jacrev(lambda a: a * f(a).to(a.dtype))(X[0]),
}


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("method", METHODS)
def test_new_tensor_and_new_match_torch_func(method, transform):
    expected = TRANSFORMS[transform](torch.func, METHODS[method])
    actual = TRANSFORMS[transform](torchfunc, METHODS[method])
    for e, a in zip(torch.utils._pytree.tree_leaves(expected), torch.utils._pytree.tree_leaves(actual)):
        torch.testing.assert_close(a, e)


def test_new_tensor_keeps_dtype_and_is_plain_outside():
    y = torch.zeros(2, dtype=torch.float64)
    assert y.new_tensor([1, 2]).dtype == torch.float64
    out = torchfunc.vmap(lambda a: a.new_tensor([1.0, 2.0]), out_dims=None)(y.expand(3, 2))
    assert out.dtype == torch.float64 and _C.wrapper_info(out) is None
