"""Forward-mode and second-order transforms over OpInfos: jvp against
torch.autograd.forward_ad, vmap(jvp) against a loop, jvp(vjp) against
forward-over-reverse autograd, vjp(vjp) against double backward, jacfwd against a
forward-mode Jacobian built column by column.

Run one op with ``pytest test/test_forward_opinfo.py -k sin``. jvp, vjp(vjp) and jacfwd
run over all of op_db, vmap(jvp) and jvp(vjp) over SAMPLE_OPS (TORCHFUNC_OPINFO_OPS=all:
everything over all of op_db). Each test has its own strict xfail table: an entry
whose case now passes must be removed.
"""
from opinfo_forward_checks import check_jacfwd, check_jvp, check_jvpvjp, check_vjpvjp, check_vmapjvp
from opinfo_utils import Table, ops_for, parametrize_ops, run_check, xfail

# Expected failures of torchfunc, each with a reason: xfail(name, variant, reason=...).
JVP_XFAILS = Table()
VMAPJVP_XFAILS = Table(
)
_NEW_ZEROS = "no batching rule for _new_zeros_with_same_feature_meta, which forward AD calls for tangents of another layout (loops)"
VMAPJVP_HAS_BATCH_RULE_XFAILS = Table(
    base=[VMAPJVP_XFAILS])
JVPVJP_XFAILS = Table()
VJPVJP_XFAILS = Table()
JACFWD_XFAILS = Table(
)
JACFWD_HAS_BATCH_RULE_XFAILS = Table(
    base=[JACFWD_XFAILS])


def forward_ops(test):
    return [op for op in ops_for(test) if op.supports_forward_ad]


@parametrize_ops(forward_ops("jvp"), JVP_XFAILS)
def test_jvp(op):
    run_check(check_jvp, op)


@parametrize_ops(forward_ops("vmapjvp"), VMAPJVP_XFAILS)
def test_vmapjvp(op):
    run_check(check_vmapjvp, op)


@parametrize_ops(forward_ops("vmapjvp"), VMAPJVP_HAS_BATCH_RULE_XFAILS)
def test_vmapjvp_has_batch_rule(op):
    run_check(check_vmapjvp, op, allow_fallback=False)


@parametrize_ops(forward_ops("jvpvjp"), JVPVJP_XFAILS)
def test_jvpvjp(op):
    run_check(check_jvpvjp, op)


@parametrize_ops([op for op in ops_for("vjpvjp") if op.supports_gradgrad], VJPVJP_XFAILS)
def test_vjpvjp(op):
    run_check(check_vjpvjp, op)


@parametrize_ops(forward_ops("jacfwd"), JACFWD_XFAILS)
def test_jacfwd(op):
    run_check(check_jacfwd, op)


@parametrize_ops(forward_ops("jacfwd"), JACFWD_HAS_BATCH_RULE_XFAILS)
def test_jacfwd_has_batch_rule(op):
    run_check(check_jacfwd, op, allow_fallback=False)
