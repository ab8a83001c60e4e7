"""torchfunc.einops.rearrange against torch.func.rearrange: results for many patterns,
under torchfunc.vmap and torchfunc.grad, the inputs where torch.func's is wrong, and
error classes and messages."""
import inspect
import warnings

import expecttest
import pytest
import torch
import torch.func

import torchfunc.einops
from torchfunc.autodiff import grad
from torchfunc.einops import rearrange
from torchfunc.vmap import vmap

# (input shape, pattern, axes_lengths): inputs torch.func.rearrange gets right
CASES = [
    ((2, 3, 4), "a b c -> c a b", {}),
    ((2, 3), "a b -> b a", {}),
    ((2, 3, 4), "a b c -> a b c", {}),
    ((2, 3, 4), "a b c -> (a b) c", {}),
    ((2, 3, 4), "a b c -> b (c a)", {}),
    ((2, 3, 4), "a b c -> (a b c)", {}),
    ((6, 4), "(a b) c -> a b c", {"a": 2}),
    ((6, 4), "(a b) c -> a b c", {"b": 2}),
    ((6, 4), "(a b) c -> a b c", {"a": 2, "b": 3}),
    ((6, 4), "(a b) (c d) -> (d b) (c a)", {"a": 2, "c": 2}),
    ((4, 6, 8, 3), "b (h h1) (w w1) c -> b h w (c h1 w1)", {"h1": 2, "w1": 2}),
    ((4, 6, 8, 3), "b (h1 h) (w1 w) c -> (b h1 w1) h w c", {"h1": 2, "w1": 4}),
    ((2, 3, 4, 5), "a ... -> ... a", {}),
    ((2, 3, 4, 5), "... a -> a ...", {}),
    ((2, 3, 4, 5), "a ... b -> b ... a", {}),
    ((2, 3, 4, 5), "a ... b -> b (... a)", {}),
    ((2, 3, 4, 5), "a b ... -> (a b) ...", {}),
    ((2, 3, 4, 5), "... -> (...)", {}),
    ((2, 3), "a b ... -> b a ...", {}),   # "..." of no dims
    ((2, 6), "... (a b) -> ... b a", {"a": 2}),
    ((3,), "a -> a 1", {}),
    ((3,), "a -> 1 a ()", {}),
    ((3, 2), "a b -> b () a ()", {}),
    ((3, 2), "a b -> (b 1) a", {}),
    ((3, 2), "a b -> (b a) 1", {}),
    ((1, 4), "1 b -> b", {}),
    ((1, 4), "() b -> b", {}),
    ((4, 1), "a (1) -> a", {}),
    ((2, 1, 3), "a () b -> b a", {}),
    ((3,), "(a 1) -> a", {}),
    ((), "->", {}),
    ((), "... -> ...", {}),
    ((0, 3), "a b -> b a", {}),
    ((0, 3), "(a b) c -> a b c", {"a": 2}),
    ((6, 0), "a (b c) -> a c b", {"b": 2}),
    ((6, 0), "a (b c) -> (c a) b", {"c": 2}),
    ((2, 3, 4), "batch seq_len dim2 -> dim2 batch seq_len", {}),
    ((2, 3), "if b -> b if", {}),  # a keyword as a name: allowed, with a RuntimeWarning
]


def _id(case):
    shape, pattern, lengths = case
    return f"{list(shape)}:{pattern}:{lengths}" if lengths else f"{list(shape)}:{pattern}"


def ours_and_theirs(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return rearrange(*args, **kwargs), torch.func.rearrange(*args, **kwargs)


def assert_identical(actual, expected):
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert torch.equal(actual, expected)


@pytest.mark.parametrize("case", CASES, ids=_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64])
def test_matches_torch_func(case, dtype):
    shape, pattern, lengths = case
    x = torch.randn(shape).mul(10).to(dtype)
    ours, theirs = ours_and_theirs(x, pattern, **lengths)
    assert_identical(ours, theirs)


