"""Printing and inspecting wrapped tensors (torchfunc/debug.py) against torch.func."""
import inspect

import pytest
import torch
import torch.func

import torchfunc
from torchfunc._engine import _C

X = torch.arange(6.0).reshape(2, 3)
C = torch.tensor([1.5, -2.0])  # captured from outside the transforms


def _printed(lib, compose, show):
    """What `show(a)` returns inside the composition `compose(lib, f)` applied to X."""
    seen = []

    def f(a):
        seen.append(show(a))
        return a.sum()

    compose(lib, f)(X)
    return seen


COMPOSITIONS = {
    "vmap": lambda lib, f: lib.vmap(f),
    "grad": lambda lib, f: lambda x: lib.grad(f)(x[0]),
    "jvp": lambda lib, f: lambda x: lib.jvp(f, (x,), (torch.ones_like(x),)),
    "vmap_grad": lambda lib, f: lib.vmap(lib.grad(f)),
    "grad_vmap": lambda lib, f: lambda x: lib.grad(lambda y: lib.vmap(f)(y).sum())(x),
    "vmap_vmap_in_dims_1": lambda lib, f: lambda x: lib.vmap(lib.vmap(f), in_dims=1)(x.unsqueeze(0)),
    "jacrev": lambda lib, f: lambda x: lib.jacrev(lambda y: f(y).reshape(1))(x[0]),
    "vmap_jvp": lambda lib, f: lib.vmap(lambda x: lib.jvp(f, (x,), (x,))[1]),
}


@pytest.mark.parametrize("show", [repr, str, lambda a: f"{a}", lambda a: repr(a * 2 + C.sum())],
                         ids=["repr", "str", "format", "computed"])
@pytest.mark.parametrize("name", COMPOSITIONS)
def test_printing_matches_torch_func(name, show):
    compose = COMPOSITIONS[name]
    expected = _printed(torch.func, compose, show)
    assert _printed(torchfunc, compose, show) == expected
    assert "lvl=" in expected[0]


def test_print_statement_and_captured_tensors(capsys):
    for lib in (torch.func, torchfunc):
        lib.vmap(lambda a: print(a, C, C.dtype) or a)(X)
        lib.grad(lambda a: print(a, C) or a.sum())(X[0])
    out = capsys.readouterr().out
    half = len(out) // 2
    assert out[:half] == out[half:]
    assert "tensor([ 1.5000, -2.0000])" in out


def test_dead_grad_tensor_prints_like_torch_func():
    escaped = {}
    for lib in (torch.func, torchfunc):
        lib.grad(lambda a: escaped.setdefault(lib.__name__, a).sum())(X[0])
    assert repr(escaped["torchfunc"]) == repr(escaped["torch.func"])
    assert "lvl=-2" in repr(escaped["torchfunc"])
    assert escaped["torchfunc"].tolist() == X[0].tolist()


def test_plain_printing_unchanged():
    assert repr(X) == "tensor([[0., 1., 2.],\n        [3., 4., 5.]])"
    assert repr(torch.zeros(0, 2)) == "tensor([], size=(0, 2))"


@pytest.mark.parametrize("recurse", [True, False])
@pytest.mark.parametrize("name", COMPOSITIONS)
def test_debug_unwrap_matches_torch_func(name, recurse):
    def show(a):
        value = (torchfunc if _C.wrapper_info(a) is not None else torch.func).debug_unwrap(
            a, recurse=recurse)
        return repr(value) if recurse else (tuple(value.shape), value.dtype)
    assert _printed(torchfunc, COMPOSITIONS[name], show) == \
        _printed(torch.func, COMPOSITIONS[name], show)


def test_debug_unwrap_plain_and_signature():
    assert torchfunc.debug_unwrap(X) is X
    assert torchfunc.debug_unwrap(3) == 3
    assert inspect.signature(torchfunc.debug_unwrap) == inspect.signature(torch.func.debug_unwrap)
    assert torchfunc.debug_unwrap is not torch.func.debug_unwrap
