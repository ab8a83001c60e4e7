"""vmap over every OpInfo: each batch-dim placement against a per-example loop.

Run one op with ``pytest test/test_vmap_opinfo.py -k sin``. Which OpInfos run is
set by TORCHFUNC_OPINFO_OPS (see opinfo_utils.ops_for); by default all of op_db.
Each test has its own table of expected failures; an xfail is strict, so an
entry whose case now passes must be removed.
"""
from opinfo_checks import check_vmap, check_vmap_inplace
from opinfo_utils import UNCOMPARABLE, SkipCase, Table, ops_for, parametrize_ops

import pytest

# Expected failures of torchfunc, each with a reason: xfail(name, variant, reason=...).
VMAP_XFAILS = Table(base=[UNCOMPARABLE])
VMAP_INPLACE_XFAILS = Table(base=[UNCOMPARABLE])
# Ops that work but only through the slow per-example fallback. A failure with the
# fallback is also one without it, so these tables extend the ones above.
VMAP_HAS_BATCH_RULE_XFAILS = Table(base=[VMAP_XFAILS])
VMAP_INPLACE_HAS_BATCH_RULE_XFAILS = Table(base=[VMAP_INPLACE_XFAILS])

OPS = ops_for("vmap")
INPLACE_OPS = [op for op in OPS if op.inplace_variant is not None]


def run(check, op, **kwargs):
    try:
        check(op, **kwargs)
    except SkipCase as e:
        pytest.skip(str(e))


@parametrize_ops(OPS, VMAP_XFAILS)
def test_vmap(op):
    run(check_vmap, op)


@parametrize_ops(OPS, VMAP_HAS_BATCH_RULE_XFAILS)
def test_vmap_has_batch_rule(op):
    run(check_vmap, op, allow_fallback=False)


@parametrize_ops(INPLACE_OPS, VMAP_INPLACE_XFAILS)
def test_vmap_inplace(op):
    run(check_vmap_inplace, op)


@parametrize_ops(INPLACE_OPS, VMAP_INPLACE_HAS_BATCH_RULE_XFAILS)
def test_vmap_inplace_has_batch_rule(op):
    run(check_vmap_inplace, op, allow_fallback=False)
