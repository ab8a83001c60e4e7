"""Errors torch.func 2.13 also raises: torchfunc raises the same exception class (or a
subclass) with torch.func's message unchanged, followed by what torchfunc adds.

Users' own test suites catch torch.func's exceptions by class and match their messages
(assertRaisesRegex, pytest.raises(match=...)), and the same suites must pass against
`import torchfunc as func`. Each row of MISUSES is one misuse, a callable taking the
library (torch.func or torchfunc); test_same_class_and_message runs it on both. Where
torch.func prints object reprs (TreeSpec dumps), torchfunc keeps its sentences before
them and says the structures in words. STANDALONE rows are misuses torch.func accepts
silently or fails on in its own code, where our message stands alone. The full text of
every message of ours is pinned in TestOurMessages (regenerate with EXPECTTEST_ACCEPT=1).
"""
import warnings

import expecttest
import pytest
import torch
import torch.func
import torch.nn.functional as F

import torchfunc
from torchfunc._engine import _C

x3 = torch.linspace(-1.0, 1.0, 3)
m34 = torch.linspace(-1.0, 1.0, 12).reshape(3, 4)
i4 = torch.arange(4)
# A tensor captured from outside the transformed function (writes into it must raise).
c4 = torch.zeros(4)


def f_scalar(a):
    return a.sin().sum()


def f_two(a, b):
    return (a * b).sum()


def escaped(lib):
    """A BatchedTensor stored in a list and used after its vmap returned."""
    store = []
    lib.vmap(lambda t: store.append(t) or t)(m34)
    return store[0].sin()


def mutates(captured):
    return lambda t: captured.add_(t).sum()


