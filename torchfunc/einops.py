"""rearrange: einops-style reordering of a tensor's dims, with the results of
torch.func.rearrange (torch 2.13).

A pattern such as ``"b (h h1) w -> b h (h1 w)"`` names the input's dims on the left and
the output's on the right; a parenthesised group is one dim made of several axes. The
rearrangement is done with one reshape (split the groups and drop unit axes), one
permute and one reshape (merge the groups and add unit axes), so it works on any tensor,
including the BatchedTensors and GradTensors of torchfunc's transforms.
"""
from __future__ import annotations

import functools
import keyword
import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["rearrange"]

_ELLIPSIS = "\u2026"  # how "..." is held once parsed (one character, not an identifier)

@dataclass(frozen=True)
class _Side:
    text: str
    # One entry per dim: a group of axis names (a plain name `a` is the group ("a",); a
    # unit axis `1` or `()` is the empty group), or _ELLIPSIS for a bare "...".
    composition: tuple
    identifiers: frozenset
    has_ellipsis: bool
    ellipsis_in_group: bool
    anonymous: tuple  # numbers other than 1 used as axes (rearrange refuses them)


def _parse_side(text: str) -> _Side:
    """One side of a pattern, as torch.func's (einops') parser reads it."""
    expression = text
    if "." in expression:
        if "..." not in expression:
            raise ValueError(f"Expression may contain dots only inside ellipsis (...); "
                             f"got {text.strip()!r}")
        if expression.count("...") != 1 or expression.count(".") != 3:
            raise ValueError(f"Expression may contain dots only inside ellipsis (...); only "
                             f"one ellipsis for tensor (got {text.strip()!r})")
        expression = expression.replace("...", _ELLIPSIS)

    composition: list = []
    identifiers: set = set()
    anonymous: list = []
    group: list | None = None
    ellipsis_seen = ellipsis_in_group = False

    def add(token: str) -> None:
        nonlocal ellipsis_seen, ellipsis_in_group
        if token in identifiers:
            shown = "..." if token == _ELLIPSIS else token
            raise ValueError(f"Indexing expression contains duplicate dimension '{shown}'; "
                             f"each axis may appear once on each side, got {text.strip()!r}")
        if token == _ELLIPSIS:
            identifiers.add(_ELLIPSIS)
            ellipsis_seen = True
            if group is None:
                composition.append(_ELLIPSIS)
            else:
                group.append(_ELLIPSIS)
                ellipsis_in_group = True
            return
        if token.isdecimal():
            value = int(token)
            if value == 1:  # a unit axis; inside a group it changes nothing
                if group is None:
                    composition.append(())
                return
            if value < 1:
                raise ValueError(f"Anonymous axis should have positive length, not {value}; "
                                 f"got {token!r} in {text.strip()!r}")
            anonymous.append(value)
            name = f"{value}-axis#{len(anonymous)}"  # never equal to another axis
        else:
            _check_axis_name(token)
            name = token
            identifiers.add(name)
        if group is None:
            composition.append((name,))
        else:
            group.append(name)

    token = ""
    for char in expression:
        if char in "() ":
            if token:
                add(token)
            token = ""
            if char == "(":
                if group is not None:
                    raise ValueError("Axis composition is one-level (brackets inside brackets "
                                     f"not allowed); got {text.strip()!r}")
                group = []
            elif char == ")":
                if group is None:
                    raise ValueError(f"Brackets are not balanced; a ')' closes no '(' in "
                                     f"{text.strip()!r}")
                composition.append(tuple(group))
                group = None
        elif char.isalnum() or char in ("_", _ELLIPSIS):
            token += char
        else:
            raise ValueError(f"Unknown character '{char}'; axis names are letters, digits and "
                             f"'_', got {text.strip()!r}")
    if group is not None:
        raise ValueError(f"Imbalanced parentheses in expression: '{expression}'; a '(' is "
                         f"never closed")
    if token:
        add(token)
    return _Side(text.strip(), tuple(composition), frozenset(identifiers), ellipsis_seen,
                 ellipsis_in_group, tuple(anonymous))


def _check_axis_name(name: str) -> None:
    if not name.isidentifier():
        raise ValueError(f"Invalid axis identifier: {name}\nnot a valid python identifier "
                         f"(axis names are identifiers, or 1 for a unit axis)")
    if name[0] == "_" or name[-1] == "_":
        raise ValueError(f"Invalid axis identifier: {name}\naxis name should should not start "
                         f"or end with underscore")
    if keyword.iskeyword(name):
        warnings.warn(f"It is discouraged to use axes names that are keywords: {name}",
                      RuntimeWarning, stacklevel=6)
    if name == "axis":
        warnings.warn("It is discouraged to use 'axis' as an axis name and will raise an error "
                      "in future", FutureWarning, stacklevel=6)


