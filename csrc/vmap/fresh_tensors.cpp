// In-place writes into fresh tensors: see NOTE [In-place writes into fresh tensors].
#include "fresh_tensors.h"

#include "../errors.h"
#include "../keys.h"
#include "../op_traits.h"
#include "../autodiff/grad_tensor.h"
#include "batched_tensor.h"
#include "plumbing.h"
#include "rule.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/_neg_view.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <atomic>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

namespace torchfunc {

struct FreshTensors {
  struct Promoted {
    c10::Storage storage;  // kept alive, so that its address names it until the level pops
    at::Tensor buffer;     // [B, N]: row b is example b's copy of the storage's N elements
  };
  std::mutex mutex;
  std::unordered_set<const void*> storages;
  std::unordered_map<const void*, Promoted> promoted;
  std::atomic<bool> any_promoted{false};
};

std::shared_ptr<FreshTensors> make_fresh_tensors() {
  return std::make_shared<FreshTensors>();
}

namespace {

// The tensor under t's GradTensors (lower grad levels wrap fresh tensors too); null for a
// GradTensor captured from outside its grad level.
const at::Tensor* under_grad_tensors(const at::Tensor& t) {
  const at::Tensor* inner = &t;
  while (auto* g = maybe_grad_tensor(*inner)) {
    if (g->is_immutable()) return nullptr;
    inner = &g->value();
  }
  return inner;
}

// The storage of a plain strided tensor, or of the plain tensor under its GradTensors;
// null for BatchedTensors of lower levels and for tensors without one.
const void* storage_key(const at::Tensor& outer) {
  if (!outer.defined()) return nullptr;
  const at::Tensor* inner = under_grad_tensors(outer);
  if (inner == nullptr) return nullptr;
  const at::Tensor& t = *inner;
  if (!t.defined() || t.layout() != at::kStrided) return nullptr;
  static const auto not_plain =
      c10::DispatchKeySet({kBatchedKey, kGradKey, c10::DispatchKey::Functionalize, c10::DispatchKey::Python,
                           c10::DispatchKey::ZeroTensor, c10::DispatchKey::Sparse, c10::DispatchKey::NestedTensor});
  if (t.key_set().has_any(not_plain) || !t.has_storage()) return nullptr;
  return t.storage().unsafeGetStorageImpl();
}

FreshTensors& fresh_of(const Interpreter& level) {
  return *level.vmap().fresh;
}

// `t` as the level reads it once its storage is promoted: the buffer with t's geometry.
// While the level processes an op, excluding kBatchedKey sends the view ops one level
// down; outside (vmap's output step) the level is on top and sends them down itself.
at::Tensor buffer_view(const Interpreter& level, const FreshTensors::Promoted& p, const at::Tensor& t,
                       bool processing) {
  std::optional<c10::impl::ExcludeDispatchKeyGuard> below;
  if (processing) below.emplace(kBatchedKey);
  at::Tensor buffer = p.buffer;
  if (t.scalar_type() != buffer.scalar_type()) {
    buffer = buffer.view(t.scalar_type());  // a dtype view of the storage (view(dtype), view_as_real)
  }
  c10::DimVector sizes{buffer.size(1)};
  sizes[0] = level.vmap().batch_size;
  sizes.append(t.sizes().begin(), t.sizes().end());
  c10::DimVector strides{buffer.size(1)};
  strides.append(t.strides().begin(), t.strides().end());
  auto value = buffer.as_strided(sizes, strides, t.storage_offset());
  if (t.is_conj()) value = value.conj();
  if (t.is_neg()) value = at::_neg_view(value);
  return make_batched(value, 0, level.level());
}

void substitute(const Interpreter& level, torch::jit::Stack& stack, size_t n, const c10::OperatorHandle* op,
                bool processing) {
  auto& fresh = fresh_of(level);
  if (!fresh.any_promoted.load(std::memory_order_acquire)) return;
  // A metadata change would land on the BatchedTensor that stands in for self, not on self.
  const bool changes_self = op != nullptr &&
      (op->hasTag(at::Tag::inplace_view) || op->schema().name() == "aten::resize_" ||
       op->schema().name() == "aten::set_" || op->schema().name() == "aten::resize_as_");
  const size_t first = stack.size() - n;
  const bool self_is_tensor = n > 0 && stack[first].isTensor();
  bool at_self = true;
  map_tensors(stack, n, [&](const at::Tensor& t) {
    const bool is_self = at_self && self_is_tensor;
    at_self = false;
    const void* key = storage_key(t);
    if (key == nullptr) return t;
    std::unique_lock<std::mutex> lock(fresh.mutex);
    auto it = fresh.promoted.find(key);
    if (it == fresh.promoted.end()) return t;
    const auto promoted = it->second;
    lock.unlock();
    TORCH_CHECK(!(changes_self && is_self), errors::promoted_metadata_change(display_name(*op)));
    return buffer_view(level, promoted, t, processing);
  });
}

} // namespace

void substitute_promoted(const Interpreter& level, torch::jit::Stack& stack, size_t n, const c10::OperatorHandle* op) {
  substitute(level, stack, n, op, /*processing=*/true);
}

namespace {

using StorageKeys = c10::SmallVector<const void*, 4>;

StorageKeys storage_keys(const torch::jit::Stack& stack, size_t n) {
  StorageKeys keys;
  any_tensor(stack, n, [&](const at::Tensor& t) {
    if (const void* key = storage_key(t)) keys.push_back(key);
    return false;
  });
  return keys;
}

// Some return is not an alias of an argument, so it may be a new allocation.
bool may_allocate(const c10::FunctionSchema& schema) {
  for (const auto& ret : schema.returns()) {
    if (ret.alias_info() == nullptr) return true;
  }
  return false;
}

void record_fresh_outputs(const Interpreter& level, const c10::FunctionSchema& schema, const torch::jit::Stack& stack,
                          const StorageKeys& inputs) {
  const auto& returns = schema.returns();
  StorageKeys outputs;
  for (size_t r = 0; r < returns.size(); ++r) {
    if (returns[r].alias_info() != nullptr) continue;  // a view or a written argument
    const auto& v = stack[stack.size() - returns.size() + r];
    auto add = [&](const at::Tensor& t) {
      const void* key = storage_key(t);
      if (key != nullptr && std::find(inputs.begin(), inputs.end(), key) == inputs.end()) outputs.push_back(key);
    };
    if (v.isTensor()) {
      add(v.toTensor());
    } else if (v.isTensorList()) {
      for (const at::Tensor& t : v.toTensorList()) add(t);
    }
  }
  if (outputs.empty()) return;
  auto& fresh = fresh_of(level);
  std::lock_guard<std::mutex> lock(fresh.mutex);
  fresh.storages.insert(outputs.begin(), outputs.end());
}

} // namespace

void continue_below_recording(const Interpreter& level, const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto& schema = op.schema();
  if (!may_allocate(schema)) {  // views and in-place ops (the hot path of model weights)
    continue_below(op, stack);
    return;
  }
  const auto inputs = storage_keys(*stack, schema.arguments().size());
  continue_below(op, stack);
  record_fresh_outputs(level, schema, *stack, inputs);
}

namespace {

// Promotes argument i if it is a plain fresh tensor; returns the original, or undefined.
at::Tensor promote_argument(const Interpreter& level, Call& call, size_t i) {
  const at::Tensor self = call.args[i].toTensor();
  const void* key = storage_key(self);
  if (key == nullptr) return {};
  const at::Tensor& plain = *under_grad_tensors(self);
  auto& fresh = fresh_of(level);
  {
    std::lock_guard<std::mutex> lock(fresh.mutex);
    if (!fresh.storages.count(key)) return {};
  }
  const auto& storage = plain.storage();
  const auto itemsize = static_cast<int64_t>(plain.element_size());
  const auto nbytes = static_cast<int64_t>(storage.nbytes());
  if (itemsize == 0 || nbytes % itemsize != 0) return {};
  const int64_t n = nbytes / itemsize;
  at::Tensor buffer;
  {
    // One level down: a lower vmap level that promoted this storage first reads it batched.
    c10::impl::ExcludeDispatchKeyGuard below(kBatchedKey);
    at::Tensor flat = self.as_strided({n}, {1}, 0);
    if (flat.is_conj()) flat = flat.conj();        // the raw elements, not self's conjugate view
    if (flat.is_neg()) flat = at::_neg_view(flat);
    buffer = flat.unsqueeze(0).expand({call.batch_size, n}).clone(at::MemoryFormat::Contiguous);
  }
  FreshTensors::Promoted promoted{storage, buffer};
  {
    std::lock_guard<std::mutex> lock(fresh.mutex);
    fresh.promoted.emplace(key, promoted);
    fresh.any_promoted.store(true, std::memory_order_release);
  }
  call.args[i] = buffer_view(level, promoted, self, /*processing=*/true);
  return self;
}

} // namespace

Promotions promote_written_arguments(const Interpreter& level, Call& call) {
  Promotions promoted;
  if (call.op.hasTag(at::Tag::inplace_view)) return promoted;
  const auto& schema = call.schema();
  const auto& args = schema.arguments();
  for (size_t i = 0; i < args.size(); ++i) {
    const auto* alias = args[i].alias_info();
    if (alias == nullptr || !alias->isWrite() || !call.args[i].isTensor() ||
        batched_at(call.args[i].toTensor(), call.level)) {
      continue;
    }
    // Only what the op returns (self, out=): a side buffer it updates, like batch norm's
    // running stats, keeps its own rule.
    bool returned = false;
    for (const auto& ret : schema.returns()) {
      returned |= ret.alias_info() != nullptr && ret.alias_info()->beforeSets() == alias->beforeSets();
    }
    if (!returned) continue;
    if (auto original = promote_argument(level, call, i); original.defined()) promoted.push_back({i, original});
  }
  return promoted;
}

void return_promoted(const c10::FunctionSchema& schema, const Promotions& promoted, torch::jit::Stack& stack) {
  const auto& returns = schema.returns();
  const size_t first = stack.size() - returns.size();
  for (size_t r = 0; r < returns.size(); ++r) {
    const auto* alias = returns[r].alias_info();
    if (alias == nullptr) continue;
    for (const auto& [i, original] : promoted) {
      if (schema.arguments()[i].alias_info()->beforeSets() == alias->beforeSets()) stack[first + r] = original;
    }
  }
}

at::Tensor read_at_level(const Interpreter& level, const at::Tensor& t) {
  torch::jit::Stack stack{t};
  substitute(level, stack, 1, nullptr, /*processing=*/false);
  return stack[0].toTensor();
}

} // namespace torchfunc
