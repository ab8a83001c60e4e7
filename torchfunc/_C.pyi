# Type stub for the compiled engine, torchfunc._C (csrc/python/module.cpp).
# Vocabulary: a *level* is one transform on the thread's interpreter *stack*;
# a *BatchedTensor* carries (value, level, bdim); a *GradTensor* carries (value, level)
# and its own autograd metadata. Levels count from 1; the top of the stack is the
# highest level.
from typing import Optional, Tuple
from torch import Tensor

# --- the interpreter stack -------------------------------------------------------
def push_vmap(batch_size: int, randomness: str) -> int:
    """Push a vmap interpreter ('error' | 'same' | 'different'); returns its level."""
def push_grad(prev_grad_mode: bool) -> int:
    """Push a grad interpreter; prev_grad_mode is the grad mode outside the transform."""
def push_jvp(prev_fwd_grad_mode: bool) -> int: ...
def push_functionalize(reapply_views: bool) -> int:
    """Push a functionalize interpreter (reapply_views False: views become *_copy ops)."""
def pop(level: int) -> None:
    """Pop the top interpreter, which must be `level`; its wrappers become dead."""
def current_level() -> Optional[int]: ...
def stack_depth() -> int: ...
def stack_kinds() -> list[str]:
    """Kinds of the interpreters on the stack, bottom first ('vmap', 'grad', ...)."""

# --- BatchedTensor -----------------------------------------------------------------
def add_batch_dim(tensor: Tensor, bdim: int, level: int) -> Tensor: ...
def remove_batch_dim(tensor: Tensor, level: int, batch_size: int, out_dim: int) -> Tensor:
    """Unwrap `level`, moving its batch dim to out_dim; a tensor not batched at
    `level` is expanded to batch_size along out_dim instead."""
def is_batched_tensor(tensor: Tensor) -> bool: ...
def batched_at(tensor: Tensor, level: int) -> bool: ...

# --- GradTensor ------------------------------------------------------------------------
def wrap_for_grad(tensor: Tensor, level: int) -> Tensor: ...
def unwrap_for_grad(tensor: Tensor, level: int) -> Tensor:
    """The value of a GradTensor at `level`; any other tensor is returned as is."""
def make_duals(primals: list[Tensor], tangents: list[Tensor], level: int, dual_level: int) -> list[Tensor]:
    """GradTensors at `level` of the primals, each with its tangent as forward gradient at
    torch's dual level `dual_level` (NOTE [Dual tensors without make_dual])."""
def unpack_duals(outputs: list[Tensor], level: int, dual_level: int,
                 zeros_for_missing: bool) -> tuple[list[Tensor], list[Tensor | None]]:
    """(primals, tangents) of the outputs, unwrapped from `level`; an output without a
    forward gradient at the level gets None, or zeros with `zeros_for_missing`."""
def is_grad_tensor(tensor: Tensor) -> bool: ...

# --- introspection ---------------------------------------------------------------------
def tensor_level(tensor: Tensor) -> Optional[int]:
    """Level of the outermost wrapper of `tensor` (None for a plain tensor)."""
def unwrap_one(tensor: Tensor) -> Tensor:
    """Peel one wrapper (BatchedTensor: its physical value; GradTensor: its value)."""
def describe(tensor: Tensor) -> str:
    """e.g. 'BatchedTensor(level=2, bdim=0, GradTensor(level=1, tensor[3, 4]))'."""

# --- autograd ------------------------------------------------------------------------------------
def autograd_grad(outputs: list[Tensor], inputs: list[Tensor], grad_outputs: list[Optional[Tensor]],
                  retain_graph: bool, create_graph: bool,
                  unrecorded_level: Optional[int]) -> list[Optional[Tensor]]:
    """torch.autograd.grad(..., allow_unused=True) through the C++ engine entry; while it
    runs, the grad level unrecorded_level (if any) records no graph of its own."""

# --- the slow per-example fallback ----------------------------------------------------------
def set_fallback_warning(enabled: bool) -> None: ...
def set_fallback_enabled(enabled: bool) -> None:
    """When disabled, an op that would take the fallback raises instead."""
def take_fallback_ops() -> list[str]:
    """Names of the ops the fallback ran since the last call (each once); forgets them."""
def fallback_count() -> int:
    """How many times the fallback ran on this process (for tests and reports)."""

# --- build facts ------------------------------------------------------------------------
def built_with_torch() -> str: ...
def unknown_rule_ops() -> list[str]:
    """Rule table entries naming no op of this torch (expected empty)."""
def _call_on_new_thread(fn): ...  # test hook: runs fn on a thread with this thread's ThreadLocalState
def key_map() -> list[Tuple[str, str]]:
    """(role, dispatch key name) for each key torchfunc uses."""

# --- for the Python-level rules (autograd.Function, printing) ----------------------------
def wrapper_info(tensor: Tensor) -> Optional[Tuple[str, int, bool, Optional[int]]]:
    """(kind 'batched' | 'grad', level, alive, bdim) of the outermost wrapper; None if plain."""
def top_interpreter_info() -> Optional[Tuple[str, int, Optional[int], Optional[str], Optional[bool]]]:
    """(kind, level, batch_size, randomness, prev_mode) of the top interpreter; None if empty."""
def processing_op() -> bool:
    """True while an interpreter processes an op (its kernels, e.g. a Python autograd
    kernel of a custom op, are running), False at the level of user code."""
def unwrap_batched(tensor: Tensor, level: int) -> Tuple[Tensor, Optional[int]]:
    """(value, bdim) of a tensor batched at `level`; (tensor, None) otherwise."""
class lowered:
    """Context: the top interpreter is set aside until exit (ops meet the one below)."""
    def __enter__(self) -> None: ...
    def __exit__(self, *args) -> bool: ...
class keys_excluded:
    """Context: some dispatch keys excluded until exit (made by the two functions below)."""
    def __enter__(self) -> None: ...
    def __exit__(self, *args) -> bool: ...
def batched_key_excluded() -> keys_excluded:
    """Ops skip the batching rules of the vmap level being processed (they go to the
    level below), as the calls of a physical rule do."""
def transforms_suspended() -> keys_excluded:
    """No transform sees the ops run inside it (our front and back keys are excluded)."""
def batched_key_name() -> str:
    """The dispatch key batching rules are registered on (csrc/keys.h)."""
def unwrap_if_dead(tensor: Tensor) -> Tensor:
    """tensor with its dead GradTensors peeled (their levels were popped)."""
