"""torchfunc.grad/grad_and_value/vjp/jacrev/hessian against torch.func: results,
structures, compositions, no_grad interactions, error messages and level hygiene."""
import inspect

import expecttest
import pytest
import torch
import torch.func

import torchfunc
from torchfunc._engine import _C
from torchfunc.autodiff import grad, grad_and_value, vjp
from torchfunc.forward import jvp, linearize
from torchfunc.jacobians import hessian, jacfwd, jacrev
from torchfunc.vmap import vmap

from helpers import Point, assert_same, record_vmap_sizes


def A(*shape):
    return torch.randn(*shape)


def f_scalar(a):
    return (a.sin() * a).sum()


def f_two(a, b):
    return (a * b.cos()).sum() + (a ** 2).sum()


# --- grad / grad_and_value ----------------------------------------------------------------------

GRAD_CASES = {
    "one_arg": (f_scalar, {}, lambda: (A(3),)),
    "argnums_1": (f_two, dict(argnums=1), lambda: (A(3), A(3))),
    "argnums_negative": (f_two, dict(argnums=-1), lambda: (A(3), A(3))),
    "argnums_tuple": (f_two, dict(argnums=(1, 0)), lambda: (A(3), A(3))),
    "dict_arg": (lambda p: (p["w"] @ p["b"]).tanh().sum(), {},
                 lambda: ({"w": A(2, 3), "b": A(3)},)),
    "namedtuple_arg": (lambda p: (p.x * p.y).sum(), {}, lambda: (Point(A(3), A(3)),)),
    "has_aux": (lambda a: (f_scalar(a), {"sin": a.sin()}), dict(has_aux=True), lambda: (A(3),)),
    "independent_input": (lambda a, b: (b * 2).sum(), {}, lambda: (A(3), A(3))),
    "output_independent_of_inputs": (lambda a: a.detach().sum(), {}, lambda: (A(3),)),
    "non_tensor_extra_arg": (lambda a, k: (a * k).sum(), {}, lambda: (A(3), 2.5)),
}


@pytest.mark.parametrize("name", GRAD_CASES)
@pytest.mark.parametrize("transform", ["grad", "grad_and_value"])
def test_grad_matches_torch_func(name, transform):
    func, options, make_args = GRAD_CASES[name]
    args = make_args()
    ours = {"grad": grad, "grad_and_value": grad_and_value}[transform]
    expected = getattr(torch.func, transform)(func, **options)(*args)
    assert_same(ours(func, **options)(*args), expected)


@pytest.mark.parametrize("transform", ["grad", "grad_and_value", "vjp", "jacrev", "jacfwd"])
def test_non_tensor_aux_is_refused_like_torch_func(transform):
    # Downstream test suites check for exactly torch.func's error here.
    x = A(3)
    f = lambda a: (a.sin().sum(), {"n": 3, "sin": a.sin()})
    for api in (torch.func, torchfunc):
        with pytest.raises(RuntimeError, match=r"^Expected tensors, got unsupported type <class 'int'>"):
            if transform == "vjp":
                api.vjp(f, x, has_aux=True)
            else:
                getattr(api, transform)(f, has_aux=True)(x)


def test_grad_kwargs_are_lifted_not_differentiated():
    x, w = A(3), A(3)
    f = lambda a, *, weight: (a * weight).sin().sum()
    assert_same(grad(f)(x, weight=w), torch.func.grad(f)(x, weight=w))


@pytest.mark.parametrize("composition", ["grad_grad", "vmap_grad", "grad_vmap", "vmap_grad_grad",
                                         "grad_grad_argnums"])
def test_grad_compositions_match_torch_func(composition):
    def build(vmap_, grad_):
        return {
            "grad_grad": lambda: grad_(grad_(lambda a: a.sin() * a ** 3))(torch.tensor(0.7)),
            "vmap_grad": lambda: vmap_(grad_(f_scalar))(X),
            "grad_vmap": lambda: grad_(lambda a: vmap_(torch.dot)(a, a.cos()).sum())(X),
            "vmap_grad_grad": lambda: vmap_(grad_(grad_(lambda a: a.sin() * a ** 3)))(X[0]),
            "grad_grad_argnums": lambda: grad_(lambda a, b: grad_(f_two, argnums=1)(a, b).sum(),
                                               argnums=(0, 1))(X[0], X[1]),
        }[composition]()
    X = A(4, 3)
    assert_same(build(vmap, grad), build(torch.func.vmap, torch.func.grad))


