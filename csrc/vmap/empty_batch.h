#pragma once
// Calls with a batch of size 0 (NOTE [An empty batch]).
#include "rule.h"

#include <optional>

namespace torchfunc {

// The outputs of a physical rule's call when the batch is empty, from the op's meta
// kernel on one example's shape; nullopt when the call must run the rule instead.
std::optional<Outs> empty_batch_outputs(const Call& call);

} // namespace torchfunc
