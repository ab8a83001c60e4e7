"""The crash sweep's cases and its worker (run by test/test_crash_sweep.py).

A case is one op_db OpInfo (its first float32 sample) under one transform or
composition: every transform the suites test (vmap, vjp, jvp, vmap(vjp), jacrev,
jacfwd, vmap(jvp), jvp(vjp), vjp(vjp)), and the compositions users write on top
(grad, vmap(grad), grad(vmap), vmap(vmap), hessian, jacrev(jacfwd), linearize,
functionalize with vmap and grad, chunked vmap, randomness='different'); and each
module_db ModuleInfo (a few samples) under per-sample gradients.
Only survival counts here: an exception is a normal outcome (the opinfo suites check
the results); a process that dies (segfault, abort) is a crash.

    python test/crash_sweep.py --list                # the cases, one per line
    python test/crash_sweep.py --start 0 --step 2    # run cases 0, 2, 4, ...

The worker prints `START i` before case i and `END i` after it, flushed, so the
parent knows which case was running when a process died.
"""
import argparse
import os
import sys
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from torch.utils import _pytree as pytree  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from opinfo_utils import as_positional, differentiable_fn, samples, select_ops  # noqa: E402

import torchfunc as F  # noqa: E402


def _stacked(args):
    """Every tensor leaf stacked twice along a new dim 0; in_dims to match."""
    batched = pytree.tree_map(lambda x: torch.stack([x, x]) if isinstance(x, torch.Tensor) else x,
                              args)
    in_dims = pytree.tree_map(lambda x: 0 if isinstance(x, torch.Tensor) else None, args)
    return batched, tuple(in_dims)


def _scalar(f):
    def g(*p):
        outs = f(*p)
        return sum((o.real if o.is_complex() else o).sum() for o in outs) if outs else p[0].sum()
    return g


def _ones(tree):
    return tuple(torch.ones_like(t) for t in tree)


def _vmap(call, args, **kw):
    batched, in_dims = _stacked(args)
    return F.vmap(call, in_dims=in_dims, **kw)(*batched)


def _vmap_vmap(call, args):
    batched, in_dims = _stacked(args)
    twice, _ = _stacked(batched)
    return F.vmap(F.vmap(call, in_dims=in_dims), in_dims=in_dims)(*twice)


def _vjp(f, primals):
    out, vjp_fn = F.vjp(f, *primals)
    return vjp_fn(_ones(out))


def _vmapvjp(f, primals):
    out, vjp_fn = F.vjp(f, *primals)
    return F.vmap(vjp_fn)(tuple(torch.stack([o, o]).contiguous() for o in _ones(out)))


def _jvp(f, primals):
    return F.jvp(f, primals, _ones(primals))


def _vmapjvp(f, primals):
    batched = tuple(torch.stack([p, p]) for p in primals)
    return F.vmap(lambda *p: F.jvp(f, p, _ones(p)))(*batched)


def _jvpvjp(f, primals):
    def vjp_of(*p):
        out, vjp_fn = F.vjp(f, *p)
        return vjp_fn(_ones(out))
    return F.jvp(vjp_of, primals, _ones(primals))


def _vjpvjp(f, primals):
    def vjp_of(*p):
        out, vjp_fn = F.vjp(f, *p)
        return vjp_fn(_ones(out))
    out, vjp_fn = F.vjp(vjp_of, *primals)
    return vjp_fn(_ones(out))


def _argnums(primals):
    return tuple(range(len(primals)))


def _small(primals, limit=64):
    return sum(p.numel() for p in primals) <= limit


