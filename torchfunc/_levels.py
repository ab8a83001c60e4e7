"""Entering and leaving levels on the engine's interpreter stack.

Each transform call pushes exactly one level and pops it on the way out, also when
the user's function raises, so no level outlives the call that pushed it.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch._export.utils import _maybe_find_pre_dispatch_tf_mode_for_export as _pre_dispatch_mode

from ._engine import _C

_NO_SAVED_TENSOR_HOOKS = (
    "torchfunc.{grad, grad_and_value, vjp, jacrev, hessian, linearize} don't yet support saved tensor "
    "hooks (torch.autograd.graph.saved_tensors_hooks, torch.utils.checkpoint with "
    "use_reentrant=False). Please open an issue with your use case."
)
_autograd = torch._C._autograd
_forward_ad = torch.autograd.forward_ad
_UNSET = object()  # no saved-tensor-hooks state recorded yet


class vmap_level:
    """Push a vmap interpreter for `batch_size` examples; entering yields its level.
    (A class rather than a generator: one is entered per vmap call, and a generator
    context manager costs several times more.)"""

    __slots__ = ("_batch_size", "_randomness", "_level")

    def __init__(self, batch_size: int, randomness: str) -> None:
        self._batch_size, self._randomness = batch_size, randomness

    def __enter__(self) -> int:
        self._level = _C.push_vmap(self._batch_size, self._randomness)
        return self._level

    def __exit__(self, *exc_info: object) -> None:
        _C.pop(self._level)


class _AutodiffLevel:
    """A grad or jvp level: entering pushes it, leaves inference mode if it is on and
    sets the level's modes (_set_modes); exiting, or a failure while entering, resets
    them (_reset_modes, which skips what was not set) and pops the level, also when
    resetting raises. (Classes rather than generator context managers: one is entered
    per transform call, and a generator costs several times more.)"""

    __slots__ = ("_level", "_inference")

    def _push(self) -> int:
        raise NotImplementedError

    def _set_modes(self) -> None:
        raise NotImplementedError

    def _reset_modes(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> int:
        self._inference = None
        self._level = self._push()
        try:
            if torch.is_inference_mode_enabled():
                self._inference = outside_inference_mode()
                self._inference.__enter__()
            self._set_modes()
        except BaseException:
            self._restore()
            raise
        return self._level

    def __exit__(self, *exc_info: object) -> None:
        self._restore()

    def _restore(self) -> None:
        try:
            self._reset_modes()
            if self._inference is not None:
                self._inference.__exit__(None, None, None)
        finally:
            _C.pop(self._level)


# NOTE [no_grad outside and inside grad]
# grad, vjp and jacrev are function transforms: their result must not depend on a
# torch.no_grad() *around* the call, but must honour one *inside* the function. So we
# record the grad mode outside (the engine keeps it as the level's prev_grad_mode),
# enable grad for the function, and the engine restores prev_grad_mode when an op
# crosses from this level to the levels below. Inference mode is left for the same
# reason: a transformed function computes with autograd whatever the caller's mode.
class grad_level(_AutodiffLevel):
    """Push a grad interpreter; entering yields its level. Inside, grad mode is on,
    inference mode is off and saved-tensor hooks are refused; all modes are restored
    on exit. (The modes are set with torch's own calls, which torch.enable_grad() and
    torch.autograd.graph.disable_saved_tensors_hooks make too.)"""

    __slots__ = ("_prev_grad", "_prev_hooks_message")

    def _push(self) -> int:
        self._prev_grad, self._prev_hooks_message = None, _UNSET
        return _C.push_grad(torch.is_grad_enabled())

    def _set_modes(self) -> None:
        self._prev_grad = torch.is_grad_enabled()
        torch._C._set_grad_enabled(True)
        self._prev_hooks_message = _autograd._saved_tensors_hooks_get_disabled_error_message()
        _autograd._saved_tensors_hooks_disable(_NO_SAVED_TENSOR_HOOKS)

    def _reset_modes(self) -> None:
        if self._prev_hooks_message is not _UNSET:
            if self._prev_hooks_message is None:
                _autograd._saved_tensors_hooks_enable()
            else:
                _autograd._saved_tensors_hooks_disable(self._prev_hooks_message)
        if self._prev_grad is not None:
            torch._C._set_grad_enabled(self._prev_grad)


# Forward-mode AD has a single dual level in torch; every jvp level uses it, each on
# its own GradTensors (their own forward gradients), so only the outermost jvp level
# enters it.
class jvp_level(_AutodiffLevel):
    """Push a jvp interpreter; entering yields its level. Inside, forward-grad mode is on
    and inference mode is off; all modes are restored on exit. (The dual level is
    entered with torch.autograd.forward_ad's own functions, which keep its record of the
    current level.)"""

    __slots__ = ("_dual_level", "_prev_fwd_grad")

    def _push(self) -> int:
        self._dual_level, self._prev_fwd_grad = None, None
        return _C.push_jvp(torch._C._is_fwd_grad_enabled())

    def _set_modes(self) -> None:
        if _C.stack_kinds().count("jvp") == 1:
            self._dual_level = _enter_dual_level()
        self._prev_fwd_grad = torch._C._is_fwd_grad_enabled()
        torch._C._set_fwd_grad_enabled(True)

    def _reset_modes(self) -> None:
        if self._prev_fwd_grad is not None:
            torch._C._set_fwd_grad_enabled(self._prev_fwd_grad)
        if self._dual_level is not None:
            _exit_dual_level(self._dual_level)


def _enter_dual_level() -> int:
    """fwAD.enter_dual_level, with its check and its record of the current level, without
    its detour through torch._functorch.predispatch; under torch.export's pre-dispatch
    tracing, which intercepts it, fwAD.enter_dual_level itself."""
    if _pre_dispatch_mode() is not None:
        return _forward_ad.enter_dual_level()
    level = torch._C._enter_dual_level()
    if level != _forward_ad._current_level + 1:
        torch._C._exit_dual_level(level=level)
        raise RuntimeError("Entering a new forward AD level but the current level is not valid. "
                           "Make sure you did not modify it directly.")
    _forward_ad._current_level = level
    return level


def _exit_dual_level(level: int) -> None:
    """fwAD.exit_dual_level(level=level), as _enter_dual_level is fwAD.enter_dual_level."""
    if _pre_dispatch_mode() is not None or level != _forward_ad._current_level:
        _forward_ad.exit_dual_level(level=level)  # (which raises for the wrong level)
        return
    torch._C._exit_dual_level(level=level)
    _forward_ad._current_level = level - 1


@contextlib.contextmanager
def functionalize_level(reapply_views: bool) -> Iterator[int]:
    """Push a functionalize interpreter; yields its level."""
    level = _C.push_functionalize(reapply_views)
    try:
        yield level
    finally:
        _C.pop(level)


@contextlib.contextmanager
def outside_inference_mode() -> Iterator[None]:
    """Leave inference mode, if it is on, keeping the grad and forward-grad modes."""
    if not torch.is_inference_mode_enabled():
        yield
        return
    grad_mode, fwd_grad_mode = torch.is_grad_enabled(), torch._C._is_fwd_grad_enabled()
    with torch.inference_mode(False):
        torch._C._set_grad_enabled(grad_mode)
        torch._C._set_fwd_grad_enabled(fwd_grad_mode)
        yield


def refuse_torch_func_mixing(api_name: str) -> None:
    """Raise if a torch.func (core functorch) transform is active around this call.

    This only looks at core's stack; torchfunc never uses it to do its work."""
    interpreter = torch._C._functorch.peek_interpreter_stack()
    if interpreter is not None:
        raise RuntimeError(
            f"torchfunc.{api_name} was called inside a torch.func transform "
            f"(torch.func.{interpreter.key().name.lower()} at level {interpreter.level()}). "
            "torchfunc and torch.func transforms cannot be nested inside each other, because "
            "each library's interpreter stack cannot see the other's wrapped tensors "
            "(BatchedTensor, GradTensor), which would give wrong results. Use one library "
            "for the whole composition: all torchfunc, or all torch.func."
        )
