"""vmap over every OpInfo: each batch-dim placement against a per-example loop.

Run one op with ``pytest test/test_vmap_opinfo.py -k sin``. Which OpInfos run is
set by TORCHFUNC_OPINFO_OPS (see opinfo_utils.ops_for); by default all of op_db.
Set TORCHFUNC_TEST_AGAINST_TORCH_FUNC=1 to run the harness against torch.func, the
reference implementation, to check the harness itself.
Each test has its own table of expected failures; an xfail is strict, so an
entry whose case now passes must be removed.
"""
from opinfo_checks import check_vmap, check_vmap_inplace
from opinfo_utils import UNCOMPARABLE, Table, ops_for, parametrize_ops, run_check, xfail

# Expected failures of torchfunc, each with a reason: xfail(name, variant, reason=...).
# The reasons were drafted from the failures by tools/xfail_suggester.py.
VMAP_XFAILS = Table(
    xfail("__getitem__", reason="a batched boolean mask selects a different number of elements per example: data-dependent, refused with a clear error"),
    xfail("allclose", reason="data-dependent: aten::allclose needs the value of a batched tensor"),
    xfail("argwhere", reason="data-dependent: aten::nonzero needs the value of a batched tensor"),
    xfail("as_strided", reason="explicit storage offsets: torchfunc applies them per example, the loop reference to the one storage the stacked examples share"),
    xfail("as_strided", "partial_views", reason="explicit storage offsets: torchfunc applies them per example, the loop reference to the one storage the stacked examples share"),
    xfail("as_strided_scatter", reason="explicit storage offsets: torchfunc applies them per example, the loop reference to the one storage the stacked examples share"),
    xfail("equal", reason="data-dependent: aten::equal needs the value of a batched tensor"),
    xfail("item", reason="data-dependent: aten::item needs the value of a batched tensor"),
    xfail("masked_select", reason="data-dependent: aten::masked_select needs the value of a batched tensor"),
    xfail("nonzero", reason="data-dependent: aten::nonzero needs the value of a batched tensor"),
    xfail("repeat_interleave", reason="data-dependent: aten::repeat_interleave.Tensor needs the value of a batched tensor"),
    xfail("resize_", reason="resize_ to a new shape of examples that are not contiguous one after another raises: eager resize_ reinterprets the memory the examples share"),
    xfail("sparse.mm", "reduce", reason="Sparse CSR tensors do not have is_contiguous"),
    xfail("sparse.sampled_addmm", reason="Sparse CSR tensors do not have is_contiguous"),
    xfail("unique", reason="data-dependent: aten::_unique2 needs the value of a batched tensor"),
    xfail("unique_consecutive", reason="data-dependent: aten::unique_consecutive needs the value of a batched tensor"),
    base=[UNCOMPARABLE])
VMAP_INPLACE_XFAILS = Table(
    xfail("as_strided", reason="explicit storage offsets: torchfunc applies them per example, the loop reference to the one storage the stacked examples share"),
    xfail("as_strided", "partial_views", reason="explicit storage offsets: torchfunc applies them per example, the loop reference to the one storage the stacked examples share"),
    xfail("resize_", reason="resize_ to a new shape of examples that are not contiguous one after another raises: eager resize_ reinterprets the memory the examples share"),
    base=[UNCOMPARABLE])
# Ops that work but only through the slow per-example fallback. A failure with the
# fallback is also one without it, so these tables extend the ones above.
VMAP_HAS_BATCH_RULE_XFAILS = Table(
    xfail("as_strided_copy", reason="no batching rule for aten::as_strided_copy: only the per-example fallback runs it"),
    xfail("to_sparse", reason="no batching rule for aten::_to_sparse: only the per-example fallback runs it"),
    base=[VMAP_XFAILS])
VMAP_INPLACE_HAS_BATCH_RULE_XFAILS = Table(
    base=[VMAP_INPLACE_XFAILS])

OPS = ops_for("vmap")
INPLACE_OPS = [op for op in ops_for("vmap_inplace") if op.inplace_variant is not None]


@parametrize_ops(OPS, VMAP_XFAILS)
def test_vmap(op):
    run_check(check_vmap, op)


@parametrize_ops(OPS, VMAP_HAS_BATCH_RULE_XFAILS)
def test_vmap_has_batch_rule(op):
    run_check(check_vmap, op, allow_fallback=False)


@parametrize_ops(INPLACE_OPS, VMAP_INPLACE_XFAILS)
def test_vmap_inplace(op):
    run_check(check_vmap_inplace, op)


@parametrize_ops(INPLACE_OPS, VMAP_INPLACE_HAS_BATCH_RULE_XFAILS)
def test_vmap_inplace_has_batch_rule(op):
    run_check(check_vmap_inplace, op, allow_fallback=False)
