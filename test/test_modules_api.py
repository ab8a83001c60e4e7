"""torchfunc.modules (functional_call, stack_module_state, replace_all_batch_norm_modules_)
against torch.func's: results, module state afterwards, use under torchfunc's transforms
(per-sample gradients, ensembles, MAML), error classes and messages."""
import copy
import inspect
import warnings

import expecttest
import pytest
import torch
import torch.func
import torch.nn as nn
import torch.nn.functional as F

import torchfunc.modules
from torchfunc.autodiff import grad
from torchfunc.modules import functional_call, replace_all_batch_norm_modules_, stack_module_state
from torchfunc.vmap import vmap

from helpers import assert_same


# --- modules ------------------------------------------------------------------------------

def mlp():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2))


class TwoTied(nn.Module):
    """b.weight is a.weight."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


class ThreeTied(TwoTied):
    """b.weight and c.weight are a.weight."""

    def __init__(self):
        super().__init__()
        self.c = nn.Linear(3, 3)
        self.c.weight = self.a.weight

    def forward(self, x):
        return super().forward(x) + self.c(x)


class WithKwargs(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x, *, scale, shift=0.0):
        return self.lin(x) * scale + shift


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x, y):
        return self.lin(x) - self.lin(y)


class ListInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, xs):
        return sum(self.lin(x) for x in xs)


class NoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3))
        self.register_buffer("b", torch.randn(3))

    def forward(self):
        return self.w * 2 + self.b


class TensorAttribute(nn.Module):
    """`scale` is a plain tensor attribute, neither a parameter nor a buffer."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.scale = torch.tensor(2.0)

    def forward(self, x):
        return self.lin(x) * self.scale


