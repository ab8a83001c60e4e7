"""Loads the compiled engine, torchfunc._C, after checking that it can work here.

Two things would make loading it harmful rather than merely failing:
- a torch other than the one it was compiled against (C++ ABI: crashes or
  undefined symbols), and
- another library owning one of the dispatch keys torchfunc borrows (a second
  fallback on a key aborts the process, and no `except` can catch that).
Both are checked before the shared library is loaded, and reported with what to do.
"""
import importlib

import torch

# (role, key) pairs; must match csrc/keys.h (test_registrations checks it).
BORROWED_KEYS = (
    ("front", "TESTING_ONLY_GenericMode"),
    ("batched", "TESTING_ONLY_GenericWrapper"),
    ("grad", "DeferredInit"),
    ("back", "Fake"),
)

REBUILD = "pip install --no-build-isolation --force-reinstall --no-deps ."


def _check_torch_version():
    try:
        from ._build_info import BUILT_WITH_TORCH
    except ImportError:
        raise ImportError(
            "torchfunc: the compiled engine is missing (torchfunc/_build_info.py not found). "
            f"Build it from the source tree with `{REBUILD}`.") from None
    if torch.__version__.split("+")[0] != BUILT_WITH_TORCH.split("+")[0]:
        raise ImportError(
            f"torchfunc: its engine was compiled against torch {BUILT_WITH_TORCH}, but torch "
            f"{torch.__version__} is installed. A C++ extension only works with the torch it was "
            f"built for: reinstall torch {BUILT_WITH_TORCH.split('+')[0]} or rebuild torchfunc "
            f"with `{REBUILD}`.")


def _check_keys_free():
    for role, name in BORROWED_KEYS:
        key = torch._C._parse_dispatch_key(name)
        if torch._C._dispatch_has_backend_fallback(key) or \
                torch._C._dispatch_get_registrations_for_dispatch_key(name):
            raise ImportError(
                f"torchfunc: the dispatch key {name}, which torchfunc uses as its {role} key, is "
                "already registered by another library loaded in this process (for example "
                "torchdistx uses DeferredInit, and PyTorch's own C++ tests use the TESTING_ONLY "
                "keys). Two owners of one key would crash the process, so torchfunc refuses to "
                "load. Import torchfunc in a process without that library.")


def _load():
    _check_torch_version()
    _check_keys_free()
    engine = importlib.import_module("torchfunc._C")
    engine.install()
    return engine


_C = _load()
