"""Builds torchfunc._C against the torch that is installed (never an isolated one).

    pip install --no-build-isolation -e .
"""
import glob
import os

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension
except ImportError as e:  # pragma: no cover - a message for people, not tests
    raise SystemExit(
        "torchfunc builds against an installed torch 2.13: run `pip install torch==2.13.0` first, "
        "then `pip install --no-build-isolation .`") from e

if not torch.__version__.startswith("2.13."):
    raise SystemExit(f"torchfunc needs torch 2.13.x to build, found {torch.__version__}")

ROOT = os.path.dirname(os.path.abspath(__file__))

# Read at import, before the engine is loaded (torchfunc/_engine.py).
with open(os.path.join(ROOT, "torchfunc", "_build_info.py"), "w") as f:
    f.write(f"# Written by setup.py.\nBUILT_WITH_TORCH = {torch.__version__!r}\n")
sources = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "csrc", "**", "*.cpp"), recursive=True))

setup(
    name="torchfunc",
    version="0.1.0",
    description="Composable function transforms (vmap, grad, vjp, jacrev, ...) for PyTorch on an out-of-tree C++ engine",
    packages=find_packages(include=["torchfunc", "torchfunc.*"]),
    package_data={"torchfunc": ["_C.pyi", "py.typed"]},
    python_requires=">=3.10",
    install_requires=["torch==2.13.*"],
    # Peers of benchmarks/bench.py, never needed at run time. BackPACK depends on torchvision,
    # which pulls in another torch: install these with --no-deps (see README).
    extras_require={"bench": ["opacus", "backpack-for-pytorch"]},
    ext_modules=[
        CppExtension(
            "torchfunc._C",
            sources,
            extra_compile_args={"cxx": ["-O2", "-g0", f'-DTORCHFUNC_BUILT_WITH_TORCH="{torch.__version__}"']},
        )
    ],
    cmdclass={"build_ext": BuildExtension.with_options(no_python_abi_suffix=True)},
)
