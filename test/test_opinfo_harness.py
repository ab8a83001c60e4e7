"""Tests of the OpInfo harness itself, independent of the implementation under test.

The checks are run against stand-in transforms built from plain torch: a correct
one must pass, and deliberately broken ones must be caught.
"""
import pytest
import torch

import opinfo_checks
from opinfo_utils import (
    CONTIGUOUS_REFERENCE, contiguous_inputs,
    Table, example, loop, make_batched, op_db, placements, reference_vjp, select_ops, skip,
    xfail,
)


def opinfo(full_name):
    return next(op for op in select_ops() if op.full_name == full_name)


def loop_vmap(fn, in_dims, reverse=False):
    """A stand-in vmap made of a Python loop, for ops whose arguments are tensors or
    scalars; reverse=True mixes up the examples."""
    def run(*args):
        size = next(a.shape[d] for a, d in zip(args, in_dims) if d is not None)
        out = loop(fn, args, in_dims, size)
        return torch.flip(out, [0]) if reverse else out
    return run


def test_table_validates_entries():
    with pytest.raises(ValueError, match="reason"):
        Table(xfail("sin", reason=" "))
    with pytest.raises(ValueError, match="no such OpInfo"):
        Table(xfail("not_an_op", reason="typo"))
    with pytest.raises(ValueError, match="twice"):
        Table(xfail("sin", reason="a"), base=[Table(skip("sin", reason="b"))])
    table = Table(xfail("div", "floor_rounding", reason="r"))
    matched = [op.full_name for op in op_db if table.lookup(op)]
    assert matched == ["div.floor_rounding"]


def test_placements_cover_front_last_and_unbatched():
    args = (torch.ones(2, 3), [torch.ones(4), torch.ones(())], 7)
    found = placements(args, seed=0, cap=100)
    assert len(found) == 3 * 3 * 2 - 1  # every combination but all-unbatched
    assert {p[0] for p in found} == {0, 2, None} and all(p[-1] is None for p in found)
    capped = placements(args, seed=0, cap=4)
    assert len(capped) == 4 and capped[0] == (0, 0, 0, None) and capped[1] == (2, 1, 0, None)


def test_batched_examples_come_from_the_variants():
    variants = [(torch.full((2, 3), float(k)), [torch.full((4,), 10.0 + k)]) for k in range(3)]
    args, in_dims = make_batched(variants, (1, 0), batch_size=3)
    assert in_dims == (1, [0]) and args[0].shape == (2, 3, 3)
    for k in range(3):
        torch.testing.assert_close(example(args, in_dims, k), variants[k], rtol=0, atol=0)


def test_check_vmap_passes_a_correct_vmap_and_catches_mixed_up_examples(monkeypatch):
    monkeypatch.setattr(opinfo_checks, "vmap", loop_vmap)
    assert opinfo_checks.check_vmap(opinfo("add")) > 0
    monkeypatch.setattr(opinfo_checks, "vmap",
                        lambda fn, in_dims: loop_vmap(fn, in_dims, reverse=True))
    with pytest.raises(AssertionError):
        opinfo_checks.check_vmap(opinfo("add"))


def test_check_vmap_inplace_requires_an_error_for_an_unbatched_self(monkeypatch):
    # A loop "vmap" happily writes every example into the same unbatched self.
    monkeypatch.setattr(opinfo_checks, "vmap", loop_vmap)
    with pytest.raises(AssertionError, match="must raise"):
        opinfo_checks.check_vmap_inplace(opinfo("add"))


def reference_as_vjp(f, *primals, scale=1.0):
    out = f(*primals)
    return out, lambda cts: tuple(scale * g for g in reference_vjp(f, primals, cts)[1])


def test_check_vjp_passes_a_correct_vjp_and_catches_wrong_grads(monkeypatch):
    monkeypatch.setattr(opinfo_checks, "vjp", reference_as_vjp)
    assert opinfo_checks.check_vjp(opinfo("mul")) > 0
    monkeypatch.setattr(opinfo_checks, "vjp",
                        lambda f, *p: reference_as_vjp(f, *p, scale=2.0))
    with pytest.raises(AssertionError):
        opinfo_checks.check_vjp(opinfo("mul"))


def test_random_samples_are_left_out_of_vmap_checks():
    with pytest.raises(opinfo_checks.SkipCase, match="random"):
        opinfo_checks.check_vmap(opinfo("bernoulli"))


def test_contiguous_reference_entries_are_still_torch_bugs():
    # CONTIGUOUS_REFERENCE is only for kernels that give another answer on a
    # non-contiguous view of the same values; once torch fixes one, its entry goes.
    assert set(CONTIGUOUS_REFERENCE) == {"native_group_norm"}
    g = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(2, 6, 5, generator=g), torch.randn(6, 3, generator=g)[:, 1],
               torch.randn(6, generator=g))
    assert not w.is_contiguous()
    call = lambda *a: torch.native_group_norm(*a, 2, 6, 5, 3, 1e-5)[0]  # noqa: E731
    assert not torch.allclose(call(x, w, b), contiguous_inputs(call)(x, w, b))
