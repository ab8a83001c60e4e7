"""Pytree, in_dims/out_dims and argnums helpers shared by every transform.

Pytrees are torch.utils._pytree's (tuple, list, dict, namedtuple, OrderedDict and
registered nodes), so the transforms accept exactly the structures torch.func accepts.
Error texts built here describe structures in words ("in_dims has 3 entries for 2
positional inputs"), never as TreeSpec dumps.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from torch.utils._pytree import (
    SUPPORTED_NODES,
    TreeSpec,
    _broadcast_to_and_flatten,
    keystr,
    tree_flatten as _torch_tree_flatten,
    tree_flatten_with_path,
    tree_leaves,
    tree_map,
    tree_unflatten as _torch_tree_unflatten,
    treespec_pprint,
)

__all__ = [
    "TreeSpec", "tree_flatten", "tree_leaves", "tree_map", "tree_map_tensors", "tree_unflatten",
    "plain_leaves", "flat_tuple_spec",
    "treespec_pprint",
    "fn_name", "kind_of", "wraps", "named_leaves", "broadcast_prefix", "prefix_mismatch",
    "check_argnums", "wrap_argnums", "slice_argnums",
    "with_torch_func_text", "ArgnumsError", "ArgnumsTypeError", "InputError",
    "RandomnessError", "OutDimError",
]


# --- errors --------------------------------------------------------------------------------
#
# For a misuse that torch.func also refuses, users' own tests catch torch.func's exception
# class and match its message. So our exception is an instance of torch.func's class, and our
# message starts with torch.func's own text, unchanged, followed by what torchfunc adds. Where
# torchfunc used to raise another class, the exception derives from both, so that code written
# against either library keeps catching it. Where torch.func prints object reprs (TreeSpec
# dumps), we keep its sentences before them and say the rest in words.

class ArgnumsError(RuntimeError, ValueError):
    """argnums out of range, empty or repeated (torch.func: RuntimeError)."""


class ArgnumsTypeError(RuntimeError, TypeError):
    """argnums neither an int nor a tuple of ints (torch.func: RuntimeError)."""


class InputError(RuntimeError, ValueError):
    """An argument a transform cannot take: a primal or tangent of the wrong kind, dtype,
    shape or structure (torch.func: RuntimeError, or ValueError for some)."""


class RandomnessError(RuntimeError, ValueError):
    """randomness= not one of 'error', 'different', 'same' (torch.func: RuntimeError)."""


class OutDimError(IndexError, ValueError):
    """An out_dim out of range for its output (torch.func: IndexError)."""


def with_torch_func_text(theirs: str, ours: str) -> str:
    """torch.func's message unchanged, then torchfunc's own words."""
    separator = " " if theirs.endswith((".", "!", "?")) else ". "
    return f"{theirs}{separator}torchfunc: {ours}"


_SCALARS = (int, float, bool, str, type(None))


def tree_map_tensors(fn: Callable, tree: Any) -> Any:
    """`tree` with fn applied to every Tensor leaf; other leaves as they are.

    Plain tuples, lists and dicts (what transforms are called with: arguments, parameter
    dicts) are walked here, several times faster than torch's tree_map on small trees;
    any other container (namedtuples, OrderedDicts, registered pytree nodes) goes through
    torch's pytree, which gives the same structure for the plain ones."""
    kind = type(tree)
    if kind is tuple:
        return tuple([tree_map_tensors(fn, x) for x in tree])
    if kind is list:
        return [tree_map_tensors(fn, x) for x in tree]
    if kind is dict:
        return {k: tree_map_tensors(fn, v) for k, v in tree.items()}
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if kind in _SCALARS:
        return tree
    return tree_map(lambda x: fn(x) if isinstance(x, torch.Tensor) else x, tree)


def _leaf_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and type(x) not in SUPPORTED_NODES


_LEAF_SPEC = _torch_tree_flatten(0)[1]
_FLAT_TUPLE_SPECS: dict[int, TreeSpec] = {}


def flat_tuple_spec(n: int) -> TreeSpec:
    """The structure of a tuple of n leaves (built once per n)."""
    spec = _FLAT_TUPLE_SPECS.get(n)
    if spec is None:
        spec = _FLAT_TUPLE_SPECS[n] = _torch_tree_flatten(tuple(range(n)))[1]
    return spec


def tree_flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list[Any], TreeSpec]:
    """torch's tree_flatten. A Tensor, or a tuple of Tensors (what the transforms are
    mostly called with and return), is not walked: its structure is built once, which
    cost more than the rest of a small jvp or jacfwd call when torch built it anew."""
    if is_leaf is None:
        if _leaf_tensor(tree):
            return [tree], _LEAF_SPEC
        if type(tree) is tuple and all(_leaf_tensor(x) for x in tree):
            return list(tree), flat_tuple_spec(len(tree))
    return _torch_tree_flatten(tree, is_leaf=is_leaf)