COMPOSITIONS = {
    "vmap": lambda s: _vmap(s.call, s.args),
    "vmap_vmap": lambda s: _vmap_vmap(s.call, s.args),
    "vmap_chunked": lambda s: _vmap(s.call, s.args, chunk_size=1),
    "vmap_different": lambda s: _vmap(s.call, s.args, randomness="different"),
    "vjp": lambda s: _vjp(s.f, s.primals),
    "vmapvjp": lambda s: _vmapvjp(s.f, s.primals),
    "grad": lambda s: F.grad(_scalar(s.f), argnums=_argnums(s.primals))(*s.primals),
    "vmap_grad": lambda s: F.vmap(F.grad(_scalar(s.f), argnums=_argnums(s.primals)))(
        *(torch.stack([p, p]) for p in s.primals)),
    "grad_vmap": lambda s: F.grad(lambda *p: F.vmap(_scalar(s.f))(*p).sum(),
                                  argnums=_argnums(s.primals))(
        *(torch.stack([p, p]) for p in s.primals)),
    "jacrev": lambda s: F.jacrev(s.f, argnums=_argnums(s.primals))(*s.primals),
    "jvp": lambda s: _jvp(s.f, s.primals),
    "vmapjvp": lambda s: _vmapjvp(s.f, s.primals),
    "jvpvjp": lambda s: _jvpvjp(s.f, s.primals),
    "vjpvjp": lambda s: _vjpvjp(s.f, s.primals),
    "jacfwd": lambda s: F.jacfwd(s.f, argnums=_argnums(s.primals))(*s.primals),
    "linearize": lambda s: F.linearize(s.f, *s.primals)[1](*_ones(s.primals)),
    "hessian": lambda s: F.hessian(_scalar(s.f), argnums=_argnums(s.primals))(*s.primals)
    if _small(s.primals) else None,
    "jacrev_jacfwd": lambda s: F.jacrev(F.jacfwd(_scalar(s.f)))(s.primals[0])
    if _small(s.primals[:1]) else None,
    "functionalize_vmap": lambda s: F.functionalize(lambda *a: _vmap(s.call, a))(*s.args),
    "grad_functionalize": lambda s: F.grad(F.functionalize(_scalar(s.f)),
                                           argnums=_argnums(s.primals))(*s.primals),
}
# Compositions that differentiate: they need a sample with differentiable primals.
DIFFERENTIATING = {name for name in COMPOSITIONS if not name.startswith(("vmap", "functionalize_vmap"))
                   } | {"vmapvjp", "vmap_grad", "vmapjvp"}


class Sample:
    def __init__(self, op):
        self.op = op
        drawn = samples(op, requires_grad=op.supports_autograd, limit=1)
        if not drawn:
            raise LookupError("no sample")
        self.call, self.args = as_positional(op, drawn[0])
        self.f, self.primals = differentiable_fn(op, drawn[0]) if op.supports_autograd else (None, ())


# module_db: per-sample gradients, vmap(grad(functional_call)), of a few samples each.
MODULE_SAMPLES = 3


def _module_infos():
    from torch.testing._internal.common_modules import module_db
    return {f"module:{m.name}": m for m in module_db}


def cases():
    ops = [(op.full_name, name) for op in select_ops("all") for name in COMPOSITIONS]
    return ops + [(name, "vmap_grad_functional_call") for name in _module_infos()]


def _run_module(module_info) -> None:
    from module_db_checks import run_cases
    try:
        run_cases(module_info, "torchfunc", True, max_samples=MODULE_SAMPLES)
    except Exception:  # noqa: BLE001 - SkipCase (no parameters) and the like
        pass


def _run_op(op, composition: str, cache: dict) -> None:
    try:
        if op.full_name not in cache:
            cache.clear()
            cache[op.full_name] = Sample(op)
        sample = cache[op.full_name]
        if composition in DIFFERENTIATING and not sample.primals:
            return
        COMPOSITIONS[composition](sample)
    except Exception:  # noqa: BLE001 - only survival counts here
        pass


def run(start: int, step: int) -> None:
    warnings.simplefilter("ignore")
    ops = {op.full_name: op for op in select_ops("all")}
    modules = _module_infos()
    cache = {}
    for i, (op_name, composition) in enumerate(cases()):
        if i < start or (i - start) % step:
            continue
        print(f"START {i}", flush=True)
        if op_name in modules:
            _run_module(modules[op_name])
        else:
            _run_op(ops[op_name], composition, cache)
        assert F._C.stack_depth() == 0, f"case {i} left a level on the stack"
        print(f"END {i}", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--list", action="store_true")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--step", type=int, default=1)
    a = p.parse_args()
    if a.list:
        for i, (op_name, composition) in enumerate(cases()):
            print(i, op_name, composition)
    else:
        torch.set_num_threads(1)
        run(a.start, a.step)
