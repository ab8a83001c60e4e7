"""The public surface: every name of torch.func 2.13 (and functorch.experimental) is
torchfunc's own object with torch.func's signature; torchfunc's extra parameters are
keyword-only with defaults, so every call written for torch.func works unchanged."""
import inspect
import warnings

import pytest
import torch.func

import torchfunc
import torchfunc.experimental


def _params(func):
    return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]


def _assert_extends(ours, theirs):
    ours_params, theirs_params = _params(ours), _params(theirs)
    assert ours_params[:len(theirs_params)] == theirs_params
    for name, kind, default in ours_params[len(theirs_params):]:
        assert kind is inspect.Parameter.KEYWORD_ONLY and default is not inspect.Parameter.empty, name


@pytest.mark.parametrize("name", torch.func.__all__)
def test_every_torch_func_name(name):
    ours, theirs = getattr(torchfunc, name), getattr(torch.func, name)
    assert ours is not theirs
    assert ours.__module__.startswith("torchfunc"), ours.__module__
    assert name in torchfunc.__all__
    _assert_extends(ours, theirs)


def test_torch_func_has_the_15_names_we_cover():
    assert len(torch.func.__all__) == 15  # if torch adds one, this suite must learn it


def _functorch_experimental():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import functorch.experimental
    return functorch.experimental


@pytest.mark.parametrize("name", ["chunk_vmap", "functionalize", "replace_all_batch_norm_modules_",
                                  "hessian", "jacfwd", "jvp"])
def test_experimental_names(name):
    ours, theirs = getattr(torchfunc.experimental, name), getattr(_functorch_experimental(), name)
    assert ours is not theirs and ours.__module__.startswith("torchfunc")
    _assert_extends(ours, theirs)
