"""torchfunc.jvp/jacfwd/hessian/linearize (forward mode) against torch.func: results on
pytrees, has_aux, strict, compositions with the other transforms, chunking, randomness,
linearize's single call of func, error messages and level hygiene."""
import expecttest
import pytest
import torch
import torch.func

import torchfunc
from torchfunc._engine import _C
from torchfunc.autodiff import grad
from torchfunc.forward import jvp, linearize
from torchfunc.jacobians import hessian, jacfwd, jacrev
from torchfunc.vmap import vmap

from helpers import Point, assert_same, record_vmap_sizes


def A(*shape):
    return torch.randn(*shape)


x3 = torch.randn(3)


def f_scalar(a):
    return (a.sin() * a).sum()


def f_two(a, b):
    return (a * b.cos()).sum() + (a ** 2).sum()


# --- jvp ---------------------------------------------------------------------------------------

# name: (func, options, make_primals); tangents are random with the primals' structure.
JVP_CASES = {
    "unary": (torch.sin, {}, lambda: (A(3),)),
    "two_primals": (torch.matmul, {}, lambda: (A(2, 3), A(3, 4))),
    "scalar_primal": (lambda a: a.exp() * 3, {}, lambda: (A(()),)),
    "scalar_output": (f_scalar, {}, lambda: (A(4),)),
    "tuple_primal": (lambda p: p[0] * p[1].sin(), {}, lambda: ((A(3), A(3)),)),
    "dict_primal": (lambda d: d["w"] @ d["b"], {}, lambda: ({"w": A(2, 3), "b": A(3)},)),
    "namedtuple_primal": (lambda p: p.x * p.y.exp(), {}, lambda: (Point(A(3), A(3)),)),
    "nested_primals": (lambda p, q: (p[0] * p[1][0], q["z"].exp()), {},
                       lambda: ((A(3), (A(3),)), {"z": A(2)})),
    "tuple_output": (lambda a, b: (a * b, a.sum(), b.cos()), {}, lambda: (A(3), A(3))),
    "dict_output": (lambda a, b: {"p": a * b, "q": [a.exp(), (a @ b).unsqueeze(0)]}, {},
                    lambda: (A(3), A(3))),
    "output_is_primal": (lambda a, b: (a, b * 2), {}, lambda: (A(3), A(3))),
    "partly_independent_output": (lambda a, b: (a.sin(), torch.ones(2)), {},
                                  lambda: (A(3), A(3))),
    "independent_output": (lambda a: torch.ones(2), {}, lambda: (A(3),)),
    "closure_only_output": (lambda a: x3.sin(), {}, lambda: (A(3),)),
    "has_aux": (lambda a: (a.sin(), {"c": a.cos(), "n": a.sum()}), dict(has_aux=True),
                lambda: (A(3),)),
    "has_aux_tuple_output": (lambda a, b: ((a * b, b.exp()), a.sum()), dict(has_aux=True),
                             lambda: (A(3), A(3))),
    "strict_dependent": (lambda a, b: a * b, dict(strict=True), lambda: (A(3), A(3))),
    "linear_algebra": (lambda m: torch.linalg.solve(m @ m.T + torch.eye(3), m.sum(0)), {},
                       lambda: (A(3, 3),)),
    "float64": (lambda a: a.tanh() ** 2, {}, lambda: (A(3).double(),)),
    "complex": (lambda a: a * a.conj() + a.exp(), {}, lambda: (torch.randn(3, dtype=torch.cfloat),)),
    "saved_tensor_hooks": (lambda a: _with_saved_tensor_hooks(lambda: (a * a.sin()).sum()), {},
                           lambda: (A(3),)),
}


def _with_saved_tensor_hooks(fn):
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        return fn()


def _tangents_like(primals):
    return torch.utils._pytree.tree_map(lambda p: torch.randn_like(p), primals)


@pytest.mark.parametrize("name", JVP_CASES)
def test_jvp_matches_torch_func(name):
    func, options, make_primals = JVP_CASES[name]
    primals = make_primals()
    tangents = _tangents_like(primals)
    ours = jvp(func, primals, tangents, **options)
    assert len(ours) == (3 if options.get("has_aux") else 2)
    assert_same(ours, torch.func.jvp(func, primals, tangents, **options))


def test_jvp_leaves_forward_ads_dual_level_as_it_found_it():
    # jvp enters and exits torch's dual level with torch.autograd.forward_ad's functions,
    # whose record of the current level user code may read (fwAD.unpack_dual), also when
    # the function raises.
    import torch.autograd.forward_ad as fwAD

    def reads_level(a):
        assert fwAD._current_level == 0
        return a.sin()

    fwd_grad_mode = torch._C._is_fwd_grad_enabled()
    jvp(reads_level, (A(3),), (A(3),))
    assert fwAD._current_level == -1
    with pytest.raises(ZeroDivisionError):
        jvp(lambda a: a * (1 / 0), (A(3),), (A(3),))
    assert fwAD._current_level == -1 and _C.stack_depth() == 0
    assert torch._C._is_fwd_grad_enabled() == fwd_grad_mode


