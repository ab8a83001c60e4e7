#pragma once
#include "rule.h"
#include "../op_traits.h"

#include <torch/library.h>

namespace torchfunc {

bool any_batched_at(const torch::jit::Stack& stack, size_t n, int64_t level);
// Runs the op with kBatchedKey excluded: it reaches the level below.
void continue_below(const c10::OperatorHandle& op, torch::jit::Stack* stack);
void push_outputs(torch::jit::Stack* stack, const Outs& outs, int64_t level);
// The kernel body of every rule (see NOTE [vmap plumbing]).
void run_rule(const c10::OperatorHandle& op, torch::jit::Stack* stack, Rule rule, RuleKind kind);
// Random ops under vmap (vmap/interpreter.cpp): the randomness mode of the
// current level decides.
void random_kernel(const c10::OperatorHandle& op, torch::jit::Stack* stack);
// A random-tagged op whose dropout_p argument is 0 draws nothing (vmap/interpreter.cpp).
bool draws_nothing(const c10::FunctionSchema& schema, const torch::jit::Stack& stack);
// Registers every rule table entry and the generic pointwise family on lib
// (an IMPL library for aten at kBatchedKey); returns how many kernels.
size_t register_rules(torch::Library& lib);
// Table entries naming no op of this torch (skipped; test_engine.py expects none).
std::vector<std::string>& unknown_rule_ops();

} // namespace torchfunc