def test_grad_result_is_differentiable_by_plain_autograd():
    x_ours = A(3).requires_grad_()
    x_theirs = x_ours.detach().clone().requires_grad_()
    grad(f_scalar)(x_ours).sum().backward()
    torch.func.grad(f_scalar)(x_theirs).sum().backward()
    assert_same(x_ours.grad, x_theirs.grad)


# NOTE [grad and vjp interaction with no_grad] in torch/_functorch/eager_transforms.py.
def inner_no_grad(a):
    with torch.no_grad():
        c = a ** 2
    return (a - c).sum()


@pytest.mark.parametrize("outer_no_grad", [False, True])
def test_no_grad_inside_is_honoured_outside_ignored(outer_no_grad):
    x = A(3)
    def run(grad_, vjp_, jacrev_):
        def nested(a):  # a no_grad around an inner grad: its result is a constant
            with torch.no_grad():
                g = grad_(f_scalar)(a)
            return (g * a.sin()).sum()
        return (grad_(inner_no_grad)(x), vjp_(inner_no_grad, x)[1](torch.tensor(1.0))[0],
                grad_(nested)(x), jacrev_(nested)(x))
    with torch.set_grad_enabled(not outer_no_grad):
        ours = run(grad, vjp, jacrev)
        theirs = run(torch.func.grad, torch.func.vjp, torch.func.jacrev)
        assert torch.is_grad_enabled() is not outer_no_grad
    assert_same(ours, theirs)
    constant_g = x.sin() + x * x.cos()
    assert_same(ours, (torch.ones(3), torch.ones(3), constant_g * x.cos(), constant_g * x.cos()))


def test_grad_under_inference_mode():
    x = A(3)
    with torch.inference_mode():
        ours = grad(f_scalar)(x)
        assert torch.is_inference_mode_enabled()
    assert_same(ours, torch.func.grad(f_scalar)(x))


def test_saved_tensor_hooks_are_refused():
    def f(a):
        with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
            return (a * a).sum()
    with pytest.raises(RuntimeError, match=r"torchfunc\.\{grad, grad_and_value, vjp, jacrev, "
                                           r"hessian, linearize\} don't yet support saved tensor hooks"):
        grad(f)(A(3))


# --- vjp ---------------------------------------------------------------------------------------

VJP_CASES = {
    "single": (torch.sin, lambda: (A(3),), lambda: A(3)),
    "two_primals": (torch.matmul, lambda: (A(2, 3), A(3, 4)), lambda: A(2, 4)),
    "tuple_output": (lambda a: (a.sin(), a.cos().sum()), lambda: (A(3),), lambda: (A(3), A(()))),
    "dict_output": (lambda a, b: {"p": a * b, "s": a.sum()}, lambda: (A(3), A(3)),
                    lambda: {"p": A(3), "s": A(())}),
    "pytree_primal": (lambda d: d["w"].exp() * d["v"], lambda: ({"w": A(3), "v": A(3)},),
                      lambda: A(3)),
}


@pytest.mark.parametrize("name", VJP_CASES)
def test_vjp_matches_torch_func(name):
    func, make_primals, make_cotangents = VJP_CASES[name]
    primals, cotangents = make_primals(), make_cotangents()
    out, vjp_fn = vjp(func, *primals)
    expected_out, expected_vjp_fn = torch.func.vjp(func, *primals)
    assert_same(out, expected_out)
    assert_same(vjp_fn(cotangents), expected_vjp_fn(cotangents))
    assert_same(vjp_fn(cotangents), expected_vjp_fn(cotangents))  # the graph is retained


def test_vjp_has_aux():
    x = A(3)
    f = lambda a: (a.sin(), {"c": a.cos()})
    out, vjp_fn, aux = vjp(f, x, has_aux=True)
    expected_out, expected_vjp_fn, expected_aux = torch.func.vjp(f, x, has_aux=True)
    assert_same((out, aux, vjp_fn(x)), (expected_out, expected_aux, expected_vjp_fn(x)))


@pytest.mark.parametrize("grad_enabled", [True, False])
def test_vjp_fn_create_graph_defaults_to_grad_mode(grad_enabled):
    x = A(3).requires_grad_()
    results = []
    for vjp_ in (vjp, torch.func.vjp):
        _, vjp_fn = vjp_(torch.sin, x)
        with torch.set_grad_enabled(grad_enabled):
            results.append(vjp_fn(torch.ones(3))[0].requires_grad)
        results.append(vjp_fn(torch.ones(3), create_graph=False)[0].requires_grad)
    assert results == [grad_enabled, False, grad_enabled, False]


