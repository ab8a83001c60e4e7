"""In-place writes of batched data into tensors the vmapped function created itself
(NOTE [In-place writes into fresh tensors]): torch.func raises on every one of these;
torchfunc gives such a tensor a batch dimension and matches the per-example loop.
Writes into tensors captured from outside still raise (test_errors_parity.py)."""
import warnings

import expecttest
import pytest
import torch
import torch.func

import torchfunc
from torchfunc._engine import _C

X = torch.linspace(-2.0, 2.0, 12, dtype=torch.float64).reshape(4, 3)
Y = torch.linspace(-1.0, 3.0, 60, dtype=torch.float64).reshape(4, 5, 3)


def _loop(func, *args):
    return torch.stack([func(*(a[i] for a in args)) for i in range(args[0].shape[0])])


def _zeros(*shape):
    return torch.zeros(*shape, dtype=torch.float64)


def copy_into_zeros(v):
    return _zeros(3).copy_(v)


def setitem_rows(v):
    out = _zeros(2, 3)
    out[1] = v
    out[0, 1:] = v[:2] * 2
    return out


def accumulate_in_a_loop(v):
    h = _zeros(3)
    steps = []
    for _ in range(3):
        h.mul_(0.5).add_(v.sin())
        steps.append(h.clone())
    return torch.stack(steps)


def view_taken_before_the_write(v):
    out = _zeros(2, 3)
    row = out[1]
    out.copy_(v)
    return row * 1


def write_through_a_view_read_the_base(v):
    out = _zeros(2, 3)
    out[0].add_(v)
    out.t()[:, 1].copy_(v.cos())
    return out.t()


def complex_written_through_view_as_real(v):
    c = torch.zeros(3, dtype=torch.complex128)
    torch.view_as_real(c)[:, 0].copy_(v)
    return torch.view_as_real(c * 1j)


def index_put_with_batched_index(v):
    out = _zeros(5)
    out.index_add_(0, torch.tensor([0, 2, 4]), v)
    out.index_put_((v.argmax(0, keepdim=True) % 5,), torch.tensor(7.0, dtype=v.dtype))
    return out


def masked_fill_then_arithmetic(v):
    buf = torch.ones(3, dtype=v.dtype)
    buf.masked_fill_(v > 0, 0.0)
    buf.addcmul_(v, v)
    return buf.exp()


def empty_then_copy(v):
    return torch.empty(3, 2, dtype=v.dtype).copy_(v.unsqueeze(1).expand(3, 2)).sum(1)


def int_buffer(v):
    counts = torch.zeros(3, dtype=torch.int64)
    counts.add_((v > 0).long())
    return counts.to(v.dtype)


FUNCS = [copy_into_zeros, setitem_rows, accumulate_in_a_loop, view_taken_before_the_write,
         write_through_a_view_read_the_base, complex_written_through_view_as_real, index_put_with_batched_index,
         masked_fill_then_arithmetic, empty_then_copy, int_buffer]


@pytest.mark.parametrize("func", FUNCS, ids=[f.__name__ for f in FUNCS])
def test_matches_the_loop(func):
    torch.testing.assert_close(torchfunc.vmap(func)(X), _loop(func, X))
    assert _C.current_level() is None


@pytest.mark.parametrize("func", [copy_into_zeros, setitem_rows, accumulate_in_a_loop],
                         ids=["copy_", "setitem", "loop"])
def test_torch_func_refuses_what_we_run(func):
    with pytest.raises(RuntimeError):
        torch.func.vmap(func)(X)


@pytest.mark.parametrize("chunk_size", [1, 3])
def test_chunks(chunk_size):
    torch.testing.assert_close(torchfunc.vmap(setitem_rows, chunk_size=chunk_size)(X), _loop(setitem_rows, X))


def test_empty_batch():
    out = torchfunc.vmap(setitem_rows)(X[:0])
    assert out.shape == (0, 2, 3)


