#pragma once
#include <torch/library.h>

namespace torchfunc {

// Registers the front, back and kGradKey fallbacks (see NOTE in dispatch.cpp).
// kFrontKey's fallback: hands the op to the top interpreter. Front-key kernels of single
// ops (NOTE [Decompositions at the front key]) call it for the calls they leave alone.
void front_fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack);
// What back_fallback does, for an interpreter that processes an op by sending it to the
// next one straight away (NOTE [A grad level's last backward records nothing at its
// level]): lowers the stack and lets the top interpreter send the op on.
void send_below_top(const c10::OperatorHandle& op, torch::jit::Stack* stack);
void register_fallbacks(torch::Library& front, torch::Library& back, torch::Library& grad);

} // namespace torchfunc
