#pragma once
#include "rule.h"
#include <functional>
#include <torch/library.h>

#include <optional>
#include <string>
#include <vector>

namespace torchfunc {

void set_fallback_warning(bool enabled);
void set_fallback_enabled(bool enabled);
int64_t fallback_count();
// The names of the ops the loop ran since the last call (each once), and forget them.
std::vector<std::string> take_fallback_ops();
void register_batched_fallback(torch::Library& lib);
// The functional form an in-place op without a rule runs through (NOTE [In-place ops
// through their functional form]), if it has one.
std::optional<c10::OperatorHandle> functional_form(const c10::OperatorHandle& op);
// The functional overload an out= op without a rule runs through (NOTE [out= ops
// through their functional form]), if it has one.
std::optional<c10::OperatorHandle> out_functional_form(const c10::OperatorHandle& op);
// Runs an out= op as `functional` (its out_functional_form) on the call's other
// arguments; each result, checked to have a place in its logical out tensor (a batched
// result in a captured out raises), to fit it as it is (vmap cannot resize) and to cast
// to its dtype, goes to write(argument index, result). Returns the
// out tensors as the op's outputs.
Outs run_out_op_through(Call& call, const c10::OperatorHandle& functional,
                        const std::function<void(size_t, const at::Tensor&)>& write);
// The arguments of example `b`: tensors batched at `level` are sliced (physical values).
torch::jit::Stack slice_example(const torch::jit::Stack& args, int64_t level, int64_t b);
// Why the per-example loop cannot run op, if it cannot.
std::optional<std::string> loop_refusal(const c10::OperatorHandle& op);

} // namespace torchfunc
