"""Every error_inputs sample of op_db raises under vmap as it does eagerly (NOTE [Rules
check what the op checks]): a rule must not hand back numbers for a call that eager
PyTorch refuses for one example. The sample is batched by stacking two copies of its
input (every other argument unbatched), and must raise the eager exception class with
a message that matches the OpInfo's regex. randomness='different' lets random ops reach
their argument checks (under 'error' they raise the randomness error first)."""
import re
import warnings

import pytest
import torch
from torch.testing._internal.common_methods_invocations import op_db

import torchfunc
from torchfunc._engine import _C


def _error_inputs(op):
    try:
        return [ei for ei in op.error_inputs("cpu")
                if isinstance(ei.sample_input.input, torch.Tensor)
                and ei.sample_input.input.layout == torch.strided]
    except Exception:  # noqa: BLE001 - an OpInfo whose error inputs need another device
        return []


CASES = {op.full_name: (op, eis) for op in op_db if op.error_inputs_func is not None
         for eis in [_error_inputs(op)] if eis}

# vmap refuses out= ops with torch.func's own error; that may come before the op's check
# that `out` overlaps its input, and is accepted for error inputs that pass out=.
OUT_REFUSAL = "the fallback path doesn't work on out= or view ops"
XFAILS: dict = {}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=XFAILS[n]))
                                  if n in XFAILS else n for n in CASES])
def test_error_input_raises_under_vmap(name):
    op, error_inputs = CASES[name]
    checked = 0
    for ei in error_inputs:
        s = ei.sample_input
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                op(s.input, *s.args, **s.kwargs)
                continue  # eager accepts it on this machine (the OpInfo means another device)
            except Exception as eager:  # noqa: BLE001
                eager_error = eager
            with pytest.raises(Exception) as ours:
                torchfunc.vmap(lambda a: op(a, *s.args, **s.kwargs), randomness="different")(
                    torch.stack([s.input, s.input]))
        if "out" in s.kwargs and OUT_REFUSAL in str(ours.value):
            checked += 1
            continue
        assert isinstance(ours.value, type(eager_error)), (ours.value, eager_error)
        assert re.search(ei.error_regex, str(ours.value)), (ei.error_regex, str(ours.value))
        checked += 1
    assert _C.stack_depth() == 0
    if checked == 0:
        pytest.skip("no error input that eager refuses on CPU")
