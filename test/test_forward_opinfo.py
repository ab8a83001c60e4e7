"""Forward-mode transforms over OpInfos: jvp against torch.autograd.forward_ad, vmap(jvp)
against a loop, jvp(vjp) against forward-over-reverse autograd, jacfwd against
torch.autograd.functional.jacobian.

Run one op with ``pytest test/test_forward_opinfo.py -k sin``. By default these run over
SAMPLE_OPS (TORCHFUNC_OPINFO_OPS=all: all of op_db). Each test has its own strict xfail
table: an entry whose case now passes must be removed.
"""
from opinfo_forward_checks import check_jacfwd, check_jvp, check_jvpvjp, check_vmapjvp
from opinfo_utils import Table, ops_for, parametrize_ops, run_check, xfail

# Expected failures of torchfunc, each with a reason: xfail(name, variant, reason=...).
JVP_XFAILS = Table()
VMAPJVP_XFAILS = Table(
    xfail("gather", reason="known bug: 0-dim self with a 1-element index gives a wrongly shaped tangent under vmap"),
    xfail("masked_fill", reason="known bug: a batch-size mismatch in masked_fill with a batched tensor value under vmap of the backward"),
    xfail("nn.functional.gelu", reason="oneDNN rejects the stride-0 (expanded) tensors the batched backward passes to gelu_backward"),
)
_NEW_ZEROS = "no batching rule for _new_zeros_with_same_feature_meta, which forward AD calls for tangents of another layout (loops)"
VMAPJVP_HAS_BATCH_RULE_XFAILS = Table(
    xfail("__getitem__", reason=_NEW_ZEROS),
    xfail("cat", reason=_NEW_ZEROS),
    xfail("nn.functional.max_pool2d", reason=_NEW_ZEROS),
    xfail("nn.functional.pad", "circular", reason=_NEW_ZEROS),
    base=[VMAPJVP_XFAILS])
JVPVJP_XFAILS = Table()
JACFWD_XFAILS = Table(
    xfail("gather", reason="known bug: 0-dim self with a 1-element index gives a wrongly shaped tangent under vmap"),
    xfail("log_softmax", "with_dtype", reason="forward mode gives the output dtype (float64) to the Jacobian, the reverse-mode reference the input dtype"),
    xfail("softmax", "with_dtype", reason="forward mode gives the output dtype (float64) to the Jacobian, the reverse-mode reference the input dtype"),
    xfail("masked_fill", reason="known bug: a batch-size mismatch in masked_fill with a batched tensor value under vmap"),
    xfail("nn.functional.gelu", reason="oneDNN rejects the stride-0 (expanded) tensors the batched backward passes to gelu_backward"),
)
JACFWD_HAS_BATCH_RULE_XFAILS = Table(
    xfail("cat", reason=_NEW_ZEROS),
    xfail("nn.functional.max_pool2d", reason=_NEW_ZEROS),
    xfail("nn.functional.pad", "circular", reason=_NEW_ZEROS),
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


@parametrize_ops(forward_ops("jacfwd"), JACFWD_XFAILS)
def test_jacfwd(op):
    run_check(check_jacfwd, op)


@parametrize_ops(forward_ops("jacfwd"), JACFWD_HAS_BATCH_RULE_XFAILS)
def test_jacfwd_has_batch_rule(op):
    run_check(check_jacfwd, op, allow_fallback=False)
