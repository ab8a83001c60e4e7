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

An expected failure goes in the tables below as a strict xfail with the reason found by
running the case; an entry whose module passes again must be removed.
"""
import pytest

from module_db_checks import (
    MODULES, ModuleTable, SkipCase, check_per_sample_grads, classify, parametrize_modules,
)

# Expected failures of torchfunc with the fallback enabled, one line per ModuleInfo: none
# left (RNN/GRU/LSTM, LinearCrossEntropyLoss and Transformer pass since NOTE [In-place
# writes into fresh tensors] and NOTE [Decompositions at the front key]).
PER_SAMPLE_GRADS_XFAILS = ModuleTable()
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