@pytest.mark.parametrize("layout", ["transposed_tangent", "transposed_primal", "expanded_tangent",
                                    "channels_last_tangent"])
def test_jvp_tangent_with_other_strides_than_its_primal(layout):
    # torch gives the forward gradient its primal's strides (a copy) where they differ.
    shape = (2, 3, 4, 5) if layout == "channels_last_tangent" else (3, 4)
    primal, tangent = A(*shape), A(*shape)
    if layout == "transposed_tangent":
        tangent = A(4, 3).T
    elif layout == "transposed_primal":
        primal = A(4, 3).T
    elif layout == "expanded_tangent":
        tangent = A(1, 4).expand(3, 4)
    else:
        tangent = tangent.contiguous(memory_format=torch.channels_last)

    def f(a):
        return a.sin() * a.stride()[0]  # strides as the function sees them

    assert_same(jvp(f, (primal,), (tangent,)), torch.func.jvp(f, (primal,), (tangent,)))


def test_jvp_in_place_on_the_primal_inside_the_function():
    # The dual is the primal's GradTensor: an in-place op on it writes the caller's
    # tensor and carries the tangent, as in torch.func (which, like us, updates the
    # caller's tangent in place too: each side gets its own copies).
    x, t = A(3), A(3)
    f = lambda a: a.mul_(2).sin()
    ours_x, ours_t, theirs_x, theirs_t = x.clone(), t.clone(), x.clone(), t.clone()
    assert_same(jvp(f, (ours_x,), (ours_t,)), torch.func.jvp(f, (theirs_x,), (theirs_t,)))
    assert_same(jvp(f, (x.clone(),), (t.clone(),))[1], 2 * t * torch.cos(2 * x))
    assert_same((ours_x, ours_t), (theirs_x, theirs_t))


@pytest.mark.parametrize("numel,dtype", [(7, torch.float32), (65536, torch.float32), (32769, torch.float64),
                                         (65537, torch.float32), (0, torch.float32)])
def test_jvp_with_captured_operands_of_any_size(numel, dtype):
    # The captured operands have no tangent: autograd's formulas use zero tensors for
    # theirs, plain zeros below 256 KiB (NOTE [Small zero tangents are plain zeros]),
    # torch's efficient zero tensors above.
    bias, scale = torch.randn(numel, dtype=dtype), torch.randn(numel, dtype=dtype)
    w = torch.randn(3, numel, dtype=dtype)
    f = lambda v: ((v * 2 + bias) * scale - bias / 3, w @ v, torch.addmv(w.sum(1), w, v))
    x, t = torch.randn(numel, dtype=dtype), torch.randn(numel, dtype=dtype)
    assert_same(jvp(f, (x,), (t,)), torch.func.jvp(f, (x,), (t,)))
    assert_same(jvp(f, (x,), (t,))[1][0], t * 2 * scale)


def test_jvp_independent_output_tangent_is_zeros():
    out, tangent = jvp(lambda a, b: (a * 2, b.detach() + 1), (A(3), A(2)), (A(3), A(2)))
    assert_same(tangent[1], torch.zeros(2))


def test_jvp_of_linear_function_is_the_function_of_the_tangent():
    m = A(4, 3)
    x, t = A(3), A(3)
    out, tangent = jvp(lambda a: m @ a, (x,), (t,))
    assert_same((out, tangent), (m @ x, m @ t))


def test_jvp_refuses_list_primals_and_tangents_like_torch_func():
    # torch.func requires a tuple of primals and tangents of the same structure; code
    # written against it must not pass here and fail there.
    x, y, t, u = A(3), A(3), A(3), A(3)
    for primals, tangents in (([x, y], [t, u]), ((x, y), [t, u])):
        for api in (torch.func, torchfunc):
            with pytest.raises(RuntimeError, match=r"jvp\(f, primals, tangents\): Expected primals"):
                api.jvp(torch.mul, primals, tangents)


def test_jvp_works_under_no_grad_and_inference_mode():
    x, t = A(3), A(3)
    expected = torch.func.jvp(torch.sin, (x,), (t,))
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            assert_same(jvp(torch.sin, (x,), (t,)), expected)
            hvp = jvp(grad(f_scalar), (x,), (t,))
        assert_same(hvp, torch.func.jvp(torch.func.grad(f_scalar), (x,), (t,)))


def test_jvp_results_are_differentiable_by_plain_autograd():
    x, t = A(3), A(3)
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    jvp(torch.sin, (x_ours,), (t,))[1].sum().backward()
    torch.func.jvp(torch.sin, (x_theirs,), (t,))[1].sum().backward()
    assert_same(x_ours.grad, x_theirs.grad)
    assert_same(x_ours.grad, -x.sin() * t)


