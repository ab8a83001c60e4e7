"""The rule registry (NOTE [The rule registry]) and torchfunc.explain.

* explain answers for every aten op that op_db's samples dispatch, with a known kind;
* its answers agree with what vmap does: a "loop" op raises the fallback-disabled error
  with the fallback off, a "refused" op raises, a rule-backed op does not loop;
* the xfail reasons that name an op's batching agree with the registry;
* the family table of docs/writing_batching_rules.md lists exactly the registry's files.
"""
import collections
import os
import re
import warnings

import expecttest
import pytest
import torch
from torch.testing._internal.common_methods_invocations import op_db
from torch.utils._python_dispatch import TorchDispatchMode

import torchfunc
from torchfunc._engine import _C
from torchfunc.explain import KINDS, registry

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.join(HERE, "..", "docs")


class _Collect(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func)
        return func(*args, **(kwargs or {}))


def _dispatched_ops():
    """Every aten op the first float32 sample of each OpInfo dispatches."""
    seen = set()
    for op in op_db:
        if torch.float32 not in op.supported_dtypes("cpu"):
            continue
        try:
            sample = next(iter(op.sample_inputs_func(op, "cpu", torch.float32, False)))
        except Exception:  # noqa: BLE001 - an OpInfo without CPU float32 samples
            continue
        collect = _Collect()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                with collect:
                    op(sample.input, *sample.args, **sample.kwargs)
            except Exception:  # noqa: BLE001 - only which ops were dispatched matters
                pass
        seen |= {f for f in collect.ops if f.namespace == "aten"}
    return seen


def test_explain_answers_for_every_op_that_op_db_dispatches():
    ops = _dispatched_ops()
    assert len(ops) > 400
    for op in ops:
        answer = torchfunc.explain(op)
        assert answer.kind in KINDS, answer
        assert answer.source and answer.why, answer


def test_every_aten_op_has_one_record():
    records = registry("aten")
    names = [r.op for r in records]
    assert len(names) == len(set(names)) > 2000
    assert {r.kind for r in records} <= set(KINDS)


def test_explain_forms_and_errors():
    assert torchfunc.explain("sin") == torchfunc.explain("aten::sin") == torchfunc.explain(torch.ops.aten.sin)
    assert torchfunc.explain(torch.ops.aten.add.Tensor).op == "aten::add.Tensor"
    assert torchfunc.explain("aten::sin.default").op == "aten::sin"
    with pytest.raises(ValueError, match="has no default overload"):
        torchfunc.explain("aten::add")
    with pytest.raises(ValueError, match="no operator aten::no_such_op"):
        torchfunc.explain("aten::no_such_op")
    with pytest.raises(TypeError):
        torchfunc.explain(3)


KNOWN = {
    "aten::sin": "physical",  # tag pointwise
    "aten::abs_": "physical",  # the in-place form of a pointwise op
    "aten::convolution": "physical",
    "aten::conv2d": "decomposition",  # composite
    "aten::bernoulli": "random",
    "aten::addmm_": "in-place-of",
    "aten::nonzero": "refused",  # data-dependent
    "aten::mm.out": "out-of",  # out=: mm, copied into out
    "aten::where.self_out": "out-of",
    "aten::histc": "physical",
    "aten::affine_grid_generator": "loop",
    "aten::segment_reduce": "physical",
    "aten::_pdist_forward": "physical",
    "aten::_prelu_kernel": "physical",  # untagged, broadcasts like a pointwise op
}


@pytest.mark.parametrize("name", KNOWN)
def test_known_kinds(name):
    assert torchfunc.explain(name).kind == KNOWN[name]


def _fallback_off(fn, *args):
    _C.set_fallback_enabled(False)
    try:
        return fn(*args)
    finally:
        _C.set_fallback_enabled(True)


def test_a_loop_op_loops_and_a_rule_op_does_not():
    x = torch.randn(3, 6)
    assert torchfunc.explain("aten::affine_grid_generator").kind == "loop"
    with pytest.raises(RuntimeError, match="per-example fallback is disabled"):
        _fallback_off(torchfunc.vmap(lambda t: torch.nn.functional.affine_grid(t.reshape(1, 2, 3), (1, 1, 2, 2), align_corners=False)), x)
    before = _C.fallback_count()
    _fallback_off(torchfunc.vmap(torch.sin), x)
    _fallback_off(torchfunc.vmap(lambda t: t.abs_()), x.clone())
    _fallback_off(torchfunc.vmap(lambda t: torch.addmm(t, t[:, None], t[None, :])), x)
    assert _C.fallback_count() == before


