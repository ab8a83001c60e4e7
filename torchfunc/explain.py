"""torchfunc.explain: which code batches an op under vmap, and why (beyond torch.func).

Every op that can reach a vmap level is handled by one of: a rule of a family table
(csrc/vmap/rules/*.cpp), the generic pointwise rule (ops tagged pointwise), the
randomness modes (random ops), a Python rule (register_vmap of a custom op), the op's
composite kernel (its parts meet their own rules), its functional form (in-place ops
without a rule), the per-example loop, or a clear refusal. The engine records its
choice for every op at install time (NOTE [The rule registry], csrc/vmap/registry.cpp);
``explain`` reads that record.

    >>> torchfunc.explain("aten::convolution")
    Explanation(op='aten::convolution', kind='physical', source='vmap/rules/nn.cpp', ...)
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch

from ._engine import _C

__all__ = ["Explanation", "explain", "KINDS"]

KINDS = ("physical", "decomposition", "random", "in-place-of", "out-of", "python", "loop", "refused")


class Explanation(NamedTuple):
    """op: 'aten::name.overload'; kind: one of KINDS; source: the file (and table or
    function) that handles it; why: one sentence."""
    op: str
    kind: str
    source: str
    why: str

    def __str__(self) -> str:
        return f"{self.op}: {self.kind}, in {self.source}: {self.why}"


def _split(op: Any) -> tuple[str, str | None]:
    """(qualified name, overload or None when not given)."""
    if isinstance(op, torch._ops.OpOverload):
        overload = op._overloadname
        return op._schema.name, "" if overload == "default" else overload
    if isinstance(op, torch._ops.OpOverloadPacket):
        return op._qualified_op_name, None
    if not isinstance(op, str):
        raise TypeError(f"torchfunc.explain: expected an op name such as 'aten::add.Tensor' or an "
                        f"op such as torch.ops.aten.add.Tensor, got {type(op).__name__}.")
    name = op if "::" in op else f"aten::{op}"
    if "." in name.split("::", 1)[1]:
        base, overload = name.rsplit(".", 1)
        return base, "" if overload == "default" else overload
    return name, None


def explain(op: Any) -> Explanation:
    """How vmap batches ``op``: an op name ('aten::add.Tensor', 'add.Tensor', 'sin') or an
    op object (torch.ops.aten.sin, torch.ops.aten.add.Tensor). A name without an overload
    means the op's default overload; an op without one must be named with its overload."""
    name, overload = _split(op)
    found = _C.explain(name, overload or "")
    if found is not None:
        return Explanation(*found)
    namespace, base = name.split("::", 1)
    try:
        packet = getattr(getattr(torch.ops, namespace), base)
        overloads = packet.overloads()
    except (AttributeError, RuntimeError):
        overloads = []
    if overload is None and overloads:
        shown = ", ".join(f"'{name}.{o}'" if o != "default" else f"'{name}'" for o in overloads[:8])
        raise ValueError(f"torchfunc.explain: {name} has no default overload; name one of its "
                         f"overloads: {shown}{', ...' if len(overloads) > 8 else ''}.")
    raise ValueError(f"torchfunc.explain: no operator {name}{'.' + overload if overload else ''} "
                     f"is registered with torch's dispatcher"
                     + (f" (its overloads: {', '.join(overloads)})." if overloads else "."))


def registry(namespace: str = "aten") -> list[Explanation]:
    """One Explanation per operator of `namespace` the dispatcher knows, sorted by name."""
    return [Explanation(*r) for r in _C.registry(namespace)]