def test_vjp_fn_under_inference_mode():
    x = A(3)
    _, vjp_fn = vjp(torch.sin, x)
    with torch.inference_mode():
        result = vjp_fn(torch.ones(3))
    assert_same(result, (x.cos(),))
    assert not result[0].is_inference()


def test_vjp_fn_without_retain_graph_cannot_run_twice():  # §4 #37
    _, vjp_fn = vjp(torch.sin, A(3))
    vjp_fn(torch.ones(3), retain_graph=False)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        vjp_fn(torch.ones(3))


def test_vmap_of_vjp_fn_and_vjp_in_vmap():
    x, xs, cotangents = A(3), A(5, 3), A(5, 3)
    _, vjp_fn = vjp(torch.sin, x)
    _, expected_vjp_fn = torch.func.vjp(torch.sin, x)
    assert_same(vmap(vjp_fn)(cotangents), torch.func.vmap(expected_vjp_fn)(cotangents))
    per_example = lambda v_, vjp_: v_(lambda a, c: vjp_(torch.sin, a)[1](c)[0])
    assert_same(per_example(vmap, vjp)(xs, cotangents),
                per_example(torch.func.vmap, torch.func.vjp)(xs, cotangents))


# --- jacrev / hessian --------------------------------------------------------------------------

JACREV_CASES = {
    "unary": (torch.sin, {}, lambda: (A(3),)),
    "matrix_in_out": (lambda a: a @ a.t(), {}, lambda: (A(2, 3),)),
    "argnums_1": (f_two, dict(argnums=1), lambda: (A(3), A(3))),
    "argnums_tuple": (lambda a, b: a * b.sum(), dict(argnums=(0, 1)), lambda: (A(3), A(2))),
    "dict_arg": (lambda d: d["w"] @ d["b"], {}, lambda: ({"w": A(2, 3), "b": A(3)},)),
    "dict_arg_argnums_tuple": (lambda d, y: d["w"] * y, dict(argnums=(0, 1)),
                               lambda: ({"w": A(3)}, A(3))),
    "tuple_output": (lambda a: (a.sin(), a.sum()), {}, lambda: (A(3),)),
    "dict_output": (lambda a, b: {"p": a * b, "q": (a @ b).unsqueeze(0)}, dict(argnums=(0, 1)),
                    lambda: (A(3), A(3))),
    "scalar_output": (f_scalar, {}, lambda: (A(4),)),
    "has_aux": (lambda a: (a.exp(), a.sum()), dict(has_aux=True), lambda: (A(3),)),
    "empty_output": (lambda a: a[:0], {}, lambda: (A(3),)),
}


@pytest.mark.parametrize("name", JACREV_CASES)
@pytest.mark.parametrize("chunk_size", [None, 1, 2, 100])
@pytest.mark.parametrize("preallocate", [False, True])
def test_jacrev_matches_torch_func(name, chunk_size, preallocate):
    func, options, make_args = JACREV_CASES[name]
    args = make_args()
    ours = jacrev(func, chunk_size=chunk_size, _preallocate_and_copy=preallocate, **options)(*args)
    assert_same(ours, torch.func.jacrev(func, **options)(*args))


@pytest.mark.parametrize("chunk_size, vmapped_batch_sizes",
                         [(None, [5]), (1, []), (2, [2, 2]), (5, [5]), (9, [5])])
def test_jacrev_chunks_the_basis(chunk_size, vmapped_batch_sizes, monkeypatch):
    pushed = record_vmap_sizes(monkeypatch, _C)
    jacrev(torch.sin, chunk_size=chunk_size)(A(5))
    assert pushed == vmapped_batch_sizes  # a chunk of one row (chunk_size=1: all) is a plain call


def test_jacrev_of_a_scalar_output_pushes_no_vmap_level(monkeypatch):
    pushed = record_vmap_sizes(monkeypatch, _C)
    x = A(4)
    assert_same(jacrev(jacrev(f_scalar))(x), torch.func.jacrev(torch.func.jacrev(f_scalar))(x))
    assert pushed == [4]  # the inner Jacobian has one row; the outer one has four


