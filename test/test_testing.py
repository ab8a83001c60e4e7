"""torchfunc.testing: the checks users put in their own test suites."""
import expecttest
import pytest
import torch
import torch.nn.functional as F

from torchfunc.testing import assert_per_sample_grads, assert_vmap_matches_loop

X = torch.linspace(-1.0, 1.0, 12).reshape(4, 3)
AFFINE_GRID = lambda t: F.affine_grid(t.repeat(2).reshape(1, 2, 3), (1, 1, 2, 2), align_corners=False)  # noqa: E731 - loops


def test_vmap_check_passes_and_returns_the_result():
    w = torch.arange(2.0)
    out = assert_vmap_matches_loop(torch.outer, X, w, in_dims=(0, None))
    torch.testing.assert_close(out, torch.stack([torch.outer(a, w) for a in X]))
    pair = assert_vmap_matches_loop(lambda d, w, *, k: {"y": d["x"] * w * k}, {"x": X.T}, torch.ones(3),
                                    in_dims=({"x": 1}, None), out_dims={"y": 1}, k=2.0)
    torch.testing.assert_close(pair["y"], 2.0 * X.T)


def test_vmap_check_fails_on_a_mismatch():
    calls = [0]

    def counts_its_calls(t):  # vmap calls it once, the loop once per example
        calls[0] += 1
        return t * calls[0]

    with pytest.raises(AssertionError, match="against the per-example loop"):
        assert_vmap_matches_loop(counts_its_calls, X)


def test_vmap_check_names_the_op_that_looped():
    with pytest.raises(AssertionError, match=r"ran aten::affine_grid_generator through the per-example fallback"):
        assert_vmap_matches_loop(AFFINE_GRID, X)
    assert_vmap_matches_loop(AFFINE_GRID, X, allow_loop=True)


def test_vmap_check_reports_what_vmap_raised():
    with pytest.raises(AssertionError, match=r"raised RuntimeError: vmap: It looks like you're calling \.item\(\)"):
        assert_vmap_matches_loop(lambda t: t * t.sum().item(), X)


def test_per_sample_grads_of_an_mlp():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    grads = assert_per_sample_grads(model, F.cross_entropy, (X, torch.tensor([0, 1, 1, 0])))
    assert grads["0.weight"].shape == (4, 8, 3)


def test_per_sample_grads_of_a_cnn_with_batch_norm_in_eval():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3)).eval()
    assert_per_sample_grads(model, F.cross_entropy, (torch.randn(5, 1, 6, 6), torch.tensor([0, 1, 2, 0, 1])))


def test_per_sample_grads_without_targets_and_with_two_inputs():
    torch.manual_seed(0)
    bilinear = torch.nn.Bilinear(3, 3, 2)
    assert_per_sample_grads(bilinear, lambda out: out.pow(2).sum(), ((X, X.flip(0)), None))


@pytest.mark.parametrize("name", ["transformer_encoder_layer", "transformer_decoder_layer", "instance_norm",
                                  "group_norm", "embedding"])
def test_per_sample_grads_of_real_layers_take_no_loop(name):
    """Issue 8's layers: per-sample gradients with no per-example fallback."""
    torch.manual_seed(0)
    seq = torch.randn(3, 5, 8)
    cases = {
        "transformer_encoder_layer": (torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
                                      lambda out: out.pow(2).mean(), seq),
        "transformer_decoder_layer": (_Decoder(), lambda out: out.pow(2).mean(), seq),
        "instance_norm": (torch.nn.InstanceNorm1d(5, affine=True), lambda out: out.pow(3).mean(), seq),
        "group_norm": (torch.nn.GroupNorm(1, 5), lambda out: out.pow(3).mean(), seq),
        "embedding": (torch.nn.Embedding(10, 4), lambda out: out.pow(2).sum(), torch.tensor([[1, 2], [3, 1], [0, 9]])),
    }
    model, loss, inputs = cases[name]
    assert_per_sample_grads(model.eval(), loss, (inputs, None), atol=1e-5, rtol=1e-4)


class _Decoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True)

    def forward(self, x):
        return self.layer(x, x.flip(1))


class _AffineGrid(torch.nn.Module):  # affine_grid_generator loops
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 6)

    def forward(self, x):
        return F.affine_grid(self.linear(x).reshape(1, 2, 3), (1, 1, 2, 2), align_corners=False)


def test_per_sample_grads_names_the_ops_that_looped():
    with pytest.raises(AssertionError, match=r"ran aten::affine_grid_generator"):
        assert_per_sample_grads(_AffineGrid(), lambda out: out.pow(2).sum(), X)
    assert_per_sample_grads(_AffineGrid(), lambda out: out.pow(2).sum(), X, allow_loop=True)


def test_per_sample_grads_of_prelu_take_no_loop():
    assert_per_sample_grads(torch.nn.PReLU(3), lambda out: out.pow(2).sum(), X * 3)


class TestMessages(expecttest.TestCase):
    def test_looped(self):
        with self.assertRaises(AssertionError) as ctx:
            assert_vmap_matches_loop(AFFINE_GRID, X)
        self.assertExpectedInline(str(ctx.exception), """vmap(<lambda>) ran aten::affine_grid_generator through the per-example fallback (no batching rule: slow). torchfunc.explain(op) says why; pass allow_loop=True to accept it.""")
