"""Transforms over nn.Module state: functional_call, stack_module_state and
replace_all_batch_norm_modules_, with the signatures, semantics and results of
torch.func's (torch 2.13).

functional_call(module, tensors, args) runs ``module(*args)`` with some of its
parameters and buffers (named as in ``module.named_parameters()``, dotted for
submodules) swapped for the given tensors, and puts the originals back afterwards.
Nothing is copied, so the given tensors may be BatchedTensors or GradTensors of
torchfunc's transforms: that is how ``vmap(grad(...functional_call...))`` gives
per-sample gradients and ``vmap(functional_call)`` runs ensembles.
"""
from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["functional_call", "stack_module_state", "replace_all_batch_norm_modules_"]


# --- functional_call ----------------------------------------------------------------------

def functional_call(
    module: torch.nn.Module,
    parameter_and_buffer_dicts: dict[str, Tensor] | Sequence[dict[str, Tensor]],
    args: Any = None,
    kwargs: dict[str, Any] | None = None,
    *,
    tie_weights: bool = True,
    strict: bool = False,
) -> Any:
    """Calls ``module`` with some of its parameters and buffers replaced by the given
    tensors, and restores the originals afterwards (also when the call raises).

    Args:
        module: the ``nn.Module`` to call.
        parameter_and_buffer_dicts: a dict ``{name: Tensor}`` with names as in
            ``module.named_parameters()`` / ``named_buffers()`` (``"0.weight"`` for a
            submodule's), or a list/tuple of such dicts with distinct keys, e.g.
            ``(params, buffers)``. Parameters and buffers not named keep their values.
        args: the positional arguments of the call: a tuple, or any other value for a
            single argument. Default: ``None`` (no arguments).
        kwargs: the keyword arguments of the call. Default: ``None`` (none).
        tie_weights: if ``True``, a tensor the module registers under several names
            (tied weights) stays tied: passing it under one of the names replaces it
            under all of them, and passing different tensors for tied names raises.
            If ``False``, each name is replaced on its own. Default: ``True``.
        strict: if ``True``, the dicts must name every parameter and buffer of the
            module and nothing else. If ``False``, a name that is not a parameter,
            buffer or tensor attribute of the module is ignored with a warning (that
            suggests the closest real name). Default: ``False``.

    Returns:
        What ``module(*args, **kwargs)`` returns.

    Example::

        >>> model = torch.nn.Linear(3, 2)
        >>> params = {k: v.detach() for k, v in model.named_parameters()}
        >>> def loss(params, x, y):
        ...     return ((functional_call(model, params, (x,)) - y) ** 2).sum()
        >>> x, y = torch.randn(8, 3), torch.randn(8, 2)
        >>> per_sample = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
        >>> per_sample["weight"].shape
        torch.Size([8, 2, 3])
    """
    tensors = _merge_dicts(parameter_and_buffer_dicts)
    _refuse_unsupported_module(module)
    if kwargs is None:
        kwargs = {}
    if args is None:
        args = ()
    elif not isinstance(args, tuple):
        args = (args,)
    with _Reparametrized(module, tensors, tie_weights=tie_weights, strict=strict) as new_names:
        for name in new_names:
            warnings.warn(_unknown_key_message(module, name), UserWarning, stacklevel=2)
        return module(*args, **kwargs)


def _merge_dicts(dicts: Any) -> dict[str, Tensor]:
    """One dict from the dict or sequence of dicts functional_call was given. A single
    dict is returned as is: values the module reassigns are written back into it."""
    if isinstance(dicts, dict):
        return dicts
    if not isinstance(dicts, Sequence):
        raise ValueError(
            f"Expected parameter_and_buffer_dicts to be a dict, or a list/tuple of dicts, "
            f"but got {type(dicts)}")
    not_dicts = [i for i, d in enumerate(dicts) if not isinstance(d, dict)]
    if not_dicts:
        first = not_dicts[0]
        raise ValueError(
            f"Expected all elements of parameter_and_buffer_dicts to be dictionaries; "
            f"functional_call: element {first} is {_kind(dicts[first])}")
    seen: dict[str, int] = {}
    for d in dicts:
        for key in d:
            seen[key] = seen.get(key, 0) + 1
    repeated = [key for key, count in seen.items() if count > 1]
    if repeated:
        raise ValueError(
            f"{repeated} appeared in multiple dictionaries; behavior of functional call "
            f"is ambiguous")
    return {key: value for d in dicts for key, value in d.items()}