class Reassigns(nn.Module):
    """Reassigns its buffer in forward (not in place)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        self.count = self.count + 1
        return x + self.count


class Raises(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        self.lin(x)
        raise ZeroDivisionError("forward failed")


def detached(named):
    return {k: v.detach().clone() for k, v in named}


def randn_like_dict(d):
    return {k: torch.randn_like(v) if v.is_floating_point() else v.clone() for k, v in d.items()}


def R(*shape):
    return torch.randn(*shape)


# --- functional_call against torch.func.functional_call -----------------------------------

def _net_eval():
    return mlp().eval()


CALL_CASES = {
    # name: lambda: (module, parameter_and_buffer_dicts, args, kwargs, options)
    "single_dict": lambda: (nn.Linear(3, 2), {"weight": R(2, 3), "bias": R(2)}, R(5, 3), None, {}),
    "partial_dict": lambda: (nn.Linear(3, 2), {"weight": R(2, 3)}, R(5, 3), None, {}),
    "empty_dict": lambda: (nn.Linear(3, 2), {}, R(5, 3), None, {}),
    "bias_none": lambda: (nn.Linear(3, 2), {"bias": None}, R(5, 3), None, {}),
    "params_and_buffers_tuple": lambda: (
        (m := _net_eval()), (randn_like_dict(dict(m.named_parameters())),
                             {k: v.abs() + 0.5 for k, v in randn_like_dict(dict(m.named_buffers())).items()}),
        (R(5, 3),), None, {}),
    "list_of_three_dicts": lambda: (
        (m := _net_eval()), [{"0.weight": R(4, 3)}, {"3.bias": R(2)},
                             {"1.running_mean": R(4), "1.running_var": R(4).abs()}],
        (R(5, 3),), None, {}),
    "nested_buffers_only": lambda: (_net_eval(), {"1.running_mean": R(4), "1.running_var": R(4).abs()},
                                    (R(5, 3),), None, {}),
    "training_mode_updates_given_buffers": lambda: (
        (m := mlp().train()), (randn_like_dict(dict(m.named_parameters())), detached(m.named_buffers())),
        (R(6, 3),), None, {}),
    "kwargs": lambda: (WithKwargs(), {"lin.weight": R(2, 3)}, (R(5, 3),), {"scale": 3.0, "shift": R(2)}, {}),
    "two_positional_args": lambda: (TwoInputs(), {"lin.bias": R(2)}, (R(5, 3), R(5, 3)), None, {}),
    "args_none": lambda: (NoInputs(), {"w": R(3)}, None, None, {}),
    "non_tuple_list_arg": lambda: (ListInput(), {"lin.bias": R(2)}, [R(5, 3), R(5, 3)], None, {}),
    "tied_one_name": lambda: (TwoTied(), {"a.weight": R(3, 3)}, (R(5, 3),), None, {}),
    "tied_other_name": lambda: (TwoTied(), {"b.weight": R(3, 3)}, (R(5, 3),), None, {}),
    "tied_same_tensor_twice": lambda: (TwoTied(), {"a.weight": (w := R(3, 3)), "b.weight": w},
                                       (R(5, 3),), None, {}),
    "untied_one_name": lambda: (TwoTied(), {"a.weight": R(3, 3)}, (R(5, 3),), None,
                                {"tie_weights": False}),
    "untied_different_tensors": lambda: (TwoTied(), {"a.weight": R(3, 3), "b.weight": R(3, 3)},
                                         (R(5, 3),), None, {"tie_weights": False}),
    "three_tied_one_name": lambda: (ThreeTied(), {"c.weight": R(3, 3)}, (R(5, 3),), None, {}),
    "tensor_attribute": lambda: (TensorAttribute(), {"scale": torch.tensor(5.0)}, (R(5, 3),), None, {}),
    "strict_complete": lambda: (nn.Linear(3, 2), {"weight": R(2, 3), "bias": R(2)}, (R(5, 3),), None,
                                {"strict": True}),
    "strict_tied_name_filled_in": lambda: (
        TwoTied(), {"a.weight": R(3, 3), "a.bias": R(3), "b.bias": R(3)}, (R(5, 3),), None,
        {"strict": True}),
}


@pytest.mark.parametrize("name", CALL_CASES)
def test_functional_call_matches_torch_func(name):
    module, dicts, args, kwargs, options = CALL_CASES[name]()
    their_module, their_dicts = copy.deepcopy((module, dicts))
    their_args, their_kwargs = copy.deepcopy((args, kwargs))
    state_before = copy.deepcopy(module.state_dict())
    ours = functional_call(module, dicts, args, kwargs, **options)
    theirs = torch.func.functional_call(their_module, their_dicts, their_args, their_kwargs, **options)
    assert_same(ours, theirs)
    # The given tensors end as torch.func leaves them (BatchNorm updates them in place).
    assert_same(dicts, their_dicts)
    # The module's own state is back, unchanged, and is the same as torch.func leaves it.
    assert_same(module.state_dict(), state_before)
    assert_same(module.state_dict(), their_module.state_dict())


@pytest.mark.parametrize("name", ["single_dict", "params_and_buffers_tuple", "tied_one_name",
                                  "tensor_attribute", "training_mode_updates_given_buffers"])
def test_originals_are_the_same_objects_afterwards(name):
    module, dicts, args, kwargs, options = CALL_CASES[name]()
    before = {k: v for k, v in module.__dict__.items() if isinstance(v, torch.Tensor)}
    slots = [(m, dict(m._parameters), dict(m._buffers)) for m in module.modules()]
    functional_call(module, dicts, args, kwargs, **options)
    for m, params, buffers in slots:
        assert m._parameters.keys() == params.keys() and m._buffers.keys() == buffers.keys()
        assert all(m._parameters[k] is v for k, v in params.items())
        assert all(m._buffers[k] is v for k, v in buffers.items())
    assert all(module.__dict__[k] is v for k, v in before.items())


def test_originals_restored_after_forward_raises():
    module = Raises()
    weight = module.lin.weight
    with pytest.raises(ZeroDivisionError, match="forward failed"), pytest.warns(UserWarning, match="lin.extra"):
        functional_call(module, {"lin.weight": R(2, 3), "lin.extra": R(2)}, (R(3),))
    assert module.lin.weight is weight and isinstance(module.lin.weight, nn.Parameter)
    assert not hasattr(module.lin, "extra")


def test_original_restored_after_a_later_key_fails():
    module = nn.Linear(3, 2)
    weight = module.weight
    with pytest.raises(TypeError):
        functional_call(module, {"weight": R(2, 3), "bias": 3}, (R(3),))
    assert module.weight is weight


@pytest.mark.parametrize("tie_weights", [True, False])
def test_submodule_registered_twice_gets_its_original_back(tie_weights):
    # torch.func restores such a slot from the last of its names, and leaves the module
    # holding the given tensor (a plain tensor where its Parameter was).
    shared = nn.Linear(3, 3)
    module, weight, x = nn.Sequential(shared, nn.Tanh(), shared), shared.weight, R(2, 3)
    given = R(3, 3)
    out = functional_call(module, {"0.weight": given}, (x,), tie_weights=tie_weights)
    assert shared.weight is weight and isinstance(shared.weight, nn.Parameter)
    expected = F.linear(torch.tanh(F.linear(x, given, shared.bias)), given, shared.bias)
    assert_same(out, expected)


class OverridesNamedParameters(nn.Module):
    """Lists only `lin`'s weight: functional_call must go by what named_parameters says."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.other = nn.Linear(3, 3)
        self.other.weight = self.lin.weight

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        yield "lin.weight", self.lin.weight

    def forward(self, x):
        return self.other(self.lin(x))


