"""Looking at wrapped tensors: debug_unwrap, and printing BatchedTensors and GradTensors.

NOTE [Printing wrapped tensors]
torch prints a tensor by reading its values (masked_select, item, ...), which a
BatchedTensor (values differ per example) or a GradTensor (no storage of its own)
cannot give. torch.func prints its wrappers as a nest of
``BatchedTensor(lvl=.., bdim=.., value=...)`` / ``GradTrackingTensor(lvl=.., value=...)``
around the innermost plain tensor; torchfunc prints the same text. torch routes every
``repr``/``str``/``print`` of a Tensor through ``torch._tensor_str._str``, and only
knows core functorch's wrappers there, so ``install()`` puts a function in front of
it: a plain tensor outside every transform goes straight to torch's; a wrapper is
peeled level by level, and the innermost value is printed by torch's function with
our transforms suspended, so no op of the printing is itself transformed. A dead
GradTensor (its level popped) prints with ``lvl=-2``, as torch.func's do.
"""
from __future__ import annotations

import textwrap

import torch

from ._engine import _C

__all__ = ["debug_unwrap"]


def debug_unwrap(tensor: torch.Tensor, *, recurse: bool = True) -> torch.Tensor:
    """The value inside a BatchedTensor or GradTensor: with ``recurse`` (the default) the
    plain tensor under every level, else the value under the outermost level only. Any
    other tensor is returned as is. For debugging: the value of a BatchedTensor holds
    the whole batch (its batch dim included).

    Example::

        >>> from torchfunc import vmap
        >>> vmap(lambda a: debug_unwrap(a).shape)(torch.zeros(5, 3)) # doctest: +SKIP
        torch.Size([5, 3])
    """
    if not isinstance(tensor, torch.Tensor) or _C.wrapper_info(tensor) is None:
        return tensor
    value = _C.unwrap_one(tensor)
    return debug_unwrap(value) if recurse else value


_torch_str = torch._tensor_str._str


def _str(self: torch.Tensor, *, tensor_contents=None) -> str:
    if _C.stack_depth() == 0 and _C.wrapper_info(self) is None:
        return _torch_str(self, tensor_contents=tensor_contents)
    with _C.transforms_suspended():
        return _wrapper_str(self, tensor_contents)


def _wrapper_str(tensor: torch.Tensor, tensor_contents) -> str:
    info = _C.wrapper_info(tensor)
    if info is None:
        return _torch_str(tensor, tensor_contents=tensor_contents)
    kind, level, alive, bdim = info
    value = textwrap.indent(_wrapper_str(_C.unwrap_one(tensor), tensor_contents), " " * 4)
    if kind == "batched":
        return f"BatchedTensor(lvl={level}, bdim={bdim}, value=\n{value}\n)"
    return f"GradTrackingTensor(lvl={level if alive else -2}, value=\n{value}\n)"


def install() -> None:
    """Route torch's tensor printing through _str (NOTE [Printing wrapped tensors])."""
    torch._tensor_str._str = _str