# --- compositions -------------------------------------------------------------------------------

def _compositions(api, x, t, xs, ts):
    """Each entry: a zero-argument call building the composition with `api`'s transforms."""
    f = lambda a: a.sin() * a.sum()
    return {
        "vmap_jvp": lambda: api.vmap(lambda a, u: api.jvp(f, (a,), (u,)))(xs, ts),
        "vmap_jvp_in_dims_none": lambda: api.vmap(lambda u: api.jvp(f, (x,), (u,)),
                                                  in_dims=0)(ts),
        "hvp_jvp_grad": lambda: api.jvp(api.grad(f_scalar), (x,), (t,)),
        "hvp_jvp_grad_argnums": lambda: api.jvp(lambda a, b: api.grad(f_two, argnums=(0, 1))(a, b),
                                                (x, x.cos()), (t, t.sin())),
        "grad_jvp": lambda: api.grad(lambda a: api.jvp(lambda b: (b.sin() * a).sum(),
                                                       (a,), (t,))[1])(x),
        "jvp_jvp": lambda: api.jvp(lambda a: api.jvp(f, (a,), (t,))[1], (x,), (t.cos(),)),
        # The inner tangent is the outer level's dual; the inner function returns a
        # capture of the outer level (its outer tangent must not become the inner one).
        "jvp_jvp_tangent_is_outer_dual": lambda: api.jvp(lambda a: api.jvp(f, (a,), (a,)), (x,), (t,)),
        "jvp_jvp_returns_outer_dual": lambda: api.jvp(lambda a: api.jvp(lambda b: a, (x,), (t,)),
                                                      (x,), (t.cos(),)),
        "jvp_jvp_returns_outer_dual_times_two": lambda: api.jvp(
            lambda a: api.jvp(lambda b: (a * 2, b * a), (x,), (t,)), (x,), (t.cos(),)),
        "jvp_vmap": lambda: api.jvp(api.vmap(f), (xs,), (ts,)),
        "jvp_grad_grad": lambda: api.jvp(api.grad(api.grad(lambda a: a.sin() * a ** 3)),
                                         (x[0],), (t[0],)),
        "jacfwd_jacrev": lambda: api.jacfwd(api.jacrev(f))(x),
        "jacrev_jacfwd": lambda: api.jacrev(api.jacfwd(f))(x),
        "jacfwd_jacfwd": lambda: api.jacfwd(api.jacfwd(f))(x),
        "jacfwd_grad": lambda: api.jacfwd(api.grad(f_scalar))(x),
        "vmap_jacfwd": lambda: api.vmap(api.jacfwd(f))(xs),
        "vmap_hessian": lambda: api.vmap(api.hessian(f_scalar))(xs),
        "grad_of_hessian_trace": lambda: api.grad(lambda a: api.hessian(f_scalar)(a).trace())(x),
    }


class _TorchFunc:
    vmap, grad, jvp = staticmethod(torch.func.vmap), staticmethod(torch.func.grad), staticmethod(torch.func.jvp)
    jacrev, jacfwd, hessian = (staticmethod(torch.func.jacrev), staticmethod(torch.func.jacfwd),
                               staticmethod(torch.func.hessian))


class _Ours:
    vmap, grad, jvp = staticmethod(vmap), staticmethod(grad), staticmethod(jvp)
    jacrev, jacfwd, hessian = staticmethod(jacrev), staticmethod(jacfwd), staticmethod(hessian)


COMPOSITIONS = list(_compositions(_Ours, *([None] * 4)))


@pytest.mark.parametrize("name", COMPOSITIONS)
def test_compositions_match_torch_func(name):
    x, t, xs, ts = A(3), A(3), A(4, 3), A(4, 3)
    ours = _compositions(_Ours, x, t, xs, ts)[name]()
    theirs = _compositions(_TorchFunc, x, t, xs, ts)[name]()
    assert_same(ours, theirs)


def test_hvp_is_hessian_times_tangent():
    x, t = A(4), A(4)
    _, hvp = jvp(grad(f_scalar), (x,), (t,))
    assert_same(hvp, torch.func.hessian(f_scalar)(x) @ t)


def test_levels_seen_inside_forward_transforms():
    seen = []
    def f(a):
        seen.append(_C.stack_kinds())
        return a.sin().sum()
    x = A(3)
    jvp(grad(f), (x,), (x,))
    jacfwd(f)(x)
    linearize(f, x)
    hessian(f)(x)
    # hessian runs f once at one grad level (NOTE [hessian at one grad level]); torch.func
    # runs it under vmap, jvp and grad.
    assert seen == [["jvp", "grad"], ["vmap", "jvp"], ["grad"], ["grad"]]