def test_jacrev_compositions_match_torch_func():
    x, xs = A(3), A(4, 3)
    f = lambda a: a.sin() * a.sum()
    assert_same(vmap(jacrev(f))(xs), torch.func.vmap(torch.func.jacrev(f))(xs))
    assert_same(jacrev(jacrev(f))(x), torch.func.jacrev(torch.func.jacrev(f))(x))
    assert_same(jacrev(grad(f_scalar))(x), torch.func.jacrev(torch.func.grad(f_scalar))(x))


@pytest.mark.parametrize("argnums", [0, 1, (0, 1)])
def test_hessian_matches_torch_func(argnums):
    x, y = A(3), A(3)
    assert_same(hessian(f_two, argnums)(x, y), torch.func.hessian(f_two, argnums)(x, y))


@pytest.mark.parametrize("ours", [grad, grad_and_value, vjp, jacrev, jacfwd, hessian, jvp, linearize])
def test_signature_extends_torch_func(ours):
    # torch.func's parameters, in order, with the same kinds and defaults; anything we add
    # beyond them (hessian's has_aux/chunk_size, jacfwd's chunk_size, linearize's has_aux)
    # is keyword-only with a default, so every torch.func call form works unchanged.
    def parameters(func):
        return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]
    theirs = parameters(getattr(torch.func, ours.__name__))
    mine = parameters(ours)
    assert mine[:len(theirs)] == theirs
    for name, kind, default in mine[len(theirs):]:
        assert kind == inspect.Parameter.KEYWORD_ONLY and default is not inspect.Parameter.empty, name


def test_transforms_wrap_function_metadata():
    for transform in (grad, grad_and_value, jacrev, hessian):
        assert transform(f_scalar).__name__ == "f_scalar"
        assert transform(f_scalar).__wrapped__ is not None


# --- error messages -----------------------------------------------------------------------------

def _error(fn):
    with pytest.raises(Exception) as info:
        fn()
    return info.value


x3 = torch.randn(3)

# Messages torch.func gets right (design doc §4, graded ✓): same exception type, same text.
TORCH_PARITY = {
    "cotangent_structure": lambda api: api.vjp(lambda a: (a, a), x3)[1](x3),
    "jacrev_complex_input": lambda api: api.jacrev(torch.sin)(torch.randn(3, dtype=torch.cfloat)),
    "jacrev_complex_output": lambda api: api.jacrev(lambda a: a.to(torch.cfloat))(x3),
    "jacrev_chunk_size": lambda api: api.jacrev(torch.sin, chunk_size=0),
}


class _Ours:
    vjp, jacrev = staticmethod(vjp), staticmethod(jacrev)


@pytest.mark.parametrize("name", TORCH_PARITY)
def test_error_matches_torch_func(name):
    ours = _error(lambda: TORCH_PARITY[name](_Ours))
    theirs = _error(lambda: TORCH_PARITY[name](torch.func))
    assert (type(ours), str(ours)) == (type(theirs), str(theirs))


def loss(a):
    return a * 2