@pytest.mark.parametrize("case", [c for c in CASES if len(c[0]) >= 2 and 0 not in c[0]], ids=_id)
def test_non_contiguous_input(case):
    shape, pattern, lengths = case
    x = torch.randn(*reversed(shape)).permute(*reversed(range(len(shape))))  # dims reversed
    assert x.shape == shape
    assert not x.is_contiguous() or sum(n > 1 for n in shape) < 2
    ours, theirs = ours_and_theirs(x, pattern, **lengths)
    assert_identical(ours, theirs)
    assert_identical(ours, rearrange(x.contiguous(), pattern, **lengths))


def test_result_is_a_view_where_reshape_allows():
    x = torch.randn(2, 3, 4)
    assert rearrange(x, "a b c -> c a b")._base is x
    assert rearrange(x, "a b c -> (a b) c")._base is x
    out = rearrange(x, "a b c -> c (a b)")  # needs a copy, like reshape
    assert_identical(out, x.permute(2, 0, 1).reshape(4, 6))


@pytest.mark.parametrize("container", [list, tuple])
def test_sequence_of_tensors_is_stacked(container):
    xs = container(torch.randn(3, 4) for _ in range(5))
    for pattern, lengths in [("n a b -> a (n b)", {}), ("n a b -> b a n", {}),
                             ("(n1 n2) a b -> n2 a n1 b", {"n1": 5})]:
        ours, theirs = ours_and_theirs(xs, pattern, **lengths)
        assert_identical(ours, theirs)
        assert_identical(ours, rearrange(torch.stack(list(xs)), pattern, **lengths))


def test_pattern_spacing_does_not_matter():
    x = torch.randn(2, 3, 4)
    expected = x.permute(2, 0, 1).reshape(4, 6)
    for pattern in ["a b c->c (a b)", "  a b c   ->   c ( a b )  ", "a b c -> c(a b)"]:
        ours, theirs = ours_and_theirs(x, pattern)
        assert_identical(ours, expected)
        assert_identical(theirs, expected)


def test_against_explicit_ops():
    x = torch.randn(4, 6, 8, 3)
    assert_identical(rearrange(x, "b h w c -> b c h w"), x.permute(0, 3, 1, 2))
    assert_identical(rearrange(x, "b (h h1) (w w1) c -> b h w (c h1 w1)", h1=2, w1=2),
                     x.reshape(4, 3, 2, 4, 2, 3).permute(0, 1, 3, 5, 2, 4).reshape(4, 3, 4, 12))
    assert_identical(rearrange(x, "b h w c -> h (b w) c"), x.permute(1, 0, 2, 3).reshape(6, 32, 3))


# --- under torchfunc's transforms ---------------------------------------------------------