# --- jacfwd -------------------------------------------------------------------------------------

JACFWD_CASES = {
    "unary": (torch.sin, {}, lambda: (A(3),)),
    "matrix_in_out": (lambda a: a @ a.t(), {}, lambda: (A(2, 3),)),
    "scalar_input_vector_output": (lambda a: a * torch.arange(3.0), {}, lambda: (A(()),)),
    "scalar_output": (f_scalar, {}, lambda: (A(4),)),
    "argnums_1": (f_two, dict(argnums=1), lambda: (A(3), A(3))),
    "argnums_tuple": (lambda a, b: a * b.sum(), dict(argnums=(0, 1)), lambda: (A(3), A(2))),
    "argnums_tuple_reversed": (lambda a, b: a * b.sum(), dict(argnums=(1, 0)),
                               lambda: (A(3), A(2))),
    "dict_arg": (lambda d: d["w"] @ d["b"], {}, lambda: ({"w": A(2, 3), "b": A(3)},)),
    "dict_arg_argnums_tuple": (lambda d, y: d["w"] * y, dict(argnums=(0, 1)),
                               lambda: ({"w": A(3)}, A(3))),
    "tuple_output": (lambda a: (a.sin(), a.sum()), {}, lambda: (A(3),)),
    "dict_output": (lambda a, b: {"p": a * b, "q": (a @ b).unsqueeze(0)}, dict(argnums=(0, 1)),
                    lambda: (A(3), A(3))),
    "has_aux": (lambda a: (a.exp(), a.sum()), dict(has_aux=True), lambda: (A(3),)),
    "has_aux_dict": (lambda a: (a.exp(), {"c": a.cos(), "s": a.sum()}), dict(has_aux=True),
                     lambda: (A(3),)),
    "non_tensor_extra_arg": (lambda a, k: a * k, {}, lambda: (A(3), 2.5)),
    "empty_output": (lambda a: a[:0], {}, lambda: (A(3),)),
}


# Cases where torch.func.jacrev must agree too: a check on the reference itself.
JACREV_TOO = {"unary", "matrix_in_out", "argnums_tuple", "dict_arg", "tuple_output"}


@pytest.mark.parametrize("name, chunk_size", [
    (name, chunk_size) for name in JACFWD_CASES for chunk_size in (None, 1, 2, 100)])
def test_jacfwd_matches_torch_func(name, chunk_size):
    func, options, make_args = JACFWD_CASES[name]
    args = make_args()
    expected = torch.func.jacfwd(func, **options)(*args)
    assert_same(jacfwd(func, chunk_size=chunk_size, **options)(*args), expected)
    if name in JACREV_TOO:
        assert_same(expected, torch.func.jacrev(func, **options)(*args))



@pytest.mark.parametrize("argnums, positive", [(-1, 1), (-2, 0), ((-1, 0), (1, 0))])
def test_jacfwd_negative_argnums(argnums, positive):
    # Compared with torch.func's *positive* argnums: torch.func.jacfwd (2.13) returns zeros
    # for a negative argnums (its _replace_args compares positions with the unwrapped index).
    x, y = A(3), A(2)
    f = lambda a, b: a.sin() * b.sum() ** 2
    ours = jacfwd(f, argnums=argnums)(x, y)
    assert_same(ours, torch.func.jacfwd(f, argnums=positive)(x, y))
    assert_same(ours, jacrev(f, argnums=argnums)(x, y))


@pytest.mark.parametrize("chunk_size, vmapped_batch_sizes",
                         [(None, [5]), (1, []), (2, [2, 2, 1]), (5, [5]), (9, [5])])
def test_jacfwd_chunks_the_basis(chunk_size, vmapped_batch_sizes, monkeypatch):
    pushed = record_vmap_sizes(monkeypatch, _C)
    x = A(5)
    assert_same(jacfwd(torch.sin, chunk_size=chunk_size)(x), torch.diag(x.cos()))
    assert pushed == vmapped_batch_sizes  # chunk_size=1: a plain loop, no vmap


def test_jacfwd_chunk_sizes_agree_with_each_other():
    x, y = A(4), A(3)
    f = lambda a, b: {"o": torch.outer(a.sin(), b), "s": (a * a.sum()).tanh()}
    results = [jacfwd(f, argnums=(0, 1), chunk_size=c)(x, y) for c in (None, 1, 2, 3, 7)]
    for r in results[1:]:
        assert_same(r, results[0])


def _random_f(a):
    return a.sum() * torch.rand(3)  # column j of the Jacobian is the draw seen by basis j


