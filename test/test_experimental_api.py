"""torchfunc.experimental against functorch.experimental: chunk_vmap's results, chunking and
randomness, its errors, and the re-exported names."""
import importlib.util
import inspect
import warnings

import expecttest
import pytest
import torch
import torch.func

import torchfunc.experimental as experimental
import torchfunc.forward
import torchfunc.jacobians
import torchfunc.modules
from torchfunc._engine import _C
from torchfunc.autodiff import grad
from torchfunc.experimental import chunk_vmap
from torchfunc.vmap import vmap

from helpers import assert_same, record_vmap_sizes

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import functorch.experimental as functorch_experimental
    from functorch.experimental import chunk_vmap as their_chunk_vmap


def A(*shape):
    return torch.randn(*shape)


CASES = {
    "unary": (torch.sin, {}, lambda: (A(7, 3),)),
    "reduction": (torch.sum, {}, lambda: (A(7, 3),)),
    "in_dims_none": (torch.add, dict(in_dims=(0, None)), lambda: (A(7, 3), A(3))),
    "in_dims_1": (torch.mv, dict(in_dims=(None, 1)), lambda: (A(2, 3), A(3, 7))),
    "out_dims_1": (torch.outer, dict(out_dims=1), lambda: (A(7, 2), A(7, 3))),
    "out_dims_negative": (torch.outer, dict(out_dims=-1), lambda: (A(7, 2), A(7, 3))),
    "tuple_outputs": (lambda a: (a.sum(0), a.t()), dict(out_dims=(0, 2)), lambda: (A(7, 2, 3),)),
    "dict_input": (lambda d: d["w"] @ d["b"], dict(in_dims=({"w": 0, "b": None},)),
                   lambda: ({"w": A(7, 2, 3), "b": A(3)},)),
}


@pytest.mark.parametrize("chunks", [1, 2, 3, 4, 7, 10])
@pytest.mark.parametrize("name", CASES)
def test_matches_functorch_chunk_vmap(name, chunks):
    func, options, make_args = CASES[name]
    args = make_args()
    expected = their_chunk_vmap(func, chunks=chunks, **options)(*args)
    assert_same(chunk_vmap(func, chunks=chunks, **options)(*args), expected)
    assert_same(chunk_vmap(func, chunks=chunks, **options)(*args), vmap(func, **options)(*args))


@pytest.mark.parametrize("batch,chunks", [(7, 1), (7, 2), (7, 3), (6, 4), (5, 3), (2, 5), (1, 3), (8, 8)])
def test_splits_like_torch_chunk(monkeypatch, batch, chunks):
    pushed = record_vmap_sizes(monkeypatch, _C)
    x = A(batch, 3)
    chunk_vmap(torch.sin, chunks=chunks)(x)
    assert pushed == [len(piece) for piece in torch.arange(batch).chunk(chunks)]


def test_kwargs_are_passed_unbatched():
    x, scale = A(5, 3), A(3)
    def f(a, *, scale, offset=0.0):
        return a * scale + offset
    assert_same(chunk_vmap(f, chunks=3)(x, scale=scale, offset=1.0),
                their_chunk_vmap(f, chunks=3)(x, scale=scale, offset=1.0))


@pytest.mark.parametrize("chunks", [1, 2, 3, 5])
@pytest.mark.parametrize("randomness", ["same", "different"])
def test_randomness_matches_functorch(randomness, chunks):
    f = lambda a: a + torch.rand(2)
    x = A(5, 2)
    torch.manual_seed(3)
    ours, ours_after = chunk_vmap(f, randomness=randomness, chunks=chunks)(x), torch.rand(3)
    torch.manual_seed(3)
    theirs, their_after = their_chunk_vmap(f, randomness=randomness, chunks=chunks)(x), torch.rand(3)
    assert_same(ours, theirs)
    assert_same(ours_after, their_after)  # the generator ends where functorch's does
    noise = ours - x
    if randomness == "same":  # every chunk sees the same draws
        for i in range(len(x)):
            torch.testing.assert_close(noise[i], noise[0])
    else:
        assert not torch.allclose(noise[0], noise[-1])


def test_randomness_error_raises():
    with pytest.raises(RuntimeError, match="random"):
        chunk_vmap(lambda a: a + torch.rand(2), chunks=2)(A(4, 2))


def test_under_grad():
    x = A(5, 3)
    f = lambda cv, g: g(lambda a: cv(lambda r: (r.sin() * r).sum(), chunks=2)(a).pow(2).sum())
    assert_same(f(chunk_vmap, grad)(x), f(their_chunk_vmap, torch.func.grad)(x))


def test_nested_inside_vmap():
    x = A(3, 5, 2)
    ours = vmap(chunk_vmap(torch.sum, chunks=2))(x)
    theirs = torch.func.vmap(their_chunk_vmap(torch.sum, chunks=2))(x)
    assert_same(ours, theirs)