@pytest.mark.parametrize("in_dim", [0, 1])
@pytest.mark.parametrize("case", [c for c in CASES if len(c[0]) >= 1], ids=_id)
def test_under_vmap(case, in_dim):
    shape, pattern, lengths = case
    x = torch.randn(*shape[:in_dim], 3, *shape[in_dim:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ours = vmap(lambda t: rearrange(t, pattern, **lengths), in_dims=in_dim)(x)
        theirs = torch.func.vmap(lambda t: torch.func.rearrange(t, pattern, **lengths), in_dims=in_dim)(x)
        loop = torch.stack([torch.func.rearrange(x.select(in_dim, i), pattern, **lengths) for i in range(3)])
    assert_identical(ours, theirs)
    assert_identical(ours, loop)


def test_under_vmap_of_a_scalar_per_example():
    x = torch.randn(5)
    ours = vmap(lambda t: rearrange(t, "-> 1 ()"))(x)
    assert_identical(ours, x.reshape(5, 1, 1))
    assert_identical(vmap(lambda t: rearrange(t, "... -> ..."))(x), x)


def test_under_nested_vmap_with_stacking():
    x, y = torch.randn(3, 4, 6), torch.randn(3, 4, 6)
    def f(a, b):
        return rearrange([a, b], "n (h w) -> w (n h)", h=2)
    ours = vmap(vmap(f, in_dims=(0, 0)), in_dims=(1, 1))(x, y)
    theirs = torch.func.vmap(torch.func.vmap(
        lambda a, b: torch.func.rearrange([a, b], "n (h w) -> w (n h)", h=2)), in_dims=(1, 1))(x, y)
    assert_identical(ours, theirs)


def test_under_vmap_with_unbatched_second_tensor():
    x, y = torch.randn(5, 2, 3), torch.randn(2, 3)
    ours = vmap(lambda a, b: rearrange((a, b), "n a b -> b (a n)"), in_dims=(0, None))(x, y)
    loop = torch.stack([torch.func.rearrange((x[i], y), "n a b -> b (a n)") for i in range(5)])
    assert_identical(ours, loop)


@pytest.mark.parametrize("case", [c for c in CASES if c[0] != () and 0 not in c[0]], ids=_id)
def test_under_grad(case):
    shape, pattern, lengths = case
    x = torch.randn(shape, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        weights = torch.randn(torch.func.rearrange(x, pattern, **lengths).shape, dtype=torch.float64)
        ours = grad(lambda t: (rearrange(t, pattern, **lengths).sin() * weights).sum())(x)
        theirs = torch.func.grad(lambda t: (torch.func.rearrange(t, pattern, **lengths).sin() * weights).sum())(x)
    assert_identical(ours, theirs)


def test_vmap_of_grad():
    x = torch.randn(4, 6, 5)
    w = torch.randn(5, 3, 2)
    f = lambda fn: (lambda t: (fn(t, "(a b) c -> c b a", a=2) ** 2 * w).sum())
    ours = vmap(grad(f(rearrange)))(x)
    theirs = torch.func.vmap(torch.func.grad(f(torch.func.rearrange)))(x)
    torch.testing.assert_close(ours, theirs)


# --- where torch.func.rearrange is wrong ----------------------------------------------------
# (input shape, pattern, axes_lengths, expected from explicit ops)
BETTER_THAN_TORCH_FUNC = {
    # torch.func reads a single group of a 1-d input as two indices and raises ValueError
    "split_1d": ((6,), "(a b) -> b a", {"a": 2}, lambda x: x.reshape(2, 3).t()),
    # torch.func counts a group as two dims next to "..." and raises ValueError
    "split_next_to_ellipsis_1d": ((6,), "... (a b) -> ... a b", {"a": 2}, lambda x: x.reshape(2, 3)),
    # torch.func raises AssertionError for a unit axis on both sides
    "unit_axis_both_sides": ((2, 1, 3), "a 1 b -> b 1 a", {}, lambda x: x.permute(2, 1, 0)),
    "unit_axes_added_and_dropped": ((2, 1, 3), "a 1 b -> b 1 a 1", {}, lambda x: x.permute(2, 1, 0)[..., None]),
    # torch.func returns the 0-dim input unchanged, without the unit axes asked for
    "scalar_to_unit_axis": ((), "-> 1", {}, lambda x: x.reshape(1)),
    "scalar_to_unit_axes_with_ellipsis": ((), "... -> 1 (...) ()", {}, lambda x: x.reshape(1, 1, 1)),
}


@pytest.mark.parametrize("name", BETTER_THAN_TORCH_FUNC)
def test_where_torch_func_is_wrong(name):
    shape, pattern, lengths, expected = BETTER_THAN_TORCH_FUNC[name]
    x = torch.randn(shape)
    assert_identical(rearrange(x, pattern, **lengths), expected(x))
    try:
        theirs = torch.func.rearrange(x, pattern, **lengths)
    except Exception:  # noqa: BLE001 - any error: torch.func has no result here
        return
    assert theirs.shape != expected(x).shape


def test_unit_axis_of_size_other_than_1_raises():
    # torch.func sums such a dim away silently; einops and we refuse it
    x = torch.arange(6.0).reshape(2, 3)
    assert_identical(torch.func.rearrange(x, "a 1 -> a"), x.sum(1))
    with pytest.raises(ValueError) as error:
        rearrange(x, "a 1 -> a")
    expecttest.assert_expected_inline(str(error.value), """rearrange(<tensor of shape [2, 3]>, 'a 1 -> a'): dim 1 has size 3, but the pattern gives it a unit axis ('1' or '()'), so it must have size 1""")


# --- errors -------------------------------------------------------------------------------

def raises_like_torch_func(tensor, pattern, **lengths):
    """Our error: the class torch.func raises, and its message followed by ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as their_error:
            torch.func.rearrange(tensor, pattern, **lengths)
        with pytest.raises(type(their_error.value)) as our_error:
            rearrange(tensor, pattern, **lengths)
    assert str(their_error.value) in str(our_error.value)
    return str(our_error.value)


X = torch.randn(6, 4)


class TestErrorsLikeTorchFunc(expecttest.TestCase):
    def test_no_arrow(self):
        self.assertExpectedInline(raises_like_torch_func(X, "a b"), """Pattern must contain a single '->' separator, got 'a b'""")
        self.assertExpectedInline(raises_like_torch_func(X, "a b -> a b -> b a"), """Pattern must contain a single '->' separator, got 'a b -> a b -> b a'""")

    def test_axis_only_on_one_side(self):
        self.assertExpectedInline(raises_like_torch_func(X, "a b -> a b c"), """Identifiers only on one side of rearrange expression (should be on both): {'c'}; 'c' is only on the right of 'a b -> a b c'""")
        self.assertExpectedInline(raises_like_torch_func(X, "a b -> b"), """Identifiers only on one side of rearrange expression (should be on both): {'a'}; 'a' is only on the left of 'a b -> b'""")
        self.assertExpectedInline(raises_like_torch_func(X, "a b ... -> b a"), """Identifiers only on one side of rearrange expression (should be on both): {'…'}; '...' is only on the left of 'a b ... -> b a'""")

    def test_axes_only_on_one_side_sorted(self):
        with self.assertRaises(ValueError) as error:
            rearrange(X, "a b -> c d")
        self.assertExpectedInline(str(error.exception), """Identifiers only on one side of rearrange expression (should be on both): {'a', 'b', 'c', 'd'}; 'a', 'b' are only on the left; 'c', 'd' are only on the right of 'a b -> c d'""")

    def test_axis_repeated(self):
        self.assertExpectedInline(raises_like_torch_func(X, "a a -> a"), """Indexing expression contains duplicate dimension 'a'; each axis may appear once on each side, got 'a a'""")
        self.assertExpectedInline(raises_like_torch_func(X, "a b -> (a b) a"), """Indexing expression contains duplicate dimension 'a'; each axis may appear once on each side, got '(a b) a'""")

    def test_anonymous_axes(self):
        self.assertExpectedInline(raises_like_torch_func(X, "a b -> a b 2"), """rearrange only supports unnamed axes of size 1; got 2 in 'a b -> a b 2' (name the axis and pass its length as a keyword, e.g. rearrange(x, pattern, k=2))""")
        self.assertExpectedInline(raises_like_torch_func(X, "a 0 -> a"), """Anonymous axis should have positive length, not 0; got '0' in 'a 0'""")

    def test_brackets(self):
        self.assertExpectedInline(raises_like_torch_func(X, "a b -> (a b"), """Imbalanced parentheses in expression: ' (a b'; a '(' is never closed""")
        self.assertExpectedInline(raises_like_torch_func(X, "a b) -> a b"), """Brackets are not balanced; a ')' closes no '(' in 'a b)'""")
        self.assertExpectedInline(raises_like_torch_func(X, "a b -> ((a b))"), """Axis composition is one-level (brackets inside brackets not allowed); got '((a b))'""")

    def test_dots(self):
        self.assertExpectedInline(raises_like_torch_func(X, "a b -> a.b"), """Expression may contain dots only inside ellipsis (...); got 'a.b'""")
        self.assertExpectedInline(raises_like_torch_func(X, "a b .... -> a b"), """Expression may contain dots only inside ellipsis (...); only one ellipsis for tensor (got 'a b ....')""")
        self.assertExpectedInline(raises_like_torch_func(X, "a ... b ... -> a b"), """Expression may contain dots only inside ellipsis (...); only one ellipsis for tensor (got 'a ... b ...')""")

    def test_ellipsis_placement(self):
        self.assertExpectedInline(raises_like_torch_func(X, "a b -> ... a b"), """Ellipsis found in right side, but not left side of a pattern a b -> ... a b""")
        self.assertExpectedInline(raises_like_torch_func(X, "(a ...) -> a ..."), """Ellipsis is parenthesis in the left side is not allowed: (a ...) -> a ...; the left side may only split dims, and '...' stands for whole dims""")

    def test_invalid_names(self):
        self.assertExpectedInline(raises_like_torch_func(X, "_a b -> b _a"), """Invalid axis identifier: _a\naxis name should should not start or end with underscore""")
        self.assertExpectedInline(raises_like_torch_func(X, "2a b -> b 2a"), """Invalid axis identifier: 2a\nnot a valid python identifier (axis names are identifiers, or 1 for a unit axis)""")
        self.assertExpectedInline(raises_like_torch_func(X, "a b -> b a$"), """Unknown character '$'; axis names are letters, digits and '_', got 'b a$'""")
        self.assertExpectedInline(raises_like_torch_func(X, "a\tb -> b a"), """Unknown character '\t'; axis names are letters, digits and '_', got 'a\\tb'""")

    def test_axis_lengths(self):
        self.assertExpectedInline(raises_like_torch_func(X, "(a b) c -> a b c", a=2.5), """rearrange axis lengths must be integers, got: <class 'float'> (for a=2.5)""")
        self.assertExpectedInline(raises_like_torch_func(X, "(a b) c -> a b c", a=True), """rearrange axis lengths must be integers, got: <class 'bool'> (for a=True)""")
        self.assertExpectedInline(raises_like_torch_func(X, "a b -> b a", c=2), """Identifiers not found in rearrange expression: {'c'}; axis lengths may only be given for axes of 'a b -> b a'""")
        self.assertExpectedInline(raises_like_torch_func(X, "a b -> b a", **{"\u2026": 2}), """'…' is not an allowed axis identifier""")

    def test_float_length_equal_to_a_cached_int(self):
        # torch.func caches per (ndim, pattern, lengths), and 2.0 == 2 hashes alike: after a
        # call with a=2 it takes a=2.0 without its type check. We check every call.
        torch.func.rearrange(X, "(a b) c -> c b a", a=2)
        torch.func.rearrange(X, "(a b) c -> c b a", a=2.0)
        rearrange(X, "(a b) c -> c b a", a=2)
        with self.assertRaises(TypeError) as error:
            rearrange(X, "(a b) c -> c b a", a=2.0)
        self.assertExpectedInline(str(error.exception), """rearrange axis lengths must be integers, got: <class 'float'> (for a=2.0)""")

    def test_unhashable_axis_length(self):
        with self.assertRaises(TypeError) as error:  # torch.func: TypeError: unhashable type: 'list'
            rearrange(X, "a b -> b a", a=[6])
        self.assertExpectedInline(str(error.exception), """rearrange axis lengths must be integers, got: <class 'list'> (for a=[6])""")

    def test_number_of_dims(self):
        self.assertExpectedInline(raises_like_torch_func(X, "a b c -> c b a"), """Number of dimensions in pattern (3) must be equal to the number of dimensions in the tensor (2); 'a b c' names 3 dims""")
        self.assertExpectedInline(raises_like_torch_func(X, "a b c ... -> c b a ..."), """Number of dimensions in pattern (3) must be less than or equal to the number of dimensions in the tensor (2); 'a b c ...' names 3 dims besides '...'""")

    def test_empty_sequence(self):
        self.assertExpectedInline(raises_like_torch_func([], "n a -> a n"), """stack expects a non-empty TensorList""")

    def test_sequence_of_different_shapes(self):
        self.assertExpectedInline(raises_like_torch_func([torch.randn(2), torch.randn(3)], "n a -> a n"), """stack expects each tensor to be equal size, but got [2] at entry 0 and [3] at entry 1""")


class TestLengthErrors(expecttest.TestCase):
    """torch.func raises functorch.dim's DimensionBindError (an Exception, not a
    ValueError) or ZeroDivisionError for these; we raise ValueError and say why."""

    def check(self, tensor, pattern, **lengths):
        with self.assertRaises(Exception):
            torch.func.rearrange(tensor, pattern, **lengths)
        with self.assertRaises(ValueError) as error:
            rearrange(tensor, pattern, **lengths)
        return str(error.exception)

    def test_not_divisible(self):
        self.assertExpectedInline(self.check(X, "(a b) c -> a b c", a=4), """rearrange(<tensor of shape [6, 4]>, '(a b) c -> a b c'): dim 0 of size 6 can't be split as '(a b)' with a=4: 6 is not divisible by 4""")

    def test_two_unknown_lengths(self):
        self.assertExpectedInline(self.check(X, "(a b) c -> a b c"), """rearrange(<tensor of shape [6, 4]>, '(a b) c -> a b c'): cannot infer the sizes of 'a', 'b' at once from dim 0 of size 6 ('(a b)'); give all but one of them as keywords, e.g. rearrange(x, pattern, a=...)""")

    def test_lengths_do_not_match(self):
        self.assertExpectedInline(self.check(X, "(a b) c -> a b c", a=2, b=4), """rearrange(<tensor of shape [6, 4]>, '(a b) c -> a b c'): dim 0 has size 6, but '(a b)' with a=2, b=4 has 8 elements""")
        self.assertExpectedInline(self.check(X, "a c -> c a", c=5), """rearrange(<tensor of shape [6, 4]>, 'a c -> c a'): dim 1 has size 4, but 'c' with c=5 has 5 elements""")

    def test_zero_length(self):
        self.assertExpectedInline(self.check(X, "(a b) c -> a b c", a=0), """rearrange(<tensor of shape [6, 4]>, '(a b) c -> a b c'): cannot infer 'b' in '(a b)' from dim 0 of size 6 when a=0 (a length of 0)""")
        self.assertExpectedInline(self.check(torch.randn(0, 3), "(a b) c -> a b c", a=0), """rearrange(<tensor of shape [0, 3]>, '(a b) c -> a b c'): cannot infer 'b' in '(a b)' from dim 0 of size 0 when a=0 (a length of 0)""")

    def test_negative_length(self):
        self.assertExpectedInline(self.check(X, "(a b) c -> a b c", a=-2), """rearrange: axis lengths must be non-negative, got a=-2 for '(a b) c -> a b c'""")

    def test_under_vmap_the_shape_is_per_example(self):
        with self.assertRaises(ValueError) as error:
            vmap(lambda t: rearrange(t, "(a b) c -> a b c", a=4))(torch.randn(3, 6, 4))
        self.assertExpectedInline(str(error.exception), """rearrange(<tensor of shape [6, 4]>, '(a b) c -> a b c'): dim 0 of size 6 can't be split as '(a b)' with a=4: 6 is not divisible by 4""")


def test_discouraged_names_warn_like_torch_func():
    x = torch.randn(2, 3)
    for pattern, category in [("while b -> b while", RuntimeWarning), ("axis b -> b axis", FutureWarning)]:
        with pytest.warns(category) as ours:
            rearrange(x, pattern)
        with pytest.warns(category) as theirs:
            torch.func.rearrange(x, pattern)
        assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
        assert ours[0].filename == __file__


def test_signature_and_identity():
    def parameters(func):
        return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]
    assert parameters(rearrange) == parameters(torch.func.rearrange)
    assert rearrange is not torch.func.rearrange and rearrange.__module__ == "torchfunc.einops"
    assert torchfunc.einops.__all__ == ["rearrange"]
    assert all(s in rearrange.__doc__ for s in ("Args:", "Returns:", "Example"))