@pytest.mark.parametrize("api", ["torchfunc", "torch.func"])
def test_jacfwd_randomness(api):
    # The same checks on both libraries: torch.func's semantics are the reference.
    jacfwd_ = {"torchfunc": jacfwd, "torch.func": torch.func.jacfwd}[api]
    x = A(4)
    with pytest.raises(RuntimeError, match="random"):
        jacfwd_(_random_f)(x)
    with pytest.raises(RuntimeError, match="random"):
        jacfwd_(_random_f, randomness="error")(x)
    same = jacfwd_(_random_f, randomness="same")(x)
    different = jacfwd_(_random_f, randomness="different")(x)
    assert same.shape == different.shape == (3, 4)
    assert all(torch.equal(same[:, 0], same[:, j]) for j in range(1, 4))
    assert not any(torch.equal(different[:, i], different[:, j])
                   for i in range(4) for j in range(i + 1, 4))
    assert ((0 <= same) & (same < 1)).all() and ((0 <= different) & (different < 1)).all()


def test_jacfwd_randomness_same_with_unbatched_random_tensor():
    # A random op under 'same' draws one unbatched tensor: the output's tangent is still
    # per-column (here: a column of the identity scaled by that draw).
    x = A(4)
    for jacfwd_ in (jacfwd, torch.func.jacfwd):
        j = jacfwd_(lambda a: a * torch.rand(()), randomness="same")(x)
        assert j.shape == (4, 4)
        assert torch.equal(j, torch.diag(j.diagonal()))
        assert torch.equal(j.diagonal(), j.diagonal()[0].expand(4))


def test_jacfwd_randomness_same_across_chunks():
    j = jacfwd(_random_f, randomness="same", chunk_size=2)(A(4))
    assert all(torch.equal(j[:, 0], j[:, k]) for k in range(1, 4))


def test_jacfwd_randomness_error_in_vmapped_chunks():
    # chunk_size=1 is a plain loop (documented: randomness applies to vmapped chunks)
    with pytest.raises(RuntimeError, match="random"):
        jacfwd(_random_f, chunk_size=2)(A(4))


def test_jacfwd_scalar_to_scalar():
    x = A(())
    assert_same(jacfwd(torch.sin)(x), torch.func.jacfwd(torch.sin)(x))


# --- hessian ------------------------------------------------------------------------------------

@pytest.mark.parametrize("argnums", [0, 1, -1, (0, 1), (1, 0)])
@pytest.mark.parametrize("chunk_size", [None, 1, 2])
def test_hessian_matches_torch_func(argnums, chunk_size):
    x, y = A(3), A(3)
    # torch.func.hessian has torch.func.jacfwd's negative argnums bug (zeros): compare with
    # the positive equivalent.
    positive = {-1: 1}.get(argnums, argnums)
    assert_same(hessian(f_two, argnums, chunk_size=chunk_size)(x, y),
                torch.func.hessian(f_two, positive)(x, y))


def test_hessian_of_dict_argument_and_two_arguments():
    p = {"w": A(2, 3), "b": A(2)}
    x = A(3)
    f = lambda params, a: (params["w"] @ a + params["b"]).tanh().sum()
    assert_same(hessian(f)(p, x), torch.func.hessian(f)(p, x))
    assert_same(hessian(f, argnums=(0, 1))(p, x), torch.func.hessian(f, argnums=(0, 1))(p, x))


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_hessian_has_aux(chunk_size):
    # Beyond torch.func: has_aux returns (hessian, aux), aux as func returned it.
    x = A(3)
    f = lambda a: (f_scalar(a), {"c": a.cos(), "s": a.sum()})
    h, aux = hessian(f, has_aux=True, chunk_size=chunk_size)(x)
    assert_same(h, torch.func.hessian(lambda a: f(a)[0])(x))
    assert_same(aux, f(x)[1])


def test_hessian_has_aux_chunk_size_1():
    x = A(3)
    f = lambda a: (f_scalar(a), {"c": a.cos(), "s": a.sum()})
    h, aux = hessian(f, has_aux=True, chunk_size=1)(x)
    assert_same((h, aux), (torch.func.hessian(lambda a: f(a)[0])(x), f(x)[1]))


def test_hessian_chunked_equals_unchunked():
    x = A(5)
    f = lambda a: (a.sin() * a.sum()).exp().sum() + (a ** 3).prod()
    full = hessian(f)(x)
    for chunk_size in (1, 2, 3, 5, 8):
        assert_same(hessian(f, chunk_size=chunk_size)(x), full)
    assert_same(full, torch.func.hessian(f)(x))


def test_hessian_of_scalar_function_of_scalar():
    x = A(())
    assert_same(hessian(torch.sin)(x), torch.func.hessian(torch.sin)(x))


def test_hessian_wraps_function_metadata():
    for transform in (jacfwd, hessian):
        assert transform(f_scalar).__name__ == "f_scalar"
        assert transform(f_scalar).__wrapped__ is not None


# --- linearize ----------------------------------------------------------------------------------

