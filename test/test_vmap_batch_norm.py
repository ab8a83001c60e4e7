"""Batch norm under vmap (csrc/vmap/rules/batch_norm.cpp): every rule against a loop and
torch.func, with the per-example fallback disabled, in eval and training mode, with
batched and shared weights and running stats, and through grad/jacrev/jacfwd/hessian."""
import expecttest
import pytest
import torch
import torch.func
import torch.nn as nn
import torch.nn.functional as F

import torchfunc
from torchfunc._engine import _C

from helpers import assert_same

B, C = 3, 4


@pytest.fixture(autouse=True)
def no_fallback():
    _C.set_fallback_enabled(False)
    yield
    _C.set_fallback_enabled(True)


def _data(dtype=torch.float64, shape=(2, C, 5)):
    g = torch.Generator().manual_seed(0)
    make = lambda *s, positive=False: (torch.rand(*s, generator=g, dtype=dtype) + 0.5 if positive
                                       else torch.randn(*s, generator=g, dtype=dtype))
    return dict(x=make(B, *shape), w=make(C), bw=make(B, C), b=make(C), bb=make(B, C),
                rm=make(C), rv=make(C, positive=True), brm=make(B, C), brv=make(B, C, positive=True))


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("weights", ["shared", "batched", "none"])
@pytest.mark.parametrize("stats", ["shared", "batched", "none"])
@pytest.mark.parametrize("shape", [(2, C), (2, C, 5), (1, C, 3, 2)], ids=["2d", "3d", "4d"])
def test_forward_matches_loop_and_torch_func(training, weights, stats, shape):
    if not training and stats == "none":
        pytest.skip("eager refuses it: running_mean must be defined in evaluation mode")
    d = _data(shape=shape)
    w, b = {"shared": (d["w"], d["b"]), "batched": (d["bw"], d["bb"]), "none": (None, None)}[weights]
    rm, rv = {"shared": (d["rm"], d["rv"]), "batched": (d["brm"], d["brv"]), "none": (None, None)}[stats]
    in_dims = (0, 0 if weights == "batched" else None, 0 if weights == "batched" else None,
               0 if stats == "batched" else None, 0 if stats == "batched" else None)

    def f(x, w, b, rm, rv):
        return F.batch_norm(x, rm, rv, w, b, training=training, momentum=0.3)

    def clones():
        return [t.clone() if isinstance(t, torch.Tensor) else t for t in (d["x"], w, b, rm, rv)]

    ours, theirs, loop = clones(), clones(), clones()
    actual = torchfunc.vmap(f, in_dims=in_dims)(*ours)
    _C.set_fallback_enabled(True)  # torch.func and the loop are references
    by_loop = torch.stack([f(*[a if dim is None or a is None else a[i] for a, dim in zip(loop, in_dims)])
                           for i in range(B)])
    assert_same(actual, by_loop)
    if training and stats == "shared":  # torch.func refuses: test_shared_stats_torch_func_refuses
        with pytest.raises(RuntimeError, match="were not batched"):
            torch.func.vmap(f, in_dims=in_dims)(*theirs)
    else:
        assert_same(actual, torch.func.vmap(f, in_dims=in_dims)(*theirs))
    for mine, reference in zip(ours[3:], loop[3:]):  # running stats: updated per example
        if mine is not None:
            torch.testing.assert_close(mine, reference)


@pytest.mark.parametrize("training", [False, True])
def test_per_sample_grads(training):
    d = _data()
    rm, rv = (None, None) if training else (d["rm"], d["rv"])

    def loss(x, w, b):
        return F.batch_norm(x, rm, rv, w, b, training=training).sin().sum()

    grads = torchfunc.vmap(torchfunc.grad(loss, argnums=(0, 1, 2)), in_dims=(0, None, None))(
        d["x"], d["w"], d["b"])
    loop = []
    for i in range(B):
        args = [t.clone().requires_grad_() for t in (d["x"][i], d["w"], d["b"])]
        loop.append(torch.autograd.grad(loss(*args), args))
    for j in range(3):
        torch.testing.assert_close(grads[j], torch.stack([g[j] for g in loop]))


@pytest.mark.parametrize("transform", ["jacrev", "jacfwd", "hessian"])
@pytest.mark.parametrize("training", [False, True])
def test_jacobians_match_torch_func(transform, training):
    d = _data(shape=(3, C))
    rm, rv = (None, None) if training else (d["rm"], d["rv"])

    def f(w):
        out = F.batch_norm(d["x"][0], rm, rv, w, d["b"], training=training)
        return out.sin().sum() if transform == "hessian" else out

    actual = getattr(torchfunc, transform)(f)(d["w"])
    _C.set_fallback_enabled(True)
    assert_same(actual, getattr(torch.func, transform)(f)(d["w"]))


