"""torch.autograd.Function under torchfunc's transforms (torchfunc/autograd_function.py).

* test_db: every Function of torch's autograd_function_db under vmap, grad, vjp, jvp,
  jacrev, jacfwd, vmap(grad), vmap(jvp) and grad(grad), against torch.func on the same
  input (results, or the same exception class) and, for vmap, against a loop; no op
  may take the per-example fallback.
* the routing itself: forward sees plain tensors, the user's backward/jvp/vmap are the
  ones used, setup_context runs per level, errors, dead GradTensors, custom ops.
"""
import expecttest
import numpy as np
import pytest
import torch
import torch.func
from torch.testing._internal.autograd_function_db import autograd_function_db
from torch.utils._pytree import tree_flatten

import torchfunc
from torchfunc._engine import _C

B = 3  # batch size of the vmap cases

DB = {info.name: info for info in autograd_function_db}


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _batched(x):
    return x.unsqueeze(0).expand(B, *x.shape).clone() + torch.randn(B, *x.shape, dtype=x.dtype)


def _is_float(a):
    return isinstance(a, torch.Tensor) and a.is_floating_point()


# Each case: (lib, op, args, kwargs) -> result. Differentiated/batched: the first arg.
def _vmap(lib, op, args, kw):
    in_dims = tuple(0 if _is_float(a) else None for a in args)
    return lib.vmap(lambda *a: op(*a, **kw), in_dims=in_dims)(
        *[_batched(a) if d == 0 else a for a, d in zip(args, in_dims)])


def _unary(op, args, kw):
    return lambda x: _first(op(x, *args[1:], **kw))


CASES = {
    "vmap": _vmap,
    "grad": lambda lib, op, args, kw: lib.grad(lambda x: _unary(op, args, kw)(x).sum())(args[0]),
    "vjp": lambda lib, op, args, kw: (lambda out, fn: (out, fn(torch.ones_like(out))))(
        *lib.vjp(_unary(op, args, kw), args[0])),
    "jvp": lambda lib, op, args, kw: lib.jvp(_unary(op, args, kw), (args[0],),
                                             (torch.ones_like(args[0]),)),
    "jacrev": lambda lib, op, args, kw: lib.jacrev(_unary(op, args, kw))(args[0]),
    "jacfwd": lambda lib, op, args, kw: lib.jacfwd(_unary(op, args, kw))(args[0]),
    "vmap_grad": lambda lib, op, args, kw: lib.vmap(
        lib.grad(lambda x: _unary(op, args, kw)(x).sum()))(_batched(args[0])),
    "vmap_jvp": lambda lib, op, args, kw: lib.vmap(
        lambda x: lib.jvp(_unary(op, args, kw), (x,), (torch.ones_like(x),)))(_batched(args[0])),
    "grad_grad": lambda lib, op, args, kw: lib.grad(
        lambda x: lib.grad(lambda y: _unary(op, args, kw)(y).sum())(x).sin().sum())(args[0]),
}


def _samples(info):
    for sample in info.sample_inputs("cpu", torch.float64, requires_grad=False):
        yield (sample.input, *sample.args), sample.kwargs


def _outcome(fn):
    torch.manual_seed(1)
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - the exception is the outcome compared
        return e


@pytest.mark.parametrize("transform", CASES)
@pytest.mark.parametrize("name", DB)
def test_db(name, transform):
    info, case = DB[name], CASES[transform]
    before = _C.fallback_count()
    for args, kw in _samples(info):
        expected = _outcome(lambda: case(torch.func, info.op, args, kw))
        actual = _outcome(lambda: case(torchfunc, info.op, args, kw))
        if isinstance(expected, Exception):
            # e.g. NumpyCubeNotComposable under vmap (no vmap staticmethod), or forward
            # mode through a Function whose Numpy forward supports no forward AD
            assert isinstance(actual, type(expected)), (expected, actual)
            assert str(expected).split(" For more details")[0] in str(actual)
            continue
        if isinstance(actual, Exception):
            raise actual
        flat_e, spec_e = tree_flatten(expected)
        flat_a, spec_a = tree_flatten(actual)
        assert spec_e == spec_a
        for e, a in zip(flat_e, flat_a):
            torch.testing.assert_close(a, e)
    assert _C.fallback_count() == before, "an op took the per-example fallback"