def test_a_class_overriding_the_walks_is_read_through_them():
    ours, theirs = OverridesNamedParameters(), OverridesNamedParameters()
    theirs.load_state_dict(ours.state_dict())
    theirs.other.weight = theirs.lin.weight
    given, x = R(3, 3), R(2, 3)
    assert_same(functional_call(ours, {"lin.weight": given}, (x,)),
                torch.func.functional_call(theirs, {"lin.weight": given}, (x,)))
    with pytest.raises(RuntimeError, match="Missing key"):  # named_parameters lists it
        functional_call(ours, {}, (x,), strict=True)


def test_one_walk_names_tensors_as_the_generators_do():
    shared = nn.Linear(2, 2)
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), shared,
                        nn.ModuleDict({"a": shared, "b": nn.Linear(2, 2, bias=False)}),
                        nn.ModuleList([nn.Sequential(nn.LayerNorm(2))]))
    net.register_buffer("extra", torch.ones(1), persistent=False)
    net[0].register_parameter("nothing", None)
    expected = list(net.named_parameters(remove_duplicate=False)) + list(
        net.named_buffers(remove_duplicate=False))
    walked = torchfunc.modules._Tree(net)
    assert [(k, id(v)) for k, v in walked.tensors.items()] == [(k, id(v)) for k, v in expected]
    assert walked.modules == dict(net.named_modules(remove_duplicate=False))


def test_new_attribute_set_during_the_call_and_removed_after():
    seen = []
    class Peeks(nn.Linear):
        def forward(self, x):
            seen.append(getattr(self, "extra", None))
            return super().forward(x)
    module, extra = Peeks(3, 2), R(2)
    with pytest.warns(UserWarning):
        functional_call(module, {"extra": extra}, (R(3),))
    their_seen = list(seen)
    seen.clear()
    torch.func.functional_call(module, {"extra": extra}, (R(3),))
    assert seen == their_seen and seen[0] is extra
    assert not hasattr(module, "extra")


@pytest.mark.parametrize("as_tuple", [False, True])
def test_reassigned_buffer_written_back_like_torch_func(as_tuple):
    ours_module, their_module = Reassigns(), Reassigns()
    ours_dict, their_dict = {"count": torch.zeros(())}, {"count": torch.zeros(())}
    wrap = (lambda d: (d,)) if as_tuple else (lambda d: d)
    out = functional_call(ours_module, wrap(ours_dict), torch.ones(()))
    expected = torch.func.functional_call(their_module, wrap(their_dict), torch.ones(()))
    assert_same(out, expected)
    assert_same(ours_dict, their_dict)  # a single dict gets the new value, a tuple's don't
    assert ours_module.count.item() == their_module.count.item() == 0.0


def test_three_tied_names_two_given_same_tensor():
    # torch.func raises KeyError: 'c.weight' here (it looks up every tied name among the
    # given ones); we apply the one tensor to all three names.
    module, w, x = ThreeTied(), R(3, 3), R(5, 3)
    with pytest.raises(KeyError):
        torch.func.functional_call(module, {"a.weight": w, "b.weight": w}, (x,))
    expected = torch.func.functional_call(module, {"a.weight": w, "b.weight": w, "c.weight": w}, (x,))
    assert_same(functional_call(module, {"a.weight": w, "b.weight": w}, (x,)), expected)


def test_valid_keys_do_not_warn():
    module = TensorAttribute()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        functional_call(module, {"lin.weight": R(2, 3), "scale": torch.tensor(3.0)}, (R(3),))


def test_unknown_key_warns_and_is_ignored():
    module, x, w = nn.Linear(3, 2), R(4, 3), R(2, 3)
    with pytest.warns(UserWarning, match=r"functional_call: 'wieght' is not a parameter or buffer "
                                         r"of Linear, so it was ignored .*did you mean 'weight'\?"):
        out = functional_call(module, {"wieght": w, "bias": R(2) * 0}, (x,))
    assert_same(out, torch.func.functional_call(module, {"wieght": w, "bias": torch.zeros(2)}, (x,)))
    assert_same(out, module(x) - module.bias.detach())


def test_unknown_key_warning_texts():
    module = mlp()
    with pytest.warns(UserWarning) as record:
        functional_call(module, {"1.running_men": R(4)}, (R(2, 3),))
        functional_call(module, {"zzz": R(4)}, (R(2, 3),))
        functional_call(nn.ReLU(), {"weight": R(4)}, (R(2, 3),))
    texts = [str(w.message) for w in record]
    expecttest.assert_expected_inline("\n".join(texts), """\
functional_call: '1.running_men' is not a parameter or buffer of Sequential, so it was ignored (only set as a new attribute during the call, as torch.func does); did you mean '1.running_mean'?
functional_call: 'zzz' is not a parameter or buffer of Sequential, so it was ignored (only set as a new attribute during the call, as torch.func does); its parameters and buffers are '0.weight', '0.bias', '1.weight', '1.bias', '3.weight', '3.bias', ... (9 in all)
functional_call: 'weight' is not a parameter or buffer of ReLU, so it was ignored (only set as a new attribute during the call, as torch.func does); ReLU has no parameters or buffers""")
    assert all(w.filename == __file__ for w in record)  # points at the caller