def test_module_after_replace_all_batch_norm_modules_():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 2)).double()
    torchfunc.replace_all_batch_norm_modules_(model)
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    x = torch.randn(5, 2, 3, 6, 6, dtype=torch.float64)

    def loss(lib, p, b, xx):
        return lib.functional_call(model, (p, b), (xx,)).sum()

    ours = torchfunc.vmap(torchfunc.grad(lambda *a: loss(torchfunc, *a)), in_dims=(None, None, 0))(
        params, buffers, x)
    _C.set_fallback_enabled(True)
    theirs = torch.func.vmap(torch.func.grad(lambda *a: loss(torch.func, *a)), in_dims=(None, None, 0))(
        params, buffers, x)
    assert_same(ours, theirs)


def test_instance_norm_per_sample_grads():
    model = nn.InstanceNorm1d(C, affine=True).double()
    params = dict(model.named_parameters())
    x = torch.randn(B, 2, C, 5, dtype=torch.float64)

    def loss(lib, p, xx):
        return lib.functional_call(model, p, (xx,)).sin().sum()

    ours = torchfunc.vmap(torchfunc.grad(lambda *a: loss(torchfunc, *a)), in_dims=(None, 0))(params, x)
    _C.set_fallback_enabled(True)
    theirs = torch.func.vmap(torch.func.grad(lambda *a: loss(torch.func, *a)), in_dims=(None, 0))(params, x)
    assert_same(ours, theirs)


@pytest.mark.parametrize("momentum", [0.1, 0.0, 1.0, -1.2])
@pytest.mark.parametrize("in_dim", [0, 2])
def test_shared_stats_take_one_update_per_example(momentum, in_dim):
    # NOTE [Shared running stats take one update per example]: what a loop over the
    # examples leaves in the shared stats (torch.func refuses this case).
    d = _data(shape=(2, C, 3))
    x = d["x"].movedim(0, in_dim)
    ours, loop = (d["rm"].clone(), d["rv"].clone()), (d["rm"].clone(), d["rv"].clone())

    def f(x, w, rm, rv):
        return F.batch_norm(x, rm, rv, w, None, training=True, momentum=momentum)

    actual = torchfunc.vmap(f, in_dims=(in_dim, None, None, None))(x, d["w"], *ours)
    _C.set_fallback_enabled(True)
    expected = torch.stack([f(x.select(in_dim, i), d["w"], *loop) for i in range(B)])
    assert_same(actual, expected)
    for mine, reference in zip(ours, loop):
        torch.testing.assert_close(mine, reference)


def test_shared_module_stats_under_per_sample_grads():
    # A BatchNorm module in training mode, its buffers shared: the gradients and the
    # running stats match the loop. num_batches_tracked.add_(1) is unbatched, so vmap
    # runs it once (docs/index.md, "Batch norm running statistics").
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 2)).double()
    params = {k: v.detach() for k, v in model.named_parameters()}
    ours = {k: v.clone() for k, v in model.named_buffers()}
    loop = {k: v.clone() for k, v in model.named_buffers()}
    x = torch.randn(B, 2, 3, 6, 6, dtype=torch.float64)

    def loss(lib, p, b, xx):
        return lib.functional_call(model, (p, b), (xx,)).sum()

    grads = torchfunc.vmap(torchfunc.grad(lambda *a: loss(torchfunc, *a)), in_dims=(None, None, 0))(params, ours, x)
    _C.set_fallback_enabled(True)
    for i in range(B):
        expected = torch.func.grad(lambda *a: loss(torch.func, *a))(params, loop, x[i])
        for k in params:
            torch.testing.assert_close(grads[k][i], expected[k])
    for k in ("1.running_mean", "1.running_var"):
        torch.testing.assert_close(ours[k], loop[k])
    assert ours["1.num_batches_tracked"].item() == 1 and loop["1.num_batches_tracked"].item() == B


class TestErrors(expecttest.TestCase):
    def test_shared_stats_torch_func_refuses(self):
        # The reference refuses what test_shared_stats_take_one_update_per_example checks.
        d = _data()
        with self.assertRaisesRegex(RuntimeError, "running_mean or running_var, which will be updated in place"):
            torch.func.vmap(lambda x: F.batch_norm(x, d["rm"], d["rv"], training=True))(d["x"])

    def test_one_dim_example_gets_the_ops_error(self):
        _C.set_fallback_enabled(True)
        with self.assertRaises(Exception) as eager:
            F.batch_norm(torch.randn(4), None, None, training=True)
        with self.assertRaises(type(eager.exception)) as ours:
            torchfunc.vmap(lambda x: F.batch_norm(x, None, None, training=True))(torch.randn(B, 4))
        self.assertEqual(str(ours.exception), str(eager.exception))
