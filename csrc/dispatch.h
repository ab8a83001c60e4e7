#pragma once
#include <torch/library.h>

namespace torchfunc {

// Registers the front, back and kGradKey fallbacks (see NOTE in dispatch.cpp).
void register_fallbacks(torch::Library& front, torch::Library& back, torch::Library& grad);

} // namespace torchfunc
