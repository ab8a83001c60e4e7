"""Per-sample gradients over torch's module_db: vmap(grad(functional_call)) against a loop.

For every ModuleInfo (float32, CPU, eval mode) and each of its samples whose module has
parameters, the gradients of a scalar loss of forward (a fixed random weighting of its
floating outputs) with respect to the parameters are computed per example of a batch of
2 or 3 regenerated examples,

    torchfunc.vmap(torchfunc.grad(lambda p, b, *x: loss(functional_call(module, (p, b), x))),
                   in_dims=(None, None, *batch_dims))(params, buffers, *batched_inputs)

and compared with a Python loop of torch.autograd.grad over the examples through the plain
module; see test/module_db_checks.py. One test per ModuleInfo covers all its samples.
test_per_sample_grads lets ops without a batching rule take the per-example fallback;
test_per_sample_grads_has_batch_rule disables it (and checks the fallback counter did not
move). torch.func runs on the same cases as a baseline: its outcome is recorded as the
test property "torch_func" and added to a failure's message, but does not decide anything.
ModuleInfos without parameters, or with no tensor forward argument, are skipped.

    pytest test/test_module_db.py -k LSTM
    python tools/module_db_report.py       # pass rates, torchfunc and torch.func

Each xfail below is strict, with the reason found by running the case: an entry whose
module now passes must be removed.
"""
import pytest

from module_db_checks import (
    MODULES, ModuleTable, SkipCase, check_per_sample_grads, classify, parametrize_modules,
    xfail,
)

_HX_ADD_ = (
    "without an explicit hx, ATen's {cell} cell adds the batched input projection in place "
    "into the projection of the unbatched zero hidden state that forward creates "
    "({code}): aten::add_ of batched data into an unbatched tensor; torch.func fails the same")

# Expected failures of torchfunc with the fallback enabled, one line per ModuleInfo.
PER_SAMPLE_GRADS_XFAILS = ModuleTable(
    xfail("nn.GRU", reason=_HX_ADD_.format(
        cell="GRU", code="linear_hh(hx).unsafe_chunk(3, 1)[0].add_(igates[0]); 8 of 16 samples")),
    xfail("nn.LSTM", reason=_HX_ADD_.format(
        cell="LSTM", code="linear_hh(hx).add_(linear_ih(x)), the samples with proj_size > 0; "
                          "8 of 32 samples") + "; the proj_size == 0 samples pass only through "
                                               "the fallback for aten::mkldnn_rnn_layer"),
    xfail("nn.LinearCrossEntropyLoss", reason=(
        "two data-dependent paths: with label_smoothing, a class weight and reduction='mean' "
        "ATen's cross_entropy takes its target.masked_select(~ignore_mask) branch (torch.func "
        "takes the masked_fill/gather branch meant for tensor subclasses; 78 samples), and the "
        "chunked op with reduction='none' calls torch.mm(out=...) in its backward: aten::mm.out "
        "has no batching rule and the fallback cannot run out= ops (94 samples); torch.func "
        "fails all 170 chunked samples (autograd.Function without setup_context)")),
    xfail("nn.RNN", reason=_HX_ADD_.format(
        cell="RNN", code="linear_hh(hx).add_(linear_ih(x)); 16 of 32 samples")),
    xfail("nn.Transformer", reason=(
        "2 of 64 samples (eval mode, a 3-d src with a src_key_padding_mask) reach "
        "TransformerEncoder's fast-path check torch._nested_tensor_from_mask_left_aligned(src, "
        "mask): it returns a bool, so it has no batching rule and the fallback cannot loop it; "
        "torch.func fails the same")),
)
# Modules that work only through the slow per-example fallback. A failure with the
# fallback is also one without it, so this table extends the one above.
PER_SAMPLE_GRADS_HAS_BATCH_RULE_XFAILS = ModuleTable(base=[PER_SAMPLE_GRADS_XFAILS])


def _run(module_info, allow_fallback: bool, record_property) -> None:
    try:
        check_per_sample_grads(module_info, "torchfunc", allow_fallback)
    except SkipCase as e:
        pytest.skip(str(e))
    except Exception as e:
        baseline = classify(module_info, "torch.func", allow_fallback)
        record_property("torch_func", f"{baseline['status']}: {baseline['detail']}")
        e.add_note(f"torch.func on the same cases: {baseline['status']} ({baseline['detail']})")
        raise
    baseline = classify(module_info, "torch.func", allow_fallback)
    record_property("torch_func", f"{baseline['status']}: {baseline['detail']}")


@parametrize_modules(MODULES, PER_SAMPLE_GRADS_XFAILS)
def test_per_sample_grads(module_info, record_property):
    _run(module_info, True, record_property)


@parametrize_modules(MODULES, PER_SAMPLE_GRADS_HAS_BATCH_RULE_XFAILS)
def test_per_sample_grads_has_batch_rule(module_info, record_property):
    _run(module_info, False, record_property)
