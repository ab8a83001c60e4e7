"""torchfunc.vmap against torch.func.vmap: results, structures, chunking, randomness,
error messages and level hygiene."""
import functools
import inspect

import expecttest
import pytest
import torch
import torch.func

from torchfunc._engine import _C
from torchfunc.autodiff import grad
from torchfunc.vmap import vmap

from helpers import Point, assert_same


# --- results match torch.func.vmap -----------------------------------------------------------

def A(*shape):
    return torch.randn(*shape)


CASES = {
    "unary": (torch.sin, {}, lambda: (A(4, 3),)),
    "binary_broadcast": (torch.mul, {}, lambda: (A(4, 3), A(4, 1))),
    "in_dims_tuple": (torch.mul, dict(in_dims=(1, 0)), lambda: (A(3, 4), A(4, 3))),
    "in_dims_none": (torch.add, dict(in_dims=(0, None)), lambda: (A(4, 3), A(3))),
    "in_dims_negative": (torch.mv, dict(in_dims=(-1, None)), lambda: (A(2, 3, 5), A(3))),
    "nested_in_dims": (lambda a, pair: a * pair[0] + pair[1],
                       dict(in_dims=(0, (1, None))), lambda: (A(4, 3), (A(3, 4), A(3)))),
    "dict_input": (lambda d: d["w"] @ d["b"], dict(in_dims=({"w": 0, "b": None},)),
                   lambda: ({"w": A(4, 2, 3), "b": A(3)},)),
    "list_input": (lambda xs: xs[0] - xs[1], {}, lambda: ([A(4, 3), A(4, 3)],)),
    "namedtuple_input": (lambda p: p.x * p.y, {}, lambda: (Point(A(4, 2), A(4, 2)),)),
    "out_dims_int": (torch.outer, dict(out_dims=1), lambda: (A(4, 2), A(4, 3))),
    "out_dims_negative": (torch.outer, dict(out_dims=-1), lambda: (A(4, 2), A(4, 3))),
    "out_dims_tuple": (lambda a: (a.sum(0), a.t()), dict(out_dims=(0, 2)), lambda: (A(4, 2, 3),)),
    "out_dims_single_tuple": (torch.sin, dict(out_dims=(1,)), lambda: (A(4, 2),)),
    "out_dims_none_nontensor": (lambda a: (a * 2, "tag", 3), dict(out_dims=(0, None, None)),
                                lambda: (A(4, 2),)),
    "out_dims_none_unbatched": (lambda a, b: (a + b, b),
                                dict(in_dims=(0, None), out_dims=(0, None)),
                                lambda: (A(4, 2), A(2))),
    "dict_output": (lambda a: {"s": a.sum(), "c": a.cos()}, dict(out_dims={"s": 0, "c": 1}),
                    lambda: (A(4, 2),)),
    "unbatched_output_expanded": (lambda a, b: b * 2, dict(in_dims=(0, None)),
                                  lambda: (A(4, 2), A(3))),
    "reduction_and_view": (lambda a: a.view(2, 3).sum(-1), {}, lambda: (A(5, 6),)),
    "batch_size_zero": (torch.sin, {}, lambda: (A(0, 3),)),
    # NOTE [vmap's fast path for flat inputs and outputs]: unmapped non-Tensor arguments,
    # and outputs of plain dicts, lists and nested tuples with an int out_dims.
    "unmapped_dict_and_scalar": (lambda p, x, k: {"y": x @ p["w"] * k, "n": [x.sum(), (x.cos(),)]},
                                 dict(in_dims=(None, 0, None)),
                                 lambda: ({"w": A(3, 2), "tag": "t"}, A(4, 3), 2.0)),
    "unmapped_namedtuple": (lambda p, x: (x * p.x, x + p.y), dict(in_dims=(None, 0), out_dims=1),
                            lambda: (Point(A(3), A(3)), A(4, 3))),
    "output_list_negative_out_dim": (lambda a: [a, a.sum()], dict(out_dims=-1),
                                     lambda: (A(4, 3),)),
    "output_empty_dict_and_none": (lambda a: ({}, a), {}, lambda: (A(4, 3),)),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("chunk_size", [None, 1, 3, 100])
def test_matches_torch_func(name, chunk_size):
    func, options, make_args = CASES[name]
    args = make_args()
    expected = torch.func.vmap(func, **options)(*args)
    assert_same(vmap(func, chunk_size=chunk_size, **options)(*args), expected)


def test_unmapped_containers_are_copies_as_in_torch_func():
    # torch.func flattens and unflattens its inputs, so a function that changes an unmapped
    # dict or list changes a copy, not the caller's.
    def f(params, x):
        params["w"] = params["w"] * 2
        params["extra"].append(1)
        return x * params["w"]

    ours, theirs = ({"w": torch.ones(3), "extra": []} for _ in range(2))
    x = A(4, 3)
    assert_same(vmap(f, in_dims=(None, 0))(ours, x), torch.func.vmap(f, in_dims=(None, 0))(theirs, x))
    assert ours.keys() == theirs.keys() == {"w", "extra"}
    assert_same(ours, theirs)
    assert ours["extra"] == theirs["extra"] == []


def test_kwargs_are_passed_unbatched():
    x, scale = A(4, 3), A(3)
    def f(a, *, scale, offset=0.0):
        return a * scale + offset
    assert_same(vmap(f)(x, scale=scale, offset=1.0), torch.func.vmap(f)(x, scale=scale, offset=1.0))


def test_nested_vmap_matches_torch_func():
    x, y, v = A(2, 3, 5), A(5, 2, 3), A(5)
    inner = lambda a, b: torch.dot(a, b)
    expected = torch.func.vmap(torch.func.vmap(inner, in_dims=(0, None)), in_dims=(0, None))(x, v)
    assert_same(vmap(vmap(inner, in_dims=(0, None)), in_dims=(0, None))(x, v), expected)
    expected = torch.func.vmap(torch.func.vmap(inner), in_dims=(2, 0))(x, y)
    assert_same(vmap(vmap(inner), in_dims=(2, 0))(x, y), expected)


def test_inner_vmap_may_return_outer_batched_tensor_with_out_dims_none():
    x, y = A(3, 2), A(5)
    # The inner result depends only on the outer level: out_dims=None is correct there.
    out = vmap(lambda a: vmap(lambda b: a * 2, out_dims=None)(y))(x)
    assert_same(out, x * 2)


def test_engine_receives_non_negative_dims(monkeypatch):
    seen = []
    def spy(name):
        real = getattr(_C, name)
        def record(tensor, *args):
            seen.append((name, args[0] if name == "add_batch_dim" else args[-1]))
            return real(tensor, *args)
        monkeypatch.setattr(_C, name, record)
    spy("add_batch_dim")
    spy("remove_batch_dim")
    vmap(torch.outer, in_dims=(-1, -2), out_dims=-1)(A(2, 4), A(4, 3))
    assert seen == [("add_batch_dim", 1), ("add_batch_dim", 0), ("remove_batch_dim", 2)]


def test_vmap_of_grad_matches_torch_func():
    x = A(4, 3)
    f = lambda a: (a.sin() * a).sum()
    assert_same(vmap(grad(f))(x), torch.func.vmap(torch.func.grad(f))(x))


def test_signature_matches_torch_func():
    def parameters(func):
        return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]
    assert parameters(vmap) == parameters(torch.func.vmap)