LINEARIZE_CASES = {
    "unary": (torch.sin, lambda: (A(3),)),
    "two_primals": (torch.matmul, lambda: (A(2, 3), A(3, 4))),
    "pytree_primals_and_output": (lambda d, b: {"p": d["w"] @ b, "q": (b.exp(), d["v"].sum())},
                                  lambda: ({"w": A(2, 3), "v": A(2)}, A(3))),
    "identity": (lambda a: a, lambda: (A(3),)),
    "view": (lambda a: a.view(3, 1).t(), lambda: (A(3),)),
    "partly_independent_output": (lambda a: (a.sin(), torch.ones(2)), lambda: (A(3),)),
    "nonsmooth": (lambda a: torch.where(a > 0, a, a ** 2).relu().sort().values, lambda: (A(5),)),
    "in_place": (lambda a: a.clone().mul_(2).sin_(), lambda: (A(3),)),
}


@pytest.mark.parametrize("name", LINEARIZE_CASES)
def test_linearize_matches_torch_func_and_jvp(name):
    func, make_primals = LINEARIZE_CASES[name]
    primals = make_primals()
    out, jvp_fn = linearize(func, *primals)
    expected_out, expected_jvp_fn = torch.func.linearize(func, *primals)
    assert_same(out, expected_out)
    tangents = _tangents_like(primals)
    assert_same(jvp_fn(*tangents), expected_jvp_fn(*tangents))
    # jvp_fn can be called repeatedly, with new tangents each time. (Compared with
    # torch.func.jvp: torch.func.linearize's jvp_fn (2.13) is wrong from its second call on
    # for the in-place case.)
    for _ in range(2):
        tangents = _tangents_like(primals)
        product = jvp_fn(*tangents)
        assert_same(product, torch.func.jvp(func, primals, tangents)[1])
        assert_same(product, jvp(func, primals, tangents)[1])


def test_linearize_runs_func_once():
    calls = []
    def f(a, b):
        calls.append(1)
        return (a * b).sin(), a.sum()
    x, y = A(3), A(3)
    out, jvp_fn = linearize(f, x, y)
    assert len(calls) == 1
    results = [jvp_fn(A(3), A(3)) for _ in range(4)]
    assert len(calls) == 1  # jvp_fn never runs f again
    assert_same(out, f(x, y))
    assert len({r[1].item() for r in results}) == 4  # different tangents, different products


def test_linearize_has_aux():
    # Beyond torch.func.linearize, which has no has_aux.
    x, t = A(3), A(3)
    f = lambda a: (a.sin() * a, {"c": a.cos(), "n": 3})
    out, jvp_fn, aux = linearize(f, x, has_aux=True)
    expected_out, expected_jvp_fn = torch.func.linearize(lambda a: f(a)[0], x)
    assert_same((out, jvp_fn(t), aux), (expected_out, expected_jvp_fn(t), f(x)[1]))


def test_linearize_independent_output():
    x, t = A(3), A(3)
    _, jvp_fn = linearize(lambda a: torch.ones(3), x)
    assert_same(jvp_fn(t), torch.zeros(3))


def test_linearize_jvp_fn_is_differentiable_in_the_tangents():
    x, t = A(3), A(3)
    _, jvp_fn = linearize(torch.sin, x)
    assert_same(grad(lambda u: jvp_fn(u).sum())(t), x.cos())


def test_vmap_of_linearize_jvp_fn():
    x, ts = A(3), A(5, 3)
    _, jvp_fn = linearize(torch.sin, x)
    assert_same(vmap(jvp_fn)(ts), x.cos() * ts)


# --- errors -------------------------------------------------------------------------------------

def _raise(*args):
    raise KeyError("boom")


@pytest.mark.parametrize("call", [
    lambda: jvp(_raise, (x3,), (x3,)),
    lambda: jvp(grad(_raise), (x3,), (x3,)),
    lambda: vmap(lambda a: jvp(_raise, (a,), (a,)))(torch.randn(2, 3)),
    lambda: jacfwd(_raise)(x3),
    lambda: jacfwd(_raise, chunk_size=1)(x3),
    lambda: linearize(_raise, x3),
    lambda: hessian(_raise)(x3),
    lambda: jvp(lambda a: torch.ones(3), (x3,), (x3,), strict=True),  # raised by jvp itself
    lambda: jvp(lambda a: (a, 3), (x3,), (x3,)),
])
@pytest.mark.parametrize("outer_grad_mode", [True, False])
def test_no_level_or_mode_leaks_when_something_raises(call, outer_grad_mode):
    with torch.set_grad_enabled(outer_grad_mode):
        with pytest.raises((KeyError, RuntimeError)):
            call()
        assert torch.is_grad_enabled() is outer_grad_mode
    assert _C.stack_depth() == 0


