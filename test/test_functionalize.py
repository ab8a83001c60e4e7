"""torchfunc.functionalize against torch.func.functionalize: results, input mutations,
traced graphs, compositions with every transform in both orders, errors."""
import inspect

import expecttest
import pytest
import torch
import torch.func
from torch.fx.experimental.proxy_tensor import make_fx

import torchfunc
from torchfunc._engine import _C
from torchfunc.functionalize import functionalize

from helpers import assert_same


def view_then_mutate(x):
    y = x.clone(memory_format=torch.contiguous_format)
    y.view(-1).add_(1)
    return y * 2


def mutates_input(x):
    x.mul_(2)
    x[0].add_(1)
    return x.sin()


def slices_and_scatter(x):
    y = torch.zeros(x.shape[0] + 2, *x.shape[1:], dtype=x.dtype)
    y[1:-1] = x
    y.narrow(0, 0, 1).fill_(3.0)
    return y.transpose(0, -1).cos()


def out_variant(x):
    out = torch.empty_like(x)
    torch.sin(x, out=out)
    out.unsqueeze_(0)
    return out.squeeze(0) + x


def captured_read(x):
    return x + CAPTURED.view(-1)[: x.shape[-1]]


def returns_view_of_input(x):
    return x.unsqueeze(0)[0, 1:], x.t()


CAPTURED = torch.arange(12.0)
FUNCS = [view_then_mutate, mutates_input, slices_and_scatter, out_variant, captured_read,
         returns_view_of_input]


def _inputs():
    return [torch.randn(3, 4), torch.randn(3, 4, dtype=torch.float64),
            torch.randn(4, 3).t(), torch.randn(3, 4).contiguous(memory_format=torch.contiguous_format)]


@pytest.mark.parametrize("remove", ["mutations", "mutations_and_views"])
@pytest.mark.parametrize("func", FUNCS, ids=lambda f: f.__name__)
def test_matches_torch_func_and_eager(func, remove):
    for x in _inputs():
        x_ref, x_ours, x_eager = x.clone(), x.clone(), x.clone()
        expected = torch.func.functionalize(func, remove=remove)(x_ref)
        actual = functionalize(func, remove=remove)(x_ours)
        assert_same(actual, expected)
        assert_same(actual, func(x_eager))
        torch.testing.assert_close(x_ours, x_ref)  # the input mutation reached the caller
        torch.testing.assert_close(x_ours, x_eager)


def test_zero_size_and_0_dim_inputs():
    for x in (torch.zeros(0, 3), torch.tensor(2.0)):
        f = (lambda a: a.add_(1) * 2)
        a, b = x.clone(), x.clone()
        assert_same(functionalize(f)(a), torch.func.functionalize(f)(b))
        assert_same(a, b)


@pytest.mark.parametrize("remove", ["mutations", "mutations_and_views"])
@pytest.mark.parametrize("func", [view_then_mutate, mutates_input, slices_and_scatter, out_variant],
                         ids=lambda f: f.__name__)
def test_traced_graph_matches_torch_func(func, remove):
    x = torch.randn(3, 4)
    expected = make_fx(torch.func.functionalize(func, remove=remove))(x.clone()).code
    actual = make_fx(functionalize(func, remove=remove))(x.clone()).code
    assert actual == expected
    inplace = [line for line in actual.splitlines() if "_." in line and "copy_" not in line]
    assert not inplace, inplace  # no mutation is left but the copy back into the input


def _loss(a):
    b = a.clone()
    b.view(-1).mul_(a.view(-1))
    b.add_(1)
    return (b.sin() * a).sum()


def _vec(a):
    b = a.clone()
    b.view(-1).mul_(a.view(-1))
    return b.sin()