def test_wraps_function_metadata():
    def scale(a):
        """Doubles a."""
        return a * 2
    wrapped = vmap(scale)
    assert wrapped.__name__ == "scale" and wrapped.__doc__ == "Doubles a."
    assert wrapped.__wrapped__ is scale


def test_partial_and_module_are_named():
    partial = functools.partial(torch.add, alpha=2)
    with pytest.raises(ValueError, match=r"vmap\(functools.partial\(add, \.\.\.\), in_dims"):
        vmap(partial, in_dims=[0])(A(3))
    with pytest.raises(ValueError, match=r"vmap\(Linear\(in_features=3"):
        vmap(torch.nn.Linear(3, 2), in_dims=[0])(A(4, 3))


# --- chunking and randomness ------------------------------------------------------------------

@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5])
def test_chunks_with_same_randomness_share_draws(chunk_size):
    f = lambda a: a + torch.rand(2)
    x = A(5, 2)
    torch.manual_seed(1)
    unchunked = vmap(f, randomness="same")(x)
    torch.manual_seed(1)
    chunked = vmap(f, randomness="same", chunk_size=chunk_size)(x)
    assert_same(chunked, unchunked)
    noise = unchunked - x
    torch.testing.assert_close(noise, noise[:1].expand_as(noise))


def test_different_randomness_draws_per_example():
    noise = vmap(lambda a: a + torch.rand(()), randomness="different")(torch.zeros(6))
    assert noise.unique().numel() == 6


