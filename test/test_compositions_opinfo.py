"""Autodiff transforms and their compositions over OpInfos, against torch.autograd.

* test_vjp:     vjp against torch.autograd.grad;
* test_vmapvjp: vmap(vjp), per-example gradients, against a loop of autograd.grad;
* test_jacrev:  jacrev against torch.autograd.functional.jacobian;
* *_has_batch_rule: the vmap-based ones with the slow fallback disabled.

Run one op with ``pytest test/test_compositions_opinfo.py -k sin``. By default these
run over SAMPLE_OPS; TORCHFUNC_OPINFO_OPS=all runs all of op_db (see
opinfo_utils.ops_for). Each test has its own table of expected failures; an xfail
is strict, so an entry whose case now passes must be removed.
"""
from opinfo_checks import check_jacrev, check_vjp, check_vmapvjp
from opinfo_utils import UNCOMPARABLE, SkipCase, Table, ops_for, parametrize_ops

import pytest

# Expected failures of torchfunc, each with a reason: xfail(name, variant, reason=...).
VJP_XFAILS = Table(base=[UNCOMPARABLE])
VMAPVJP_XFAILS = Table(base=[UNCOMPARABLE])
JACREV_XFAILS = Table(base=[UNCOMPARABLE])
# Ops that work but only through the slow per-example fallback. A failure with the
# fallback is also one without it, so these tables extend the ones above.
VMAPVJP_HAS_BATCH_RULE_XFAILS = Table(base=[VMAPVJP_XFAILS])
JACREV_HAS_BATCH_RULE_XFAILS = Table(base=[JACREV_XFAILS])

OPS = [op for op in ops_for("compositions") if op.supports_autograd]


def run(check, op, **kwargs):
    try:
        check(op, **kwargs)
    except SkipCase as e:
        pytest.skip(str(e))


@parametrize_ops(OPS, VJP_XFAILS)
def test_vjp(op):
    run(check_vjp, op)


@parametrize_ops(OPS, VMAPVJP_XFAILS)
def test_vmapvjp(op):
    run(check_vmapvjp, op)


@parametrize_ops(OPS, VMAPVJP_HAS_BATCH_RULE_XFAILS)
def test_vmapvjp_has_batch_rule(op):
    run(check_vmapvjp, op, allow_fallback=False)


@parametrize_ops(OPS, JACREV_XFAILS)
def test_jacrev(op):
    run(check_jacrev, op)


@parametrize_ops(OPS, JACREV_HAS_BATCH_RULE_XFAILS)
def test_jacrev_has_batch_rule(op):
    run(check_jacrev, op, allow_fallback=False)