COMPOSITIONS = {
    "vmap(functionalize)": lambda lib, fz, x: lib.vmap(fz(_vec))(x),
    "functionalize(vmap)": lambda lib, fz, x: fz(lib.vmap(_vec))(x),
    "grad(functionalize)": lambda lib, fz, x: lib.grad(fz(_loss))(x[0]),
    "functionalize(grad)": lambda lib, fz, x: fz(lib.grad(_loss))(x[0]),
    "jvp(functionalize)": lambda lib, fz, x: lib.jvp(fz(_loss), (x[0],), (x[1],)),
    "functionalize(jvp)": lambda lib, fz, x: fz(lambda a, t: lib.jvp(_loss, (a,), (t,)))(x[0], x[1]),
    "jacrev(functionalize)": lambda lib, fz, x: lib.jacrev(fz(_vec))(x[0]),
    "functionalize(jacrev)": lambda lib, fz, x: fz(lib.jacrev(_vec))(x[0]),
    "jacfwd(functionalize)": lambda lib, fz, x: lib.jacfwd(fz(_vec))(x[0]),
    "functionalize(jacfwd)": lambda lib, fz, x: fz(lib.jacfwd(_vec))(x[0]),
    "vmap(grad(functionalize))": lambda lib, fz, x: lib.vmap(lib.grad(fz(_loss)))(x),
    "functionalize(vmap(grad))": lambda lib, fz, x: fz(lib.vmap(lib.grad(_loss)))(x),
    "hessian(functionalize)": lambda lib, fz, x: lib.hessian(fz(_loss))(x[0]),
}


@pytest.mark.parametrize("name", COMPOSITIONS)
def test_compositions_match_torch_func(name):
    x = torch.randn(4, 2, 3)
    expected = COMPOSITIONS[name](torch.func, torch.func.functionalize, x)
    actual = COMPOSITIONS[name](torchfunc, functionalize, x)
    assert_same(actual, expected)


def test_mutating_a_batched_input_under_vmap_reaches_the_caller():
    x, y = torch.randn(4, 3), None
    y = x.clone()
    torchfunc.vmap(functionalize(mutates_input))(x)
    torch.func.vmap(torch.func.functionalize(mutates_input))(y)
    torch.testing.assert_close(x, y)


class TestErrors(expecttest.TestCase):
    def test_invalid_remove(self):
        with self.assertRaises(RuntimeError) as theirs:
            torch.func.functionalize(torch.sin, remove="views")
        with self.assertRaises(RuntimeError) as ours:
            functionalize(torch.sin, remove="views")
        self.assertEqual(str(ours.exception), str(theirs.exception))

    def test_nested_functionalize(self):
        with self.assertRaises(RuntimeError) as ours:
            functionalize(functionalize(view_then_mutate))(torch.randn(2))
        self.assertExpectedInline(str(ours.exception), """torchfunc.functionalize was called inside another functionalize: nested functionalize levels are not supported (torch's functionalization kernels cannot tell two levels' tensors apart). One functionalize around the whole composition removes the same mutations.""")
        self.assertEqual(_C.stack_depth(), 0)

    def test_exception_inside_leaves_no_level(self):
        def boom(x):
            x.add_(1)
            raise ValueError("boom")
        with self.assertRaisesRegex(ValueError, "boom"):
            functionalize(boom)(torch.randn(2))
        self.assertEqual(_C.stack_depth(), 0)


def test_signature_and_own_object():
    def params(f):
        return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]
    assert params(functionalize) == params(torch.func.functionalize)
    assert functionalize is not torch.func.functionalize
    assert functionalize(view_then_mutate).__name__ == "view_then_mutate"


def test_tensor_from_data_inside_functionalize_is_lifted_not_crashed():
    """NOTE [torch keeps functorch out]: torch.tensor(data) under functionalize (and grad
    of it) used to write its values into a FunctionalTensorWrapper with no data and
    kill the process; run in a subprocess so that a regression is a failure."""
    from helpers import run_python
    code = (
        "import torch, torchfunc as F\n"
        "f = lambda x: (x * torch.tensor([1., 2., 3.])).sum()\n"
        "print(F.grad(F.functionalize(f))(torch.ones(3)).tolist())\n"
        "print(F.functionalize(lambda x: torch.tensor([1., 2.]).add_(1) + x)(torch.ones(2)).tolist())\n"
        "print(F.vmap(F.functionalize(lambda x: x + torch.tensor(2.)))(torch.ones(2)).tolist())\n")
    assert run_python(code).split("\n")[:3] == ["[1.0, 2.0, 3.0]", "[3.0, 4.0]", "[3.0, 3.0]"]
