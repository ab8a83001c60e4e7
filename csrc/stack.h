#pragma once
// NOTE [The interpreter stack]
// One stack per thread. Pushing the first interpreter TLS-includes kFrontKey and
// kBackKey; popping the last removes them, so code outside every transform pays
// nothing. Each push/pop also publishes an immutable snapshot of the stack through
// c10::ThreadLocalDebugInfo, which at::ThreadLocalState copies to the threads that
// run autograd nodes (CUDA backward, at::launch). A thread whose own stack was not
// built from the snapshot it sees rebuilds it from that snapshot before processing
// an op (sync_with_parent_thread). The snapshot is never mutated, so threads never
// race on it; life handles are shared, so a level popped on the main thread is
// dead on every thread.
#include "interpreter.h"
#include "keys.h"

#include <c10/core/impl/LocalDispatchKeySet.h>

#include <optional>
#include <vector>

namespace torchfunc {

int64_t push_interpreter(Kind kind, Meta meta);
void pop_interpreter(int64_t level);

std::vector<Interpreter>& local_stack();
// The top interpreter, for kernels that run while an op is processed at its level.
// Throws the "escaped tensor" error when the stack is empty.
Interpreter& top_interpreter();
std::optional<int64_t> current_level();
const Interpreter* find_interpreter(int64_t level);

// Rebuilds this thread's stack from the snapshot propagated to it, if needed.
// Throws if our keys are included but no snapshot exists.
void sync_with_parent_thread();

// Temporarily removes the top interpreter (the back key's "lower" step) and
// restores it on destruction, also when the op throws.
class LowerGuard {
 public:
  LowerGuard();
  ~LowerGuard();
  LowerGuard(const LowerGuard&) = delete;
  LowerGuard& operator=(const LowerGuard&) = delete;
  Interpreter& lowered() { return *saved_; }

 private:
  std::optional<Interpreter> saved_;
};

// For the ops a rule runs on plain example tensors while it processes a call (the
// first-example check, the empty batch's meta kernel): the dispatch keys as they were
// outside the bottom level, and no autograd. With the front key live, an op would be
// processed by the top level and come back wrapped; with the whole transform range
// excluded, ZeroTensor and the conjugate and negative views would reach kernels that
// read their (absent) data.
struct BelowEveryTransform {
  c10::impl::ForceDispatchKeyGuard outside{local_stack().front().saved_tls};
  c10::impl::ExcludeDispatchKeyGuard no_autograd{c10::autograd_dispatch_keyset_with_ADInplaceOrView |
                                                 front_and_back()};
};

} // namespace torchfunc