MISUSES = {
    # argnums: out of range, empty, repeated, not ints
    "argnum_out_of_range": lambda lib: lib.grad(f_scalar, argnums=1)(x3),
    "argnum_negative_out_of_range": lambda lib: lib.grad(f_scalar, argnums=-2)(x3),
    "argnum_in_tuple_out_of_range": lambda lib: lib.grad(f_two, argnums=(0, 2))(x3, x3),
    "argnum_no_positional_args": lambda lib: lib.grad(lambda: torch.ones(()))(),
    "argnum_bool": lambda lib: lib.grad(f_scalar, argnums=True)(x3),
    "grad_and_value_argnum_out_of_range": lambda lib: lib.grad_and_value(f_scalar, argnums=1)(x3),
    "jacrev_argnum_out_of_range": lambda lib: lib.jacrev(torch.sin, argnums=1)(x3),
    "jacfwd_argnum_out_of_range": lambda lib: lib.jacfwd(torch.sin, argnums=1)(x3),
    "hessian_argnum_out_of_range": lambda lib: lib.hessian(f_scalar, argnums=1)(x3),
    "argnums_empty": lambda lib: lib.grad(f_scalar, argnums=())(x3),
    "jacrev_argnums_empty": lambda lib: lib.jacrev(f_scalar, argnums=())(x3),
    "jacfwd_argnums_empty": lambda lib: lib.jacfwd(f_scalar, argnums=())(x3),
    "argnums_repeated": lambda lib: lib.grad(f_two, argnums=(0, 0))(x3, x3),
    "argnums_repeated_after_wrapping": lambda lib: lib.grad(f_two, argnums=(0, -2))(x3, x3),
    "jacrev_argnums_repeated": lambda lib: lib.jacrev(f_two, argnums=(0, 0))(x3, x3),
    "jacfwd_argnums_repeated": lambda lib: lib.jacfwd(f_two, argnums=(0, 0))(x3, x3),
    "argnums_str": lambda lib: lib.grad(f_scalar, argnums="0")(x3),
    "argnums_float": lambda lib: lib.grad(f_scalar, argnums=0.0)(x3),
    "argnums_list": lambda lib: lib.grad(f_two, argnums=[0, 1])(x3, x3),
    "argnums_tuple_with_float": lambda lib: lib.grad(f_two, argnums=(0, 1.0))(x3, x3),
    "jacrev_argnums_str": lambda lib: lib.jacrev(torch.sin, argnums="0")(x3),
    "jacfwd_argnums_str": lambda lib: lib.jacfwd(torch.sin, argnums="0")(x3),

    # grad's output
    "grad_non_scalar_output": lambda lib: lib.grad(lambda a: a * 2)(x3),
    "grad_non_tensor_output": lambda lib: lib.grad(lambda a: 1.0)(x3),
    "grad_tuple_output_without_has_aux": lambda lib: lib.grad(lambda a: (a.sum(), a))(x3),
    "grad_has_aux_output_not_a_tuple": lambda lib: lib.grad(torch.sum, has_aux=True)(x3),
    "grad_has_aux_output_3_tuple": lambda lib: lib.grad(lambda a: (a.sum(), a, a), has_aux=True)(x3),
    "grad_has_aux_output_list": lambda lib: lib.grad(lambda a: [a.sum(), a], has_aux=True)(x3),
    "grad_and_value_has_aux_output_not_a_tuple":
        lambda lib: lib.grad_and_value(torch.sum, has_aux=True)(x3),

    # has_aux with an aux that is not Tensors
    "grad_aux_none": lambda lib: lib.grad(lambda a: (a.sum(), None), has_aux=True)(x3),
    "grad_aux_int": lambda lib: lib.grad(lambda a: (a.sum(), 3), has_aux=True)(x3),
    "grad_aux_str": lambda lib: lib.grad(lambda a: (a.sum(), "s"), has_aux=True)(x3),
    "grad_aux_dict_with_int": lambda lib: lib.grad(lambda a: (a.sum(), {"n": 3, "t": a}),
                                                   has_aux=True)(x3),
    "grad_aux_list_with_none": lambda lib: lib.grad(lambda a: (a.sum(), [a, None]),
                                                    has_aux=True)(x3),
    "grad_and_value_aux_none": lambda lib: lib.grad_and_value(lambda a: (a.sum(), None),
                                                              has_aux=True)(x3),
    "vjp_aux_none": lambda lib: lib.vjp(lambda a: (a, None), x3, has_aux=True),
    "vjp_aux_int": lambda lib: lib.vjp(lambda a: (a, 3), x3, has_aux=True),
    "vjp_aux_checked_before_output": lambda lib: lib.vjp(lambda a: (3, None), x3, has_aux=True),
    "jacrev_aux_none": lambda lib: lib.jacrev(lambda a: (a, None), has_aux=True)(x3),
    "jacrev_aux_str": lambda lib: lib.jacrev(lambda a: (a, "s"), has_aux=True)(x3),
    "jacfwd_aux_none": lambda lib: lib.jacfwd(lambda a: (a, None), has_aux=True)(x3),
    "jacfwd_aux_int": lambda lib: lib.jacfwd(lambda a: (a, 3), has_aux=True)(x3),
    "jvp_aux_none": lambda lib: lib.jvp(lambda a: (a, None), (x3,), (x3,), has_aux=True),
    "jvp_aux_int": lambda lib: lib.jvp(lambda a: (a, 3), (x3,), (x3,), has_aux=True),

    # differentiated arguments
    "grad_non_tensor_argument": lambda lib: lib.grad(f_scalar)(2.0),
    "grad_integer_argument": lambda lib: lib.grad(lambda a: a.float().sum())(torch.arange(3)),
    "vjp_non_tensor_primal": lambda lib: lib.vjp(lambda a: a, 2.0),
    "vjp_integer_primal": lambda lib: lib.vjp(lambda a: a.float(), torch.arange(3)),
    "jacrev_non_tensor_argument": lambda lib: lib.jacrev(torch.sin)(2.0),
    "jacrev_integer_argument": lambda lib: lib.jacrev(lambda a: a.float())(torch.arange(3)),
    "jacfwd_integer_argument": lambda lib: lib.jacfwd(lambda a: a.float())(torch.arange(3)),
    "linearize_integer_primal": lambda lib: lib.linearize(lambda a: a.float(), torch.arange(3)),

    # vjp's (and jacrev's) output
    "vjp_non_tensor_output": lambda lib: lib.vjp(lambda a: (a, 3), x3),
    "vjp_none_output": lambda lib: lib.vjp(lambda a: None, x3),
    "vjp_empty_output": lambda lib: lib.vjp(lambda a: (), x3),
    "vjp_integer_output": lambda lib: lib.vjp(lambda a: a.long(), x3),
    "vjp_has_aux_output_not_a_tuple": lambda lib: lib.vjp(torch.sin, x3, has_aux=True),
    "jacrev_non_tensor_output": lambda lib: lib.jacrev(lambda a: 3.0)(x3),
    "jacrev_has_aux_output_not_a_tuple": lambda lib: lib.jacrev(torch.sin, has_aux=True)(x3),

    # vjp_fn's cotangents
    "cotangents_structure": lambda lib: lib.vjp(lambda a: (a, a), x3)[1](x3),
    "cotangent_shape": lambda lib: lib.vjp(torch.sin, x3)[1](torch.ones(4)),
    "cotangent_shape_broadcastable": lambda lib: lib.vjp(torch.sin, x3)[1](torch.ones(1)),
    "cotangent_shape_of_scalar_output": lambda lib: lib.vjp(lambda a: a.sum(), x3)[1](torch.ones(1)),
    "cotangent_shape_counted_among_outputs_requiring_grad":
        lambda lib: lib.vjp(lambda a: (torch.ones(3), a.cos()), x3)[1]((x3, torch.ones(4))),
    "cotangent_not_a_tensor": lambda lib: lib.vjp(torch.sin, x3)[1](1.0),
    "cotangent_none_for_non_scalar_output": lambda lib: lib.vjp(torch.sin, x3)[1](None),

    # jvp's primals and tangents
    "jvp_primals_not_a_tuple": lambda lib: lib.jvp(torch.sin, x3, (x3,)),
    "jvp_primals_list": lambda lib: lib.jvp(torch.sin, [x3], [x3]),
    "jvp_tangents_list": lambda lib: lib.jvp(torch.sin, (x3,), [x3]),
    "jvp_tangents_not_a_tuple": lambda lib: lib.jvp(torch.sin, (x3,), x3),
    "jvp_structure_mismatch": lambda lib: lib.jvp(torch.mul, (x3, x3), (x3,)),
    "jvp_dict_keys_mismatch": lambda lib: lib.jvp(lambda d: d["a"], ({"a": x3},), ({"b": x3},)),
    "jvp_empty_primals": lambda lib: lib.jvp(lambda: torch.ones(3), (), ()),
    "jvp_non_tensor_primal": lambda lib: lib.jvp(torch.sin, (2.0,), (x3,)),
    "jvp_non_tensor_tangent": lambda lib: lib.jvp(torch.sin, (x3,), (None,)),
    "jvp_integer_primal": lambda lib: lib.jvp(lambda a: a.float(), (torch.arange(3),),
                                              (torch.arange(3.0),)),
    "jvp_integer_tangent": lambda lib: lib.jvp(torch.sin, (x3,), (torch.arange(3),)),
    "jvp_tangent_shape": lambda lib: lib.jvp(torch.mul, (x3, x3), (x3, torch.ones(4))),
    "jvp_tangent_device": lambda lib: lib.jvp(torch.sin, (x3,), (torch.empty(3, device="meta"),)),

    # jvp's (and jacfwd's) output
    "jvp_non_tensor_output": lambda lib: lib.jvp(lambda a: (a, 3), (x3,), (x3,)),
    "jvp_none_output": lambda lib: lib.jvp(lambda a: None, (x3,), (x3,)),
    "jvp_empty_output": lambda lib: lib.jvp(lambda a: [], (x3,), (x3,)),
    "jvp_has_aux_output_not_a_tuple": lambda lib: lib.jvp(torch.sin, (x3,), (x3,), has_aux=True),
    "jvp_strict_independent_output":
        lambda lib: lib.jvp(lambda a: torch.ones(3), (x3,), (x3,), strict=True),
    "jacfwd_non_tensor_output": lambda lib: lib.jacfwd(lambda a: (a, 3))(x3),
    "jacfwd_has_aux_output_not_a_tuple": lambda lib: lib.jacfwd(torch.sin, has_aux=True)(x3),

    # linearize's jvp_fn
    "linearize_tangents_structure": lambda lib: lib.linearize(torch.mul, x3, x3)[1](x3),
    "linearize_tangent_shape": lambda lib: lib.linearize(torch.sin, x3)[1](torch.ones(2, 3)),
    "linearize_tangent_device":
        lambda lib: lib.linearize(torch.sin, x3)[1](torch.empty(3, device="meta")),
    "linearize_tangent_dtype": lambda lib: lib.linearize(torch.sin, x3)[1](x3.double()),

    # vmap's arguments
    "vmap_randomness_bogus": lambda lib: lib.vmap(torch.sin, randomness="bogus")(x3),
    "jacfwd_randomness_bogus": lambda lib: lib.jacfwd(torch.sin, randomness="bogus")(x3),
    "vmap_in_dims_str": lambda lib: lib.vmap(torch.sin, in_dims="0")(x3),
    "vmap_in_dims_list": lambda lib: lib.vmap(torch.sin, in_dims=[0])(x3),
    "vmap_in_dim_str": lambda lib: lib.vmap(torch.sin, in_dims=("0",))(x3),
    "vmap_in_dims_too_many_entries": lambda lib: lib.vmap(torch.mul, in_dims=(0, 0, 0))(x3, x3),
    "vmap_in_dims_nested_mismatch": lambda lib: lib.vmap(lambda a: a, in_dims=((0, 0),))(x3),
    "vmap_in_dims_dict_keys": lambda lib: lib.vmap(lambda d: d["a"], in_dims=({"a": 0},))({"b": x3}),
    "vmap_in_dim_out_of_range": lambda lib: lib.vmap(torch.sin, in_dims=2)(m34),
    "vmap_in_dim_on_non_tensor": lambda lib: lib.vmap(lambda a, b: a * b, in_dims=(0, 0))(x3, 2.0),
    "vmap_scalar_input": lambda lib: lib.vmap(torch.sin)(torch.tensor(1.0)),
    "vmap_batch_sizes_differ": lambda lib: lib.vmap(torch.add)(torch.ones(3), torch.ones(4)),
    "vmap_no_inputs": lambda lib: lib.vmap(lambda: torch.ones(2))(),
    "vmap_in_dims_none": lambda lib: lib.vmap(torch.add, in_dims=None)(x3, x3),
    "vmap_chunk_size_zero": lambda lib: lib.vmap(torch.sin, chunk_size=0),

    # vmap's outputs
    "vmap_returns_float": lambda lib: lib.vmap(lambda a: 3.0)(x3),
    "vmap_returns_none": lambda lib: lib.vmap(lambda a: None)(x3),
    "vmap_returns_batched_with_out_dims_none": lambda lib: lib.vmap(torch.sin, out_dims=None)(x3),
    "vmap_out_dims_str": lambda lib: lib.vmap(torch.sin, out_dims="0")(x3),
    "vmap_out_dims_float": lambda lib: lib.vmap(torch.sin, out_dims=0.0)(x3),
    "vmap_out_dims_too_many_entries": lambda lib: lib.vmap(lambda a: (a, a), out_dims=(0, 0, 0))(x3),
    "vmap_out_dims_tuple_for_tensor": lambda lib: lib.vmap(torch.sin, out_dims=(0, 0))(x3),
    "vmap_out_dims_list_for_tuple": lambda lib: lib.vmap(lambda a: (a, a), out_dims=[0, 0])(x3),
    "vmap_out_dim_out_of_range": lambda lib: lib.vmap(torch.sin, out_dims=3)(x3),
    "vmap_out_dim_negative_out_of_range":
        lambda lib: lib.vmap(lambda a: (a, a.outer(a)), out_dims=(0, -4))(m34),
    "vmap_out_dim_out_of_range_chunked": lambda lib: lib.vmap(torch.sin, out_dims=3, chunk_size=2)(x3),

    # values of batched tensors
    "vmap_item": lambda lib: lib.vmap(lambda t: t.sum().item())(m34),
    "vmap_float_of_tensor": lambda lib: lib.vmap(lambda t: t * float(t.sum()))(m34),
    "vmap_local_scalar_dense": lambda lib: lib.vmap(
        lambda t: t * torch.ops.aten._local_scalar_dense(t.sum()))(m34),
    "vmap_if_on_tensor": lambda lib: lib.vmap(lambda t: t if t.sum() > 0 else -t)(m34),
    "vmap_nonzero": lambda lib: lib.vmap(torch.nonzero)(m34),
    "vmap_unique": lambda lib: lib.vmap(torch.unique)(m34),
    "vmap_unique_consecutive": lambda lib: lib.vmap(torch.unique_consecutive)(m34),
    "vmap_unique_dim": lambda lib: lib.vmap(lambda t: torch.unique(t, dim=0))(m34),
    "vmap_masked_select_batched_mask": lambda lib: lib.vmap(lambda t, m: t.masked_select(m))(m34, m34 > 0),
    "vmap_boolean_mask_index": lambda lib: lib.vmap(lambda t, m: t[m])(m34, m34 > 0),
    "vmap_equal": lambda lib: lib.vmap(lambda t: t * torch.equal(t, m34[0]))(m34),  # differs per example
    "vmap_allclose": lambda lib: lib.vmap(lambda t: t * torch.allclose(t, m34[0]))(m34),  # differs per example
    "vmap_assert_async": lambda lib: lib.vmap(lambda t: (torch._assert_async(t.sum() > -100), t)[1])(m34),
    "vmap_data_ptr": lambda lib: lib.vmap(lambda t: t + t.data_ptr())(m34),
    "grad_numpy": lambda lib: lib.grad(lambda t: t.sum() + t.detach().numpy().sum())(x3),
    "vmap_escaped_tensor": escaped,

    # randomness
    "vmap_random_in_error_mode": lambda lib: lib.vmap(lambda t: t + torch.randn(4))(m34),
    "vmap_dropout_in_error_mode": lambda lib: lib.vmap(lambda t: F.dropout(t, 0.5, training=True))(m34),
    "vmap_rand_like_in_error_mode": lambda lib: lib.vmap(torch.rand_like)(m34),
    "vmap_randperm_in_error_mode": lambda lib: lib.vmap(lambda t: torch.randperm(4) + t)(m34),
    "jacfwd_random_in_error_mode": lambda lib: lib.jacfwd(lambda a: a + torch.rand(3))(x3),
    "vmap_same_randomness_batched_input":
        lambda lib: lib.vmap(lambda t: torch.bernoulli(t.sigmoid()), randomness="same")(m34),
    "vmap_same_randomness_multinomial":
        lambda lib: lib.vmap(lambda t: torch.multinomial(t.softmax(0), 2), randomness="same")(m34),
    "vmap_different_randomness_unbatched_inplace": lambda lib: lib.vmap(
        lambda t: t + c4.uniform_(), randomness="different")(m34),
    "vmap_different_randomness_inplace_bernoulli": lambda lib: lib.vmap(
        lambda t: c4.bernoulli_(t.sigmoid()), randomness="different")(m34),

    # in-place writes into an unbatched tensor captured from outside (torchfunc gives a
    # tensor the function creates a batch dimension: test_vmap_fresh_writes.py)
    "vmap_inplace_mul_into_unbatched": lambda lib: lib.vmap(lambda t: c4.mul_(t))(m34),
    "vmap_inplace_copy_into_unbatched": lambda lib: lib.vmap(lambda t: c4.copy_(t))(m34),
    "vmap_setitem_into_unbatched": lambda lib: lib.vmap(
        lambda t: (c4.__setitem__(slice(None), t), c4)[1])(m34),
    "vmap_inplace_index_add_into_unbatched":
        lambda lib: lib.vmap(lambda t: c4.index_add_(0, i4, t))(m34),
    "vmap_inplace_fill_into_unbatched": lambda lib: lib.vmap(lambda t: c4.fill_(t.sum()))(m34),
    "vmap_inplace_addcmul_into_unbatched":
        lambda lib: lib.vmap(lambda t: c4.addcmul_(t, t))(m34),
    # fresh at level 1, but captured by the vmap at level 2
    "vmap_inplace_addcmul_into_unbatched_at_level_2": lambda lib: lib.vmap(
        lambda t: (lambda z: lib.vmap(lambda u: z.addcmul_(u, u))(t))(torch.zeros(4)))(m34.expand(2, 3, 4)),
    "vmap_out_into_unbatched": lambda lib: lib.vmap(lambda t: torch.sin(t, out=c4))(m34),
    "vmap_out_returning_view": lambda lib: lib.vmap(
        lambda t: torch.where(t > 0, t, torch.ones(4), out=c4))(m34),

    # in-place writes into captured tensors
    "grad_mutates_captured": lambda lib: lib.grad(mutates(torch.zeros(3)))(x3),
    "vjp_mutates_captured": lambda lib: lib.vjp(mutates(torch.zeros(3)), x3),
    "jvp_mutates_captured": lambda lib: lib.jvp(mutates(torch.zeros(3)), (x3,), (x3,)),
    "jacrev_mutates_captured": lambda lib: lib.jacrev(mutates(torch.zeros(3)))(x3),
    "jacfwd_mutates_captured": lambda lib: lib.jacfwd(mutates(torch.zeros(3)))(x3),
    "vmap_of_grad_mutates_captured": lambda lib: lib.vmap(lib.grad(mutates(torch.zeros(4))))(m34),

    # autograd's own entry points inside a transform
    "grad_backward_inside": lambda lib: lib.grad(lambda a: (a * 2).sum().backward() or a.sum())(x3),
    "vmap_backward_inside": lambda lib: lib.vmap(
        lambda a: torch.autograd.backward((a * torch.ones(4, requires_grad=True)).sum()) or a)(m34),
    "grad_retain_grad_inside": lambda lib: lib.grad(lambda a: (lambda y: y.retain_grad() or y.sum())(a * 2))(x3),
    "vmap_of_grad_retain_grad_inside": lambda lib: lib.vmap(
        lib.grad(lambda a: (lambda y: y.retain_grad() or y.sum())(a * 2)))(m34),
}

# torch.func accepts these silently, or fails in its own code; our message stands alone.
STANDALONE = {
    "jvp_tangent_dtype": lambda lib: lib.jvp(torch.sin, (x3,), (x3.double(),)),
    "cotangent_shape_of_output_not_requiring_grad":
        lambda lib: lib.vjp(lambda a: (a.sin(), torch.ones(3)), x3)[1]((x3, torch.ones(4))),
    "cotangent_shape_of_second_output": lambda lib: lib.vjp(lambda a: (a.sin(), a.cos()), x3)[1](
        (x3, torch.ones(4))),
    "linearize_non_tensor_tangent": lambda lib: lib.linearize(torch.sin, x3)[1](None),
    "linearize_non_tensor_primal": lambda lib: lib.linearize(torch.sin, 2.0),
    "jacfwd_non_tensor_argument": lambda lib: lib.jacfwd(torch.sin)(2.0),
    "vmap_inplace_add_into_unbatched": lambda lib: lib.vmap(lambda t: c4.add_(t))(m34),
    "vmap_escaped_tensor_in_another_vmap": lambda lib: (lambda store: (
        lib.vmap(lambda t: store.append(t) or t)(m34), lib.vmap(lambda u: store[0] + u)(m34)))([]),
    "vmap_repeat_interleave": lambda lib: lib.vmap(torch.repeat_interleave)(torch.tensor([[0, 1], [1, 1]])),
    "vmap_uint8_mask_index": lambda lib: lib.vmap(lambda t, m: t[m])(m34, (m34 > 0).to(torch.uint8)),
}


