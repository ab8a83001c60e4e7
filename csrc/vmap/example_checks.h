#pragma once
// The per-example argument checks of run_rule (NOTE [Rules check what the op checks]).
#include <ATen/core/dispatch/Dispatcher.h>

namespace torchfunc {

// The op's checks can be met by a batch of examples that fail them one by one.
bool checks_one_example(const c10::OperatorHandle& op, const torch::jit::Stack& args);
// Runs the op's kernel on the first example; raises the op's own error.
void check_one_example(const c10::OperatorHandle& op, const torch::jit::Stack& args);

} // namespace torchfunc
