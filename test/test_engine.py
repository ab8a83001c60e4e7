"""The engine itself: registrations, borrowed keys, threads, randomness, the fallback,
and refusing to mix with torch.func."""
import threading
import warnings

import expecttest
import pytest
import torch
import torch.nn.functional as F

import torchfunc
from torchfunc import _C, grad, vmap
from torchfunc._engine import BORROWED_KEYS




def test_key_map_matches_the_import_check():
    assert _C.key_map() == list(BORROWED_KEYS)


def test_every_rule_table_entry_names_an_op_of_this_torch():
    assert _C.unknown_rule_ops() == []


def test_rules_are_registered_on_the_batched_key():
    regs = set(torch._C._dispatch_get_registrations_for_dispatch_key("TESTING_ONLY_GenericWrapper"))
    for op in ["aten::mm", "aten::sum.dim_IntList", "aten::convolution_backward", "aten::sin",
               "aten::add.Tensor", "aten::bernoulli_.float"]:
        assert op in regs, op


def test_worker_thread_rebuilds_the_stack_from_the_snapshot():
    x = torch.randn(3, 4)
    out = vmap(lambda t: _C._call_on_new_thread(lambda: t.sin() * 2))(x)
    torch.testing.assert_close(out, x.sin() * 2)
    out = vmap(grad(lambda t: _C._call_on_new_thread(lambda: (t ** 3).sum())))(x)
    torch.testing.assert_close(out, 3 * x ** 2)


def test_thread_without_propagated_state_fails_loudly():
    x = torch.randn(3, 4)
    errors = []

    def use(t):
        def work():
            try:
                t.sin()
            except RuntimeError as e:
                errors.append(str(e))
        th = threading.Thread(target=work)
        th.start()
        th.join()
        return t

    vmap(use)(x)
    assert len(errors) == 1 and "outside of the vmap that created it" in errors[0]