def _raised(misuse, lib) -> BaseException:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.func's fallback warnings
        try:
            misuse(lib)
        except Exception as e:  # noqa: BLE001 - any exception is the subject here
            return e
    pytest.fail(f"{getattr(lib, '__name__', lib)} did not raise")


def _before_reprs(message: str) -> str:
    """torch.func's sentences before the first TreeSpec dump (those torchfunc keeps)."""
    at = message.find("TreeSpec(")
    if at < 0:
        return message
    return message[:message[:at].rfind(". ") + 1]


def ours(name: str) -> str:
    table = MISUSES if name in MISUSES else STANDALONE
    message = str(_raised(table[name], torchfunc))
    assert _C.stack_depth() == 0
    return message


@pytest.mark.parametrize("name", MISUSES)
def test_same_class_and_message(name):
    theirs = _raised(MISUSES[name], torch.func)
    mine = _raised(MISUSES[name], torchfunc)
    assert _C.stack_depth() == 0, "a level leaked"
    assert isinstance(mine, type(theirs)), (type(mine), type(theirs))
    expected = str(theirs) if str(theirs) in str(mine) else _before_reprs(str(theirs))
    assert expected and str(mine).startswith(expected), (str(theirs), str(mine))


@pytest.mark.parametrize("name", STANDALONE)
def test_standalone_misuses_raise(name):
    _raised(STANDALONE[name], torchfunc)
    assert _C.stack_depth() == 0, "a level leaked"


def test_old_except_clauses_keep_working():
    """Where torchfunc used to raise another class, its exceptions derive from both."""
    with pytest.raises(ValueError):
        torchfunc.grad(f_scalar, argnums=1)(x3)
    with pytest.raises(TypeError):
        torchfunc.grad(f_scalar, argnums="0")
    with pytest.raises(ValueError):
        torchfunc.vmap(torch.sin, randomness="bogus")
    with pytest.raises(ValueError):
        torchfunc.vmap(torch.sin, out_dims=3)(x3)
    with pytest.raises(ValueError):
        torchfunc.jvp(torch.sin, (x3,), (torch.ones(4),))
    with pytest.raises(ValueError):
        torchfunc.grad(lambda a: a.float().sum())(torch.arange(3))


def test_every_misuse_has_a_pinned_message():
    pinned = {name[len("test_"):] for name in dir(TestOurMessages) if name.startswith("test_")}
    assert pinned == set(MISUSES) | set(STANDALONE)


