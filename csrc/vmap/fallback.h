#pragma once
#include <torch/library.h>

namespace torchfunc {

void set_fallback_warning(bool enabled);
void set_fallback_enabled(bool enabled);
int64_t fallback_count();
void register_batched_fallback(torch::Library& lib);

} // namespace torchfunc
