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


@pytest.mark.parametrize("transform", ["vmap", "grad", "jvp", "functionalize"])
def test_requires_grad_inside_a_transform_is_refused_like_torch_func(transform):
    def run(lib):
        f = lambda a: (torch.ones(3).requires_grad_(), a.sum())[1]
        if transform == "vmap":
            return lib.vmap(f)(X)
        if transform == "grad":
            return lib.grad(f)(X[0])
        if transform == "jvp":
            return lib.jvp(f, (X[0],), (X[0],))
        return lib.functionalize(f)(X[0])

    with pytest.raises(RuntimeError) as theirs:
        run(torch.func)
    with pytest.raises(RuntimeError) as ours:
        run(torchfunc)
    assert str(theirs.value) in str(ours.value)
    assert _C.stack_depth() == 0
    assert torch.ones(2).requires_grad_().requires_grad  # outside: torch's own


# torch's legacy vmap would cast our BatchedTensors to its own type and crash the process:
# run each call in a subprocess, so that a crash is a failure, not the end of the run.
LEGACY = {
    "legacy_vmap_inside_vmap": "torchfunc.vmap(lambda a: V._vmap(torch.sin)(a))(torch.randn(2, 3))",
    "legacy_vmap_inside_grad": "torchfunc.grad(lambda a: V._vmap(torch.sin)(a).sum())(torch.randn(3))",
    "jacobian_vectorize_inside_vmap": "torchfunc.vmap(lambda a: torch.autograd.functional.jacobian("
                                      "torch.sin, a, vectorize=True).sum())(torch.randn(2, 3))",
    "hessian_vectorize_inside_grad": "torchfunc.grad(lambda a: torch.autograd.functional.hessian("
                                     "lambda b: b.sin().sum(), a, vectorize=True).sum())(torch.randn(3))",
}


@pytest.mark.parametrize("name", LEGACY)
def test_legacy_vmap_inside_transforms_raises_instead_of_crashing(name):
    from helpers import run_python
    code = ("import torch, torchfunc, torch._vmap_internals as V\n"
            "try:\n"
            f"    {LEGACY[name]}\n"
            "    print('NO ERROR')\n"
            "except RuntimeError as e:\n"
            "    print('RuntimeError:', e)\n"
            "assert torchfunc._C.stack_depth() == 0\n"
            "print(torch.autograd.functional.jacobian(torch.sin, torch.ones(2), vectorize=True).shape)\n")
    stdout = run_python(code)
    assert "RuntimeError:" in stdout and ("legacy vmap" in stdout or "requires_grad_" in stdout), stdout
    assert "torch.Size([2, 2])" in stdout  # outside the transforms it still works