class TestAutodiffErrors(expecttest.TestCase):
    """Our full messages: torch.func's text first where it raises the same error, then what
    we add (names, paths, the rewrite); ours alone where torch.func raises nothing."""

    def check(self, fn, exc_type):
        with self.assertRaises(exc_type) as ctx:
            fn()
        return str(ctx.exception)

    def test_non_scalar_output(self):  # §4 #24: names grad, not grad_and_value
        self.assertExpectedInline(self.check(lambda: grad(loss)(x3), RuntimeError), """grad_and_value(f)(*args): Expected f(*args) to return a scalar Tensor, got tensor with 1 dims. Maybe you wanted to use the vjp or jacrev APIs instead? torchfunc: grad(loss)(*args): loss returned a Tensor of shape [3].""")
        self.assertExpectedInline(self.check(lambda: grad_and_value(loss)(x3), RuntimeError), """grad_and_value(f)(*args): Expected f(*args) to return a scalar Tensor, got tensor with 1 dims. Maybe you wanted to use the vjp or jacrev APIs instead? torchfunc: grad_and_value(loss)(*args): loss returned a Tensor of shape [3].""")

    def test_non_tensor_output(self):  # §4 #25
        self.assertExpectedInline(self.check(lambda: grad(lambda a: 1.0)(x3), RuntimeError), """grad_and_value(f)(*args): Expected f(*args) to return a Tensor, got <class 'float'>. torchfunc: grad(<lambda>)(*args): <lambda> returned a float.""")
        self.assertExpectedInline(self.check(lambda: grad(lambda a: (a.sum(), a))(x3), RuntimeError), """grad_and_value(f)(*args): Expected f(*args) to return a Tensor, got <class 'tuple'>. torchfunc: grad(<lambda>)(*args): <lambda> returned a tuple. If <lambda> returns (output, aux), pass has_aux=True to grad.""")

    def test_has_aux_without_tuple(self):  # §4 #26
        self.assertExpectedInline(self.check(lambda: grad(torch.sum, has_aux=True)(x3), RuntimeError), """grad_and_value(f)(*args): output of function f should be a tuple: (output, aux) if has_aux is True. torchfunc: grad(sum)(*args): sum returned a Tensor.""")
        self.assertExpectedInline(self.check(lambda: vjp(torch.sin, x3, has_aux=True), RuntimeError), """vjp(f, *primals): output of function f should be a tuple: (output, aux) if has_aux is True. torchfunc: vjp(sin, *primals): sin returned a Tensor.""")

    def test_bad_argnums(self):  # §4 #29
        self.assertExpectedInline(self.check(lambda: grad(f_scalar, argnums=1)(x3), RuntimeError), """Got argnum=1, but only 1 positional inputs. torchfunc: grad(f_scalar, argnums=1)(*args): argnums=1 is out of range: f_scalar was called with 1 positional argument; valid argnums are -1..0.""")
        self.assertExpectedInline(self.check(lambda: grad(f_two, argnums=(0, 0)), RuntimeError), """argnums elements must be unique, got (0, 0). torchfunc: grad(f_two, argnums=(0, 0)): each positional argument can be selected once.""")
        self.assertExpectedInline(self.check(lambda: grad(f_two, argnums=(0, -2))(x3, x3), RuntimeError), """argnums elements must be unique, got (0, 0). torchfunc: grad(f_two, argnums=(0, -2))(*args): argnums=(0, -2) selects positional arguments (0, 0), and each can be selected once.""")
        self.assertExpectedInline(self.check(lambda: jacrev(f_scalar, argnums=()), RuntimeError), """argnums must be non-empty. torchfunc: jacrev(f_scalar, argnums=()): select at least one positional argument to differentiate.""")
        self.assertExpectedInline(self.check(lambda: grad(f_scalar, argnums="0"), RuntimeError), """argnums must be int or Tuple[int, ...], got: <class 'str'>. torchfunc: grad(f_scalar, argnums='0'): argnums must be the index of a positional argument (an int) or a tuple of them, got '0' (a str).""")

    def test_non_tensor_argument(self):  # §4 #30
        self.assertExpectedInline(self.check(lambda: grad(f_scalar)(2.0), ValueError), """Thing passed to transform API must be Tensor, got <class 'float'>. torchfunc: grad(f_scalar)(*args): args[0] is a float, but only Tensors can be differentiated. Pass it as a Tensor (e.g. torch.tensor(...)), or leave it out of argnums.""")
        self.assertExpectedInline(self.check(lambda: vjp(torch.sin, 2), ValueError), """Thing passed to transform API must be Tensor, got <class 'int'>. torchfunc: vjp(sin, *primals): primals[0] is an int, but only Tensors can be differentiated. Pass it as a Tensor (e.g. torch.tensor(...)), or bind it to the function (functools.partial) instead of passing it as a primal.""")

    def test_integer_argument(self):  # §4 #31
        self.assertExpectedInline(self.check(lambda: grad(torch.sum)(torch.arange(3)), RuntimeError), """only Tensors of floating point dtype can require gradients. torchfunc: grad(sum)(*args): args[0] is a Tensor of dtype torch.int64, but only floating point and complex Tensors can be differentiated. Convert it (e.g. .float()), or leave it out of argnums.""")
        self.assertExpectedInline(self.check(lambda: jacrev(lambda a, d: d["w"], argnums=1)(x3, {"w": torch.arange(3)}), RuntimeError), """only Tensors of floating point dtype can require gradients. torchfunc: jacrev(<lambda>)(*args): args[1]['w'] is a Tensor of dtype torch.int64, but only floating point and complex Tensors can be differentiated. Convert it (e.g. .float()), or leave it out of argnums.""")

    def test_cotangent_shape(self):  # §4 #35
        self.assertExpectedInline(self.check(lambda: vjp(torch.sin, x3)[1](torch.ones(4)), RuntimeError), """Mismatch in shape: grad_output[0] has a shape of torch.Size([4]) and output[0] has a shape of torch.Size([3]). torchfunc: vjp_fn of vjp(sin, *primals): cotangents has shape [4], but the matching output of sin has shape [3]. Each cotangent must have the shape of its output.""")
        self.assertExpectedInline(self.check(lambda: vjp(lambda a: (a, a.sum()), x3)[1]((x3, x3)), RuntimeError), """Mismatch in shape: grad_output[1] has a shape of torch.Size([3]) and output[1] has a shape of torch.Size([]). torchfunc: vjp_fn of vjp(<lambda>, *primals): cotangents[1] has shape [3], but the matching output of <lambda> has shape []. Each cotangent must have the shape of its output.""")

    def test_bad_vjp_outputs(self):  # §4 #36
        self.assertExpectedInline(self.check(lambda: vjp(lambda a: a.long(), x3), RuntimeError), """vjp(f, ...): All outputs of f must be floating-point or complex Tensors, got Tensor with dtype torch.int64. torchfunc: vjp(<lambda>, *primals): the output of <lambda> has dtype torch.int64.""")
        self.assertExpectedInline(self.check(lambda: vjp(lambda a: (a, 3), x3), RuntimeError), """vjp(f, *primals): expected f(*primals) to return only tensors, got unsupported type <class 'int'>. torchfunc: vjp(<lambda>, *primals): output[1] of <lambda> is an int, but only Tensors can be differentiated.""")
        self.assertExpectedInline(self.check(lambda: jacrev(lambda a: (a, 3))(x3), RuntimeError), """vjp(f, *primals): expected f(*primals) to return only tensors, got unsupported type <class 'int'>. torchfunc: jacrev(<lambda>)(*args): output[1] of <lambda> is an int, but only Tensors can be differentiated.""")

    def test_torch_func_around_torchfunc_is_refused(self):
        self.assertExpectedInline(self.check(lambda: torch.func.vmap(grad(f_scalar))(torch.randn(2, 3)), RuntimeError), """torchfunc.grad was called inside a torch.func transform (torch.func.vmap at level 1). torchfunc and torch.func transforms cannot be nested inside each other, because each library's interpreter stack cannot see the other's wrapped tensors (BatchedTensor, GradTensor), which would give wrong results. Use one library for the whole composition: all torchfunc, or all torch.func.""")
        _, vjp_fn = vjp(torch.sin, x3)
        message = self.check(lambda: torch.func.grad(lambda c: vjp_fn(c)[0].sum())(x3),
                             RuntimeError)
        self.assertIn("torchfunc.vjp was called inside a torch.func transform (torch.func.grad",
                      message)