def tree_unflatten(leaves: list[Any], spec: TreeSpec) -> Any:
    """torch's tree_unflatten; the structures tree_flatten builds once (a leaf, a tuple of
    leaves) are rebuilt here, which took torch as long as a cheap op."""
    if not isinstance(leaves, (list, tuple)):
        leaves = list(leaves)
    if spec is _LEAF_SPEC and len(leaves) == 1:
        return leaves[0]
    if _FLAT_TUPLE_SPECS.get(len(leaves)) is spec:
        return tuple(leaves)
    return _torch_tree_unflatten(leaves, spec)


def plain_leaves(tree: Any) -> list[Any]:
    """The leaves of `tree`, in the order tree_flatten (and tree_map_tensors) visits them:
    plain tuples, lists and dicts are walked here, anything else goes through torch's
    pytree. tree_map_tensors(lambda _: next(it), tree) over an iterator of new leaves puts
    them back in the same places."""
    kind = type(tree)
    if kind is tuple or kind is list:
        return [leaf for x in tree for leaf in plain_leaves(x)]
    if kind is dict:
        return [leaf for x in tree.values() for leaf in plain_leaves(x)]
    if isinstance(tree, torch.Tensor) or kind in _SCALARS:
        return [tree]
    return tree_leaves(tree)


# --- naming ------------------------------------------------------------------------------

def fn_name(func: Callable) -> str:
    """The name error messages use for a user function (like torch.func's)."""
    if hasattr(func, "__name__"):
        return func.__name__
    if isinstance(func, functools.partial):
        return f"functools.partial({fn_name(func.func)}, ...)"
    return repr(func)  # e.g. an nn.Module instance


def kind_of(x: Any) -> str:
    """'a Tensor', 'an int', 'a tuple', 'None', ... for error messages."""
    if x is None:
        return "None"
    name = "Tensor" if isinstance(x, torch.Tensor) else type(x).__name__
    return ("an " if name[0].lower() in "aeiou" else "a ") + name


def _count(n: int, singular: str, plural: str) -> str:
    return f"{n} {singular if n == 1 else plural}"


# Attributes that describe a torch.compile'd callable, not the transformed function.
_DYNAMO_WRAPPER_ATTRS = (
    "_torchdynamo_inline",
    "_torchdynamo_orig_callable",
    "_torchdynamo_wrapper_id",
    "_isolate_recompiles_id",
    "get_compiler_config",
)


def wraps(func: Callable) -> Callable[[Callable], Callable]:
    """functools.wraps(func) without Dynamo's attributes, as torch.func does."""
    def decorate(wrapper: Callable) -> Callable:
        wrapper = functools.wraps(func)(wrapper)
        for attr in _DYNAMO_WRAPPER_ATTRS:
            wrapper.__dict__.pop(attr, None)
        return wrapper
    return decorate


def named_leaves(tree: Any, name: str) -> list[tuple[str, Any]]:
    """(path, leaf) for every leaf, paths written like `name[0]['w']`."""
    try:
        return [(name + keystr(path), leaf) for path, leaf in tree_flatten_with_path(tree)[0]]
    except ValueError:  # a registered node type without key paths
        return [(f"{name}<leaf {i}>", leaf) for i, leaf in enumerate(tree_leaves(tree))]


# --- in_dims / out_dims against a structure -----------------------------------------------

def broadcast_prefix(prefix: Any, spec: TreeSpec) -> list[Any] | None:
    """Flatten `prefix` against the structure `spec`: each leaf of `prefix` (an int or
    None) stands for every leaf of the matching subtree. None if `prefix` is not a
    prefix of `spec` (then `prefix_mismatch` says where)."""
    return _broadcast_to_and_flatten(prefix, spec)


def _children(node: Any) -> tuple[list[tuple[str, Any]], TreeSpec]:
    """The direct children of `node` as (key, child), and its one-level spec."""
    def is_leaf(x: Any) -> bool:
        return x is not node
    try:
        pairs, spec = tree_flatten_with_path(node, is_leaf=is_leaf)
        return [(keystr(path), child) for path, child in pairs], spec
    except ValueError:  # a registered node type without key paths
        children, spec = tree_flatten(node, is_leaf=is_leaf)
        return [(f"[{i}]", child) for i, child in enumerate(children)], spec