def test_unknown_key_warns_under_vmap():
    model = nn.Linear(3, 2)
    params = detached(model.named_parameters())
    with pytest.warns(UserWarning, match="'wieght' is not a parameter"):
        out = vmap(lambda p, x: functional_call(model, {**p, "wieght": x}, (x,)), in_dims=(None, 0))(
            params, R(4, 3))
    assert out.shape == (4, 2)


# --- per-sample gradients, ensembles, MAML ------------------------------------------------

def mse(out, target):
    return ((out - target) ** 2).mean()


@pytest.mark.parametrize("make", [lambda: nn.Linear(3, 2), _net_eval], ids=["linear", "mlp_eval_bn"])
def test_per_sample_grads(make):
    model = make()
    params = detached(model.named_parameters())
    buffers = detached(model.named_buffers())
    x, y = R(6, 3), R(6, 2)

    def loss(fc):
        return lambda p, b, xi, yi: mse(fc(model, (p, b), (xi.unsqueeze(0),)), yi.unsqueeze(0))

    ours = vmap(grad(loss(functional_call)), in_dims=(None, None, 0, 0))(params, buffers, x, y)
    theirs = torch.func.vmap(torch.func.grad(loss(torch.func.functional_call)),
                             in_dims=(None, None, 0, 0))(params, buffers, x, y)
    assert_same(ours, theirs)
    # a loop of torch.autograd.grad, one example at a time
    names = list(model.state_dict().keys() & params.keys())
    for i in range(len(x)):
        model.zero_grad()
        mse(model(x[i:i + 1]), y[i:i + 1]).backward()
        for k in names:
            torch.testing.assert_close(ours[k][i], model.get_parameter(k).grad)


def test_vmap_over_inputs_with_unbatched_params():
    model = nn.Linear(3, 2)
    params = detached(model.named_parameters())
    x = R(5, 3)
    out = vmap(lambda p, xi: functional_call(model, p, xi) + p["bias"], in_dims=(None, 0))(params, x)
    assert_same(out, x @ params["weight"].T + 2 * params["bias"])


@pytest.mark.parametrize("data_in_dim", [None, 0])
def test_ensemble_with_stacked_state(data_in_dim):
    models = [_net_eval() for _ in range(4)]
    for m in models:  # buffers that differ between models
        m[1].running_mean.normal_()
        m[1].running_var.uniform_(0.5, 2.0)
    params, buffers = stack_module_state(models)
    x = R(4, 5, 3) if data_in_dim == 0 else R(5, 3)

    def run(fc):
        return lambda p, b, xi: fc(models[0], (p, b), (xi,))

    ours = vmap(run(functional_call), in_dims=(0, 0, data_in_dim))(params, buffers, x)
    theirs = torch.func.vmap(run(torch.func.functional_call), in_dims=(0, 0, data_in_dim))(params, buffers, x)
    assert_same(ours, theirs)
    loop = torch.stack([m(x[i] if data_in_dim == 0 else x) for i, m in enumerate(models)])
    torch.testing.assert_close(ours, loop)
    # gradients through the ensemble reach the stacked leaves
    ours.sum().backward()
    expected = torch.stack([torch.autograd.grad(m(x[i] if data_in_dim == 0 else x).sum(), m[0].weight)[0]
                            for i, m in enumerate(models)])
    torch.testing.assert_close(params["0.weight"].grad, expected)


def _maml_loss(fc, grad_fn, model, lr=0.1):
    def inner(p, x, y):
        return mse(fc(model, p, (x,)), y)

    def outer(p, xs, ys, xq, yq):
        g = grad_fn(inner)(p, xs, ys)
        adapted = {k: p[k] - lr * g[k] for k in p}
        return inner(adapted, xq, yq)
    return outer


def test_maml_grad_of_grad():
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    params = detached(model.named_parameters())
    data = (R(5, 3), R(5, 2), R(7, 3), R(7, 2))
    ours = grad(_maml_loss(functional_call, grad, model))(params, *data)
    theirs = torch.func.grad(_maml_loss(torch.func.functional_call, torch.func.grad, model))(params, *data)
    assert_same(ours, theirs)
    assert all(v.abs().sum() > 0 for v in ours.values())