def _shown(names: frozenset | set) -> str:
    """A set of axis names the way torch.func prints it ("..." as '\u2026'), but sorted."""
    return "{" + ", ".join(map(repr, sorted(names))) + "}"


@dataclass(frozen=True)
class _Recipe:
    pattern: str
    left: _Side
    right: _Side
    n_ellipsis: int
    lengths: tuple  # ((name, length), ...) from **axes_lengths


@functools.lru_cache(256)
def _recipe(ndim: int, pattern: str, lengths: tuple) -> _Recipe:
    """Parse and check a pattern for inputs of `ndim` dims (shape-independent work)."""
    parts = pattern.split("->")
    if len(parts) != 2:
        raise ValueError(f"Pattern must contain a single '->' separator, got {pattern!r}")
    names = dict(lengths)
    if _ELLIPSIS in names:
        raise ValueError(f"'{_ELLIPSIS}' is not an allowed axis identifier")
    left, right = _parse_side(parts[0]), _parse_side(parts[1])
    if right.has_ellipsis and not left.has_ellipsis:
        raise ValueError(f"Ellipsis found in right side, but not left side of a pattern "
                         f"{pattern}")
    if left.ellipsis_in_group:
        raise ValueError(f"Ellipsis is parenthesis in the left side is not allowed: {pattern}; "
                         f"the left side may only split dims, and '...' stands for whole dims")

    for name, length in lengths:
        if type(length) is not int:
            raise TypeError(f"rearrange axis lengths must be integers, got: {type(length)} "
                            f"(for {name}={length!r})")
    anonymous = left.anonymous + right.anonymous
    if anonymous:
        raise ValueError(f"rearrange only supports unnamed axes of size 1; got {anonymous[0]} "
                         f"in {pattern!r} (name the axis and pass its length as a keyword, "
                         f"e.g. rearrange(x, pattern, k={anonymous[0]}))")
    only_left = left.identifiers - right.identifiers
    only_right = right.identifiers - left.identifiers
    if only_left or only_right:
        where = "; ".join(
            f"{', '.join(repr('...' if n == _ELLIPSIS else n) for n in sorted(side))} "
            f"{'is' if len(side) == 1 else 'are'} only on the {label}"
            for side, label in ((only_left, "left"), (only_right, "right")) if side)
        raise ValueError(f"Identifiers only on one side of rearrange expression (should be on "
                         f"both): {_shown(only_left | only_right)}; {where} of {pattern!r}")
    unmatched = set(names) - left.identifiers
    if unmatched:
        raise ValueError(f"Identifiers not found in rearrange expression: {_shown(unmatched)}; "
                         f"axis lengths may only be given for axes of {pattern!r}")
    for name, length in lengths:
        if length < 0:
            raise ValueError(f"rearrange: axis lengths must be non-negative, got "
                             f"{name}={length} for {pattern!r}")

    explicit = len(left.composition) - left.has_ellipsis
    if left.has_ellipsis:
        if explicit > ndim:
            raise ValueError(
                f"Number of dimensions in pattern ({explicit}) must be less than or equal to "
                f"the number of dimensions in the tensor ({ndim}); {left.text!r} names "
                f"{explicit} dims besides '...'")
    elif explicit != ndim:
        raise ValueError(
            f"Number of dimensions in pattern ({explicit}) must be equal to the number of "
            f"dimensions in the tensor ({ndim}); {left.text!r} names {explicit} dims")
    return _Recipe(pattern, left, right, ndim - explicit, lengths)


def _axis_sizes(recipe: _Recipe, shape: Sequence[int]) -> tuple[list[str], dict[str, int]]:
    """The input's elementary axes in order (groups split, unit axes dropped, "..." as
    its dims) and every axis' size."""
    given = dict(recipe.lengths)
    order: list[str] = []
    sizes: dict[str, int] = {}
    dim = 0
    context = f"rearrange(<tensor of shape {list(shape)}>, {recipe.pattern!r})"
    for entry in recipe.left.composition:
        if entry == _ELLIPSIS:
            for i in range(recipe.n_ellipsis):
                name = f"{_ELLIPSIS}{i}"
                order.append(name)
                sizes[name] = shape[dim]
                dim += 1
            continue
        size = shape[dim]
        if not entry:
            if size != 1:
                raise ValueError(
                    f"{context}: dim {dim} has size {size}, but the pattern gives it a unit "
                    f"axis ('1' or '()'), so it must have size 1")
        else:
            _split(context, dim, size, entry, given, sizes)
            order.extend(entry)
        dim += 1
    return order, sizes


