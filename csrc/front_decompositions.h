#pragma once
#include <torch/library.h>

namespace torchfunc {

// Decompositions the front key runs while a transform is active (NOTE [Decompositions at
// the front key]); `aten_at_front` is an IMPL library for aten at kFrontKey.
void register_front_decompositions(torch::Library& aten_at_front);

} // namespace torchfunc