def test_maml_over_a_batch_of_tasks():
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    params = detached(model.named_parameters())
    tasks = (R(3, 5, 3), R(3, 5, 2), R(3, 7, 3), R(3, 7, 2))
    in_dims = (None, 0, 0, 0, 0)
    ours = vmap(grad(_maml_loss(functional_call, grad, model)), in_dims=in_dims)(params, *tasks)
    theirs = torch.func.vmap(torch.func.grad(_maml_loss(torch.func.functional_call, torch.func.grad, model)),
                             in_dims=in_dims)(params, *tasks)
    assert_same(ours, theirs)
    # one task at a time with torch.autograd (create_graph for the inner step)
    for t in range(3):
        p = {k: v.clone().requires_grad_() for k, v in params.items()}
        xs, ys, xq, yq = (d[t] for d in tasks)
        inner = mse(torch.func.functional_call(model, p, (xs,)), ys)
        g = torch.autograd.grad(inner, list(p.values()), create_graph=True)
        adapted = {k: v - 0.1 * gk for (k, v), gk in zip(p.items(), g)}
        outer = mse(torch.func.functional_call(model, adapted, (xq,)), yq)
        expected = torch.autograd.grad(outer, list(p.values()))
        for k, e in zip(p, expected):
            torch.testing.assert_close(ours[k][t], e)


# --- stack_module_state ---------------------------------------------------------------------

@pytest.mark.parametrize("container", [list, tuple, nn.ModuleList], ids=["list", "tuple", "ModuleList"])
def test_stack_module_state_matches_torch_func(container):
    models = [mlp() for _ in range(3)]
    for m in models:
        m[1].running_mean.normal_()
    params, buffers = stack_module_state(container(models))
    their_params, their_buffers = torch.func.stack_module_state(container(models))
    assert list(params) == list(their_params) == [k for k, _ in models[0].named_parameters()]
    assert list(buffers) == list(their_buffers) == [k for k, _ in models[0].named_buffers()]
    assert_same((params, buffers), (their_params, their_buffers))
    for k, v in params.items():
        assert v.is_leaf and v.requires_grad and v.grad_fn is None
        for i, m in enumerate(models):
            torch.testing.assert_close(v[i], m.get_parameter(k).detach())
    for k, v in buffers.items():
        assert not v.requires_grad
        assert v.dtype == models[0].get_buffer(k).dtype
        for i, m in enumerate(models):
            assert torch.equal(v[i], m.get_buffer(k))


def test_stacked_state_is_new_memory():
    models = [nn.Linear(3, 2) for _ in range(2)]
    params, _ = stack_module_state(models)
    with torch.no_grad():
        params["weight"].zero_()
    assert models[0].weight.abs().sum() > 0


def test_stack_without_requires_grad():
    models = [nn.Linear(3, 2).requires_grad_(False) for _ in range(2)]
    params, _ = stack_module_state(models)
    their_params, _ = torch.func.stack_module_state(models)
    assert not params["weight"].requires_grad and not their_params["weight"].requires_grad
    assert_same(params, their_params)


def test_stack_under_no_grad_still_gives_trainable_leaves():
    models = [nn.Linear(3, 2) for _ in range(2)]
    with torch.no_grad():
        params, _ = stack_module_state(models)
        their_params, _ = torch.func.stack_module_state(models)
    assert params["weight"].requires_grad == their_params["weight"].requires_grad == True
    assert params["weight"].is_leaf


def test_stack_tied_weights_follow_named_parameters():
    params, _ = stack_module_state([TwoTied(), TwoTied()])
    their_params, _ = torch.func.stack_module_state([TwoTied(), TwoTied()])
    assert list(params) == list(their_params) == ["a.weight", "a.bias", "b.bias"]


def test_stack_extra_key_in_later_model_warns_and_follows_model_0():
    models = [nn.Linear(3, 2, bias=False), nn.Linear(3, 2)]
    with pytest.warns(UserWarning) as record:
        params, _ = stack_module_state(models)
    their_params, _ = torch.func.stack_module_state(models)
    assert_same(params, their_params)
    expecttest.assert_expected_inline(str(record[0].message), """stack_module_state: model 1 has parameter(s) 'bias' that model 0 lacks; like torch.func, they are left out of the stacked state, which follows model 0.""")


# --- replace_all_batch_norm_modules_ --------------------------------------------------------

class ManyNorms(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn1 = nn.BatchNorm1d(3)
        self.block = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.ReLU(),
                                   nn.Sequential(nn.BatchNorm3d(3, affine=False)))
        self.untracked = nn.BatchNorm1d(3, track_running_stats=False)
        self.sync = nn.SyncBatchNorm(3)
        self.instance = nn.InstanceNorm1d(3, track_running_stats=True)
        self.lazy = nn.LazyBatchNorm1d()
        self.lazy(torch.randn(2, 3))  # materialized: 3 channels


def _norm_state(root):
    return [(name, type(m).__name__, m.track_running_stats if hasattr(m, "track_running_stats") else None,
             {k: None if v is None else v.clone() for k, v in m._buffers.items()},
             {k: None if v is None else v.detach().clone() for k, v in m._parameters.items()})
            for name, m in root.named_modules()]