class TestOurMessages(expecttest.TestCase):
    """The full message of ours for each misuse."""

    def test_argnum_out_of_range(self):
        self.assertExpectedInline(ours("argnum_out_of_range"), """Got argnum=1, but only 1 positional inputs. torchfunc: grad(f_scalar, argnums=1)(*args): argnums=1 is out of range: f_scalar was called with 1 positional argument; valid argnums are -1..0.""")

    def test_argnum_negative_out_of_range(self):
        self.assertExpectedInline(ours("argnum_negative_out_of_range"), """Got argnum=-2, but only 1 positional inputs. torchfunc: grad(f_scalar, argnums=-2)(*args): argnums=-2 is out of range: f_scalar was called with 1 positional argument; valid argnums are -1..0.""")

    def test_argnum_in_tuple_out_of_range(self):
        self.assertExpectedInline(ours("argnum_in_tuple_out_of_range"), """Got argnum=2, but only 2 positional inputs. torchfunc: grad(f_two, argnums=(0, 2))(*args): argnums=2 is out of range: f_two was called with 2 positional arguments; valid argnums are -2..1.""")

    def test_argnum_no_positional_args(self):
        self.assertExpectedInline(ours("argnum_no_positional_args"), """Got argnum=0, but only 0 positional inputs. torchfunc: grad(<lambda>, argnums=0)(*args): argnums=0 is out of range: <lambda> was called with no positional arguments.""")

    def test_argnum_bool(self):
        self.assertExpectedInline(ours("argnum_bool"), """Got argnum=True, but only 1 positional inputs. torchfunc: grad(f_scalar, argnums=True)(*args): argnums=True is out of range: f_scalar was called with 1 positional argument; valid argnums are -1..0.""")

    def test_grad_and_value_argnum_out_of_range(self):
        self.assertExpectedInline(ours("grad_and_value_argnum_out_of_range"), """Got argnum=1, but only 1 positional inputs. torchfunc: grad_and_value(f_scalar, argnums=1)(*args): argnums=1 is out of range: f_scalar was called with 1 positional argument; valid argnums are -1..0.""")

    def test_jacrev_argnum_out_of_range(self):
        self.assertExpectedInline(ours("jacrev_argnum_out_of_range"), """Got argnum=1, but only 1 positional inputs. torchfunc: jacrev(sin, argnums=1)(*args): argnums=1 is out of range: sin was called with 1 positional argument; valid argnums are -1..0.""")

    def test_jacfwd_argnum_out_of_range(self):
        self.assertExpectedInline(ours("jacfwd_argnum_out_of_range"), """Got argnum=1, but only 1 positional inputs. torchfunc: jacfwd(sin, argnums=1)(*args): argnums=1 is out of range: sin was called with 1 positional argument; valid argnums are -1..0.""")

    def test_hessian_argnum_out_of_range(self):
        self.assertExpectedInline(ours("hessian_argnum_out_of_range"), """Got argnum=1, but only 1 positional inputs. torchfunc: jacfwd(f_scalar, argnums=1)(*args): argnums=1 is out of range: f_scalar was called with 1 positional argument; valid argnums are -1..0.""")

    def test_argnums_empty(self):
        self.assertExpectedInline(ours("argnums_empty"), """argnums must be non-empty. torchfunc: grad(f_scalar, argnums=()): select at least one positional argument to differentiate.""")

    def test_jacrev_argnums_empty(self):
        self.assertExpectedInline(ours("jacrev_argnums_empty"), """argnums must be non-empty. torchfunc: jacrev(f_scalar, argnums=()): select at least one positional argument to differentiate.""")

    def test_jacfwd_argnums_empty(self):
        self.assertExpectedInline(ours("jacfwd_argnums_empty"), """argnums must be non-empty. torchfunc: jacfwd(f_scalar, argnums=()): select at least one positional argument to differentiate.""")

    def test_argnums_repeated(self):
        self.assertExpectedInline(ours("argnums_repeated"), """argnums elements must be unique, got (0, 0). torchfunc: grad(f_two, argnums=(0, 0)): each positional argument can be selected once.""")

    def test_argnums_repeated_after_wrapping(self):
        self.assertExpectedInline(ours("argnums_repeated_after_wrapping"), """argnums elements must be unique, got (0, 0). torchfunc: grad(f_two, argnums=(0, -2))(*args): argnums=(0, -2) selects positional arguments (0, 0), and each can be selected once.""")

    def test_jacrev_argnums_repeated(self):
        self.assertExpectedInline(ours("jacrev_argnums_repeated"), """argnums elements must be unique, got (0, 0). torchfunc: jacrev(f_two, argnums=(0, 0)): each positional argument can be selected once.""")

    def test_jacfwd_argnums_repeated(self):
        self.assertExpectedInline(ours("jacfwd_argnums_repeated"), """argnums elements must be unique, got (0, 0). torchfunc: jacfwd(f_two, argnums=(0, 0)): each positional argument can be selected once.""")

    def test_argnums_str(self):
        self.assertExpectedInline(ours("argnums_str"), """argnums must be int or Tuple[int, ...], got: <class 'str'>. torchfunc: grad(f_scalar, argnums='0'): argnums must be the index of a positional argument (an int) or a tuple of them, got '0' (a str).""")

    def test_argnums_float(self):
        self.assertExpectedInline(ours("argnums_float"), """argnums must be int or Tuple[int, ...], got: <class 'float'>. torchfunc: grad(f_scalar, argnums=0.0): argnums must be the index of a positional argument (an int) or a tuple of them, got 0.0 (a float).""")

    def test_argnums_list(self):
        self.assertExpectedInline(ours("argnums_list"), """argnums must be int or Tuple[int, ...], got: <class 'list'>. torchfunc: grad(f_two, argnums=[0, 1]): argnums must be the index of a positional argument (an int) or a tuple of them, got [0, 1] (a list).""")

    def test_argnums_tuple_with_float(self):
        self.assertExpectedInline(ours("argnums_tuple_with_float"), """argnum must be int, got: <class 'float'>. torchfunc: grad(f_two, argnums=(0, 1.0)): every element of argnums must be the index of a positional argument (an int), got 1.0 (a float).""")

    def test_jacrev_argnums_str(self):
        self.assertExpectedInline(ours("jacrev_argnums_str"), """argnums must be int or Tuple[int, ...], got: <class 'str'>. torchfunc: jacrev(sin, argnums='0'): argnums must be the index of a positional argument (an int) or a tuple of them, got '0' (a str).""")

    def test_jacfwd_argnums_str(self):
        self.assertExpectedInline(ours("jacfwd_argnums_str"), """argnums must be int or Tuple[int, ...], got: <class 'str'>. torchfunc: jacfwd(sin, argnums='0'): argnums must be the index of a positional argument (an int) or a tuple of them, got '0' (a str).""")

    def test_grad_non_scalar_output(self):
        self.assertExpectedInline(ours("grad_non_scalar_output"), """grad_and_value(f)(*args): Expected f(*args) to return a scalar Tensor, got tensor with 1 dims. Maybe you wanted to use the vjp or jacrev APIs instead? torchfunc: grad(<lambda>)(*args): <lambda> returned a Tensor of shape [3].""")

    def test_grad_non_tensor_output(self):
        self.assertExpectedInline(ours("grad_non_tensor_output"), """grad_and_value(f)(*args): Expected f(*args) to return a Tensor, got <class 'float'>. torchfunc: grad(<lambda>)(*args): <lambda> returned a float.""")

    def test_grad_tuple_output_without_has_aux(self):
        self.assertExpectedInline(ours("grad_tuple_output_without_has_aux"), """grad_and_value(f)(*args): Expected f(*args) to return a Tensor, got <class 'tuple'>. torchfunc: grad(<lambda>)(*args): <lambda> returned a tuple. If <lambda> returns (output, aux), pass has_aux=True to grad.""")

    def test_grad_has_aux_output_not_a_tuple(self):
        self.assertExpectedInline(ours("grad_has_aux_output_not_a_tuple"), """grad_and_value(f)(*args): output of function f should be a tuple: (output, aux) if has_aux is True. torchfunc: grad(sum)(*args): sum returned a Tensor.""")

    def test_grad_has_aux_output_3_tuple(self):
        self.assertExpectedInline(ours("grad_has_aux_output_3_tuple"), """grad_and_value(f)(*args): output of function f should be a tuple: (output, aux) if has_aux is True. torchfunc: grad(<lambda>)(*args): <lambda> returned a tuple of 3 elements.""")

    def test_grad_has_aux_output_list(self):
        self.assertExpectedInline(ours("grad_has_aux_output_list"), """grad_and_value(f)(*args): output of function f should be a tuple: (output, aux) if has_aux is True. torchfunc: grad(<lambda>)(*args): <lambda> returned a list.""")

    def test_grad_and_value_has_aux_output_not_a_tuple(self):
        self.assertExpectedInline(ours("grad_and_value_has_aux_output_not_a_tuple"), """grad_and_value(f)(*args): output of function f should be a tuple: (output, aux) if has_aux is True. torchfunc: grad_and_value(sum)(*args): sum returned a Tensor.""")

    def test_grad_aux_none(self):
        self.assertExpectedInline(ours("grad_aux_none"), """Expected tensors, got unsupported type <class 'NoneType'>. torchfunc: grad(<lambda>)(*args): with has_aux=True, <lambda> must return (output, aux) where aux is a Tensor or a pytree of Tensors, but aux is None. Return other values as Tensors (e.g. torch.tensor(...)), or outside of the transformed function.""")

    def test_grad_aux_int(self):
        self.assertExpectedInline(ours("grad_aux_int"), """Expected tensors, got unsupported type <class 'int'>. torchfunc: grad(<lambda>)(*args): with has_aux=True, <lambda> must return (output, aux) where aux is a Tensor or a pytree of Tensors, but aux is an int. Return other values as Tensors (e.g. torch.tensor(...)), or outside of the transformed function.""")

    def test_grad_aux_str(self):
        self.assertExpectedInline(ours("grad_aux_str"), """Expected tensors, got unsupported type <class 'str'>. torchfunc: grad(<lambda>)(*args): with has_aux=True, <lambda> must return (output, aux) where aux is a Tensor or a pytree of Tensors, but aux is a str. Return other values as Tensors (e.g. torch.tensor(...)), or outside of the transformed function.""")

    def test_grad_aux_dict_with_int(self):
        self.assertExpectedInline(ours("grad_aux_dict_with_int"), """Expected tensors, got unsupported type <class 'int'>. torchfunc: grad(<lambda>)(*args): with has_aux=True, <lambda> must return (output, aux) where aux is a Tensor or a pytree of Tensors, but aux['n'] is an int. Return other values as Tensors (e.g. torch.tensor(...)), or outside of the transformed function.""")

    def test_grad_aux_list_with_none(self):
        self.assertExpectedInline(ours("grad_aux_list_with_none"), """Expected tensors, got unsupported type <class 'NoneType'>. torchfunc: grad(<lambda>)(*args): with has_aux=True, <lambda> must return (output, aux) where aux is a Tensor or a pytree of Tensors, but aux[1] is None. Return other values as Tensors (e.g. torch.tensor(...)), or outside of the transformed function.""")

    def test_grad_and_value_aux_none(self):
        self.assertExpectedInline(ours("grad_and_value_aux_none"), """Expected tensors, got unsupported type <class 'NoneType'>. torchfunc: grad_and_value(<lambda>)(*args): with has_aux=True, <lambda> must return (output, aux) where aux is a Tensor or a pytree of Tensors, but aux is None. Return other values as Tensors (e.g. torch.tensor(...)), or outside of the transformed function.""")

    def test_vjp_aux_none(self):
        self.assertExpectedInline(ours("vjp_aux_none"), """Expected tensors, got unsupported type <class 'NoneType'>. torchfunc: vjp(<lambda>, *primals): with has_aux=True, <lambda> must return (output, aux) where aux is a Tensor or a pytree of Tensors, but aux is None. Return other values as Tensors (e.g. torch.tensor(...)), or outside of the transformed function.""")

    def test_vjp_aux_int(self):
        self.assertExpectedInline(ours("vjp_aux_int"), """Expected tensors, got unsupported type <class 'int'>. torchfunc: vjp(<lambda>, *primals): with has_aux=True, <lambda> must return (output, aux) where aux is a Tensor or a pytree of Tensors, but aux is an int. Return other values as Tensors (e.g. torch.tensor(...)), or outside of the transformed function.""")

    def test_vjp_aux_checked_before_output(self):
        self.assertExpectedInline(ours("vjp_aux_checked_before_output"), """Expected tensors, got unsupported type <class 'NoneType'>. torchfunc: vjp(<lambda>, *primals): with has_aux=True, <lambda> must return (output, aux) where aux is a Tensor or a pytree of Tensors, but aux is None. Return other values as Tensors (e.g. torch.tensor(...)), or outside of the transformed function.""")

    def test_jacrev_aux_none(self):
        self.assertExpectedInline(ours("jacrev_aux_none"), """Expected tensors, got unsupported type <class 'NoneType'>. torchfunc: jacrev(<lambda>)(*args): with has_aux=True, <lambda> must return (output, aux) where aux is a Tensor or a pytree of Tensors, but aux is None. Return other values as Tensors (e.g. torch.tensor(...)), or outside of the transformed function.""")

    def test_jacrev_aux_str(self):
        self.assertExpectedInline(ours("jacrev_aux_str"), """Expected tensors, got unsupported type <class 'str'>. torchfunc: jacrev(<lambda>)(*args): with has_aux=True, <lambda> must return (output, aux) where aux is a Tensor or a pytree of Tensors, but aux is a str. Return other values as Tensors (e.g. torch.tensor(...)), or outside of the transformed function.""")

    def test_jacfwd_aux_none(self):
        self.assertExpectedInline(ours("jacfwd_aux_none"), """Expected tensors, got unsupported type <class 'NoneType'>. torchfunc: jacfwd(<lambda>)(*args): with has_aux=True, <lambda> must return (output, aux) where aux is a Tensor or a pytree of Tensors, but aux is None. Return other values as Tensors (e.g. torch.tensor(...)), or outside of the transformed function.""")

    def test_jacfwd_aux_int(self):
        self.assertExpectedInline(ours("jacfwd_aux_int"), """Expected tensors, got unsupported type <class 'int'>. torchfunc: jacfwd(<lambda>)(*args): with has_aux=True, <lambda> must return (output, aux) where aux is a Tensor or a pytree of Tensors, but aux is an int. Return other values as Tensors (e.g. torch.tensor(...)), or outside of the transformed function.""")

    def test_jvp_aux_none(self):
        self.assertExpectedInline(ours("jvp_aux_none"), """Expected tensors, got unsupported type <class 'NoneType'>. torchfunc: jvp(<lambda>, primals, tangents): with has_aux=True, <lambda> must return (output, aux) where aux is a Tensor or a pytree of Tensors, but aux is None. Return other values as Tensors (e.g. torch.tensor(...)), or outside of the transformed function.""")

    def test_jvp_aux_int(self):
        self.assertExpectedInline(ours("jvp_aux_int"), """Expected tensors, got unsupported type <class 'int'>. torchfunc: jvp(<lambda>, primals, tangents): with has_aux=True, <lambda> must return (output, aux) where aux is a Tensor or a pytree of Tensors, but aux is an int. Return other values as Tensors (e.g. torch.tensor(...)), or outside of the transformed function.""")

    def test_grad_non_tensor_argument(self):
        self.assertExpectedInline(ours("grad_non_tensor_argument"), """Thing passed to transform API must be Tensor, got <class 'float'>. torchfunc: grad(f_scalar)(*args): args[0] is a float, but only Tensors can be differentiated. Pass it as a Tensor (e.g. torch.tensor(...)), or leave it out of argnums.""")

    def test_grad_integer_argument(self):
        self.assertExpectedInline(ours("grad_integer_argument"), """only Tensors of floating point dtype can require gradients. torchfunc: grad(<lambda>)(*args): args[0] is a Tensor of dtype torch.int64, but only floating point and complex Tensors can be differentiated. Convert it (e.g. .float()), or leave it out of argnums.""")

    def test_vjp_non_tensor_primal(self):
        self.assertExpectedInline(ours("vjp_non_tensor_primal"), """Thing passed to transform API must be Tensor, got <class 'float'>. torchfunc: vjp(<lambda>, *primals): primals[0] is a float, but only Tensors can be differentiated. Pass it as a Tensor (e.g. torch.tensor(...)), or bind it to the function (functools.partial) instead of passing it as a primal.""")

    def test_vjp_integer_primal(self):
        self.assertExpectedInline(ours("vjp_integer_primal"), """only Tensors of floating point dtype can require gradients. torchfunc: vjp(<lambda>, *primals): primals[0] is a Tensor of dtype torch.int64, but only floating point and complex Tensors can be differentiated. Convert it (e.g. .float()), or bind it to the function (functools.partial) instead of passing it as a primal.""")

    def test_jacrev_non_tensor_argument(self):
        self.assertExpectedInline(ours("jacrev_non_tensor_argument"), """Thing passed to transform API must be Tensor, got <class 'float'>. torchfunc: jacrev(sin)(*args): args[0] is a float, but only Tensors can be differentiated. Pass it as a Tensor (e.g. torch.tensor(...)), or leave it out of argnums.""")

    def test_jacrev_integer_argument(self):
        self.assertExpectedInline(ours("jacrev_integer_argument"), """only Tensors of floating point dtype can require gradients. torchfunc: jacrev(<lambda>)(*args): args[0] is a Tensor of dtype torch.int64, but only floating point and complex Tensors can be differentiated. Convert it (e.g. .float()), or leave it out of argnums.""")

    def test_jacfwd_integer_argument(self):
        self.assertExpectedInline(ours("jacfwd_integer_argument"), """Expected primal to be floating point or complex, but got: torch.int64. torchfunc: jacfwd(<lambda>)(*args): args[0] is a Tensor of dtype torch.int64, but only floating point and complex Tensors can be differentiated. Convert it (e.g. .float()), or leave it out of argnums.""")

    def test_linearize_integer_primal(self):
        self.assertExpectedInline(ours("linearize_integer_primal"), """Expected primal to be floating point or complex, but got: torch.int64. torchfunc: linearize(func, *primals): primals[0] is a Tensor of dtype torch.int64, but only floating point and complex Tensors can be differentiated. Convert it (e.g. .float()), or bind it to the function (functools.partial) instead of passing it as a primal.""")

    def test_vjp_non_tensor_output(self):
        self.assertExpectedInline(ours("vjp_non_tensor_output"), """vjp(f, *primals): expected f(*primals) to return only tensors, got unsupported type <class 'int'>. torchfunc: vjp(<lambda>, *primals): output[1] of <lambda> is an int, but only Tensors can be differentiated.""")

    def test_vjp_none_output(self):
        self.assertExpectedInline(ours("vjp_none_output"), """vjp(f, *primals): Expected f to be a function that has non-empty output (got output = [None]). torchfunc: vjp(<lambda>, *primals): <lambda> returned None; it must return a Tensor or a pytree of Tensors.""")

    def test_vjp_empty_output(self):
        self.assertExpectedInline(ours("vjp_empty_output"), """vjp(f, *primals): Expected f to be a function that has non-empty output (got output = []). torchfunc: vjp(<lambda>, *primals): <lambda> returned a tuple with no Tensor in it; it must return a Tensor or a pytree of Tensors.""")

    def test_vjp_integer_output(self):
        self.assertExpectedInline(ours("vjp_integer_output"), """vjp(f, ...): All outputs of f must be floating-point or complex Tensors, got Tensor with dtype torch.int64. torchfunc: vjp(<lambda>, *primals): the output of <lambda> has dtype torch.int64.""")

    def test_vjp_has_aux_output_not_a_tuple(self):
        self.assertExpectedInline(ours("vjp_has_aux_output_not_a_tuple"), """vjp(f, *primals): output of function f should be a tuple: (output, aux) if has_aux is True. torchfunc: vjp(sin, *primals): sin returned a Tensor.""")

    def test_jacrev_non_tensor_output(self):
        self.assertExpectedInline(ours("jacrev_non_tensor_output"), """vjp(f, *primals): expected f(*primals) to return only tensors, got unsupported type <class 'float'>. torchfunc: jacrev(<lambda>)(*args): the output of <lambda> is a float, but only Tensors can be differentiated.""")

    def test_jacrev_has_aux_output_not_a_tuple(self):
        self.assertExpectedInline(ours("jacrev_has_aux_output_not_a_tuple"), """vjp(f, *primals): output of function f should be a tuple: (output, aux) if has_aux is True. torchfunc: jacrev(sin)(*args): sin returned a Tensor.""")

    def test_cotangents_structure(self):
        self.assertExpectedInline(ours("cotangents_structure"), """Expected pytree structure of cotangents to be the same as pytree structure of outputs to the function. cotangents: *, primal output: (*, *)""")

    def test_cotangent_shape(self):
        self.assertExpectedInline(ours("cotangent_shape"), """Mismatch in shape: grad_output[0] has a shape of torch.Size([4]) and output[0] has a shape of torch.Size([3]). torchfunc: vjp_fn of vjp(sin, *primals): cotangents has shape [4], but the matching output of sin has shape [3]. Each cotangent must have the shape of its output.""")

    def test_cotangent_shape_broadcastable(self):
        self.assertExpectedInline(ours("cotangent_shape_broadcastable"), """Mismatch in shape: grad_output[0] has a shape of torch.Size([1]) and output[0] has a shape of torch.Size([3]). torchfunc: vjp_fn of vjp(sin, *primals): cotangents has shape [1], but the matching output of sin has shape [3]. Each cotangent must have the shape of its output.""")

    def test_cotangent_shape_of_scalar_output(self):
        self.assertExpectedInline(ours("cotangent_shape_of_scalar_output"), """Mismatch in shape: grad_output[0] has a shape of torch.Size([1]) and output[0] has a shape of torch.Size([]). torchfunc: vjp_fn of vjp(<lambda>, *primals): cotangents has shape [1], but the matching output of <lambda> has shape []. Each cotangent must have the shape of its output.""")

    def test_cotangent_shape_counted_among_outputs_requiring_grad(self):
        self.assertExpectedInline(ours("cotangent_shape_counted_among_outputs_requiring_grad"), """Mismatch in shape: grad_output[0] has a shape of torch.Size([4]) and output[0] has a shape of torch.Size([3]). torchfunc: vjp_fn of vjp(<lambda>, *primals): cotangents[1] has shape [4], but the matching output of <lambda> has shape [3]. Each cotangent must have the shape of its output.""")

    def test_cotangent_not_a_tensor(self):
        self.assertExpectedInline(ours("cotangent_not_a_tensor"), """gradients can be either Tensors or None, but got float. torchfunc: vjp_fn of vjp(sin, *primals): cotangents is a float; each cotangent must be a Tensor with the shape of its output.""")

    def test_cotangent_none_for_non_scalar_output(self):
        self.assertExpectedInline(ours("cotangent_none_for_non_scalar_output"), """grad can be implicitly created only for scalar outputs""")

    def test_jvp_primals_not_a_tuple(self):
        self.assertExpectedInline(ours("jvp_primals_not_a_tuple"), """jvp(f, primals, tangents): Expected primals to be a tuple. E.g. it should be valid to call f(*primals). torchfunc: jvp(sin, primals, tangents): primals is a Tensor; pass a tuple (one entry per positional argument of the function), e.g. (x,) for one.""")

    def test_jvp_primals_list(self):
        self.assertExpectedInline(ours("jvp_primals_list"), """jvp(f, primals, tangents): Expected primals to be a tuple. E.g. it should be valid to call f(*primals). torchfunc: jvp(sin, primals, tangents): primals is a list; pass a tuple (one entry per positional argument of the function), e.g. (x,) for one.""")

    def test_jvp_tangents_list(self):
        self.assertExpectedInline(ours("jvp_tangents_list"), """jvp(f, primals, tangents): Expected primals and tangents to have the same python structure. For example, if primals is a tuple of 3 tensors, tangents also must be. torchfunc: jvp(sin, primals, tangents): primals is (*,) but tangents is [*].""")

    def test_jvp_tangents_not_a_tuple(self):
        self.assertExpectedInline(ours("jvp_tangents_not_a_tuple"), """jvp(f, primals, tangents): Expected primals and tangents to have the same python structure. For example, if primals is a tuple of 3 tensors, tangents also must be. torchfunc: jvp(sin, primals, tangents): primals is (*,) but tangents is *.""")

    def test_jvp_structure_mismatch(self):
        self.assertExpectedInline(ours("jvp_structure_mismatch"), """jvp(f, primals, tangents): Expected primals and tangents to have the same python structure. For example, if primals is a tuple of 3 tensors, tangents also must be. torchfunc: jvp(mul, primals, tangents): primals is (*, *) but tangents is (*,).""")

    def test_jvp_dict_keys_mismatch(self):
        self.assertExpectedInline(ours("jvp_dict_keys_mismatch"), """jvp(f, primals, tangents): Expected primals and tangents to have the same python structure. For example, if primals is a tuple of 3 tensors, tangents also must be. torchfunc: jvp(<lambda>, primals, tangents): primals is ({'a': *},) but tangents is ({'b': *},).""")

    def test_jvp_empty_primals(self):
        self.assertExpectedInline(ours("jvp_empty_primals"), """jvp(f, primals, tangents): Expected primals to contain at least one Tensor. torchfunc: jvp(<lambda>, primals, tangents): primals has no Tensor to differentiate with respect to.""")

    def test_jvp_non_tensor_primal(self):
        self.assertExpectedInline(ours("jvp_non_tensor_primal"), """jvp(f, primals, tangents): Expected primals to only contain Tensors, got <class 'float'>. torchfunc: jvp(sin, primals, tangents): primals[0] is a float.""")

    def test_jvp_non_tensor_tangent(self):
        self.assertExpectedInline(ours("jvp_non_tensor_tangent"), """jvp(f, primals, tangents): Expected tangents to only contain Tensors, got <class 'NoneType'>. torchfunc: jvp(sin, primals, tangents): tangents[0] is None.""")

    def test_jvp_integer_primal(self):
        self.assertExpectedInline(ours("jvp_integer_primal"), """Expected primal to be floating point or complex, but got: torch.int64. torchfunc: jvp(<lambda>, primals, tangents): primals[0] has dtype torch.int64; forward-mode AD needs floating point or complex primals.""")

    def test_jvp_integer_tangent(self):
        self.assertExpectedInline(ours("jvp_integer_tangent"), """Expected tangent to be floating point or complex, but got: torch.int64. torchfunc: jvp(sin, primals, tangents): tangents[0] has dtype torch.int64; forward-mode AD needs floating point or complex tangents.""")

    def test_jvp_tangent_shape(self):
        self.assertExpectedInline(ours("jvp_tangent_shape"), """Trying to set a forward gradient that has a different size than that of the original Tensor, this is not supported. Tensor is of size [3] while the given forward gradient is of size [4]. torchfunc: jvp(mul, primals, tangents): tangents[1] has shape (4,) but primals[1] has shape (3,); each tangent must match its primal in shape, dtype and device.""")

    def test_jvp_tangent_device(self):
        self.assertExpectedInline(ours("jvp_tangent_device"), """Tensor on device cpu is not on the expected device meta! torchfunc: jvp(sin, primals, tangents): tangents[0] has device meta but primals[0] has device cpu; each tangent must match its primal in shape, dtype and device.""")

    def test_jvp_non_tensor_output(self):
        self.assertExpectedInline(ours("jvp_non_tensor_output"), """jvp(f, primals, tangents): expected f(*primals) to return only tensors, got unsupported type <class 'int'>. torchfunc: jvp(<lambda>, primals, tangents): output[1] of <lambda> is an int.""")

    def test_jvp_none_output(self):
        self.assertExpectedInline(ours("jvp_none_output"), """jvp(f, primals, tangents): Expected f to be a function that has non-empty output (got output = [None]). torchfunc: jvp(<lambda>, primals, tangents): <lambda> returned None; it must return a Tensor or a pytree of Tensors.""")

    def test_jvp_empty_output(self):
        self.assertExpectedInline(ours("jvp_empty_output"), """jvp(f, primals, tangents): Expected f to be a function that has non-empty output (got output = []). torchfunc: jvp(<lambda>, primals, tangents): <lambda> returned a list with no Tensor in it; it must return a Tensor or a pytree of Tensors.""")

    def test_jvp_has_aux_output_not_a_tuple(self):
        self.assertExpectedInline(ours("jvp_has_aux_output_not_a_tuple"), """jvp(f, primals, tangents): output of function f should be a tuple: (output, aux) if has_aux is True. torchfunc: jvp(sin, primals, tangents): sin returned a Tensor.""")

    def test_jvp_strict_independent_output(self):
        self.assertExpectedInline(ours("jvp_strict_independent_output"), """jvp(f, primals, tangents, strict=True): The output of f is independent of the inputs. This is not allowed with strict=True. torchfunc: jvp(<lambda>, primals, tangents, strict=True): the output of <lambda> does not depend on the primals.""")

    def test_jacfwd_non_tensor_output(self):
        self.assertExpectedInline(ours("jacfwd_non_tensor_output"), """jvp(f, primals, tangents): expected f(*primals) to return only tensors, got unsupported type <class 'int'>. torchfunc: jacfwd(<lambda>)(*args): output[1] of <lambda> is an int.""")

    def test_jacfwd_has_aux_output_not_a_tuple(self):
        self.assertExpectedInline(ours("jacfwd_has_aux_output_not_a_tuple"), """jvp(f, primals, tangents): output of function f should be a tuple: (output, aux) if has_aux is True. torchfunc: jacfwd(sin)(*args): sin returned a Tensor.""")

    def test_linearize_tangents_structure(self):
        self.assertExpectedInline(ours("linearize_tangents_structure"), """\
Expected the tangents TreeSpec(tuple, None, [*]) to have the same argspec as the primals TreeSpec(tuple, None, [*,
  *]). torchfunc: linearize(func, *primals): jvp_fn expects tangents with the structure of the primals (*, *), got (*,).""")

    def test_linearize_tangent_shape(self):
        self.assertExpectedInline(ours("linearize_tangent_shape"), """tangent:0 with shape torch.Size([2, 3]) in flattened pytree doesn't match the shape torch.Size([3]) of the corresponding primal. torchfunc: linearize(func, *primals): jvp_fn: tangents[0] has shape (2, 3) but primals[0] has shape (3,); each tangent must match its primal in shape, dtype and device.""")

    def test_linearize_tangent_device(self):
        self.assertExpectedInline(ours("linearize_tangent_device"), """tangent:0 with device meta in flattened pytree doesn't match the device cpu of the corresponding primal. torchfunc: linearize(func, *primals): jvp_fn: tangents[0] has device meta but primals[0] has device cpu; each tangent must match its primal in shape, dtype and device.""")

    def test_linearize_tangent_dtype(self):
        self.assertExpectedInline(ours("linearize_tangent_dtype"), """tangent:0 with dtype torch.float64 in flattened pytree doesn't match the dtype torch.float32 of the corresponding primal. torchfunc: linearize(func, *primals): jvp_fn: tangents[0] has dtype torch.float64 but primals[0] has dtype torch.float32; each tangent must match its primal in shape, dtype and device.""")

    def test_vmap_randomness_bogus(self):
        self.assertExpectedInline(ours("vmap_randomness_bogus"), """Only allowed values for randomness are 'error', 'different', or 'same'. Got bogus. torchfunc: vmap(sin, ..., randomness='bogus'): 'error' refuses random operations, 'different' draws independently per example, 'same' draws once for all examples.""")

    def test_jacfwd_randomness_bogus(self):
        self.assertExpectedInline(ours("jacfwd_randomness_bogus"), """Only allowed values for randomness are 'error', 'different', or 'same'. Got bogus. torchfunc: jacfwd(sin, ..., randomness='bogus'): randomness is passed to the vmap over the basis of the inputs.""")

    def test_vmap_in_dims_str(self):
        self.assertExpectedInline(ours("vmap_in_dims_str"), """vmap(sin, in_dims=0, ...)(<inputs>): expected `in_dims` to be int or a (potentially nested) tuple matching the structure of inputs, got: <class 'str'>.""")

    def test_vmap_in_dims_list(self):
        self.assertExpectedInline(ours("vmap_in_dims_list"), """vmap(sin, in_dims=[0], ...)(<inputs>): expected `in_dims` to be int or a (potentially nested) tuple matching the structure of inputs, got: <class 'list'>.""")

    def test_vmap_in_dim_str(self):
        self.assertExpectedInline(ours("vmap_in_dim_str"), """vmap(sin, in_dims=('0',), ...)(<inputs>): Got in_dim=0 for an input but in_dim must be either an integer dimension or None. torchfunc: got '0' (a str).""")

    def test_vmap_in_dims_too_many_entries(self):
        self.assertExpectedInline(ours("vmap_in_dims_too_many_entries"), """vmap(mul, in_dims=(0, 0, 0), ...)(<inputs>): in_dims is not compatible with the structure of `inputs`. torchfunc: in_dims has 3 entries for 2 positional inputs.""")

    def test_vmap_in_dims_nested_mismatch(self):
        self.assertExpectedInline(ours("vmap_in_dims_nested_mismatch"), """vmap(<lambda>, in_dims=((0, 0),), ...)(<inputs>): in_dims is not compatible with the structure of `inputs`. torchfunc: in_dims[0] is a tuple but inputs[0] is a Tensor.""")

    def test_vmap_in_dims_dict_keys(self):
        self.assertExpectedInline(ours("vmap_in_dims_dict_keys"), """vmap(<lambda>, in_dims=({'a': 0},), ...)(<inputs>): in_dims is not compatible with the structure of `inputs`. torchfunc: in_dims[0] has keys ['a'] but inputs[0] has keys ['b'].""")

    def test_vmap_in_dim_out_of_range(self):
        self.assertExpectedInline(ours("vmap_in_dim_out_of_range"), """vmap(sin, in_dims=2, ...)(<inputs>): Got in_dim=2 for some input, but that input is a Tensor of dimensionality 2 so expected in_dim to satisfy -2 <= in_dim < 2.""")

    def test_vmap_in_dim_on_non_tensor(self):
        self.assertExpectedInline(ours("vmap_in_dim_on_non_tensor"), """vmap(<lambda>, in_dims=(0, 0), ...)(<inputs>): Got in_dim=0 for an input but the input is of type <class 'float'>. We cannot vmap over non-Tensor arguments, please use None as the respective in_dim""")

    def test_vmap_scalar_input(self):
        self.assertExpectedInline(ours("vmap_scalar_input"), """vmap(sin, in_dims=0, ...)(<inputs>): Got in_dim=0 for some input, but that input is a Tensor of dimensionality 0 so expected in_dim to satisfy -0 <= in_dim < 0.""")

    def test_vmap_batch_sizes_differ(self):
        self.assertExpectedInline(ours("vmap_batch_sizes_differ"), """vmap: Expected all tensors to have the same size in the mapped dimension, got sizes [3, 4] for the mapped dimension""")

    def test_vmap_no_inputs(self):
        self.assertExpectedInline(ours("vmap_no_inputs"), """vmap(<lambda>)(<inputs>): got no inputs. Maybe you forgot to add inputs, or you are trying to vmap over a function with no inputs. The latter is unsupported.""")

    def test_vmap_in_dims_none(self):
        self.assertExpectedInline(ours("vmap_in_dims_none"), """vmap(add, in_dims=None, ...)(<inputs>): expected `in_dims` to be int or a (potentially nested) tuple matching the structure of inputs, got: <class 'NoneType'>.""")

    def test_vmap_chunk_size_zero(self):
        self.assertExpectedInline(ours("vmap_chunk_size_zero"), """vmap: chunk_size should be None or greater than 0. (got 0)""")

    def test_vmap_returns_float(self):
        self.assertExpectedInline(ours("vmap_returns_float"), """vmap(<lambda>, ...): `<lambda>` must only return Tensors, got type <class 'float'>. Did you mean to set out_dims= to None for output?""")

    def test_vmap_returns_none(self):
        self.assertExpectedInline(ours("vmap_returns_none"), """vmap(<lambda>, ...): `<lambda>` must only return Tensors, got type <class 'NoneType'>. Did you mean to set out_dims= to None for output?""")

    def test_vmap_returns_batched_with_out_dims_none(self):
        self.assertExpectedInline(ours("vmap_returns_batched_with_out_dims_none"), """vmap(sin, ...): `sin` can not return a BatchedTensor when out_dim is None""")

    def test_vmap_out_dims_str(self):
        self.assertExpectedInline(ours("vmap_out_dims_str"), """vmap(sin, ..., out_dims=0): `out_dims` must be an int, None or a python collection of ints representing where in the outputs the vmapped dimension should appear. torchfunc: got '0' (a str).""")

    def test_vmap_out_dims_float(self):
        self.assertExpectedInline(ours("vmap_out_dims_float"), """vmap(sin, ..., out_dims=0.0): `out_dims` must be an int, None or a python collection of ints representing where in the outputs the vmapped dimension should appear. torchfunc: got 0.0 (a float).""")

    def test_vmap_out_dims_too_many_entries(self):
        self.assertExpectedInline(ours("vmap_out_dims_too_many_entries"), """vmap(<lambda>, ..., out_dims=(0, 0, 0))(<inputs>): out_dims is not compatible with the structure of `outputs`. torchfunc: out_dims has 3 entries for 2 outputs.""")

    def test_vmap_out_dims_tuple_for_tensor(self):
        self.assertExpectedInline(ours("vmap_out_dims_tuple_for_tensor"), """vmap(sin, ..., out_dims=(0, 0))(<inputs>): out_dims is not compatible with the structure of `outputs`. torchfunc: out_dims is a tuple but outputs is a Tensor.""")

    def test_vmap_out_dims_list_for_tuple(self):
        self.assertExpectedInline(ours("vmap_out_dims_list_for_tuple"), """vmap(<lambda>, ..., out_dims=[0, 0])(<inputs>): out_dims is not compatible with the structure of `outputs`. torchfunc: out_dims is a list but outputs is a tuple.""")

    def test_vmap_out_dim_out_of_range(self):
        self.assertExpectedInline(ours("vmap_out_dim_out_of_range"), """Dimension out of range (expected to be in range of [-1, 0], but got 3). torchfunc: vmap(sin, ..., out_dims=3)(<inputs>): out_dim=3 is out of range for the output of sin, which has 0 dims per example (1 with the mapped dim), so expected -1 <= out_dim < 1.""")

    def test_vmap_out_dim_negative_out_of_range(self):
        self.assertExpectedInline(ours("vmap_out_dim_negative_out_of_range"), """Dimension out of range (expected to be in range of [-3, 2], but got -4). torchfunc: vmap(<lambda>, ..., out_dims=(0, -4))(<inputs>): out_dim=-4 is out of range for outputs[1] of <lambda>, which has 2 dims per example (3 with the mapped dim), so expected -3 <= out_dim < 3.""")

    def test_vmap_out_dim_out_of_range_chunked(self):
        self.assertExpectedInline(ours("vmap_out_dim_out_of_range_chunked"), """Dimension out of range (expected to be in range of [-1, 0], but got 3). torchfunc: vmap(sin, ..., out_dims=3)(<inputs>): out_dim=3 is out of range for the output of sin, which has 0 dims per example (1 with the mapped dim), so expected -1 <= out_dim < 1.""")

    def test_vmap_item(self):
        self.assertExpectedInline(ours("vmap_item"), """vmap: It looks like you're calling .item() on a Tensor. We don't support vmap over calling .item() on a Tensor, please try to rewrite what you're doing with other operations. If error is occurring somewhere inside PyTorch internals, please file a bug report. torchfunc: aten::item needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices. (torchfunc: here examples 0 and 1 give different values; when every example gives the same value, vmap uses it)""")

    def test_vmap_float_of_tensor(self):
        self.assertExpectedInline(ours("vmap_float_of_tensor"), """vmap: It looks like you're calling .item() on a Tensor. We don't support vmap over calling .item() on a Tensor, please try to rewrite what you're doing with other operations. If error is occurring somewhere inside PyTorch internals, please file a bug report. torchfunc: aten::item needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices. (torchfunc: here examples 0 and 1 give different values; when every example gives the same value, vmap uses it)""")

    def test_vmap_local_scalar_dense(self):
        self.assertExpectedInline(ours("vmap_local_scalar_dense"), """vmap: It looks like you're either (1) calling .item() on a Tensor or (2) attempting to use a Tensor in some data-dependent control flow or (3) encountering this error in PyTorch internals. For (1): we don't support vmap over calling .item() on a Tensor, please try to rewrite what you're doing with other operations. For (2): we don't support data-dependent control flow in vmap yet, please file an issue at https://github.com/pytorch/pytorch/issues . For (3): please file an issue. torchfunc: aten::_local_scalar_dense needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices. (torchfunc: here examples 0 and 1 give different values; when every example gives the same value, vmap uses it)""")

    def test_vmap_if_on_tensor(self):
        self.assertExpectedInline(ours("vmap_if_on_tensor"), """vmap: It looks like you're attempting to use a Tensor in some data-dependent control flow. We don't support that yet, please file an issue at https://github.com/pytorch/pytorch/issues . torchfunc: aten::is_nonzero needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices. (torchfunc: here examples 0 and 2 give different values; when every example gives the same value, vmap uses it)""")

    def test_vmap_nonzero(self):
        self.assertExpectedInline(ours("vmap_nonzero"), """vmap: We do not support batching operators that can output dynamic shape. Attempted to vmap over aten::nonzero. Please file an issue at https://github.com/pytorch/pytorch/issues if you need this feature. torchfunc: aten::nonzero needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices.""")

    def test_vmap_unique(self):
        self.assertExpectedInline(ours("vmap_unique"), """vmap: We do not support batching operators that can output dynamic shape. Attempted to vmap over aten::_unique2. Please file an issue at https://github.com/pytorch/pytorch/issues if you need this feature. torchfunc: aten::_unique2 needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices.""")

    def test_vmap_unique_consecutive(self):
        self.assertExpectedInline(ours("vmap_unique_consecutive"), """vmap: We do not support batching operators that can output dynamic shape. Attempted to vmap over aten::unique_consecutive. Please file an issue at https://github.com/pytorch/pytorch/issues if you need this feature. torchfunc: aten::unique_consecutive needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices.""")

    def test_vmap_unique_dim(self):
        self.assertExpectedInline(ours("vmap_unique_dim"), """vmap: We do not support batching operators that can output dynamic shape. Attempted to vmap over aten::unique_dim. Please file an issue at https://github.com/pytorch/pytorch/issues if you need this feature. torchfunc: aten::unique_dim needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices.""")

    def test_vmap_masked_select_batched_mask(self):
        self.assertExpectedInline(ours("vmap_masked_select_batched_mask"), """vmap: Attempted to vmap over `mask` in torch.masked_select(self, mask) We cannot support this because for each batch this would return a differently shaped Tensor. Please file an issue at https://github.com/pytorch/pytorch/issues if you need this feature. torchfunc: aten::masked_select needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices.""")

    def test_vmap_boolean_mask_index(self):
        self.assertExpectedInline(ours("vmap_boolean_mask_index"), """vmap: We do not support batching operators that can support dynamic shape. Attempting to batch over indexing with a boolean mask. torchfunc: aten::index.Tensor needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices.""")

    def test_vmap_equal(self):
        self.assertExpectedInline(ours("vmap_equal"), """Batching rule not implemented for aten::equal. We could not generate a fallback. torchfunc: aten::equal needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices. (torchfunc: here examples 0 and 1 give different values; when every example gives the same value, vmap uses it)""")

    def test_vmap_allclose(self):
        self.assertExpectedInline(ours("vmap_allclose"), """vmap over torch.allclose isn't supported yet. Please file an issue at https://github.com/pytorch/pytorch/issues if you need this feature. torchfunc: aten::allclose needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices. (torchfunc: here examples 0 and 1 give different values; when every example gives the same value, vmap uses it)""")

    def test_vmap_assert_async(self):
        self.assertExpectedInline(ours("vmap_assert_async"), """Batching rule not implemented for aten::_assert_async. The fallback path does not support operations with no returns. torchfunc: aten::_assert_async needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices.""")

    def test_vmap_data_ptr(self):
        self.assertExpectedInline(ours("vmap_data_ptr"), """Cannot access data pointer of Tensor that doesn't have storage. torchfunc: cannot access the storage of a BatchedTensor inside a transform: it has none of its own (for example .data_ptr(), .numpy(), .storage(), or an op whose kernel reads the values of a tensor argument through its data). Return the tensor from the transformed function and use it outside, or pass such arguments as Python values.""")

    def test_grad_numpy(self):
        self.assertExpectedInline(ours("grad_numpy"), """Cannot access data pointer of Tensor that doesn't have storage. torchfunc: cannot access the storage of a GradTensor inside a transform: it has none of its own (for example .data_ptr(), .numpy(), .storage(), or an op whose kernel reads the values of a tensor argument through its data). Return the tensor from the transformed function and use it outside, or pass such arguments as Python values.""")

    def test_vmap_escaped_tensor(self):
        self.assertExpectedInline(ours("vmap_escaped_tensor"), """Either your tensor may have escaped from inside a function being vmapped and this is a user error (see https://pytorch.org/functorch/stable/ux_limitations.html), or there is an internal functorch error in `gen_vmap_plumbing` Please file an issue if it looks like the latter. torchfunc: a BatchedTensor was used outside of the vmap that created it. A tensor created inside a function being vmapped must be returned from it (vmap then turns it back into a plain tensor); storing it in an outer variable or a list and using it later is not supported.""")

    def test_vmap_random_in_error_mode(self):
        self.assertExpectedInline(ours("vmap_random_in_error_mode"), """vmap: called random operation while in randomness error mode. Please either use the 'same' or 'different' randomness flags on vmap or perform the randomness operation out of vmap. torchfunc: the random operation was aten::randn. Pass randomness='different' to vmap for independent draws per batch element, or randomness='same' for one draw shared by all elements.""")

    def test_vmap_dropout_in_error_mode(self):
        self.assertExpectedInline(ours("vmap_dropout_in_error_mode"), """vmap: called random operation while in randomness error mode. Please either use the 'same' or 'different' randomness flags on vmap or perform the randomness operation out of vmap. torchfunc: the random operation was aten::bernoulli_.float. Pass randomness='different' to vmap for independent draws per batch element, or randomness='same' for one draw shared by all elements.""")

    def test_vmap_rand_like_in_error_mode(self):
        self.assertExpectedInline(ours("vmap_rand_like_in_error_mode"), """vmap: called random operation while in randomness error mode. Please either use the 'same' or 'different' randomness flags on vmap or perform the randomness operation out of vmap. torchfunc: the random operation was aten::rand_like. Pass randomness='different' to vmap for independent draws per batch element, or randomness='same' for one draw shared by all elements.""")

    def test_vmap_randperm_in_error_mode(self):
        self.assertExpectedInline(ours("vmap_randperm_in_error_mode"), """vmap: called random operation while in randomness error mode. Please either use the 'same' or 'different' randomness flags on vmap or perform the randomness operation out of vmap. torchfunc: the random operation was aten::randperm. Pass randomness='different' to vmap for independent draws per batch element, or randomness='same' for one draw shared by all elements.""")

    def test_jacfwd_random_in_error_mode(self):
        self.assertExpectedInline(ours("jacfwd_random_in_error_mode"), """vmap: called random operation while in randomness error mode. Please either use the 'same' or 'different' randomness flags on vmap or perform the randomness operation out of vmap. torchfunc: the random operation was aten::rand. Pass randomness='different' to vmap for independent draws per batch element, or randomness='same' for one draw shared by all elements.""")

    def test_vmap_same_randomness_batched_input(self):
        self.assertExpectedInline(ours("vmap_same_randomness_batched_input"), """Vmap does not currently support same randomness with a batched tensor input. Please file an issue with functorch. torchfunc: randomness='same' cannot be used for aten::bernoulli because one of its tensor inputs is batched, so the draws cannot be the same across the batch. Use randomness='different', or make that input unbatched.""")

    def test_vmap_same_randomness_multinomial(self):
        self.assertExpectedInline(ours("vmap_same_randomness_multinomial"), """Vmap does not currently support same randomness with a batched tensor input. Please file an issue with functorch. torchfunc: randomness='same' cannot be used for aten::multinomial because one of its tensor inputs is batched, so the draws cannot be the same across the batch. Use randomness='different', or make that input unbatched.""")

    def test_vmap_different_randomness_unbatched_inplace(self):
        self.assertExpectedInline(ours("vmap_different_randomness_unbatched_inplace"), """vmap: Cannot ask for different inplace randomness on an unbatched tensor. This will appear like same randomness. If this is necessary for your usage, please file an issue with functorch. torchfunc: aten::uniform_ fills an unbatched tensor in place, but randomness='different' needs one draw per batch element. Create the tensor from a batched one (e.g. `torch.empty_like(x)`) or use randomness='same'.""")

    def test_vmap_different_randomness_inplace_bernoulli(self):
        self.assertExpectedInline(ours("vmap_different_randomness_inplace_bernoulli"), """vmap: inplace bernoulli(self, *extra_args) is not possible because there exists a Tensor `other` in extra_args that has more elements than `self`. This happened due to `other` being vmapped over but `self` not being vmapped over in a vmap. Please try to use out-of-place operators instead of inplace bernoulli. If said operator is being called inside the PyTorch framework, please file a bug report instead. torchfunc: aten::bernoulli_.Tensor fills an unbatched tensor in place, but randomness='different' needs one draw per batch element. Create the tensor from a batched one (e.g. `torch.empty_like(x)`) or use randomness='same'.""")

    def test_vmap_inplace_mul_into_unbatched(self):
        self.assertExpectedInline(ours("vmap_inplace_mul_into_unbatched"), """vmap: inplace arithmetic(self, *extra_args) is not possible because there exists a Tensor `other` in extra_args that has more elements than `self`. This happened due to `other` being vmapped over but `self` not being vmapped over in a vmap. Please try to use out-of-place operators instead of inplace arithmetic. If said operator is being called inside the PyTorch framework, please file a bug report instead. torchfunc: aten::mul_.Tensor writes in place into a tensor that is not batched, using a value that is batched: the result would need a batch dimension the tensor does not have. The tensor comes from outside the vmapped function (only tensors the function creates itself take a batch dimension when batched data is written into them). Use the out-of-place version of the op, or write into a copy made inside the function (e.g. `t = t.clone()`).""")

    def test_vmap_inplace_copy_into_unbatched(self):
        self.assertExpectedInline(ours("vmap_inplace_copy_into_unbatched"), """vmap: inplace arithmetic(self, *extra_args) is not possible because there exists a Tensor `other` in extra_args that has more elements than `self`. This happened due to `other` being vmapped over but `self` not being vmapped over in a vmap. Please try to use out-of-place operators instead of inplace arithmetic. If said operator is being called inside the PyTorch framework, please file a bug report instead. torchfunc: aten::copy_ writes in place into a tensor that is not batched, using a value that is batched: the result would need a batch dimension the tensor does not have. The tensor comes from outside the vmapped function (only tensors the function creates itself take a batch dimension when batched data is written into them). Use the out-of-place version of the op, or write into a copy made inside the function (e.g. `t = t.clone()`).""")

    def test_vmap_setitem_into_unbatched(self):
        self.assertExpectedInline(ours("vmap_setitem_into_unbatched"), """vmap: inplace arithmetic(self, *extra_args) is not possible because there exists a Tensor `other` in extra_args that has more elements than `self`. This happened due to `other` being vmapped over but `self` not being vmapped over in a vmap. Please try to use out-of-place operators instead of inplace arithmetic. If said operator is being called inside the PyTorch framework, please file a bug report instead. torchfunc: aten::copy_ writes in place into a tensor that is not batched, using a value that is batched: the result would need a batch dimension the tensor does not have. The tensor comes from outside the vmapped function (only tensors the function creates itself take a batch dimension when batched data is written into them). Use the out-of-place version of the op, or write into a copy made inside the function (e.g. `t = t.clone()`).""")

    def test_vmap_inplace_index_add_into_unbatched(self):
        self.assertExpectedInline(ours("vmap_inplace_index_add_into_unbatched"), """vmap: index_add_(self, *extra_args) is not possible because there exists a Tensor `other` in extra_args that has more elements than `self`. This happened due to `other` being vmapped over but `self` not being vmapped over in a vmap. Please try to use out-of-place operators instead of index_add_. If said operator is being called inside the PyTorch framework, please file a bug report instead. torchfunc: aten::index_add_ writes in place into a tensor that is not batched, using a value that is batched: the result would need a batch dimension the tensor does not have. The tensor comes from outside the vmapped function (only tensors the function creates itself take a batch dimension when batched data is written into them). Use the out-of-place version of the op, or write into a copy made inside the function (e.g. `t = t.clone()`).""")

    def test_vmap_inplace_fill_into_unbatched(self):
        self.assertExpectedInline(ours("vmap_inplace_fill_into_unbatched"), """vmap: fill_(self, *extra_args) is not possible because there exists a Tensor `other` in extra_args that has more elements than `self`. This happened due to `other` being vmapped over but `self` not being vmapped over in a vmap. Please try to use out-of-place operators instead of fill_. If said operator is being called inside the PyTorch framework, please file a bug report instead. torchfunc: aten::fill_.Tensor writes in place into a tensor that is not batched, using a value that is batched: the result would need a batch dimension the tensor does not have. The tensor comes from outside the vmapped function (only tensors the function creates itself take a batch dimension when batched data is written into them). Use the out-of-place version of the op, or write into a copy made inside the function (e.g. `t = t.clone()`).""")

    def test_vmap_inplace_addcmul_into_unbatched(self):
        self.assertExpectedInline(ours("vmap_inplace_addcmul_into_unbatched"), """vmap: aten::addcmul_(self, *extra_args) is not possible because there exists a Tensor `other` in extra_args that has more elements than `self`. This happened due to `other` being vmapped over but `self` not being vmapped over at level 1. Please try to use out-of-place operators instead of aten::addcmul_. If said operator is being called inside the PyTorch framework, please file a bug report instead. torchfunc: aten::addcmul_ writes in place into a tensor that is not batched, using a value that is batched: the result would need a batch dimension the tensor does not have. The tensor comes from outside the vmapped function (only tensors the function creates itself take a batch dimension when batched data is written into them). Use the out-of-place version of the op, or write into a copy made inside the function (e.g. `t = t.clone()`).""")

    def test_vmap_inplace_addcmul_into_unbatched_at_level_2(self):
        self.assertExpectedInline(ours("vmap_inplace_addcmul_into_unbatched_at_level_2"), """vmap: aten::addcmul_(self, *extra_args) is not possible because there exists a Tensor `other` in extra_args that has more elements than `self`. This happened due to `other` being vmapped over but `self` not being vmapped over at level 2. Please try to use out-of-place operators instead of aten::addcmul_. If said operator is being called inside the PyTorch framework, please file a bug report instead. torchfunc: aten::addcmul_ writes in place into a tensor that is not batched, using a value that is batched: the result would need a batch dimension the tensor does not have. The tensor comes from outside the vmapped function (only tensors the function creates itself take a batch dimension when batched data is written into them). Use the out-of-place version of the op, or write into a copy made inside the function (e.g. `t = t.clone()`).""")

    def test_vmap_out_into_unbatched(self):
        self.assertExpectedInline(ours("vmap_out_into_unbatched"), """Batching rule not implemented for aten::sin.out; the fallback path doesn't work on out= or view ops. torchfunc: aten::sin.out writes in place into a tensor that is not batched, using a value that is batched: the result would need a batch dimension the tensor does not have. The tensor comes from outside the vmapped function (only tensors the function creates itself take a batch dimension when batched data is written into them). Use the out-of-place version of the op, or write into a copy made inside the function (e.g. `t = t.clone()`).""")

    def test_vmap_out_returning_view(self):
        self.assertExpectedInline(ours("vmap_out_returning_view"), """Batching rule not implemented for aten::where.self_out; the fallback path doesn't work on out= or view ops. torchfunc: aten::where.self_out writes in place into a tensor that is not batched, using a value that is batched: the result would need a batch dimension the tensor does not have. The tensor comes from outside the vmapped function (only tensors the function creates itself take a batch dimension when batched data is written into them). Use the out-of-place version of the op, or write into a copy made inside the function (e.g. `t = t.clone()`).""")

    def test_grad_mutates_captured(self):
        self.assertExpectedInline(ours("grad_mutates_captured"), """During a grad (vjp, jvp, grad, etc) transform, the function provided attempted to call in-place operation (aten::add_.Tensor) that would mutate a captured Tensor. This is not supported; please rewrite the function being transformed to explicitly accept the mutated Tensor(s) as inputs. torchfunc: grad: aten::add_.Tensor writes in place into a tensor that the transformed function captured from outside (it is not an input of the function). Pass the tensor as an input, or clone it inside the function before writing to it.""")

    def test_vjp_mutates_captured(self):
        self.assertExpectedInline(ours("vjp_mutates_captured"), """During a grad (vjp, jvp, grad, etc) transform, the function provided attempted to call in-place operation (aten::add_.Tensor) that would mutate a captured Tensor. This is not supported; please rewrite the function being transformed to explicitly accept the mutated Tensor(s) as inputs. torchfunc: grad: aten::add_.Tensor writes in place into a tensor that the transformed function captured from outside (it is not an input of the function). Pass the tensor as an input, or clone it inside the function before writing to it.""")

    def test_jvp_mutates_captured(self):
        self.assertExpectedInline(ours("jvp_mutates_captured"), """During a grad (vjp, jvp, grad, etc) transform, the function provided attempted to call in-place operation (aten::add_.Tensor) that would mutate a captured Tensor. This is not supported; please rewrite the function being transformed to explicitly accept the mutated Tensor(s) as inputs. torchfunc: jvp: aten::add_.Tensor writes in place into a tensor that the transformed function captured from outside (it is not an input of the function). Pass the tensor as an input, or clone it inside the function before writing to it.""")

    def test_jacrev_mutates_captured(self):
        self.assertExpectedInline(ours("jacrev_mutates_captured"), """During a grad (vjp, jvp, grad, etc) transform, the function provided attempted to call in-place operation (aten::add_.Tensor) that would mutate a captured Tensor. This is not supported; please rewrite the function being transformed to explicitly accept the mutated Tensor(s) as inputs. torchfunc: grad: aten::add_.Tensor writes in place into a tensor that the transformed function captured from outside (it is not an input of the function). Pass the tensor as an input, or clone it inside the function before writing to it.""")

    def test_jacfwd_mutates_captured(self):
        self.assertExpectedInline(ours("jacfwd_mutates_captured"), """During a grad (vjp, jvp, grad, etc) transform, the function provided attempted to call in-place operation (aten::add_.Tensor) that would mutate a captured Tensor. This is not supported; please rewrite the function being transformed to explicitly accept the mutated Tensor(s) as inputs. torchfunc: jvp: aten::add_.Tensor writes in place into a tensor that the transformed function captured from outside (it is not an input of the function). Pass the tensor as an input, or clone it inside the function before writing to it.""")

    def test_vmap_of_grad_mutates_captured(self):
        self.assertExpectedInline(ours("vmap_of_grad_mutates_captured"), """During a grad (vjp, jvp, grad, etc) transform, the function provided attempted to call in-place operation (aten::add_.Tensor) that would mutate a captured Tensor. This is not supported; please rewrite the function being transformed to explicitly accept the mutated Tensor(s) as inputs. torchfunc: grad: aten::add_.Tensor writes in place into a tensor that the transformed function captured from outside (it is not an input of the function). Pass the tensor as an input, or clone it inside the function before writing to it.""")

    def test_jvp_tangent_dtype(self):
        self.assertExpectedInline(ours("jvp_tangent_dtype"), """jvp(sin, primals, tangents): tangents[0] has dtype torch.float64 but primals[0] has dtype torch.float32; each tangent must match its primal in shape, dtype and device.""")

    def test_cotangent_shape_of_output_not_requiring_grad(self):
        self.assertExpectedInline(ours("cotangent_shape_of_output_not_requiring_grad"), """vjp_fn of vjp(<lambda>, *primals): cotangents[1] has shape [4], but the matching output of <lambda> has shape [3]. Each cotangent must have the shape of its output.""")

    def test_cotangent_shape_of_second_output(self):
        self.assertExpectedInline(ours("cotangent_shape_of_second_output"), """Mismatch in shape: grad_output[1] has a shape of torch.Size([4]) and output[1] has a shape of torch.Size([3]). torchfunc: vjp_fn of vjp(<lambda>, *primals): cotangents[1] has shape [4], but the matching output of <lambda> has shape [3]. Each cotangent must have the shape of its output.""")

    def test_linearize_non_tensor_tangent(self):
        self.assertExpectedInline(ours("linearize_non_tensor_tangent"), """linearize(func, *primals): jvp_fn: tangents[0] must be a Tensor, got None.""")

    def test_linearize_non_tensor_primal(self):
        self.assertExpectedInline(ours("linearize_non_tensor_primal"), """linearize(func, *primals): primals[0] is a float, but only Tensors can be differentiated. Pass it as a Tensor (e.g. torch.tensor(...)), or bind it to the function (functools.partial) instead of passing it as a primal.""")

    def test_jacfwd_non_tensor_argument(self):
        self.assertExpectedInline(ours("jacfwd_non_tensor_argument"), """jacfwd(sin)(*args): args[0] is a float, but only Tensors can be differentiated. Pass it as a Tensor (e.g. torch.tensor(...)), or leave it out of argnums.""")

    def test_vmap_inplace_add_into_unbatched(self):
        self.assertExpectedInline(ours("vmap_inplace_add_into_unbatched"), """vmap: aten::add_.Tensor writes in place into a tensor that is not batched, using a value that is batched: the result would need a batch dimension the tensor does not have. The tensor comes from outside the vmapped function (only tensors the function creates itself take a batch dimension when batched data is written into them). Use the out-of-place version of the op, or write into a copy made inside the function (e.g. `t = t.clone()`).""")

    def test_vmap_escaped_tensor_in_another_vmap(self):
        self.assertExpectedInline(ours("vmap_escaped_tensor_in_another_vmap"), """Either your tensor may have escaped from inside a function being vmapped and this is a user error (see https://pytorch.org/functorch/stable/ux_limitations.html), or there is an internal functorch error in `gen_vmap_plumbing` Please file an issue if it looks like the latter. torchfunc: a BatchedTensor was used outside of the vmap that created it. A tensor created inside a function being vmapped must be returned from it (vmap then turns it back into a plain tensor); storing it in an outer variable or a list and using it later is not supported.""")

    def test_vmap_backward_inside(self):
        self.assertExpectedInline(ours("vmap_backward_inside"), """backward() called inside a functorch transform. This is not supported, please use functorch.grad or functorch.vjp instead or call backward() outside of functorch transforms. torchfunc: backward() was called inside torchfunc.vmap at level 1; return the loss from the function and differentiate it with torchfunc.grad / torchfunc.vjp, or call backward() on the transform's result.""")

    def test_vmap_of_grad_retain_grad_inside(self):
        self.assertExpectedInline(ours("vmap_of_grad_retain_grad_inside"), """You are attempting to call Tensor.retain_grad() inside of a function being transformed by a functorch transform. This is unsupported, please attempt to use the functorch transforms (e.g. grad, vjp, jacrev, jacfwd, hessian) or call retain_grad() outside of a function being transformed instead. torchfunc: this tensor is tracked by the grad transform at level 2; return it from the function (has_aux=True) to see its gradient instead.""")

    def test_grad_backward_inside(self):
        self.assertExpectedInline(ours("grad_backward_inside"), """backward() called inside a functorch transform. This is not supported, please use functorch.grad or functorch.vjp instead or call backward() outside of functorch transforms. torchfunc: backward() was called inside torchfunc.grad at level 1; return the loss from the function and differentiate it with torchfunc.grad / torchfunc.vjp, or call backward() on the transform's result.""")

    def test_grad_retain_grad_inside(self):
        self.assertExpectedInline(ours("grad_retain_grad_inside"), """You are attempting to call Tensor.retain_grad() inside of a function being transformed by a functorch transform. This is unsupported, please attempt to use the functorch transforms (e.g. grad, vjp, jacrev, jacfwd, hessian) or call retain_grad() outside of a function being transformed instead. torchfunc: this tensor is tracked by the grad transform at level 1; return it from the function (has_aux=True) to see its gradient instead.""")

    def test_vmap_repeat_interleave(self):
        self.assertExpectedInline(ours("vmap_repeat_interleave"), """vmap: aten::repeat_interleave.Tensor needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices.""")

    def test_vmap_uint8_mask_index(self):
        self.assertExpectedInline(ours("vmap_uint8_mask_index"), """vmap: We do not support batching operators that can support dynamic shape. Attempting to batch over indexing with a boolean mask. torchfunc: aten::index.Tensor needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices.""")