# --- levels -------------------------------------------------------------------------------------

def _raise(*args):
    raise KeyError("boom")


@pytest.mark.parametrize("call", [
    lambda: grad(_raise)(x3),
    lambda: grad_and_value(lambda a: grad(_raise)(a))(x3),
    lambda: vjp(_raise, x3),
    lambda: jacrev(_raise)(x3),
    lambda: vmap(grad(_raise))(torch.randn(2, 3)),
    lambda: hessian(_raise)(x3),
    lambda: grad(loss)(x3),  # raised by grad itself, with the level pushed
])
@pytest.mark.parametrize("outer_grad_mode", [True, False])
def test_no_level_or_mode_leaks_when_something_raises(call, outer_grad_mode):
    with torch.set_grad_enabled(outer_grad_mode):
        with pytest.raises((KeyError, RuntimeError)):
            call()
        assert torch.is_grad_enabled() is outer_grad_mode
    assert _C.stack_depth() == 0


def test_levels_seen_inside_compositions():
    seen = []
    def f(a):
        seen.append(_C.stack_kinds())
        return a.sin().sum()
    grad(grad(lambda a: grad(f)(a).sum()))(torch.tensor(1.0))
    jacrev(lambda a: vmap(f)(a.unsqueeze(0).expand(2, 3)))(x3)
    assert seen == [["grad", "grad", "grad"], ["grad", "vmap"]]