def prefix_mismatch(prefix: Any, tree: Any, prefix_name: str, tree_name: str,
                    top_noun: str) -> str:
    """Say where `prefix` stops being a prefix of `tree`, e.g. "in_dims has 3 entries for
    2 positional inputs" or "in_dims[1] is a list but inputs[1] is a tuple".
    `top_noun` names one top-level element of `tree` ("positional input", "output")."""
    return (_first_mismatch(prefix, tree, prefix_name, tree_name, top_noun, "")
            or f"{prefix_name} does not match the structure of {tree_name}")


def _first_mismatch(prefix: Any, tree: Any, prefix_name: str, tree_name: str,
                    top_noun: str, path: str) -> str | None:
    p_children, p_spec = _children(prefix)
    if p_spec.is_leaf():
        return None
    where_p, where_t = prefix_name + path, tree_name + path
    t_children, t_spec = _children(tree)
    both_dicts = isinstance(prefix, dict) and isinstance(tree, dict)
    if t_spec.is_leaf() or (not both_dicts and p_spec.type is not t_spec.type):
        return f"{where_p} is {kind_of(prefix)} but {where_t} is {kind_of(tree)}"
    if len(p_children) != len(t_children):
        n = len(t_children)
        target = (f"{_count(n, 'element', 'elements')} in {where_t}" if path
                  else _count(n, top_noun, top_noun + "s"))
        return f"{where_p} has {_count(len(p_children), 'entry', 'entries')} for {target}"
    t_by_key = dict(t_children)
    if set(t_by_key) != {key for key, _ in p_children}:  # only dicts can differ in keys
        return f"{where_p} has keys {list(prefix)} but {where_t} has keys {list(tree)}"
    for key, p_child in p_children:
        found = _first_mismatch(p_child, t_by_key[key], prefix_name, tree_name, top_noun,
                                path + key)
        if found:
            return found
    return None


# --- argnums --------------------------------------------------------------------------------

def check_argnums(argnums: Any, context: str) -> None:
    """At transform creation: argnums is an int or a non-empty tuple of distinct ints.
    Texts and classes are torch.func's (RuntimeError), which checks the same at call time."""
    if not isinstance(argnums, (int, tuple)):
        raise ArgnumsTypeError(with_torch_func_text(
            f"argnums must be int or Tuple[int, ...], got: {type(argnums)}",
            f"{context}: argnums must be the index of a positional argument (an int) or a "
            f"tuple of them, got {argnums!r} ({kind_of(argnums)})."))
    for argnum in argnums if isinstance(argnums, tuple) else ():
        if not isinstance(argnum, int):
            raise ArgnumsTypeError(with_torch_func_text(
                f"argnum must be int, got: {type(argnum)}",
                f"{context}: every element of argnums must be the index of a positional "
                f"argument (an int), got {argnum!r} ({kind_of(argnum)})."))
    if argnums == ():
        raise ArgnumsError(with_torch_func_text(
            "argnums must be non-empty",
            f"{context}: select at least one positional argument to differentiate."))
    if isinstance(argnums, tuple) and len(set(argnums)) != len(argnums):
        raise ArgnumsError(with_torch_func_text(
            f"argnums elements must be unique, got {argnums}",
            f"{context}: each positional argument can be selected once."))


def wrap_argnums(argnums: int | tuple[int, ...], num_args: int, context: str,
                 func_name: str) -> int | tuple[int, ...]:
    """At call time: argnums with negative entries made non-negative, checked against the
    number of positional arguments the function was called with."""
    def wrap(argnum: int) -> int:
        if -num_args <= argnum < num_args:
            return argnum % num_args
        called = (f"with {_count(num_args, 'positional argument', 'positional arguments')}"
                  if num_args else "with no positional arguments")
        valid = (f"; valid argnums are {-num_args}..{num_args - 1}" if num_args else "")
        raise ArgnumsError(with_torch_func_text(
            f"Got argnum={argnum}, but only {num_args} positional inputs",
            f"{context}: argnums={argnum} is out of range: {func_name} was called "
            f"{called}{valid}."))

    if isinstance(argnums, int):
        return wrap(argnums)
    wrapped = tuple(wrap(a) for a in argnums)
    if len(set(wrapped)) != len(wrapped):
        raise ArgnumsError(with_torch_func_text(
            f"argnums elements must be unique, got {wrapped}",
            f"{context}: argnums={argnums!r} selects positional arguments {wrapped}, "
            f"and each can be selected once."))
    return wrapped


def slice_argnums(args: tuple, argnums: int | tuple[int, ...], as_tuple: bool = True) -> Any:
    """The arguments `argnums` (already wrapped) selects: a tuple for a tuple of argnums,
    the argument itself for an int unless `as_tuple`."""
    if isinstance(argnums, int):
        return (args[argnums],) if as_tuple else args[argnums]
    return tuple(args[i] for i in argnums)