@pytest.mark.parametrize("make", [ManyNorms, lambda: nn.BatchNorm2d(4), mlp, lambda: nn.Linear(3, 2)],
                         ids=["many", "root_is_batchnorm", "mlp", "no_batchnorm"])
def test_replace_all_batch_norm_modules_matches_torch_func(make):
    ours_root = make()
    their_root = copy.deepcopy(ours_root)
    assert_same(ours_root.state_dict(), their_root.state_dict())
    assert replace_all_batch_norm_modules_(ours_root) is ours_root
    assert torch.func.replace_all_batch_norm_modules_(their_root) is their_root
    ours, theirs = _norm_state(ours_root), _norm_state(their_root)
    assert len(ours) == len(theirs)
    for (name, kind, tracks, buffers, params), (t_name, t_kind, t_tracks, t_buffers, t_params) in zip(ours, theirs):
        assert (name, kind, tracks) == (t_name, t_kind, t_tracks)
        assert buffers.keys() == t_buffers.keys() and params.keys() == t_params.keys()
        for k in buffers:
            assert (buffers[k] is None) == (t_buffers[k] is None), (name, k)
            if buffers[k] is not None:
                assert_same(buffers[k], t_buffers[k])
        assert_same(params, t_params)
    assert ours_root.state_dict().keys() == their_root.state_dict().keys()


def test_replaced_batch_norm_uses_batch_statistics():
    model = replace_all_batch_norm_modules_(mlp().eval())
    bn = model[1]
    assert bn.running_mean is None and bn.running_var is None and bn.num_batches_tracked is None
    assert not bn.track_running_stats
    x = R(8, 4)
    torch.testing.assert_close(bn(x), F.batch_norm(x, None, None, bn.weight, bn.bias, training=True))


def test_training_mode_batch_norm_under_vmap_of_grad():
    model = replace_all_batch_norm_modules_(mlp().train())
    params = detached(model.named_parameters())
    x, y = R(3, 5, 3), R(3, 5, 2)  # 3 groups of 5 examples, batch norm within each group

    def loss(fc):
        return lambda p, xi, yi: mse(fc(model, p, (xi,)), yi)

    ours = vmap(grad(loss(functional_call)), in_dims=(None, 0, 0))(params, x, y)
    theirs = torch.func.vmap(torch.func.grad(loss(torch.func.functional_call)), in_dims=(None, 0, 0))(params, x, y)
    assert_same(ours, theirs)


# --- API surface ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["functional_call", "stack_module_state", "replace_all_batch_norm_modules_"])
def test_signature_and_identity(name):
    ours, theirs = getattr(torchfunc.modules, name), getattr(torch.func, name)
    def parameters(func):
        return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]
    assert parameters(ours) == parameters(theirs)
    assert ours is not theirs
    assert ours.__module__ == "torchfunc.modules"
    assert ours.__doc__ and "Args:" in ours.__doc__ and "Returns:" in ours.__doc__ and "Example" in ours.__doc__
    assert name in torchfunc.modules.__all__


# --- errors ---------------------------------------------------------------------------------

def _message(error):
    return error.args[0] if isinstance(error, KeyError) else str(error)


def raises_like_torch_func(ours, theirs):
    """Our error: the class torch.func raises, and its message followed by ours."""
    with pytest.raises(Exception) as their_error:
        theirs()
    with pytest.raises(type(their_error.value)) as our_error:
        ours()
    assert _message(their_error.value) in _message(our_error.value)
    return _message(our_error.value)


def both(fn_name, *args, **kwargs):
    return (lambda: getattr(torchfunc.modules, fn_name)(*args, **kwargs),
            lambda: getattr(torch.func, fn_name)(*args, **kwargs))


def _linear_with_known_values():
    module = nn.Linear(1, 1)
    with torch.no_grad():
        module.weight.fill_(1.0)
        module.bias.fill_(0.0)
    return module


