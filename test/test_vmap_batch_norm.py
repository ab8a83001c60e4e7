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
    if training and stats == "shared":
        pytest.skip("refused (one running-stat update per example): test_shared_stats_refused")
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
    expected = torch.func.vmap(f, in_dims=in_dims)(*theirs)
    by_loop = torch.stack([f(*[a if dim is None or a is None else a[i] for a, dim in zip(loop, in_dims)])
                           for i in range(B)])
    assert_same(actual, expected)
    assert_same(actual, by_loop)
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


class TestErrors(expecttest.TestCase):
    def test_shared_stats_refused(self):
        d = _data()

        def f(x):
            return F.batch_norm(x, d["rm"], d["rv"], training=True)

        with self.assertRaises(RuntimeError) as theirs:
            torch.func.vmap(f)(d["x"])
        with self.assertRaises(RuntimeError) as ours:
            torchfunc.vmap(f)(d["x"])
        self.assertIn(str(theirs.exception), str(ours.exception))
        self.assertExpectedInline(str(ours.exception), """\
Batch norm got a batched tensor as input while the running_mean or running_var, which will be updated in place, were not batched.
If you are using a module and do not need eval mode, please set `track_running_stats` to be False.If you are using a prebuilt module and do not need eval mode, please see the functorch website for resources on how to patch your module to work with vmap (torchfunc: aten::native_batch_norm at vmap level 1; torchfunc.replace_all_batch_norm_modules_(model) does that patch.)""")

    def test_one_dim_example_gets_the_ops_error(self):
        _C.set_fallback_enabled(True)
        with self.assertRaises(Exception) as eager:
            F.batch_norm(torch.randn(4), None, None, training=True)
        with self.assertRaises(type(eager.exception)) as ours:
            torchfunc.vmap(lambda x: F.batch_norm(x, None, None, training=True))(torch.randn(B, 4))
        self.assertEqual(str(ours.exception), str(eager.exception))
