"""Shared by the test files: every test starts seeded and must leave no level behind."""
import pytest
import torch

from helpers import reseed
from torchfunc import _C


@pytest.fixture(autouse=True)
def no_level_leaks():
    reseed(0)
    yield
    assert _C.stack_depth() == 0, "a transform left a level on the stack"
    assert torch.is_grad_enabled(), "a transform left grad mode disabled"