def test_error_randomness_refuses_random_ops():
    with pytest.raises(RuntimeError, match="randomness"):
        vmap(lambda a: a + torch.rand(()))(A(3))


def test_chunked_out_dims_none_returns_the_first_chunks_value():
    # torch.func.vmap fails here (torch.cat of ints); the unbatched value is well defined.
    out = vmap(lambda a: (a * 2, 7), out_dims=(0, None), chunk_size=2)(torch.ones(5))
    assert_same(out, (torch.full((5,), 2.0), 7))


# --- error messages -----------------------------------------------------------------------------

def _error(fn):
    with pytest.raises(Exception) as info:
        fn()
    return info.value


x3, m34 = torch.randn(3), torch.randn(3, 4)

# Messages torch.func gets right (design doc §4, graded ✓): same exception type, same text.
TORCH_PARITY = {
    "in_dim_out_of_range": lambda v: v(torch.sin, in_dims=2)(m34),
    "in_dim_on_non_tensor": lambda v: v(lambda a, b: a * b, in_dims=(0, 0))(x3, 2.0),
    "in_dims_list": lambda v: v(torch.sin, in_dims=[0])(x3),
    "batch_sizes_differ": lambda v: v(torch.add)(torch.randn(3), torch.randn(4)),
    "no_inputs": lambda v: v(lambda: torch.ones(2))(),
    "no_mapped_tensor": lambda v: v(torch.add, in_dims=None)(x3, x3),
    "returns_float": lambda v: v(lambda a: 3.0)(x3),
    "returns_batched_with_out_dims_none": lambda v: v(torch.sin, out_dims=None)(x3),
    "chunk_size_zero": lambda v: v(torch.sin, chunk_size=0),
}


@pytest.mark.parametrize("name", TORCH_PARITY)
def test_error_matches_torch_func(name):
    ours = _error(lambda: TORCH_PARITY[name](vmap))
    theirs = _error(lambda: TORCH_PARITY[name](torch.func.vmap))
    assert (type(ours), str(ours)) == (type(theirs), str(theirs))