def _refuse_unsupported_module(module: nn.Module) -> None:
    if (torch.jit.is_tracing() or torch.jit.is_scripting()
            or isinstance(module, (torch.jit.RecursiveScriptModule, torch.jit.ScriptModule,
                                   torch.jit.ScriptFunction))):
        raise RuntimeError("The stateless API can't be used with Jitted modules")
    if isinstance(module, nn.DataParallel):
        raise RuntimeError("The stateless API can't be used with nn.DataParallel module")


# NOTE [functional_call walks the module tree once]
# Every call needs each tensor's names (to keep tied names tied, for strict) and the
# submodule each dotted key lives in. _Tree gets both from one walk over `_modules`,
# `_parameters` and `_buffers`, which gives the names named_modules / named_parameters
# / named_buffers (remove_duplicate=False) give, several times faster than their
# generators; a tree with a module whose class overrides one of those methods is read
# through them instead. Nothing is cached between calls: a module may change its
# parameters or submodules at any time.

_WALKS = ("named_modules", "named_parameters", "named_buffers", "_named_members")
_walks_as_module: dict[type, bool] = {}  # class -> it inherits nn.Module's _WALKS


def _inherits_walks(cls: type) -> bool:
    inherits = _walks_as_module.get(cls)
    if inherits is None:
        inherits = all(getattr(cls, name) is getattr(nn.Module, name) for name in _WALKS)
        _walks_as_module[cls] = inherits
    return inherits


class _OverriddenWalk(Exception):
    pass


class _Tree:
    """A module's submodules by dotted path (None where a class overrides the walks:
    they are then found by getattr) and its parameters then buffers under every name
    they are registered as."""

    def __init__(self, root: nn.Module) -> None:
        self.modules: dict[str, nn.Module] | None = {"": root}
        params: dict[str, Tensor] = {}
        buffers: dict[str, Tensor] = {}
        try:
            self._visit("", root, params, buffers)
        except _OverriddenWalk:
            self.modules = None
            params = dict(root.named_parameters(remove_duplicate=False))
            buffers = dict(root.named_buffers(remove_duplicate=False))
        params.update(buffers)
        self.tensors = params

    def _visit(self, prefix: str, module: nn.Module, params: dict[str, Tensor],
               buffers: dict[str, Tensor]) -> None:
        if not _inherits_walks(type(module)):
            raise _OverriddenWalk
        for name, tensor in module._parameters.items():
            if tensor is not None:
                params[prefix + name] = tensor
        for name, tensor in module._buffers.items():
            if tensor is not None:
                buffers[prefix + name] = tensor
        for name, child in module._modules.items():
            if child is not None:
                path = prefix + name
                self.modules[path] = child  # type: ignore[index]
                self._visit(path + ".", child, params, buffers)


def _named_tensors(module: nn.Module) -> dict[str, Tensor]:
    """Every parameter and buffer under every name it is registered as."""
    return _Tree(module).tensors