@pytest.mark.parametrize("name", [n for n in DB if n != "NumpyCubeNotComposableAutogradFunction"])
def test_db_vmap_against_loop(name):
    info = DB[name]
    for args, kw in _samples(info):
        in_dims = tuple(0 if _is_float(a) else None for a in args)
        batched = [_batched(a) if d == 0 else a for a, d in zip(args, in_dims)]
        actual = torchfunc.vmap(lambda *a: info.op(*a, **kw), in_dims=in_dims)(*batched)
        loop = [info.op(*[a[i] if d == 0 else a for a, d in zip(batched, in_dims)], **kw)
                for i in range(B)]
        flat_a, _ = tree_flatten(actual)
        per_example = [tree_flatten(out)[0] for out in loop]
        for j, a in enumerate(flat_a):
            torch.testing.assert_close(a, torch.stack([ex[j] for ex in per_example]))


# --- the routing ------------------------------------------------------------------------------

class NumpySin(torch.autograd.Function):
    """Forward in NumPy: it only works on plain tensors. Backward deliberately scaled by
    2, so a test can tell the custom backward from autograd's own formula."""
    seen = []

    @staticmethod
    def forward(x):
        NumpySin.seen.append((type(x), _C.wrapper_info(x)))
        return torch.from_numpy(np.sin(x.numpy()))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return 2 * g * x.cos()

    @staticmethod
    def jvp(ctx, t):
        x, = ctx.saved_tensors
        return 3 * t * x.cos()

    @staticmethod
    def vmap(info, in_dims, x):
        NumpySin.seen.append(("vmap", info.batch_size, info.randomness, in_dims))
        return NumpySin.apply(x), in_dims[0]


def test_forward_sees_plain_tensors_and_custom_rules_are_used():
    x = torch.randn(4, 3, dtype=torch.float64)
    NumpySin.seen.clear()
    g = torchfunc.vmap(torchfunc.grad(lambda a: NumpySin.apply(a).sum()), randomness="same")(x)
    torch.testing.assert_close(g, 2 * x.cos())
    assert ("vmap", 4, "same", (0,)) in NumpySin.seen
    assert all(seen[1] is None for seen in NumpySin.seen if seen[0] != "vmap")
    _, t = torchfunc.jvp(NumpySin.apply, (x,), (torch.ones_like(x),))
    torch.testing.assert_close(t, 3 * x.cos())


def test_custom_backward_twice_differentiated_through_the_levels():
    # grad(grad(f)): the outer level differentiates the custom backward (2 g cos x).
    x = torch.randn(5, dtype=torch.float64)
    gg = torchfunc.grad(lambda a: torchfunc.grad(lambda b: NumpySin.apply(b).sum())(a).sum())(x)
    torch.testing.assert_close(gg, -2 * x.sin())