def test_non_contiguous_input_and_out_dims():
    xt = X.t().contiguous().t()
    torch.testing.assert_close(torchfunc.vmap(copy_into_zeros, out_dims=1)(xt), _loop(copy_into_zeros, xt).t())


def test_nested_vmaps_write_at_either_level():
    def first_outer_then_inner(a, b):
        out = _zeros(3)
        out.add_(a)  # batched at the outer level only
        out.mul_(b)  # batched at both
        return out

    def first_inner_then_outer(a, b):
        out = _zeros(3)
        out.mul_(b)
        out.add_(a)
        return out

    for func in (first_outer_then_inner, first_inner_then_outer):
        got = torchfunc.vmap(torchfunc.vmap(func, in_dims=(None, 0)))(X, Y)
        expected = torch.stack([torch.stack([func(X[i], Y[i, j]) for j in range(5)]) for i in range(4)])
        torch.testing.assert_close(got, expected)


def test_fresh_at_the_outer_level_written_inside_the_inner_vmap():
    # z is created by the outer function: the inner vmap captured it, and writes into it
    # with data batched only at the outer level give it the outer batch dimension.
    def outer(a):
        z = _zeros(3)
        torchfunc.vmap(lambda b: z.add_(a) * b)(Y[0])
        return z

    torch.testing.assert_close(torchfunc.vmap(outer)(X), X)


def test_transforms_of_a_function_that_writes_into_fresh_tensors():
    def f(v):
        out = _zeros(3)
        out.copy_(v.sin())
        out[1:] *= v[:2]
        return out

    x = X[1]
    jac = torch.autograd.functional.jacobian(f, x)
    torch.testing.assert_close(torchfunc.jacfwd(f)(x), jac)
    torch.testing.assert_close(torchfunc.jacrev(f)(x), jac)
    torch.testing.assert_close(torchfunc.hessian(lambda v: f(v).sum())(x),
                               torch.autograd.functional.hessian(lambda v: f(v).sum(), x))
    per_sample = torchfunc.vmap(torchfunc.grad(lambda v: (f(v) ** 2).sum()))(X)
    torch.testing.assert_close(per_sample, _loop(lambda v: torch.func.grad(lambda u: (f(u) ** 2).sum())(v), X))
    torch.testing.assert_close(torchfunc.vmap(torchfunc.jacrev(f))(X), _loop(torch.func.jacrev(f), X))


def test_grad_of_vmap_writes_into_a_fresh_grad_tensor():
    # Under grad(vmap(f)) a fresh tensor is a GradTensor of the grad level below.
    def loss(w):
        return torchfunc.vmap(lambda v: _zeros(3).copy_(v * w).mul_(v))(X).sum()

    w = torch.tensor(2.0, dtype=torch.float64)
    torch.testing.assert_close(torchfunc.grad(loss)(w), (X * X).sum())


def test_random_draws_into_a_fresh_tensor_differ_per_example():
    out = torchfunc.vmap(lambda v: torch.empty(3).uniform_() + v.float() * 0, randomness="different")(X)
    assert out.shape == (4, 3)
    assert torch.unique(out[:, 0]).numel() == 4
    same = torchfunc.vmap(lambda v: torch.empty(3).uniform_() + v.float() * 0, randomness="same")(X)
    assert (same == same[0]).all()


def test_recurrent_modules_per_sample_gradients():
    torch.manual_seed(0)
    for module in (torch.nn.RNN(3, 5, batch_first=True), torch.nn.GRU(3, 5, batch_first=True)):
        params = {k: v.detach() for k, v in module.named_parameters()}
        seqs = torch.randn(4, 6, 3)

        def loss(p, seq):
            out, _ = torch.func.functional_call(module, p, (seq.unsqueeze(0),))
            return out.pow(2).sum()

        got = torchfunc.vmap(torchfunc.grad(loss), in_dims=(None, 0))(params, seqs)
        for i in range(4):
            expected = torch.func.grad(loss)(params, seqs[i])
            for k in params:
                torch.testing.assert_close(got[k][i], expected[k])