def test_python_rules_of_custom_ops_are_recorded():
    lib = torch.library.Library("torchfunc_registry_test", "FRAGMENT")  # noqa: F841 - kept alive

    @torch.library.custom_op("torchfunc_registry_test::twice", mutates_args=())
    def twice(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    twice.register_vmap(lambda info, in_dims, x: (x * 2, in_dims[0]))
    answer = torchfunc.explain("torchfunc_registry_test::twice")
    assert answer.kind == "python", answer
    torch.testing.assert_close(torchfunc.vmap(twice)(torch.ones(2, 3)), torch.full((2, 3), 2.0))


_NO_RULE = re.compile(r"no batching rule for (aten::[A-Za-z0-9_.]+)|(aten::[A-Za-z0-9_.]+) has no batching rule")
_LOOPS_WHEN = re.compile(r"(aten::[A-Za-z0-9_.]+) loops with")


def _xfail_reasons():
    from test_compositions_opinfo import (JACREV_HAS_BATCH_RULE_XFAILS, VJP_XFAILS,
                                          VMAPVJP_HAS_BATCH_RULE_XFAILS)
    from test_vmap_opinfo import VMAP_HAS_BATCH_RULE_XFAILS, VMAP_XFAILS
    tables = [VMAP_XFAILS, VMAP_HAS_BATCH_RULE_XFAILS, VJP_XFAILS, VMAPVJP_HAS_BATCH_RULE_XFAILS,
              JACREV_HAS_BATCH_RULE_XFAILS]
    return sorted({entry.reason for table in tables for entry in table.entries.values()})


def test_xfail_reasons_agree_with_the_registry():
    """An xfail that blames a missing batching rule names an op the registry loops or
    refuses; one that says an op "loops with" some input names a rule that hands such
    calls to the loop; every op an xfail names exists."""
    checked = 0
    for reason in _xfail_reasons():
        for name in re.findall(r"aten::[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?", reason):
            torchfunc.explain(name)  # raises for a name that is no op
        for match in _NO_RULE.finditer(reason):
            name = match.group(1) or match.group(2)
            assert torchfunc.explain(name).kind in ("loop", "refused"), (reason, torchfunc.explain(name))
            checked += 1
        for match in _LOOPS_WHEN.finditer(reason):
            assert "runs the per-example loop" in torchfunc.explain(match.group(1)).why, reason
            checked += 1
    # Not vacuous: the xfail tables still blame missing rules (2 reasons on torch 2.13: as_strided_copy and to_sparse);
    # the tables only shrink, so this floor is lowered with them.
    assert checked >= 2


def test_docs_family_table_lists_the_registry_files():
    with open(os.path.join(DOCS, "writing_batching_rules.md")) as f:
        documented = set(re.findall(r"^\| `([a-z_]+\.cpp)` \|", f.read(), re.M))
    sources = {r.source for r in registry("aten")}
    tables = {m.group(1) for s in sources for m in [re.match(r"vmap/rules/([a-z_]+\.cpp)$", s)] if m}
    assert tables == documented


def test_family_tables_list_every_rule_of_the_registry():
    # python -m torchfunc.coverage --family-tables: one section per family file, one row
    # per op of its table, as the registry says.
    from torchfunc.coverage import family_tables
    records = [r for r in registry("aten") if r.source.startswith("vmap/rules/")]
    text = family_tables(registry("aten"))
    sections = re.findall(r"^## `(rules/[a-z_]+\.cpp)` \((\d+) ops\)$", text, re.M)
    by_file = collections.Counter(r.source.split(" ")[0][len("vmap/"):] for r in records)
    assert dict((f, int(n)) for f, n in sections) == dict(by_file)
    assert "| `index_put` | physical | with a batched mask beside other indices |" in text
    assert "| `sin` | physical (pointwise_rule) |  |" in text


class TestMessages(expecttest.TestCase):
    def test_str(self):
        self.assertExpectedInline(str(torchfunc.explain("aten::affine_grid_generator")), """aten::affine_grid_generator: loop, in vmap/fallback.cpp (loop_rule): no rule: the per-example fallback runs it once per example and stacks the results (slow)""")
