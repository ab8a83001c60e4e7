"""Builds torchfunc._C against the torch that is installed (never an isolated one).

    pip install --no-build-isolation -e .
"""
import glob
import json
import os
import re
import subprocess

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


class BuildExt(BuildExtension):
    """Precompiles csrc/precompiled.h (GCC) before the sources and force-includes it in each.

    The header is compiled with the command torch's ninja rule runs for a source
    (cpp_extension's unix_wrap_ninja_compile): GCC uses a PCH only where the flags match, and
    where one did not, -Winvalid-pch says so and the header is read as text (slower, the same
    code). TORCHFUNC_NO_PCH=1 builds without it.
    """

    def build_extension(self, ext):
        if not hasattr(ext, "_pch_flags"):
            ext._pch_flags = self._precompile_header(ext)
            ext.extra_compile_args["cxx"] += ext._pch_flags
        super().build_extension(ext)

    def _precompile_header(self, ext):
        cxx = self.compiler.compiler_so
        if self.compiler.compiler_type != "unix" or os.environ.get("TORCHFUNC_NO_PCH"):
            return []
        version = subprocess.run([cxx[0], "--version"], capture_output=True, text=True).stdout
        if "Free Software Foundation" not in version:
            return []  # a .gch is GCC's
        # GCC 12 keeps no `#pragma GCC diagnostic` in a PCH: the warnings that torch's
        # TypeSafeSignMath.h and libstdc++'s char_traits.h switch off around their own code come
        # back (-Wsign-compare in every file, false positives of std::string's operator+ in
        # errors.cpp), so they are off here instead, for the whole file.
        major = subprocess.run([cxx[0], "-dumpversion"], capture_output=True, text=True).stdout
        quiet = []
        if int(major.split(".")[0]) < 13:
            quiet = ["-Wno-sign-compare", "-Wno-array-bounds", "-Wno-stringop-overflow", "-Wno-stringop-overread"]
        out_dir = os.path.abspath(os.path.join(self.build_temp, "pch"))
        os.makedirs(out_dir, exist_ok=True)
        wrapper = os.path.join(out_dir, "torchfunc_pch.h")
        gch = wrapper + ".gch"
        _, _, _, pp_opts, _ = self.compiler._setup_compile(
            out_dir, ext.define_macros, ext.include_dirs, [], ext.depends, ext.extra_compile_args)
        post = list(ext.extra_compile_args["cxx"]) + quiet
        if not any(f.startswith("-std=") for f in post):
            post.append("-std=c++20")  # as torch's append_std17_if_no_std_present
        cmd = ([cxx[0], "-MMD", "-MF", gch + ".d"] + cxx[1:] + self.compiler._get_cc_args(pp_opts, self.debug, None)
               + ["-x", "c++-header", wrapper, "-o", gch] + post)
        text = f'#include "{os.path.join(ROOT, "csrc", "precompiled.h")}"\n'
        record = json.dumps([cmd, text, version])
        if not _up_to_date(gch, record):
            with open(wrapper, "w") as f:
                f.write(text)
            print("precompiling csrc/precompiled.h", flush=True)
            if os.path.exists(gch + ".cmd"):
                os.remove(gch + ".cmd")
            # A source's depfile lists none of the headers it got from the PCH: a new PCH
            # (torch's headers changed, or precompiled.h) makes every object stale.
            for obj in self.compiler.object_filenames(ext.sources, output_dir=os.path.abspath(self.build_temp)):
                if os.path.exists(obj):
                    os.remove(obj)
            if subprocess.run(cmd).returncode != 0:
                print("warning: csrc/precompiled.h did not precompile; building without it")
                return []
            with open(gch + ".cmd", "w") as f:
                f.write(record)
        return ["-include", wrapper, "-Winvalid-pch"] + quiet


def _up_to_date(gch, record):
    """Whether gch was built by this command and is newer than every header it read."""
    try:
        with open(gch + ".cmd") as f:
            if f.read() != record:
                return False
        with open(gch + ".d") as f:
            deps = re.split(r"(?<!\\)\s+", f.read().replace("\\\n", " ").strip())[1:]
        built = os.path.getmtime(gch)
        return all(os.path.getmtime(d.replace("\\ ", " ")) <= built for d in deps if d)
    except OSError:
        return False


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
            # AT_PER_OPERATOR_HEADERS: ATen's own headers (ExpandUtils.h, TensorOperators.h, ...)
            # include the per-operator headers they need instead of ATen/Functions.h (every
            # operator, ~6 s a file); our files include <ATen/ops/*.h> for what they call.
            extra_compile_args={"cxx": ["-O2", "-g0", "-DAT_PER_OPERATOR_HEADERS",
                                        f'-DTORCHFUNC_BUILT_WITH_TORCH="{torch.__version__}"']},
        )
    ],
    cmdclass={"build_ext": BuildExt.with_options(no_python_abi_suffix=True)},
)
