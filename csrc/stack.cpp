#include "stack.h"

#include "errors.h"
#include "keys.h"

#include <c10/util/ThreadLocalDebugInfo.h>

#include <string_view>

namespace torchfunc {
namespace {

// The snapshot published to other threads. Immutable once built.
struct StackSnapshot final : c10::DebugInfoBase {
  explicit StackSnapshot(std::vector<Interpreter> s) : interpreters(std::move(s)) {}
  const std::vector<Interpreter> interpreters;
};

constexpr std::string_view kSnapshotSlotName = "torchfunc interpreter stack";
const c10::DebugInfoKind kSnapshotSlot(&kSnapshotSlotName);

struct ThreadStack {
  std::vector<Interpreter> interpreters;
  // Snapshot this stack corresponds to (nullptr: nothing published yet).
  const c10::DebugInfoBase* source = nullptr;
  // Debug-info chain to restore when each level is popped (parallel to interpreters).
  std::vector<std::shared_ptr<c10::ThreadLocalDebugInfo>> chains_before_push;
};

thread_local ThreadStack tls_stack;

void publish_snapshot() {
  auto snapshot = std::make_shared<StackSnapshot>(tls_stack.interpreters);
  tls_stack.source = snapshot.get();
  c10::ThreadLocalDebugInfo::_push(kSnapshotSlot, std::move(snapshot));
}

void set_keys_included(bool included) {
  c10::impl::tls_set_dispatch_key_included(kFrontKey, included);
  c10::impl::tls_set_dispatch_key_included(kBackKey, included);
}

} // namespace

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::Vmap:
      return "vmap";
    case Kind::Grad:
      return "grad";
    case Kind::Jvp:
      return "jvp";
    case Kind::Functionalize:
      return "functionalize";
  }
  return "?";
}

std::vector<Interpreter>& local_stack() {
  return tls_stack.interpreters;
}

int64_t push_interpreter(Kind kind, Meta meta) {
  auto& s = tls_stack;
  const auto level = static_cast<int64_t>(s.interpreters.size()) + 1;
  s.chains_before_push.push_back(c10::ThreadLocalDebugInfo::current());
  s.interpreters.emplace_back(kind, level, meta);
  publish_snapshot();
  if (level == 1) {
    set_keys_included(true);
  }
  return level;
}

void pop_interpreter(int64_t level) {
  auto& s = tls_stack;
  TORCH_CHECK(!s.interpreters.empty() && s.interpreters.back().level() == level,
      "torchfunc: internal error: asked to pop level ", level, " but the top of the stack is ",
      s.interpreters.empty() ? std::string("empty") : std::to_string(s.interpreters.back().level()));
  s.interpreters.back().kill();
  s.interpreters.pop_back();
  c10::ThreadLocalDebugInfo::_forceCurrentDebugInfo(s.chains_before_push.back());
  s.chains_before_push.pop_back();
  s.source = c10::ThreadLocalDebugInfo::get(kSnapshotSlot);
  if (s.interpreters.empty()) {
    set_keys_included(false);
  }
}

void sync_with_parent_thread() {
  auto& s = tls_stack;
  const auto* snapshot = c10::ThreadLocalDebugInfo::get(kSnapshotSlot);
  if (snapshot == s.source) {
    return;
  }
  // NOTE [Stacks on worker threads]
  // We are on a thread that inherited our dispatch keys (through
  // at::ThreadLocalState) but not our thread_local stack. Rebuild it from the
  // snapshot the parent published. Pushes and pops on this thread never publish:
  // worker threads only run ops, they do not enter transforms.
  TORCH_CHECK(snapshot != nullptr, errors::no_stack_on_thread());
  s.interpreters = static_cast<const StackSnapshot*>(snapshot)->interpreters;
  s.source = snapshot;
}

Interpreter& top_interpreter() {
  auto& s = tls_stack.interpreters;
  TORCH_CHECK(!s.empty(), errors::escaped_tensor());
  return s.back();
}

std::optional<int64_t> current_level() {
  if (tls_stack.interpreters.empty()) {
    return std::nullopt;
  }
  return tls_stack.interpreters.back().level();
}

const Interpreter* find_interpreter(int64_t level) {
  auto& s = tls_stack.interpreters;
  if (level < 1 || level > static_cast<int64_t>(s.size())) {
    return nullptr;
  }
  return &s[level - 1];
}

LowerGuard::LowerGuard() {
  auto& s = tls_stack.interpreters;
  saved_.emplace(std::move(s.back()));
  s.pop_back();
  if (s.empty()) {
    set_keys_included(false);
  }
}

LowerGuard::~LowerGuard() {
  auto& s = tls_stack.interpreters;
  if (s.empty()) {
    set_keys_included(true);
  }
  s.push_back(std::move(*saved_));
}

} // namespace torchfunc
