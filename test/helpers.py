"""Small helpers shared by the API test files."""
import collections
import subprocess
import sys

import torch
from torch.utils._pytree import tree_flatten

Point = collections.namedtuple("Point", ["x", "y"])


def assert_same(actual, expected):
    """Same pytree structure, same leaves (Tensors: same shape, dtype and values)."""
    flat_actual, spec_actual = tree_flatten(actual)
    flat_expected, spec_expected = tree_flatten(expected)
    assert spec_actual == spec_expected
    for a, e in zip(flat_actual, flat_expected):
        if isinstance(e, torch.Tensor):
            torch.testing.assert_close(a, e)
        else:
            assert a == e


def record_vmap_sizes(monkeypatch, C) -> list:
    """The batch size of every vmap level pushed from now on (C: torchfunc's _C module)."""
    pushed = []
    push_vmap = C.push_vmap
    monkeypatch.setattr(C, "push_vmap",
                        lambda size, randomness: pushed.append(size) or push_vmap(size, randomness))
    return pushed


def run_python(code: str, timeout: int = 120) -> str:
    """stdout of `code` run in a fresh interpreter, which must exit 0: for cases that
    once crashed the process, so that a regression is a failure and not the end of the run."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    return done.stdout