def test_sparse_coo_values_keep_their_layout_under_grad():
    """A GradTensor of a sparse COO value is sparse (to_dense() of it returned the
    sparse tensor unchanged, since the wrapper claimed the strided layout)."""
    x = torch.randn(4, 4)

    def f(t):
        s = t.to_sparse()
        assert s.layout == torch.sparse_coo and s.is_sparse
        return (s.to_dense() * torch.arange(4.0)).sum()

    torch.testing.assert_close(torchfunc.grad(f)(x), torch.func.grad(f)(x))
    out, vjp_fn = torchfunc.vjp(lambda t: t.to_sparse().to_dense(), x)
    assert out.layout == torch.strided
    torch.testing.assert_close(vjp_fn(torch.ones(4, 4))[0], torch.ones(4, 4))


def test_kernels_may_fill_their_own_allocations_under_grad():
    """NOTE [Fresh allocations share their storage]: ctc_loss's mean reduction builds a
    tensor with at::tensor (at::empty, then a write through the data pointer), inside
    the grad level; the user's own allocations still refuse data_ptr, as in torch.func."""
    torch.manual_seed(0)
    log_probs = torch.randn(12, 3, 5).log_softmax(2)
    targets = torch.randint(1, 5, (3, 4))
    lengths = (torch.full((3,), 12), torch.tensor([4, 3, 2]))
    loss = lambda lp: torch.nn.functional.ctc_loss(lp, targets, *lengths, reduction="mean")  # noqa: E731
    torch.testing.assert_close(torchfunc.grad(loss)(log_probs), torch.func.grad(loss)(log_probs))
    torch.testing.assert_close(torchfunc.jacrev(loss)(log_probs), torch.func.jacrev(loss)(log_probs))

    def user_allocation(x):
        torch.zeros(3).data_ptr()
        return x.sum()

    with pytest.raises(RuntimeError, match="Cannot access data pointer of Tensor that doesn't have storage"):
        torchfunc.grad(user_allocation)(torch.ones(3))
    with pytest.raises(RuntimeError, match="Cannot access data pointer of Tensor that doesn't have storage"):
        torch.func.grad(user_allocation)(torch.ones(3))


def test_grads_last_backward_leaves_the_levels_below_recording():
    # NOTE [A grad level's last backward records nothing at its level]: grad mode stays on
    # during the backward (hooks see it), outer levels and torch's autograd still record
    # it, and a backward that raises leaves the level recording for the next transform.
    seen = []

    def f(x):
        y = x.sin()
        y.register_hook(lambda g: seen.append(torch.is_grad_enabled()) or g)
        return (y * x).sum()

    x = torch.randn(4, dtype=torch.float64)
    ours = grad(f)(x)
    assert seen == [True]
    torch.testing.assert_close(ours, torch.func.grad(f)(x))
    second = grad(lambda x: grad(f)(x).sum())(x)
    torch.testing.assert_close(second, torch.func.grad(lambda x: torch.func.grad(f)(x).sum())(x))
    xr = x.clone().requires_grad_()
    (through,) = torch.autograd.grad(grad(f)(xr).sum(), xr)
    torch.testing.assert_close(through, second)

    def raising(x):
        y = x.exp()
        y.register_hook(lambda g: 1 / 0)
        return y.sum()

    with pytest.raises(ZeroDivisionError):
        grad(raising)(x)
    assert _C.stack_depth() == 0
    torch.testing.assert_close(torchfunc.hessian(f)(x), torch.func.hessian(f)(x))


class _DoubleInBackward(torch.autograd.Function):
    # The backward writes in place into a tensor it makes itself: allowed at the
    # unrecorded level, as any backward formula's own buffer is (index's index_put_).
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x * 1.0

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        out = torch.zeros_like(g)
        out.add_(g).mul_(2)
        return out