# Errors torch.func raises too: its exception class (or a subclass), its text first
# (torchfunc may add its own after it; test_errors_parity.py covers every such error).
TORCH_PARITY = {
    "primals_not_a_tuple": lambda api: api.jvp(torch.sin, x3, x3),
    "jacfwd_complex_input": lambda api: api.jacfwd(torch.sin)(torch.randn(3, dtype=torch.cfloat)),
    "jacfwd_complex_output": lambda api: api.jacfwd(lambda a: a.to(torch.cfloat))(x3),
}


@pytest.mark.parametrize("name", TORCH_PARITY)
def test_error_matches_torch_func(name):
    def error(fn):
        with pytest.raises(Exception) as info:
            fn()
        return info.value
    ours, theirs = error(lambda: TORCH_PARITY[name](_Ours)), error(lambda: TORCH_PARITY[name](torch.func))
    assert isinstance(ours, type(theirs)) and str(ours).startswith(str(theirs))


def independent(a):
    return torch.ones(3)


class TestForwardErrors(expecttest.TestCase):
    """Our full messages: torch.func's text first where it raises the same error, then ours."""

    def check(self, fn, exc_type):
        with self.assertRaises(exc_type) as ctx:
            fn()
        return str(ctx.exception)

    def test_primals_not_a_tuple(self):
        self.assertExpectedInline(self.check(lambda: jvp(torch.sin, x3, (x3,)), RuntimeError), """jvp(f, primals, tangents): Expected primals to be a tuple. E.g. it should be valid to call f(*primals). torchfunc: jvp(sin, primals, tangents): primals is a Tensor; pass a tuple (one entry per positional argument of the function), e.g. (x,) for one.""")

    def test_structure_mismatch(self):
        self.assertExpectedInline(self.check(lambda: jvp(torch.mul, (x3, x3), (x3,)), RuntimeError), """jvp(f, primals, tangents): Expected primals and tangents to have the same python structure. For example, if primals is a tuple of 3 tensors, tangents also must be. torchfunc: jvp(mul, primals, tangents): primals is (*, *) but tangents is (*,).""")
        self.assertExpectedInline(self.check(lambda: jvp(lambda d: d["a"], ({"a": x3},), ({"b": x3},)), RuntimeError), """jvp(f, primals, tangents): Expected primals and tangents to have the same python structure. For example, if primals is a tuple of 3 tensors, tangents also must be. torchfunc: jvp(<lambda>, primals, tangents): primals is ({'a': *},) but tangents is ({'b': *},).""")
        self.assertExpectedInline(self.check(lambda: linearize(torch.mul, x3, x3)[1](x3), RuntimeError), """\
Expected the tangents TreeSpec(tuple, None, [*]) to have the same argspec as the primals TreeSpec(tuple, None, [*,
  *]). torchfunc: linearize(func, *primals): jvp_fn expects tangents with the structure of the primals (*, *), got (*,).""")

    def test_tangent_shape_mismatch(self):
        self.assertExpectedInline(self.check(lambda: jvp(torch.mul, (x3, x3), (x3, torch.ones(4))), RuntimeError), """Trying to set a forward gradient that has a different size than that of the original Tensor, this is not supported. Tensor is of size [3] while the given forward gradient is of size [4]. torchfunc: jvp(mul, primals, tangents): tangents[1] has shape (4,) but primals[1] has shape (3,); each tangent must match its primal in shape, dtype and device.""")
        self.assertExpectedInline(self.check(lambda: linearize(torch.sin, x3)[1](torch.ones(2, 3)), RuntimeError), """tangent:0 with shape torch.Size([2, 3]) in flattened pytree doesn't match the shape torch.Size([3]) of the corresponding primal. torchfunc: linearize(func, *primals): jvp_fn: tangents[0] has shape (2, 3) but primals[0] has shape (3,); each tangent must match its primal in shape, dtype and device.""")

    def test_tangent_dtype_mismatch(self):
        # torch.func.jvp accepts a float64 tangent for a float32 primal silently.
        self.assertExpectedInline(self.check(lambda: jvp(torch.sin, (x3,), (x3.double(),)), ValueError), """jvp(sin, primals, tangents): tangents[0] has dtype torch.float64 but primals[0] has dtype torch.float32; each tangent must match its primal in shape, dtype and device.""")
        self.assertExpectedInline(self.check(lambda: linearize(torch.sin, x3)[1](x3.double()), RuntimeError), """tangent:0 with dtype torch.float64 in flattened pytree doesn't match the dtype torch.float32 of the corresponding primal. torchfunc: linearize(func, *primals): jvp_fn: tangents[0] has dtype torch.float64 but primals[0] has dtype torch.float32; each tangent must match its primal in shape, dtype and device.""")

    def test_tangent_device_mismatch(self):
        self.assertExpectedInline(self.check(lambda: jvp(torch.sin, (x3,), (torch.empty(3, device="meta"),)), RuntimeError), """Tensor on device cpu is not on the expected device meta! torchfunc: jvp(sin, primals, tangents): tangents[0] has device meta but primals[0] has device cpu; each tangent must match its primal in shape, dtype and device.""")

    def test_non_tensor_primal_or_tangent(self):
        self.assertExpectedInline(self.check(lambda: jvp(torch.sin, (x3,), (None,)), RuntimeError), """jvp(f, primals, tangents): Expected tangents to only contain Tensors, got <class 'NoneType'>. torchfunc: jvp(sin, primals, tangents): tangents[0] is None.""")
        self.assertExpectedInline(self.check(lambda: jvp(torch.sin, (torch.arange(3),), (torch.arange(3),)), ValueError), """Expected primal to be floating point or complex, but got: torch.int64. torchfunc: jvp(sin, primals, tangents): primals[0] has dtype torch.int64; forward-mode AD needs floating point or complex primals.""")

    def test_strict_with_independent_output(self):
        self.assertExpectedInline(self.check(lambda: jvp(independent, (x3,), (x3,), strict=True), RuntimeError), """jvp(f, primals, tangents, strict=True): The output of f is independent of the inputs. This is not allowed with strict=True. torchfunc: jvp(independent, primals, tangents, strict=True): the output of independent does not depend on the primals.""")

    def test_non_tensor_output(self):
        self.assertExpectedInline(self.check(lambda: jvp(lambda a: (a, 3), (x3,), (x3,)), RuntimeError), """jvp(f, primals, tangents): expected f(*primals) to return only tensors, got unsupported type <class 'int'>. torchfunc: jvp(<lambda>, primals, tangents): output[1] of <lambda> is an int.""")

    def test_has_aux_without_tuple(self):
        self.assertExpectedInline(self.check(lambda: jvp(torch.sin, (x3,), (x3,), has_aux=True), RuntimeError), """jvp(f, primals, tangents): output of function f should be a tuple: (output, aux) if has_aux is True. torchfunc: jvp(sin, primals, tangents): sin returned a Tensor.""")

    def test_chunk_size_zero(self):
        self.assertExpectedInline(self.check(lambda: jacfwd(torch.sin, chunk_size=0), ValueError), """jacfwd: `chunk_size` should be greater than 0.""")

    def test_jacfwd_bad_argnums(self):
        self.assertExpectedInline(self.check(lambda: jacfwd(f_scalar, argnums=1)(x3), RuntimeError), """Got argnum=1, but only 1 positional inputs. torchfunc: jacfwd(f_scalar, argnums=1)(*args): argnums=1 is out of range: f_scalar was called with 1 positional argument; valid argnums are -1..0.""")
        self.assertExpectedInline(self.check(lambda: jacfwd(f_two, argnums=(0, -2))(x3, x3), RuntimeError), """argnums elements must be unique, got (0, 0). torchfunc: jacfwd(f_two, argnums=(0, -2))(*args): argnums=(0, -2) selects positional arguments (0, 0), and each can be selected once.""")


