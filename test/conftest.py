"""Shared by the test files: every test starts seeded and must leave no level behind."""
import os

import pytest
import torch

from torchfunc import _C


@pytest.fixture(autouse=True)
def no_level_leaks():
    torch.manual_seed(0)
    yield
    assert _C.stack_depth() == 0, "a transform left a level on the stack"
    assert torch.is_grad_enabled(), "a transform left grad mode disabled"


# The OpInfo suites (test_*_opinfo.py) run only when asked for: their xfail tables
# are not filled in yet, so in CI they would fail on known gaps. Measured pass
# rates come from tools/opinfo_report.py (see the issue notes).
if not os.environ.get("TORCHFUNC_OPINFO"):
    collect_ignore_glob = ["test_*_opinfo.py"]