def out_ops_into_fresh_tensors(v):
    # NOTE [out= ops through their functional form]: mm.out, amax.out and index_select.out
    # have no rule of their own; mul.out is pointwise.
    w = torch.linspace(-1.0, 1.0, 6, dtype=v.dtype).reshape(3, 2)
    prod = torch.empty(2, 2, dtype=v.dtype)
    torch.mm(torch.stack([v, v * 2]), w, out=prod)
    peak = torch.empty(2, 1, dtype=v.dtype)
    torch.amax(prod, 1, True, out=peak)
    picked = torch.empty(2, dtype=v.dtype)
    torch.index_select(v, 0, torch.tensor([2, 0]), out=picked)
    scaled = torch.empty(2, 2, dtype=v.dtype)
    torch.mul(prod, picked, out=scaled)
    return scaled - peak


def test_out_ops_write_into_fresh_tensors():
    torch.testing.assert_close(torchfunc.vmap(out_ops_into_fresh_tensors)(X), _loop(out_ops_into_fresh_tensors, X))
    # Autograd refuses out= ops on tensors that require grad, in eager mode as under grad.
    assert torchfunc.explain("aten::mm.out").kind == "out-of"


def test_unbatched_inputs_written_into_a_batched_out_tensor():
    # The pointwise kernel alone would resize the physical out to one example's shape.
    w = torch.linspace(-1.0, 1.0, 3, dtype=torch.float64)

    def func(v):
        buf = _zeros(3)
        buf.copy_(v)
        torch.mul(w, w, out=buf)
        return buf + v

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "An output ... was resized"
        torch.testing.assert_close(torchfunc.vmap(func)(X), _loop(func, X))


class TestMessages(expecttest.TestCase):
    def test_metadata_change_after_the_write(self):
        def func(v):
            out = _zeros(3)
            out.copy_(v)
            out.unsqueeze_(0)
            return out

        with self.assertRaises(RuntimeError) as ctx:
            torchfunc.vmap(func)(X)
        self.assertExpectedInline(str(ctx.exception), """vmap: aten::unsqueeze_ would change the shape or strides in place of a tensor that became batched when batched data was written into it. Use the out-of-place version of the op (e.g. `t = t.unsqueeze(0)` instead of `t.unsqueeze_(0)`).""")
        assert _C.current_level() is None

    def test_out_tensor_of_the_wrong_shape(self):
        def func(v):
            out = _zeros(2)
            torch.mm(v.reshape(1, 3), v.reshape(3, 1), out=out)
            return out

        with self.assertRaises(RuntimeError) as ctx:
            torchfunc.vmap(func)(X)
        self.assertExpectedInline(str(ctx.exception), """vmap: aten::mm.out writes a result of shape [1, 1] into an out= tensor of shape [2], which vmap cannot resize. Allocate the out= tensor with the result's shape.""")

    def test_captured_tensor_still_raises(self):
        captured = _zeros(3)
        with self.assertRaises(RuntimeError) as ctx:
            torchfunc.vmap(lambda v: captured.copy_(v))(X)
        self.assertExpectedInline(str(ctx.exception), """vmap: inplace arithmetic(self, *extra_args) is not possible because there exists a Tensor `other` in extra_args that has more elements than `self`. This happened due to `other` being vmapped over but `self` not being vmapped over in a vmap. Please try to use out-of-place operators instead of inplace arithmetic. If said operator is being called inside the PyTorch framework, please file a bug report instead. torchfunc: aten::copy_ writes in place into a tensor that is not batched, using a value that is batched: the result would need a batch dimension the tensor does not have. The tensor comes from outside the vmapped function (only tensors the function creates itself take a batch dimension when batched data is written into them). Use the out-of-place version of the op, or write into a copy made inside the function (e.g. `t = t.clone()`).""")
        assert (captured == 0).all()