def test_last_backward_sends_ops_below_and_matches_torch_func():
    # NOTE [A grad level's last backward records nothing at its level]: the backward's ops
    # go straight to the next level unlifted. Backward formulas that write into their own
    # buffers, custom backwards that do, and hooks that change the gradient all give
    # torch.func's results, first and second order, under vmap too.
    idx = torch.tensor([0, 2, 2, 1, 0])

    def indexed(x):
        return (x[idx] ** 2).sum() + x.cumsum(0).sin().sum()

    def custom(x):
        return (_DoubleInBackward.apply(x) * x.cos()).sum()

    def hooked(x):
        y = x.exp()
        y.register_hook(lambda g: g * 3)
        return (y * x).sum()

    x = torch.randn(4, dtype=torch.float64)
    xs = torch.randn(3, 4, dtype=torch.float64)
    for f in (indexed, custom, hooked):
        torch.testing.assert_close(grad(f)(x), torch.func.grad(f)(x))
        torch.testing.assert_close(vmap(grad(f))(xs), torch.func.vmap(torch.func.grad(f))(xs))
        if f is not hooked:  # test_hessian_fires_a_forward_hook_in_both_backwards
            # torch.func.hessian is jacfwd(jacrev), which needs a jvp for the custom Function.
            torch.testing.assert_close(hessian(f)(x), torch.func.jacrev(torch.func.jacrev(f))(x))
        torch.testing.assert_close(grad(lambda t: grad(f)(t).sin().sum())(x),
                                   torch.func.grad(lambda t: torch.func.grad(f)(t).sin().sum())(x))
        g, v = grad_and_value(f)(x)
        tg, tv = torch.func.grad_and_value(f)(x)
        torch.testing.assert_close((g, v), (tg, tv))
        assert not g.requires_grad and type(g) is torch.Tensor
    assert _C.stack_depth() == 0


@pytest.mark.xfail(strict=True, reason="hessian runs f once at one grad level (NOTE [hessian at one "
                   "grad level]): a hook registered on a forward tensor fires in the first backward and "
                   "again in the second, as in torch.autograd.functional.hessian; torch.func's "
                   "jacfwd(jacrev) fires it in the inner derivative only")
def test_hessian_fires_a_forward_hook_in_both_backwards():
    def hooked(x):
        y = x.exp()
        y.register_hook(lambda g: g * 3)
        return (y * x).sum()

    x = torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(hessian(hooked)(x), torch.func.hessian(hooked)(x))


def test_last_backward_still_refuses_writes_into_a_captured_tensor():
    # A hook runs in the level's last backward; its write into a tensor from outside the
    # function is refused with torch.func's error, and the caller's tensor is untouched.
    captured = torch.zeros(4)

    def f(x):
        y = x * captured
        y.register_hook(lambda g: (captured.add_(g), g)[1])
        return y.sum()

    # hessian's hook fires first in the backward its level records, and is refused there
    # (its second backward runs after the level is popped: NOTE [hessian at one grad level]).
    for transform in (grad, torch.func.grad, hessian, torch.func.hessian):
        with pytest.raises(RuntimeError, match="mutate a captured Tensor"):
            transform(f)(torch.randn(4))
    assert _C.stack_depth() == 0
    assert captured.eq(0).all()


def test_hessian_second_backward_runs_after_the_level_and_outer_levels_record_it():
    # NOTE [hessian at one grad level]: the second backward runs once the level is popped,
    # through the graph its (now dead) GradTensors recorded. Outer levels, and torch's
    # autograd outside every transform, record it: third derivatives match torch.func's.
    a = torch.randn(4, 4, dtype=torch.float64)

    def f(x):
        return (x.sin() * x.cos()).sum() + x @ a @ x + (x ** 3).sum()

    x = torch.randn(4, dtype=torch.float64)
    xs = torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(hessian(f)(x), torch.func.hessian(f)(x))
    torch.testing.assert_close(grad(lambda t: hessian(f)(t).sin().sum())(x),
                               torch.func.grad(lambda t: torch.func.hessian(f)(t).sin().sum())(x))
    torch.testing.assert_close(jacrev(hessian(f))(x), torch.func.jacrev(torch.func.hessian(f))(x))
    torch.testing.assert_close(vmap(hessian(f))(xs), torch.func.vmap(torch.func.hessian(f))(xs))
    torch.testing.assert_close(hessian(f, chunk_size=3)(x), torch.func.hessian(f)(x))
    xr = x.clone().requires_grad_()
    ours = hessian(f)(xr)
    assert ours.requires_grad and type(ours) is torch.Tensor
    (through,) = torch.autograd.grad(ours.sin().sum(), xr)
    xr2 = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(torch.func.hessian(f)(xr2).sin().sum(), xr2)
    torch.testing.assert_close(through, expected)
    with torch.no_grad():
        assert not hessian(f)(xr).requires_grad
    with torch.inference_mode():
        ours = hessian(f)(x)
        assert not ours.is_inference() and not torch.func.hessian(f)(x).is_inference()
    torch.testing.assert_close(ours, torch.func.hessian(f)(x))
    assert _C.stack_depth() == 0