def _untie(module: nn.Module, named: dict[str, Tensor],
           tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """`tensors` plus, for each given name of a tied tensor (one of `named`, the module's
    tensors by name), every other name it is tied to (with the same value). Raises if
    tied names were given different tensors."""
    if len({id(tensor) for tensor in named.values()}) == len(named):
        return tensors  # nothing is tied
    names_of: dict[int, list[str]] = {}
    for name, tensor in named.items():
        names_of.setdefault(id(tensor), []).append(name)
    untied = dict(tensors)
    for tied in names_of.values():
        if len(tied) < 2:
            continue
        given = [name for name in tied if name in tensors]
        if not given:
            continue
        if len({id(tensors[name]) for name in given}) > 1:
            raise ValueError(
                f"functional_call got multiple values for keys {sorted(tied)}, which are "
                f"tied. Consider using tie_weights=False; {module._get_name()} registers "
                f"one tensor under all of these names, and different tensors were given "
                f"for {', '.join(map(repr, given))}")
        for name in tied:
            untied[name] = tensors[given[0]]
    return untied


def _check_strict(module: nn.Module, named: dict[str, Tensor], keys: Any) -> None:
    valid = set(named)
    keys = set(keys)
    missing, unexpected = sorted(valid - keys), sorted(keys - valid)
    messages = []
    if unexpected:
        messages.append(f"Unexpected key(s): {', '.join(map(repr, unexpected))}.")
    if missing:
        messages.append(f"Missing key(s): {', '.join(map(repr, missing))}.")
    if not messages:
        return
    hints = [f"{key!r} may be a misspelling of {match[0]!r}." for key in unexpected
             if (match := difflib.get_close_matches(key, missing, n=1))]
    if hints:
        messages.append("functional_call(..., strict=True): " + " ".join(hints))
    raise RuntimeError("Error(s) in reparametrizing for {}:\n\t{}".format(
        module._get_name(), "\n\t".join(messages)))


_MISSING: Any = object()  # the value of an attribute that does not exist


class _Slots:
    """Reads and swaps the tensor slots of a module by dotted name. A slot is a
    submodule's attribute; two keys name the same slot when a submodule is registered
    under two paths."""

    def __init__(self, root: nn.Module, modules: dict[str, nn.Module] | None = None) -> None:
        self.root = root
        self.submodules: dict[str, nn.Module] = modules if modules is not None else {"": root}

    def submodule(self, key: str, path: str) -> nn.Module:
        """The submodule at dotted `path` (the part of `key` before its last dot)."""
        if path in self.submodules:
            return self.submodules[path]
        parent_path, dot, attr = path.rpartition(".")
        parent = self.submodule(key, parent_path) if dot else self.root
        try:
            found = getattr(parent, attr)
        except AttributeError as error:
            raise AttributeError(
                f"{parent._get_name()} has no attribute `{attr}`; functional_call: key "
                f"{key!r} names no submodule of {self.root._get_name()}"
                f"{_did_you_mean(key, self.root)}") from error
        if not isinstance(found, nn.Module):
            raise TypeError(
                f"submodule `{path}`: {found} is not an instance of torch.nn.Module; "
                f"functional_call: key {key!r} goes through `{path}`, which is "
                f"{_kind(found)}, not a submodule")
        self.submodules[path] = found
        return found

    def slot(self, key: str) -> tuple[nn.Module, str]:
        path, _, attr = key.rpartition(".")
        if attr == "":
            raise KeyError(f'tensor name can\'t be empty string ""; functional_call: key '
                           f'{key!r} names no tensor')
        return self.submodule(key, path), attr

    def swap(self, key: str, module: nn.Module, attr: str, value: Any) -> Any:
        """Put `value` in the slot `key` (`attr` of `module`; `_MISSING` deletes it);
        returns what was there (`_MISSING` if the slot did not exist)."""
        if value is not _MISSING and value is not None and not isinstance(value, Tensor):
            raise TypeError(f"{value} is not an instance of torch.Tensor; functional_call: "
                            f"the value for key {key!r} is {_kind(value)}")
        for slots in (module._parameters, module._buffers):
            if attr in slots:
                original = slots[attr]
                if value is _MISSING:
                    del slots[attr]
                else:
                    slots[attr] = value
                return original
        original = getattr(module, attr) if hasattr(module, attr) else _MISSING
        if original is not _MISSING and original is not None and not isinstance(original, Tensor):
            raise TypeError(
                f"attribute `{attr}`: {original} is not an instance of torch.Tensor; "
                f"functional_call: key {key!r} names {_kind(original)} attribute of "
                f"{module._get_name()}, not a parameter or buffer")
        if value is not _MISSING:
            setattr(module, attr, value)
        elif hasattr(module, attr):
            delattr(module, attr)
        return original


class _Reparametrized:
    """Context manager: the module's slots hold the given tensors inside; the originals
    are put back on exit. Entering yields the keys that named no existing slot (they are
    set as new attributes for the call and deleted afterwards, as torch.func does).

    A slot named by several keys keeps the original it had before the first: torch.func
    restores such a slot from the last key, so a submodule registered twice is left
    holding the given tensor."""

    def __init__(self, module: nn.Module, tensors: dict[str, Tensor], *, tie_weights: bool,
                 strict: bool) -> None:
        self.tensors = tensors
        tree = _Tree(module) if tie_weights or strict else None
        self.untied = _untie(module, tree.tensors, tensors) if tie_weights else tensors
        if strict:
            _check_strict(module, tree.tensors, self.untied)
        self.slots = _Slots(module, tree.modules if tree is not None else None)
        self.slot_of: dict[str, tuple[int, str]] = {}  # key -> (id of its submodule, attr)
        # slot -> (the first key naming it, its submodule, attr, the original)
        self.originals: dict[tuple[int, str], tuple[str, nn.Module, str, Any]] = {}

    def __enter__(self) -> list[str]:
        new_keys = []
        try:
            for key, value in self.untied.items():
                module, attr = self.slots.slot(key)
                slot = self.slot_of[key] = (id(module), attr)
                original = self.slots.swap(key, module, attr, value)
                if slot not in self.originals:
                    self.originals[slot] = (key, module, attr, original)
                    if original is _MISSING:
                        new_keys.append(key)
        except Exception:
            self._restore()
            raise
        return new_keys

    def _restore(self) -> dict[tuple[int, str], Any]:
        return {slot: self.slots.swap(key, module, attr, original)
                for slot, (key, module, attr, original) in self.originals.items()}

    def __exit__(self, *exc_info: Any) -> None:
        current = self._restore()
        # A module may reassign a parameter or buffer (self.foo = self.foo + 1): like
        # torch.func, hand the new value back through the caller's dict.
        self.tensors.update({key: current[slot] for key in self.tensors
                             if (slot := self.slot_of.get(key)) in current})


def _did_you_mean(key: str, module: nn.Module) -> str:
    names = list(_named_tensors(module))
    match = difflib.get_close_matches(key, names, n=1)
    if match:
        return f"; did you mean {match[0]!r}?"
    if not names:
        return f"; {module._get_name()} has no parameters or buffers"
    shown = ", ".join(map(repr, names[:6])) + (f", ... ({len(names)} in all)"
                                                if len(names) > 6 else "")
    return f"; its parameters and buffers are {shown}"


def _unknown_key_message(module: nn.Module, key: str) -> str:
    return (f"functional_call: {key!r} is not a parameter or buffer of {module._get_name()}, "
            f"so it was ignored (only set as a new attribute during the call, as torch.func "
            f"does){_did_you_mean(key, module)}")


def _kind(x: Any) -> str:
    name = type(x).__name__
    return ("an " if name[0].lower() in "aeiou" else "a ") + name


# --- stack_module_state ---------------------------------------------------------------------

class _StructureError(KeyError, RuntimeError):
    """A model lacks a parameter or buffer the first model has. torch.func raises a
    KeyError there; this one is also a RuntimeError like stack_module_state's other
    errors, and prints as a sentence."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def stack_module_state(
    models: Sequence[nn.Module] | nn.ModuleList,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stacks the parameters and buffers of ``M`` models of the same class, to run them
    as an ensemble with :func:`vmap` and :func:`functional_call`.

    Args:
        models: a non-empty sequence (list, tuple, ``nn.ModuleList``) of modules of the
            same class and structure, all in training or all in eval mode.

    Returns:
        ``(params, buffers)``: two dicts keyed like ``named_parameters()`` and
        ``named_buffers()``, each value the ``M`` models' tensors stacked along a new
        leading dim. Stacked parameters are new autograd leaves (unrelated to the
        models' parameters, so they can be given to an optimizer) that require grad
        when the models' do.

    Example::

        >>> models = [torch.nn.Linear(3, 2) for _ in range(5)]
        >>> params, buffers = stack_module_state(models)
        >>> params["weight"].shape
        torch.Size([5, 2, 3])
        >>> def run(params, buffers, x):
        ...     return functional_call(models[0], (params, buffers), (x,))
        >>> vmap(run, in_dims=(0, 0, None))(params, buffers, torch.randn(8, 3)).shape
        torch.Size([5, 8, 2])
    """
    models = _as_sequence(models)
    if len(models) == 0:
        raise RuntimeError("stack_module_state: Expected at least one model, got 0.")
    modes = [m.training for m in models]
    if not (all(modes) or not any(modes)):
        raise RuntimeError(
            "stack_module_state: Expected all models to have the same training/eval mode. "
            f"Models {_indices(modes, True)} are in training mode and models "
            f"{_indices(modes, False)} in eval mode.")
    first_class = type(models[0])
    other = next((i for i, m in enumerate(models) if type(m) is not first_class), None)
    if other is not None:
        raise RuntimeError(
            "stack_module_state: Expected all models to be of the same class. Model 0 is "
            f"{first_class.__name__} but model {other} is {type(models[other]).__name__}.")
    params = _stack_named([dict(m.named_parameters()) for m in models], "parameter")
    buffers = _stack_named([dict(m.named_buffers()) for m in models], "buffer")
    return params, buffers


def _as_sequence(models: Any) -> Sequence[nn.Module]:
    if hasattr(models, "__len__") and hasattr(models, "__getitem__"):
        return models
    if hasattr(models, "__iter__") and not isinstance(models, nn.Module):
        return list(models)
    raise TypeError(
        f"object of type '{type(models).__name__}' has no len(); stack_module_state expects "
        f"a sequence of models (list, tuple or nn.ModuleList), got {_kind(models)}")


def _indices(flags: list[bool], value: bool) -> list[int]:
    return [i for i, flag in enumerate(flags) if flag == value]


def _stack_named(per_model: list[dict[str, Tensor]], kind: str) -> dict[str, Tensor]:
    names = per_model[0]
    for i, named in enumerate(per_model[1:], start=1):
        extra = [name for name in named if name not in names]
        if extra:
            warnings.warn(
                f"stack_module_state: model {i} has {kind}(s) {', '.join(map(repr, extra))} "
                f"that model 0 lacks; like torch.func, they are left out of the stacked "
                f"state, which follows model 0.", UserWarning, stacklevel=3)
    stacked = {}
    for name in names:
        lacking = next((i for i, named in enumerate(per_model) if name not in named), None)
        if lacking is not None:
            raise _StructureError(
                f"stack_module_state: model {lacking} has no {kind} {name!r}, which model 0 "
                f"has; all models must have the same parameters and buffers.")
        stacked[name] = _stacked_leaf([named[name] for named in per_model], name, kind)
    return stacked


def _stacked_leaf(tensors: list[Tensor], name: str, kind: str) -> Tensor:
    flags = [t.requires_grad for t in tensors]
    if not (all(flags) or not any(flags)):
        raise RuntimeError(
            f"Expected {name} from each model to have the same .requires_grad; "
            f"stack_module_state: {kind} {name!r} requires grad in models "
            f"{_indices(flags, True)} but not in models {_indices(flags, False)}.")
    try:
        result = torch.stack([t.detach() for t in tensors])
    except RuntimeError as error:
        shapes = [list(t.shape) for t in tensors]
        other = next((i for i, s in enumerate(shapes) if s != shapes[0]), None)
        detail = (f"{kind} {name!r} has shape {shapes[0]} in model 0 but {shapes[other]} in "
                  f"model {other}" if other is not None else f"could not stack {kind} {name!r}")
        raise RuntimeError(f"{error}; stack_module_state: {detail}.") from error
    if all(flags):
        result.requires_grad_()
    return result


# --- replace_all_batch_norm_modules_ ----------------------------------------------------------

def replace_all_batch_norm_modules_(root: nn.Module) -> nn.Module:
    """Makes every batch norm module in ``root`` (itself included) stop tracking running
    statistics, in place, so that it can run in training mode under :func:`vmap`
    (there is no per-example running mean to update).

    Every ``nn.modules.batchnorm._BatchNorm`` (BatchNorm1d/2d/3d, SyncBatchNorm, the lazy
    ones) that tracks running stats gets ``running_mean``, ``running_var`` and
    ``num_batches_tracked`` set to ``None`` and ``track_running_stats`` set to ``False``;
    in training mode it then normalizes with the batch's statistics, and in eval mode
    too.

    Args:
        root: the module to update.

    Returns:
        ``root`` itself.

    Example::

        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
        >>> replace_all_batch_norm_modules_(model)[1].running_mean is None
        True
    """
    for module in _modules(root):
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            module.running_mean = None
            module.running_var = None
            module.num_batches_tracked = None
            module.track_running_stats = False
    return root


def _modules(root: nn.Module) -> Iterator[nn.Module]:
    if not isinstance(root, nn.Module):
        raise AttributeError(
            f"'{type(root).__name__}' object has no attribute 'modules'; "
            f"replace_all_batch_norm_modules_ expects an nn.Module, got {_kind(root)}")
    return root.modules()
