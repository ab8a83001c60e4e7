"""Small helpers shared by the test files."""
import collections
import random
import subprocess
import sys

import torch
from torch.utils._pytree import tree_flatten

from torchfunc._engine import _C


def reseed(seed: int) -> None:
    """torch.manual_seed(seed) for the generators this suite uses.

    torch.manual_seed also queues a seed for every device backend that is not initialized
    (CUDA, XPU, MTIA), recording traceback.format_stack() for each: about 1.5 ms under
    pytest's deep stacks, and the suite reseeds tens of thousands of times. The CPU
    generator gets the same seed either way."""
    torch.random.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


def seed_all(seed: int) -> None:
    """reseed, and Python's and NumPy's generators (common_utils.set_rng_seed's set)."""
    reseed(seed)
    random.seed(seed)
    try:
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed)


Point = collections.namedtuple("Point", ["x", "y"])


def assert_same(actual, expected):
    """Same pytree structure, same leaves (Tensors: same shape, dtype and values, and no
    torchfunc wrapper where torch.func gives none, such as a dead GradTensor leaking out)."""
    flat_actual, spec_actual = tree_flatten(actual)
    flat_expected, spec_expected = tree_flatten(expected)
    assert spec_actual == spec_expected
    for a, e in zip(flat_actual, flat_expected):
        if isinstance(e, torch.Tensor):
            if torch._C._functorch.is_functorch_wrapped_tensor(e) is False:
                assert _C.wrapper_info(a) is None, _C.describe(a)
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