class TestFunctionalCallErrors(expecttest.TestCase):
    def test_duplicate_keys(self):
        w = R(2, 3)
        msg = raises_like_torch_func(*both("functional_call", nn.Linear(3, 2), ({"weight": w}, {"weight": w}), R(3)))
        self.assertExpectedInline(msg, """['weight'] appeared in multiple dictionaries; behavior of functional call is ambiguous""")
        msg = raises_like_torch_func(*both("functional_call", nn.Linear(3, 2),
                                           [{"weight": w, "bias": R(2)}, {"bias": R(2), "weight": w}], R(3)))
        self.assertExpectedInline(msg, """['weight', 'bias'] appeared in multiple dictionaries; behavior of functional call is ambiguous""")

    def test_not_dicts(self):
        msg = raises_like_torch_func(*both("functional_call", nn.Linear(3, 2), ({"weight": R(2, 3)}, [1]), R(3)))
        self.assertExpectedInline(msg, """Expected all elements of parameter_and_buffer_dicts to be dictionaries; functional_call: element 1 is a list""")
        msg = raises_like_torch_func(*both("functional_call", nn.Linear(3, 2), 3, R(3)))
        self.assertExpectedInline(msg, """Expected parameter_and_buffer_dicts to be a dict, or a list/tuple of dicts, but got <class 'int'>""")

    def test_strict_missing(self):
        msg = raises_like_torch_func(*both("functional_call", nn.Linear(3, 2), {"weight": R(2, 3)}, R(3), strict=True))
        self.assertExpectedInline(msg, """Error(s) in reparametrizing for Linear:\n\tMissing key(s): 'bias'.""")

    def test_strict_unexpected_and_missing(self):
        msg = raises_like_torch_func(*both("functional_call", nn.Linear(3, 2),
                                           {"wieght": R(2, 3), "bias": R(2), "foo": R(1)}, R(3), strict=True))
        self.assertExpectedInline(msg, """Error(s) in reparametrizing for Linear:\n\tUnexpected key(s): 'foo', 'wieght'.\n\tMissing key(s): 'weight'.\n\tfunctional_call(..., strict=True): 'wieght' may be a misspelling of 'weight'.""")

    def test_strict_counts_every_tied_name_when_untied(self):
        msg = raises_like_torch_func(*both("functional_call", TwoTied(),
                                           {"a.weight": R(3, 3), "a.bias": R(3), "b.bias": R(3)}, R(3),
                                           tie_weights=False, strict=True))
        self.assertExpectedInline(msg, """Error(s) in reparametrizing for TwoTied:\n\tMissing key(s): 'b.weight'.""")

    def test_strict_plain_tensor_attribute_is_unexpected(self):
        module = TensorAttribute()
        msg = raises_like_torch_func(*both("functional_call", module,
                                           {**detached(module.named_parameters()), "scale": R(())}, R(3), strict=True))
        self.assertExpectedInline(msg, """Error(s) in reparametrizing for TensorAttribute:\n\tUnexpected key(s): 'scale'.""")

    def test_tied_names_given_different_tensors(self):
        msg = raises_like_torch_func(*both("functional_call", TwoTied(), {"a.weight": R(3, 3), "b.weight": R(3, 3)}, R(3)))
        self.assertExpectedInline(msg, """functional_call got multiple values for keys ['a.weight', 'b.weight'], which are tied. Consider using tie_weights=False; TwoTied registers one tensor under all of these names, and different tensors were given for 'a.weight', 'b.weight'""")

    def test_three_tied_names_given_different_tensors(self):
        msg = raises_like_torch_func(*both("functional_call", ThreeTied(),
                                           {"a.weight": R(3, 3), "b.weight": (w := R(3, 3)), "c.weight": w}, R(3)))
        self.assertExpectedInline(msg, """functional_call got multiple values for keys ['a.weight', 'b.weight', 'c.weight'], which are tied. Consider using tie_weights=False; ThreeTied registers one tensor under all of these names, and different tensors were given for 'a.weight', 'b.weight', 'c.weight'""")
        # torch.func raises KeyError when only two of the three are given; we compare those two
        with self.assertRaises(KeyError):
            torch.func.functional_call(ThreeTied(), {"a.weight": R(3, 3), "b.weight": R(3, 3)}, R(3))
        with self.assertRaisesRegex(ValueError, r"different tensors were given for 'a.weight', 'b.weight'$"):
            functional_call(ThreeTied(), {"a.weight": R(3, 3), "b.weight": R(3, 3)}, R(3))

    def test_value_not_a_tensor(self):
        msg = raises_like_torch_func(*both("functional_call", nn.Linear(3, 2), {"weight": 3}, R(3)))
        self.assertExpectedInline(msg, """3 is not an instance of torch.Tensor; functional_call: the value for key 'weight' is an int""")

    def test_no_such_submodule(self):
        msg = raises_like_torch_func(*both("functional_call", mlp(), {"4.weight": R(2, 4)}, R(2, 3)))
        self.assertExpectedInline(msg, """Sequential has no attribute `4`; functional_call: key '4.weight' names no submodule of Sequential; did you mean '3.weight'?""")
        msg = raises_like_torch_func(*both("functional_call", nn.Linear(3, 2), {"sub.weight": R(2, 3)}, R(3)))
        self.assertExpectedInline(msg, """Linear has no attribute `sub`; functional_call: key 'sub.weight' names no submodule of Linear; did you mean 'weight'?""")

    def test_path_through_a_tensor(self):
        msg = raises_like_torch_func(*both("functional_call", _linear_with_known_values(), {"weight.data": R(1, 1)}, R(1)))
        self.assertExpectedInline(msg, """\
submodule `weight`: Parameter containing:
tensor([[1.]], requires_grad=True) is not an instance of torch.nn.Module; functional_call: key 'weight.data' goes through `weight`, which is a Parameter, not a submodule""")

    def test_non_tensor_attribute(self):
        msg = raises_like_torch_func(*both("functional_call", nn.Linear(3, 2), {"in_features": R(1)}, R(3)))
        self.assertExpectedInline(msg, """attribute `in_features`: 3 is not an instance of torch.Tensor; functional_call: key 'in_features' names an int attribute of Linear, not a parameter or buffer""")
        msg = raises_like_torch_func(*both("functional_call", nn.Sequential(nn.Linear(1, 1)), {"0": R(1)}, R(1)))
        self.assertIn("functional_call: key '0' names a Linear attribute of Sequential", msg)

    def test_empty_key(self):
        msg = raises_like_torch_func(*both("functional_call", nn.Linear(3, 2), {"": R(1)}, R(3)))
        self.assertExpectedInline(msg, """tensor name can't be empty string ""; functional_call: key '' names no tensor""")
        msg = raises_like_torch_func(*both("functional_call", mlp(), {"0.": R(1)}, R(2, 3)))
        self.assertExpectedInline(msg, """tensor name can't be empty string ""; functional_call: key '0.' names no tensor""")

    def test_data_parallel(self):
        msg = raises_like_torch_func(*both("functional_call", nn.DataParallel(nn.Linear(3, 2)), {}, R(3)))
        self.assertExpectedInline(msg, """The stateless API can't be used with nn.DataParallel module""")

    def test_script_module(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated
            scripted = torch.jit.script(nn.Linear(3, 2))
        msg = raises_like_torch_func(*both("functional_call", scripted, {}, R(3)))
        self.assertExpectedInline(msg, """The stateless API can't be used with Jitted modules""")


class TestStackModuleStateErrors(expecttest.TestCase):
    def test_no_models(self):
        msg = raises_like_torch_func(*both("stack_module_state", []))
        self.assertExpectedInline(msg, """stack_module_state: Expected at least one model, got 0.""")

    def test_mixed_modes(self):
        models = [nn.Linear(3, 2), nn.Linear(3, 2).eval(), nn.Linear(3, 2)]
        msg = raises_like_torch_func(*both("stack_module_state", models))
        self.assertExpectedInline(msg, """stack_module_state: Expected all models to have the same training/eval mode. Models [0, 2] are in training mode and models [1] in eval mode.""")

    def test_different_classes(self):
        msg = raises_like_torch_func(*both("stack_module_state", [nn.Linear(3, 2), nn.Conv1d(3, 2, 1)]))
        self.assertExpectedInline(msg, """stack_module_state: Expected all models to be of the same class. Model 0 is Linear but model 1 is Conv1d.""")

    def test_different_requires_grad(self):
        other = nn.Linear(3, 2)
        other.bias.requires_grad_(False)
        msg = raises_like_torch_func(*both("stack_module_state", [nn.Linear(3, 2), other, nn.Linear(3, 2)]))
        self.assertExpectedInline(msg, """Expected bias from each model to have the same .requires_grad; stack_module_state: parameter 'bias' requires grad in models [0, 2] but not in models [1].""")
        bn = nn.BatchNorm1d(3)
        bn.running_mean.requires_grad_(True)
        msg = raises_like_torch_func(*both("stack_module_state", [bn, nn.BatchNorm1d(3)]))
        self.assertExpectedInline(msg, """Expected running_mean from each model to have the same .requires_grad; stack_module_state: buffer 'running_mean' requires grad in models [0] but not in models [1].""")

    def test_different_shapes(self):
        msg = raises_like_torch_func(*both("stack_module_state", [nn.Linear(3, 2), nn.Linear(3, 4)]))
        self.assertExpectedInline(msg, """stack expects each tensor to be equal size, but got [2, 3] at entry 0 and [4, 3] at entry 1; stack_module_state: parameter 'weight' has shape [2, 3] in model 0 but [4, 3] in model 1.""")

    def test_missing_parameter(self):
        models = [nn.Linear(3, 2), nn.Linear(3, 2, bias=False)]
        msg = raises_like_torch_func(*both("stack_module_state", models))  # torch.func: KeyError
        self.assertExpectedInline(msg, """stack_module_state: model 1 has no parameter 'bias', which model 0 has; all models must have the same parameters and buffers.""")
        with self.assertRaises(RuntimeError):  # and, like the other structure errors, a RuntimeError
            stack_module_state(models)

    def test_not_a_sequence(self):
        msg = raises_like_torch_func(*both("stack_module_state", nn.Linear(3, 2)))
        self.assertExpectedInline(msg, """object of type 'Linear' has no len(); stack_module_state expects a sequence of models (list, tuple or nn.ModuleList), got a Linear""")

    def test_generator_is_accepted(self):
        models = [nn.Linear(3, 2) for _ in range(2)]
        assert_same(stack_module_state(m for m in models), torch.func.stack_module_state(models))