# functorch's chunk_vmap fails on these (AssertionError / TypeError); ours gives vmap's results
VMAP_ONLY = {
    "batch_size_zero": (torch.sin, {}, lambda: (A(0, 3),)),
    "out_dims_none": (lambda a: (a * 2, 3), dict(out_dims=(0, None)), lambda: (A(5, 2),)),
    "out_dims_single_tuple": (torch.sin, dict(out_dims=(1,)), lambda: (A(5, 2),)),
}


@pytest.mark.parametrize("name", VMAP_ONLY)
def test_where_functorch_fails(name):
    func, options, make_args = VMAP_ONLY[name]
    args = make_args()
    with pytest.raises(Exception):
        their_chunk_vmap(func, chunks=2, **options)(*args)
    assert_same(chunk_vmap(func, chunks=2, **options)(*args), vmap(func, **options)(*args))


def test_wraps_function_metadata():
    def scale(a):
        """Doubles a."""
        return a * 2
    for chunks in (1, 3):
        wrapped = chunk_vmap(scale, chunks=chunks)
        assert wrapped.__name__ == "scale" and wrapped.__doc__ == "Doubles a."
        assert wrapped.__wrapped__ is scale


class TestChunkVmapErrors(expecttest.TestCase):
    def like_functorch(self, make, call=lambda f: f(torch.randn(4, 3))):
        with self.assertRaises(Exception) as theirs:
            call(make(their_chunk_vmap))
        with self.assertRaises(type(theirs.exception)) as ours:
            call(make(chunk_vmap))
        self.assertIn(str(theirs.exception), str(ours.exception))
        return str(ours.exception)

    def test_chunks_not_positive(self):
        self.assertExpectedInline(self.like_functorch(lambda cv: cv(torch.sin, chunks=0)), """chunk expects `chunks` to be greater than 0, got: 0; chunk_vmap(sin, ..., chunks=0): chunks is the number of chunks to split the batch into""")
        self.assertExpectedInline(self.like_functorch(lambda cv: cv(torch.sin, chunks=-2)), """chunk expects `chunks` to be greater than 0, got: -2; chunk_vmap(sin, ..., chunks=-2): chunks is the number of chunks to split the batch into""")

    def test_chunks_not_an_int(self):
        self.assertExpectedInline(self.like_functorch(lambda cv: cv(torch.sin, chunks=2.5)), """chunk(): argument 'chunks' (position 1) must be int, not float; chunk_vmap(sin, ..., chunks=2.5): chunks is the number of chunks to split the batch into""")

    def test_bad_randomness(self):
        self.assertExpectedInline(self.like_functorch(lambda cv: cv(torch.sin, randomness="sometimes"), call=lambda f: f), """Only allowed values for randomness are 'error', 'different', or 'same'. Got sometimes; chunk_vmap(sin, ..., randomness='sometimes')""")

    def test_input_errors_come_from_vmap(self):
        with self.assertRaises(ValueError) as ours:
            chunk_vmap(torch.sin, chunks=2)(3.0)
        with self.assertRaises(ValueError) as theirs:
            vmap(torch.sin)(3.0)
        self.assertEqual(str(ours.exception), str(theirs.exception))
        with self.assertRaises(ValueError) as ours:
            chunk_vmap(torch.add, chunks=2)(A(4, 3), A(5, 3))
        self.assertIn("Expected all tensors to have the same size in the mapped dimension", str(ours.exception))


# --- API surface --------------------------------------------------------------------------

def test_signature_matches_functorch():
    def parameters(func):
        return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]
    assert parameters(chunk_vmap) == parameters(their_chunk_vmap)
    assert chunk_vmap is not their_chunk_vmap and chunk_vmap.__module__ == "torchfunc.experimental"
    assert all(s in chunk_vmap.__doc__ for s in ("Args:", "Returns:", "Example"))


def test_reexports_are_torchfuncs_own():
    assert experimental.replace_all_batch_norm_modules_ is torchfunc.modules.replace_all_batch_norm_modules_
    assert experimental.jvp is torchfunc.forward.jvp
    assert experimental.jacfwd is torchfunc.jacobians.jacfwd
    assert experimental.hessian is torchfunc.jacobians.hessian
    for name in experimental.__all__:
        ours, theirs = getattr(experimental, name), getattr(functorch_experimental, name)
        assert ours is not theirs and ours.__module__.startswith("torchfunc."), name


def test_functionalize_only_once_its_module_exists():
    exists = importlib.util.find_spec("torchfunc.functionalize") is not None
    assert hasattr(experimental, "functionalize") == exists == ("functionalize" in experimental.__all__)
    assert set(experimental.__all__) - {"functionalize"} == {
        "chunk_vmap", "replace_all_batch_norm_modules_", "hessian", "jacfwd", "jvp"}