class NoSetupContext(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2


class NoVmap(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return x * 2

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return g * 2


class TestErrors(expecttest.TestCase):
    def test_no_setup_context(self):
        for transform in (torchfunc.vmap, torchfunc.grad):
            with self.assertRaises(RuntimeError) as ours:
                transform(lambda x: NoSetupContext.apply(x).sum())(torch.randn(3))
            with self.assertRaises(RuntimeError) as theirs:
                getattr(torch.func, transform.__name__)(
                    lambda x: NoSetupContext.apply(x).sum())(torch.randn(3))
            self.assertIn(str(theirs.exception), str(ours.exception))
        self.assertExpectedInline(str(ours.exception), """In order to use an autograd.Function with functorch transforms (vmap, grad, jvp, jacrev, ...), it must override the setup_context staticmethod. For more details, please see https://pytorch.org/docs/main/notes/extending.func.html (torchfunc: NoSetupContext.apply was called inside torchfunc.grad at level 1; move the ctx-setting part of NoSetupContext.forward into a setup_context(ctx, inputs, output) staticmethod.)""")
        self.assertEqual(_C.stack_depth(), 0)

    def test_no_vmap_support(self):
        with self.assertRaises(RuntimeError) as ours:
            torchfunc.vmap(NoVmap.apply)(torch.randn(2, 3))
        with self.assertRaises(RuntimeError) as theirs:
            torch.func.vmap(NoVmap.apply)(torch.randn(2, 3))
        self.assertIn(str(theirs.exception), str(ours.exception))
        self.assertExpectedInline(str(ours.exception), """You tried to vmap over NoVmap, but it does not have vmap support. Please override and implement the vmap staticmethod or set generate_vmap_rule=True. For more details, please see https://pytorch.org/docs/main/notes/extending.func.html (torchfunc: NoVmap.apply was called inside torchfunc.vmap at level 1.)""")

    def test_vmap_staticmethod_returns_one_value(self):
        class OneReturn(NoVmap):
            @staticmethod
            def vmap(info, in_dims, x):
                return x * 2

        with self.assertRaises(RuntimeError) as theirs:
            torch.func.vmap(OneReturn.apply)(torch.randn(2, 3))
        with self.assertRaises(RuntimeError) as ours:
            torchfunc.vmap(OneReturn.apply)(torch.randn(2, 3))
        self.assertIn(str(theirs.exception), str(ours.exception))
        self.assertExpectedInline(str(ours.exception), """Expected the vmap staticmethod to have two returns, an output and out_dims with pytree structure compatible with the output. Got a <class 'torch.Tensor'> instead (torchfunc: OneReturn.vmap).""")

    def test_no_jvp_staticmethod(self):
        for lib in (torch.func, torchfunc):
            with self.assertRaisesRegex(NotImplementedError, "You must implement the jvp function"):
                lib.jvp(NoVmap.apply, (torch.randn(3),), (torch.randn(3),))


def test_unbatched_inputs_skip_the_vmap_level():
    # No input batched at the level: the vmap staticmethod is not called (torch.func too).
    NumpySin.seen.clear()
    y = torch.randn(3, dtype=torch.float64)
    out = torchfunc.vmap(lambda a: a + NumpySin.apply(y))(torch.zeros(2, 3, dtype=torch.float64))
    torch.testing.assert_close(out, y.sin().expand(2, 3))
    assert not any(seen[0] == "vmap" for seen in NumpySin.seen)


def test_mark_dirty_returns_the_input_object():
    class Double_(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return x.mul_(2)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.mark_dirty(inputs[0])

        @staticmethod
        def backward(ctx, g):
            return 2 * g

        generate_vmap_rule = True

    def f(a):
        b = a.clone()
        out = Double_.apply(b)
        assert out is b
        return out.sum()

    x = torch.randn(4, 3)
    torch.testing.assert_close(torchfunc.grad(f)(x[0]), torch.full((3,), 2.0))
    torch.testing.assert_close(torchfunc.vmap(torchfunc.grad(f))(x), torch.full((4, 3), 2.0))


def test_once_differentiable_backward():
    class Once(NoVmap):
        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, g):
            return g * 2

    x = torch.randn(3)
    torch.testing.assert_close(torchfunc.grad(lambda a: Once.apply(a).sum())(x), torch.full((3,), 2.0))
    # The gradient of a once_differentiable backward is a constant to the outer level.
    def gradgrad(lib):
        return lib.grad(lambda a: lib.grad(lambda b: (Once.apply(b) * b).sum())(a).sum())(x)
    torch.testing.assert_close(gradgrad(torchfunc), gradgrad(torch.func))


def test_vjp_fn_outside_the_level_with_a_function_in_backward():
    # The custom backward applies another Function to a saved GradTensor whose level is
    # dead by the time vjp_fn runs: it stands for its value, as with ops.
    class Exp(NoVmap):
        @staticmethod
        def forward(x):
            return x.exp()

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(output)

        @staticmethod
        def backward(ctx, g):
            y, = ctx.saved_tensors
            return Mul.apply(g, y)

    class Mul(NoVmap):
        @staticmethod
        def forward(a, b):
            return a * b

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * b, g * a

    x = torch.randn(3)
    out, vjp_fn = torchfunc.vjp(Exp.apply, x)
    torch.testing.assert_close(vjp_fn(torch.ones(3))[0], x.exp())


def test_custom_op_with_register_autograd_under_grad():
    # torch.func 2.13 refuses this (its custom_op autograd Function has no setup_context);
    # torchfunc applies the op's autograd kernel at the grad level like any op's.
    x = torch.randn(4, 3, dtype=torch.float64)
    g = torchfunc.vmap(torchfunc.grad(lambda a: _npsin(a).sum()))(x)
    torch.testing.assert_close(g, 2 * x.cos())
    torch.testing.assert_close(torchfunc.jacrev(_npsin)(x[0]), torch.diag(2 * x[0].cos()))


@torch.library.custom_op("torchfunc_test::npsin", mutates_args=())
def _npsin(x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.sin(x.numpy()))


@_npsin.register_fake
def _(x):
    return torch.empty_like(x)


def _npsin_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _npsin_backward(ctx, g):
    x, = ctx.saved_tensors
    return 2 * g * x.cos()  # scaled: tells the registered backward from autograd's


_npsin.register_autograd(_npsin_backward, setup_context=_npsin_setup)


# --- torch.library custom ops: register_vmap rules ------------------------------------------

_npsin_vmap_calls = []


@_npsin.register_vmap
def _npsin_vmap(info, in_dims, x):
    _npsin_vmap_calls.append((info.batch_size, info.randomness, in_dims))
    return _npsin(x.movedim(in_dims[0], 0)), 0


def test_custom_op_register_vmap_rule_is_used():
    x = torch.randn(3, 4, dtype=torch.float64)
    _npsin_vmap_calls.clear()
    _C.set_fallback_enabled(False)
    try:
        out = torchfunc.vmap(_npsin, in_dims=1, randomness="different")(x)
        g = torchfunc.vmap(torchfunc.grad(lambda a: _npsin(a).sum()))(x)
        nested = torchfunc.vmap(torchfunc.vmap(_npsin))(x.reshape(3, 2, 2))
    finally:
        _C.set_fallback_enabled(True)
    torch.testing.assert_close(out, x.sin().t())
    torch.testing.assert_close(g, 2 * x.cos())
    torch.testing.assert_close(nested, x.reshape(3, 2, 2).sin())
    assert (4, "different", (1,)) in _npsin_vmap_calls
    assert torch.func.vmap(_npsin, in_dims=1)(x).shape == out.shape  # torch.func's rule too


torch.library.define("torchfunc_test::scale", "(Tensor x, float s) -> Tensor")


@torch.library.impl("torchfunc_test::scale", "cpu")
def _scale(x, s):
    return x * s


_scale_vmap_calls = []


@torch.library.register_vmap("torchfunc_test::scale")
def _scale_vmap(info, in_dims, x, s):
    _scale_vmap_calls.append(in_dims)
    return x * s, in_dims[0]


def test_library_register_vmap_on_a_defined_op():
    x = torch.randn(4, 3)
    _scale_vmap_calls.clear()
    _C.set_fallback_enabled(False)
    try:
        out = torchfunc.vmap(lambda a: torch.ops.torchfunc_test.scale(a, 2.0), in_dims=1)(x)
        # no input batched at the level: the op runs below it, the rule is not called
        same = torchfunc.vmap(lambda a: a + torch.ops.torchfunc_test.scale(x[0], 3.0))(x)
    finally:
        _C.set_fallback_enabled(True)
    torch.testing.assert_close(out, 2 * x.t())
    torch.testing.assert_close(same, x + 3 * x[0])
    assert _scale_vmap_calls == [(1, None)]


def test_register_vmap_rule_with_a_bad_return():
    torch.library.define("torchfunc_test::bad", "(Tensor x) -> Tensor")
    torch.library.impl("torchfunc_test::bad", "cpu", lambda x: x.clone())
    torch.library.register_vmap("torchfunc_test::bad", lambda info, in_dims, x: x)
    with pytest.raises(RuntimeError, match="Expected the vmap staticmethod to have two returns"):
        torchfunc.vmap(torch.ops.torchfunc_test.bad)(torch.randn(2, 3))
    assert _C.stack_depth() == 0
