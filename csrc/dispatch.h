#pragma once
#include <torch/library.h>

namespace torchfunc {

// Registers the front, back and kGradKey fallbacks (see NOTE in dispatch.cpp).
// kFrontKey's fallback: hands the op to the top interpreter. Front-key kernels of single
// ops (NOTE [Decompositions at the front key]) call it for the calls they leave alone.
void front_fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack);
void register_fallbacks(torch::Library& front, torch::Library& back, torch::Library& grad);

} // namespace torchfunc