def _split(context: str, dim: int, size: int, group: tuple, given: dict,
           sizes: dict[str, int]) -> None:
    """Sizes of the axes of `group`, a dim of `size` elements."""
    shown = group[0] if len(group) == 1 else f"({' '.join(group)})"
    unknown = [name for name in group if name not in given]
    known = math.prod(given[name] for name in group if name in given)
    with_lengths = ", ".join(f"{n}={given[n]}" for n in group if n in given)
    if len(unknown) > 1:
        raise ValueError(
            f"{context}: cannot infer the sizes of {', '.join(map(repr, unknown))} at once "
            f"from dim {dim} of size {size} ({shown!r}); give all but one of them as "
            f"keywords, e.g. rearrange(x, pattern, {unknown[0]}=...)")
    if not unknown:
        if known != size:
            raise ValueError(
                f"{context}: dim {dim} has size {size}, but {shown!r} with {with_lengths} "
                f"has {known} elements")
    elif known == 0:
        raise ValueError(
            f"{context}: cannot infer {unknown[0]!r} in {shown!r} from dim {dim} of size "
            f"{size} when {with_lengths} (a length of 0)")
    elif size % known:
        raise ValueError(
            f"{context}: dim {dim} of size {size} can't be split as {shown!r} with "
            f"{with_lengths}: {size} is not divisible by {known}")
    for name in group:
        sizes[name] = given[name] if name in given else size // known


def rearrange(
    tensor: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...],
    pattern: str,
    **axes_lengths: int,
) -> torch.Tensor:
    """Reorders, splits, merges, adds or drops dims of a tensor as an einops-style
    ``pattern`` says: transpose, reshape, squeeze, unsqueeze, stack and concatenate in
    one readable call (https://einops.rocks/api/rearrange/).

    Args:
        tensor: the tensor to rearrange, or a list/tuple of tensors of the same shape,
            which are first stacked along a new leading dim.
        pattern: ``"<input dims> -> <output dims>"``. Each side lists one entry per dim:
            an axis name, a parenthesised group of axis names (one dim holding several
            axes: split on the left, merged on the right), ``1`` or ``()`` for a dim of
            size 1, and at most one ``...`` for all the dims not named (on the right it
            may be inside a group). Both sides must name the same axes.
        **axes_lengths: lengths of axes, to split a group: in ``"(h1 h) w -> h1 h w"``
            with ``h1=2`` the first dim is split into 2 and ``size // 2``.

    Returns:
        The rearranged tensor (a view of the input where reshape allows it).

    Example::

        >>> images = torch.randn(32, 30, 40, 3)
        >>> rearrange(images, "b h w c -> b c h w").shape
        torch.Size([32, 3, 30, 40])
        >>> rearrange(images, "b (h h1) (w w1) c -> b h w (c h1 w1)", h1=2, w1=2).shape
        torch.Size([32, 15, 20, 12])
        >>> rearrange([images[0], images[1]], "n h w c -> h (n w) c").shape
        torch.Size([30, 80, 3])
    """
    if not isinstance(tensor, torch.Tensor):
        tensor = torch.stack(tensor)
    lengths = tuple(sorted(axes_lengths.items()))
    if all(type(length) is int for _, length in lengths):
        recipe = _recipe(tensor.dim(), pattern, lengths)
    else:  # not hashable for the cache, perhaps; the checks raise in torch.func's order
        recipe = _recipe.__wrapped__(tensor.dim(), pattern, lengths)
    order, sizes = _axis_sizes(recipe, tensor.shape)

    out_order: list[str] = []
    out_shape: list[int] = []
    ellipsis_dims = [f"{_ELLIPSIS}{i}" for i in range(recipe.n_ellipsis)]
    for entry in recipe.right.composition:
        if entry == _ELLIPSIS:  # a bare "...": each of its dims stays a dim
            out_order.extend(ellipsis_dims)
            out_shape.extend(sizes[d] for d in ellipsis_dims)
            continue
        merged: list[str] = []  # a group: its axes (and "..."'s dims) become one dim
        for name in entry:
            merged.extend(ellipsis_dims if name == _ELLIPSIS else [name])
        out_order.extend(merged)
        out_shape.append(math.prod(sizes[n] for n in merged))

    result = tensor.reshape([sizes[n] for n in order])
    permutation = [order.index(n) for n in out_order]
    if permutation != list(range(len(order))):
        result = result.permute(permutation)
    return result.reshape(out_shape)