class TestMessages(expecttest.TestCase):
    def test_random_in_error_mode(self):
        with self.assertRaises(RuntimeError) as ctx:
            vmap(lambda t: t + torch.randn(4))(torch.randn(3, 4))
        self.assertExpectedInline(str(ctx.exception), """vmap: called random operation while in randomness error mode. Please either use the 'same' or 'different' randomness flags on vmap or perform the randomness operation out of vmap. torchfunc: the random operation was aten::randn. Pass randomness='different' to vmap for independent draws per batch element, or randomness='same' for one draw shared by all elements.""")

    def test_dropout_in_error_mode(self):
        with self.assertRaises(RuntimeError) as ctx:
            vmap(lambda t: F.dropout(t, 0.5, training=True))(torch.randn(3, 4))
        self.assertExpectedInline(str(ctx.exception), """vmap: called random operation while in randomness error mode. Please either use the 'same' or 'different' randomness flags on vmap or perform the randomness operation out of vmap. torchfunc: the random operation was aten::bernoulli_.float. Pass randomness='different' to vmap for independent draws per batch element, or randomness='same' for one draw shared by all elements.""")

    def test_inplace_into_unbatched(self):
        captured = torch.zeros(4)
        with self.assertRaises(RuntimeError) as ctx:
            vmap(lambda t: captured.add_(t))(torch.randn(3, 4))
        self.assertExpectedInline(str(ctx.exception), """vmap: aten::add_.Tensor writes in place into a tensor that is not batched, using a value that is batched: the result would need a batch dimension the tensor does not have. The tensor comes from outside the vmapped function (only tensors the function creates itself take a batch dimension when batched data is written into them). Use the out-of-place version of the op, or write into a copy made inside the function (e.g. `t = t.clone()`).""")

    def test_item_under_vmap(self):
        with self.assertRaises(RuntimeError) as ctx:
            vmap(lambda t: t.sum().item())(torch.randn(3, 4))
        self.assertExpectedInline(str(ctx.exception), """vmap: It looks like you're calling .item() on a Tensor. We don't support vmap over calling .item() on a Tensor, please try to rewrite what you're doing with other operations. If error is occurring somewhere inside PyTorch internals, please file a bug report. torchfunc: aten::item needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices. (torchfunc: here examples 0 and 1 give different values; when every example gives the same value, vmap uses it)""")

    def test_torch_func_inside_torchfunc(self):
        with self.assertRaises(RuntimeError) as ctx:
            vmap(lambda t: torch.func.vmap(torch.sin)(t))(torch.randn(3, 4, 5))
        self.assertExpectedInline(str(ctx.exception), """torchfunc: aten::sin ran under both a torchfunc transform and a torch.func transform. The two libraries keep separate interpreter stacks and cannot see each other's wrapped tensors, so nesting them gives wrong results. Use torchfunc (or torch.func) for the whole composition.""")

    def test_fallback_disabled(self):
        _C.set_fallback_enabled(False)
        try:
            with self.assertRaises(RuntimeError) as ctx:
                vmap(lambda t: torch.nn.functional.affine_grid(t.reshape(1, 2, 3), (1, 1, 2, 2), align_corners=False))(torch.randn(3, 6))
        finally:
            _C.set_fallback_enabled(True)
        self.assertExpectedInline(str(ctx.exception), """vmap: aten::affine_grid_generator has no batching rule and the per-example fallback is disabled (torchfunc._C.set_fallback_enabled(False)).""")

    def test_captured_tensor_mutated_under_grad(self):
        captured = torch.zeros(3)
        with self.assertRaises(RuntimeError) as ctx:
            grad(lambda t: captured.add_(t).sum())(torch.randn(3))
        self.assertExpectedInline(str(ctx.exception), """During a grad (vjp, jvp, grad, etc) transform, the function provided attempted to call in-place operation (aten::add_.Tensor) that would mutate a captured Tensor. This is not supported; please rewrite the function being transformed to explicitly accept the mutated Tensor(s) as inputs. torchfunc: grad: aten::add_.Tensor writes in place into a tensor that the transformed function captured from outside (it is not an input of the function). Pass the tensor as an input, or clone it inside the function before writing to it.""")

    def test_storage_of_a_batched_tensor(self):
        with self.assertRaises(RuntimeError) as ctx:
            vmap(lambda t: t.sum() + torch.from_numpy(t.numpy()).sum())(torch.randn(3, 6))
        self.assertExpectedInline(str(ctx.exception), """Cannot access data pointer of Tensor that doesn't have storage. torchfunc: cannot access the storage of a BatchedTensor inside a transform: it has none of its own (for example .data_ptr(), .numpy(), .storage(), or an op whose kernel reads the values of a tensor argument through its data). Return the tensor from the transformed function and use it outside, or pass such arguments as Python values.""")

    def test_storage_of_a_grad_tensor(self):
        with self.assertRaises(RuntimeError) as ctx:
            grad(lambda t: t.sum() + t.detach().numpy().sum())(torch.randn(3))
        self.assertExpectedInline(str(ctx.exception), """Cannot access data pointer of Tensor that doesn't have storage. torchfunc: cannot access the storage of a GradTensor inside a transform: it has none of its own (for example .data_ptr(), .numpy(), .storage(), or an op whose kernel reads the values of a tensor argument through its data). Return the tensor from the transformed function and use it outside, or pass such arguments as Python values.""")

    def test_loop_outputs_of_different_shapes(self):
        log_probs = torch.randn(10, 2, 5).log_softmax(-1)
        targets = torch.randint(1, 5, (2, 4))
        input_lengths = torch.tensor([10, 10])

        def alpha(target_lengths):
            return torch.ops.aten._ctc_loss.Tensor(log_probs, targets, input_lengths, target_lengths)[1]

        with self.assertRaises(RuntimeError) as ctx:
            vmap(alpha)(torch.tensor([[4, 3], [2, 2]]))
        self.assertExpectedInline(str(ctx.exception), """vmap: aten::_ctc_loss.Tensor has no batching rule, and running it once per example gave its output 1 a different shape per example ([2, 10, 9] for one, [2, 10, 5] for another), which cannot be stacked into one batched tensor: the shape depends on the values of a batched input. Keep that input unbatched (in_dims=None) or call the op outside vmap.""")

    def test_batched_boolean_mask_index(self):
        with self.assertRaises(RuntimeError) as ctx:
            vmap(lambda t, m: t[m])(torch.randn(3, 5), torch.rand(3, 5) > 0.5)
        self.assertExpectedInline(str(ctx.exception), """vmap: We do not support batching operators that can support dynamic shape. Attempting to batch over indexing with a boolean mask. torchfunc: aten::index.Tensor needs the value of a batched tensor (data-dependent control flow or output shape), which differs per batch element. Rewrite without Python control flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass vmap(..., chunk_size=1), which runs the function once per example on plain slices.""")

    def test_inplace_metadata_change_without_rule(self):
        with self.assertRaises(RuntimeError) as ctx:
            vmap(lambda t: t.as_strided_((2,), (1,)))(torch.randn(3, 4))
        self.assertExpectedInline(str(ctx.exception), """vmap: aten::as_strided_ has no batching rule, and the per-example fallback cannot run it because it changes the shape or strides of its input in place. Please file an issue with torchfunc.""")

    def test_resize_of_interleaved_examples(self):
        with self.assertRaises(RuntimeError) as ctx:
            vmap(lambda t: t.resize_(2, 3), in_dims=1)(torch.randn(6, 4))
        self.assertExpectedInline(str(ctx.exception), """vmap: aten::resize_ to a new shape needs each example to be contiguous (the batch dim at 0 of a contiguous tensor), but this one is batched along dim 1 of a tensor with strides [4, 1]. Resize a copy instead: x = x.clone(memory_format=torch.contiguous_format) inside the function, or vmap with in_dims=0 over a contiguous input.""")

    def test_resize_of_a_contiguous_clone_works(self):
        x = torch.randn(6, 4)
        out = vmap(lambda t: t.clone(memory_format=torch.contiguous_format).resize_(2, 3), in_dims=1)(x)
        torch.testing.assert_close(out, x.t().reshape(4, 2, 3))