class TestVmapErrors(expecttest.TestCase):
    """Our full messages: torch.func's text first where it raises the same error, then what
    we add (names, paths, the rewrite); ours alone where torch.func raises nothing."""

    def check(self, fn, exc_type=ValueError):
        with self.assertRaises(exc_type) as ctx:
            fn()
        return str(ctx.exception)

    def test_in_dims_too_many_entries(self):  # §4 #1
        self.assertExpectedInline(self.check(lambda: vmap(torch.mul, in_dims=(0, 0, 0))(x3, x3)), """vmap(mul, in_dims=(0, 0, 0), ...)(<inputs>): in_dims is not compatible with the structure of `inputs`. torchfunc: in_dims has 3 entries for 2 positional inputs.""")

    def test_in_dims_nested_mismatch(self):
        self.assertExpectedInline(self.check(lambda: vmap(lambda a, b: a, in_dims=(0, ([0, 0],)))(x3, ([x3, x3, x3],))), """vmap(<lambda>, in_dims=(0, ([0, 0],)), ...)(<inputs>): in_dims is not compatible with the structure of `inputs`. torchfunc: in_dims[1][0] has 2 entries for 3 elements in inputs[1][0].""")
        self.assertExpectedInline(self.check(lambda: vmap(lambda a: a, in_dims=((0, 0),))(x3)), """vmap(<lambda>, in_dims=((0, 0),), ...)(<inputs>): in_dims is not compatible with the structure of `inputs`. torchfunc: in_dims[0] is a tuple but inputs[0] is a Tensor.""")
        self.assertExpectedInline(self.check(lambda: vmap(lambda d: d["a"], in_dims=({"a": 0},))({"b": x3})), """vmap(<lambda>, in_dims=({'a': 0},), ...)(<inputs>): in_dims is not compatible with the structure of `inputs`. torchfunc: in_dims[0] has keys ['a'] but inputs[0] has keys ['b'].""")

    def test_out_dims_too_many_entries(self):  # §4 #7
        self.assertExpectedInline(self.check(lambda: vmap(lambda a: (a, a), out_dims=(0, 0, 0))(x3)), """vmap(<lambda>, ..., out_dims=(0, 0, 0))(<inputs>): out_dims is not compatible with the structure of `outputs`. torchfunc: out_dims has 3 entries for 2 outputs.""")
        self.assertExpectedInline(self.check(lambda: vmap(torch.sin, out_dims=(0, 0))(x3)), """vmap(sin, ..., out_dims=(0, 0))(<inputs>): out_dims is not compatible with the structure of `outputs`. torchfunc: out_dims is a tuple but outputs is a Tensor.""")

    def test_out_dim_out_of_range(self):  # §4 #8
        self.assertExpectedInline(self.check(lambda: vmap(torch.sin, out_dims=3)(x3), IndexError), """Dimension out of range (expected to be in range of [-1, 0], but got 3). torchfunc: vmap(sin, ..., out_dims=3)(<inputs>): out_dim=3 is out of range for the output of sin, which has 0 dims per example (1 with the mapped dim), so expected -1 <= out_dim < 1.""")
        self.assertExpectedInline(self.check(lambda: vmap(lambda a: (a, a.outer(a)), out_dims=(0, -4))(m34), IndexError), """Dimension out of range (expected to be in range of [-3, 2], but got -4). torchfunc: vmap(<lambda>, ..., out_dims=(0, -4))(<inputs>): out_dim=-4 is out of range for outputs[1] of <lambda>, which has 2 dims per example (3 with the mapped dim), so expected -3 <= out_dim < 3.""")

    def test_out_dims_not_an_int(self):  # §4 #9
        self.assertExpectedInline(self.check(lambda: vmap(torch.sin, out_dims="0")(x3)), """vmap(sin, ..., out_dims=0): `out_dims` must be an int, None or a python collection of ints representing where in the outputs the vmapped dimension should appear. torchfunc: got '0' (a str).""")

    def test_bad_randomness(self):  # §4 #20
        self.assertExpectedInline(self.check(lambda: vmap(torch.sin, randomness="foo"), RuntimeError), """Only allowed values for randomness are 'error', 'different', or 'same'. Got foo. torchfunc: vmap(sin, ..., randomness='foo'): 'error' refuses random operations, 'different' draws independently per example, 'same' draws once for all examples.""")

    def test_torch_func_around_torchfunc_is_refused(self):
        self.assertExpectedInline(self.check(lambda: torch.func.vmap(vmap(torch.sin))(m34), RuntimeError), """torchfunc.vmap was called inside a torch.func transform (torch.func.vmap at level 1). torchfunc and torch.func transforms cannot be nested inside each other, because each library's interpreter stack cannot see the other's wrapped tensors (BatchedTensor, GradTensor), which would give wrong results. Use one library for the whole composition: all torchfunc, or all torch.func.""")


# --- levels -------------------------------------------------------------------------------------

def test_levels_are_pushed_and_popped():
    seen = []
    def f(a):
        seen.append((_C.stack_depth(), _C.stack_kinds(), _C.current_level()))
        return a
    vmap(vmap(f))(m34)
    vmap(grad(lambda a: f(a).sum()))(m34)
    assert seen == [(2, ["vmap", "vmap"], 2), (2, ["vmap", "grad"], 2)]
    assert _C.current_level() is None


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_no_level_leaks_when_the_function_raises(chunk_size):
    def boom(a):
        raise KeyError("boom")
    with pytest.raises(KeyError):
        vmap(vmap(boom), chunk_size=chunk_size)(m34)
    assert _C.stack_depth() == 0
    with pytest.raises(ValueError):  # raised while unwrapping the outputs
        vmap(vmap(torch.sin, out_dims=5))(m34)
    assert _C.stack_depth() == 0


def test_escaped_batched_tensor_is_refused():  # §4 #52
    escaped = []
    vmap(lambda a: escaped.append(a) or a)(x3)
    with pytest.raises(RuntimeError, match=r"BatchedTensor .*(outside of the vmap that created "
                                           r"it|whose vmap has already exited)"):
        escaped[0] + 1


def test_escaped_batched_tensor_is_refused_in_a_new_vmap_at_the_same_level():  # §4 #53
    escaped = []
    vmap(lambda a: escaped.append(a) or a)(x3)
    with pytest.raises(RuntimeError, match=r"BatchedTensor .*(outside of the vmap that created "
                                           r"it|whose vmap has already exited)"):
        vmap(lambda a: a + escaped[0])(x3)
