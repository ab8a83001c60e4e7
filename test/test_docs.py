"""The Python examples of the README and docs/*.md run (each block in a fresh namespace)."""
import pathlib
import re

import pytest

import torchfunc
from torchfunc._engine import _C

ROOT = pathlib.Path(__file__).resolve().parent.parent
BLOCKS = [(f"{path.relative_to(ROOT)}#{i}", code)
          for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
          for i, code in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S))]


@pytest.fixture(autouse=True)
def restore_fallback_settings():
    yield  # an example may turn the fallback warning on (docs/index.md does)
    torchfunc.set_fallback_warning(False)
    _C.set_fallback_enabled(True)


@pytest.mark.parametrize("where,code", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_example_runs(where, code):
    exec(compile(code, where, "exec"), {"__name__": "__docs__"})