# NOTE [Metadata queries answered at the front key]
_same_storage_numel = torch.ops.aten._has_same_storage_numel

METADATA_QUERY_CASES = {
    "vmap_same_shape": lambda lib, x: lib.vmap(lambda a: _queries(a, a * 2))(x),
    "vmap_other_shape": lambda lib, x: lib.vmap(lambda a: torch.tensor([torch.is_same_size(a, a[:2])]))(x),
    "vmap_captured_plain": lambda lib, x: lib.vmap(lambda a: _queries(a, torch.ones(3)))(x),
    "vmap_of_grad": lambda lib, x: lib.vmap(lib.grad(lambda a: a.sum() * _queries(a, a.exp()).sum()))(x),
    "grad_plain_views": lambda lib, x: lib.grad(lambda a: a.sum() * _queries(a[:2], a).sum())(x),
    "vmap_of_jvp": lambda lib, x: lib.vmap(lambda a: lib.jvp(lambda t: t.sin() * _queries(t, a).sum(), (a,), (a,))[1])(x),
}


def _queries(a, b):
    return torch.tensor([float(torch.is_same_size(a, b)), float(_same_storage_numel(a, b))])


@pytest.mark.parametrize("name", METADATA_QUERY_CASES)
def test_metadata_queries_match_torch_func(name):
    x = A(4, 3)
    assert_same(METADATA_QUERY_CASES[name](torchfunc, x), METADATA_QUERY_CASES[name](torch.func, x))


@pytest.mark.xfail(strict=True, reason="a BatchedTensor has no storage: _has_same_storage_numel compares the "
                   "examples' numels, torch.func the physical storages, which views of one batch share")
def test_has_same_storage_numel_of_a_view_of_a_batch_matches_torch_func():
    x = A(4, 3)
    f = lambda lib: lib.vmap(lambda a: torch.tensor([float(_same_storage_numel(a, a[:2]))]))(x)
    assert_same(f(torchfunc), f(torch.func))