def test_resize_keeps_each_examples_leading_elements():
    x = torch.randn(4, 6)
    expected = torch.stack([r.clone().resize_(2, 2) for r in x])
    torch.testing.assert_close(vmap(lambda t: t.resize_(2, 2))(x.clone()), expected)
    torch.testing.assert_close(vmap(lambda t: t.resize_(3, 2))(x.clone()), x.view(4, 3, 2))


def test_masked_select_with_an_unbatched_mask_has_a_rule():
    x, mask = torch.randn(3, 4, 5), torch.rand(4, 5) > 0.5
    _C.set_fallback_enabled(False)
    try:
        out = vmap(lambda t: t.masked_select(mask))(x)
    finally:
        _C.set_fallback_enabled(True)
    torch.testing.assert_close(out, torch.stack([r.masked_select(mask) for r in x]))


def test_fallback_is_correct_counted_and_warns_only_when_asked():
    x = torch.randn(3, 6)
    expected = torch.stack([torch.nn.functional.affine_grid(r.reshape(1, 2, 3), (1, 1, 2, 2), align_corners=False) for r in x])
    before = _C.fallback_count()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = vmap(lambda t: torch.nn.functional.affine_grid(t.reshape(1, 2, 3), (1, 1, 2, 2), align_corners=False))(x)
    torch.testing.assert_close(out, expected)
    assert _C.fallback_count() == before + 1
    torchfunc.set_fallback_warning(True)
    try:
        with pytest.warns(UserWarning, match="fallback.*aten::affine_grid_generator"):
            vmap(lambda t: torch.nn.functional.affine_grid(t.reshape(1, 2, 3), (1, 1, 2, 2), align_corners=False))(x)
    finally:
        torchfunc.set_fallback_warning(False)


def test_randomness_same_and_different():
    x = torch.randn(4, 5)
    same = vmap(lambda t: F.dropout(t, 0.5, training=True), randomness="same")(x) == 0
    assert (same == same[0]).all()
    different = vmap(lambda t: torch.rand(50), randomness="different")(x)
    assert not torch.equal(different[0], different[1])
    shared = vmap(lambda t: torch.rand(50), randomness="same")(x)
    assert torch.equal(shared[0], shared[1])
    # dropout in eval mode draws nothing, so 'error' mode is fine
    torch.testing.assert_close(vmap(lambda t: F.dropout(t, 0.5, training=False))(x), x)


def test_grad_tensor_dies_with_its_level():
    x = torch.randn(3)
    leaked = []
    grad(lambda t: leaked.append(t * 2) or (t * 2).sum())(x)
    assert _C.describe(leaked[0]).startswith("GradTensor(level=1, dead")
    torch.testing.assert_close(leaked[0] + 1, x * 2 + 1)  # dead GradTensors stand for their values


@pytest.mark.parametrize("name", ["max", "sort", "topk", "prod", "clamp", "sdpa"])
def test_per_sample_grads_through_formulas_with_inplace_paths(name):
    # Their backward formulas write into fresh buffers in place unless the tensors look
    # like subclasses (NOTE [BatchedTensors look like tensor subclasses] in csrc/keys.h).
    fns = {
        "max": lambda a: a.max(0)[0].sum(),
        "sort": lambda a: a.sort()[0][1],
        "topk": lambda a: a.topk(2)[0].sum(),
        "prod": lambda a: a.prod(),
        "clamp": lambda a: a.clamp(-0.5, 0.5).sum(),
        "sdpa": lambda a: F.scaled_dot_product_attention(a.view(1, 2, 2), a.view(1, 2, 2), a.view(1, 2, 2)).sum(),
    }
    x = torch.randn(3, 4)
    before = _C.fallback_count()
    out = vmap(grad(fns[name]))(x)
    expected = torch.stack([torch.autograd.grad(fns[name](r.requires_grad_()), r)[0] for r in x.clone()])
    torch.testing.assert_close(out, expected)
    assert _C.fallback_count() == before


def test_example_checks_see_plain_tensors_through_every_level():
    """NOTE [Rules check what the op checks]: the first-example check of mv and bmm under
    vmap(jvp(vjp(vmap))) meets GradTensors, lower BatchedTensors and forward-mode
    ZeroTensors; it must peel them and run the kernel as eager code would (before, the
    check read a ZeroTensor's absent data and the call raised)."""
    t, w = torch.randn(3, 2, 4), torch.randn(4)
    ours = torchfunc.vmap(lambda t: torchfunc.hessian(lambda w: torch.mv(t, w).sin().sum())(w))(t)
    theirs = torch.func.vmap(lambda t: torch.func.hessian(lambda w: torch.mv(t, w).sin().sum())(w))(t)
    torch.testing.assert_close(ours, theirs)
    with pytest.raises(RuntimeError, match="vector"):  # the op's own check still runs
        torchfunc.vmap(lambda t: torchfunc.hessian(lambda w: torch.mv(t, w.outer(w)).sum())(w))(t)
