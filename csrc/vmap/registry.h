#pragma once
// How each op is batched (NOTE [The rule registry]).
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <string>
#include <vector>

namespace torchfunc {

// One op's answer: which code handles it under vmap, of what kind, from where, why.
//   kind: "physical" (a rule on physical values), "decomposition" (a rule, or the op's
//   composite kernel, on BatchedTensors: its parts meet their own rules), "random"
//   (the randomness modes), "in-place-of" (the functional form, copied into self),
//   "python" (a Python rule: register_vmap of a custom op), "loop" (the per-example
//   fallback), "refused" (a clear error: data-dependent, or no loop can run it).
struct OpRecord {
  std::string op;  // "aten::add.Tensor"
  std::string kind;
  std::string source;
  std::string why;
};

// Records the rule registered for `op` (plumbing.cpp at install; custom_ops.py).
void record_rule(OpRecord record);
// The record of one op: its registered rule, or what the batched fallback does with it.
OpRecord explain_op(const c10::OperatorHandle& op);
// One record per operator the dispatcher knows in `ns` ("aten"), sorted by name.
std::vector<OpRecord> registry(const std::string& ns);

} // namespace torchfunc
