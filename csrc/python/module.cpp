// torchfunc._C: the only translation unit that includes pybind11 / torch/extension.h.
// Functions are thin: each forwards to the engine (see torchfunc/_C.pyi).
#include <torch/extension.h>

#include "../autodiff/duals.h"
#include "../autodiff/grad_tensor.h"
#include "../dispatch.h"
#include "../front_decompositions.h"
#include "../keys.h"
#include "../stack.h"
#include "../vmap/batched_tensor.h"
#include "../vmap/fresh_tensors.h"
#include "../vmap/fallback.h"
#include "../vmap/plumbing.h"
#include "../vmap/registry.h"
#include "../vmap/axis.h"

#include <ATen/ThreadLocalState.h>
#include <c10/core/GradMode.h>

#include <thread>

#include <sstream>

namespace torchfunc {
namespace {

Randomness parse_randomness(const std::string& r) {
  if (r == "error") return Randomness::Error;
  if (r == "same") return Randomness::Same;
  if (r == "different") return Randomness::Different;
  TORCH_CHECK_VALUE(false, "vmap: randomness must be 'error', 'same' or 'different', got '", r, "'");
}

// Registrations live as long as the process (they are never unregistered).
std::vector<std::unique_ptr<torch::Library>>& libraries() {
  static std::vector<std::unique_ptr<torch::Library>> libs;
  return libs;
}

std::unique_ptr<torch::Library> make_library(torch::Library::Kind kind, const char* ns, c10::DispatchKey key) {
  return std::make_unique<torch::Library>(kind, ns, key, __FILE__, __LINE__);
}

// Called once by torchfunc/__init__.py after it checked that our keys are free.
size_t install() {
  TORCH_CHECK(libraries().empty(), "torchfunc._C.install() ran twice");
  auto front = make_library(torch::Library::IMPL, "_", kFrontKey);
  auto back = make_library(torch::Library::IMPL, "_", kBackKey);
  auto grad = make_library(torch::Library::IMPL, "_", kGradKey);
  auto batched = make_library(torch::Library::IMPL, "_", kBatchedKey);
  auto rules = make_library(torch::Library::IMPL, "aten", kBatchedKey);
  auto front_decompositions = make_library(torch::Library::IMPL, "aten", kFrontKey);
  register_fallbacks(*front, *back, *grad);
  register_front_decompositions(*front_decompositions);
  register_batched_fallback(*batched);
  const auto count = register_rules(*rules);
  for (auto* lib : {&front, &back, &grad, &batched, &rules, &front_decompositions}) {
    libraries().push_back(std::move(*lib));
  }
  return count;
}

std::string describe(const at::Tensor& t) {
  std::ostringstream out;
  if (auto* b = maybe_batched(t)) {
    out << "BatchedTensor(level=" << b->level() << ", bdim=" << b->bdim() << ", " << describe(b->value()) << ")";
  } else if (auto* g = maybe_grad_tensor(t)) {
    out << "GradTensor(level=" << g->level() << (g->alive() ? "" : ", dead") << ", " << describe(g->value()) << ")";
  } else {
    out << "tensor" << t.sizes();
  }
  return out.str();
}

std::optional<int64_t> tensor_level(const at::Tensor& t) {
  if (auto* b = maybe_batched(t)) return b->level();
  if (auto* g = maybe_grad_tensor(t)) return g->level();
  return std::nullopt;
}

at::Tensor unwrap_one(const at::Tensor& t) {
  if (auto* b = maybe_batched(t)) return b->value();
  if (auto* g = maybe_grad_tensor(t)) return g->value();
  return t;
}

// Sets a grad level's records_ops to false for the lifetime of the guard, and restores
// what it was (nullopt: no level).
class UnrecordedLevel {
 public:
  explicit UnrecordedLevel(std::optional<int64_t> level) {
    if (!level.has_value()) return;
    auto& stack = local_stack();
    TORCH_CHECK(*level >= 1 && *level <= static_cast<int64_t>(stack.size()) &&
                    stack[*level - 1].kind() == Kind::Grad,
                "torchfunc internal error: autograd_grad's unrecorded_level ", *level, " is no grad level");
    interpreter_ = &stack[*level - 1];
    records_before_ = interpreter_->records_ops;
    interpreter_->records_ops = false;
  }
  ~UnrecordedLevel() {
    if (interpreter_ != nullptr) interpreter_->records_ops = records_before_;
  }
  UnrecordedLevel(const UnrecordedLevel&) = delete;
  UnrecordedLevel& operator=(const UnrecordedLevel&) = delete;

 private:
  Interpreter* interpreter_ = nullptr;
  bool records_before_ = true;
};

at::Tensor remove_batch_dim(const at::Tensor& output, int64_t level, int64_t batch_size, int64_t out_dim) {
  // A returned fresh tensor that batched data was written into (NOTE [In-place writes into fresh tensors]).
  const auto* interp = find_interpreter(level);
  const at::Tensor t = interp != nullptr && interp->kind() == Kind::Vmap ? read_at_level(*interp, output) : output;
  // An output already with its batch dim at out_dim is returned as it is, as torch.func
  // does (vmap(lambda x: x)(x) is x), without dispatching movedim, permute and as_strided.
  auto [value, bdim] = unwrap_at(t, level);
  if (!bdim.has_value()) {
    auto expanded = axis::materialize(t, std::nullopt, batch_size);
    return out_dim == 0 ? expanded : expanded.movedim(0, c10::maybe_wrap_dim(out_dim, expanded.dim()));
  }
  const int64_t dst = c10::maybe_wrap_dim(out_dim, value.dim());
  return *bdim == dst ? value : value.movedim(*bdim, dst);
}

// (kind, level, alive, bdim) of the outermost wrapper of t; nullopt for a plain tensor.
// bdim is nullopt for a GradTensor.
using WrapperInfo = std::tuple<std::string, int64_t, bool, std::optional<int64_t>>;
std::optional<WrapperInfo> wrapper_info(const at::Tensor& t) {
  if (auto* b = maybe_batched(t)) return WrapperInfo{"batched", b->level(), b->alive(), b->bdim()};
  if (auto* g = maybe_grad_tensor(t)) return WrapperInfo{"grad", g->level(), g->alive(), std::nullopt};
  return std::nullopt;
}

// (kind, level, batch_size, randomness, prev_mode) of the top interpreter; nullopt when
// the stack is empty. batch_size/randomness are set for vmap, prev_mode (the grad or
// forward-grad mode outside the level) for grad and jvp.
using InterpreterInfo = std::tuple<std::string, int64_t, std::optional<int64_t>, std::optional<std::string>,
                                   std::optional<bool>>;
std::optional<InterpreterInfo> top_interpreter_info() {
  if (local_stack().empty()) return std::nullopt;
  const auto& top = local_stack().back();
  switch (top.kind()) {
    case Kind::Vmap: {
      const auto r = top.vmap().randomness;
      return InterpreterInfo{kind_name(top.kind()), top.level(), top.vmap().batch_size,
                             r == Randomness::Error ? "error" : r == Randomness::Same ? "same" : "different",
                             std::nullopt};
    }
    case Kind::Grad:
      return InterpreterInfo{kind_name(top.kind()), top.level(), std::nullopt, std::nullopt, top.grad().prev_grad_mode};
    case Kind::Jvp:
      return InterpreterInfo{kind_name(top.kind()), top.level(), std::nullopt, std::nullopt,
                             top.jvp().prev_fwd_grad_mode};
    case Kind::Functionalize:
      return InterpreterInfo{kind_name(top.kind()), top.level(), std::nullopt, std::nullopt, std::nullopt};
  }
  return std::nullopt;
}

// Python context managers over the engine's RAII guards; `with` nests them strictly.
// lowered(): the top interpreter is set aside (as the back key does for an op) until exit.
struct PyLowered {
  std::optional<LowerGuard> guard;
};
// keys_excluded: `keys` excluded until exit. Made by
//   transforms_suspended(): our front and back keys, so ops on plain tensors run as if
//     no transform were active (printing uses it);
//   batched_key_excluded(): ops skip the batching rules of the vmap level being
//     processed and go to the level below, as a physical rule's calls do.
struct PyKeysExcluded {
  explicit PyKeysExcluded(c10::DispatchKeySet k) : keys(k) {}
  c10::DispatchKeySet keys;
  std::optional<c10::impl::ExcludeDispatchKeyGuard> guard;
};

} // namespace
} // namespace torchfunc

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace torchfunc;
  m.def("install", &install);
  m.def("push_vmap", [](int64_t batch_size, const std::string& randomness) {
    return push_interpreter(Kind::Vmap, VmapMeta{batch_size, parse_randomness(randomness), make_fresh_tensors()});
  });
  m.def("push_grad", [](bool prev_grad_mode) {
    return push_interpreter(Kind::Grad, GradMeta{prev_grad_mode});
  });
  m.def("push_jvp", [](bool prev_fwd_grad_mode) {
    return push_interpreter(Kind::Jvp, JvpMeta{prev_fwd_grad_mode});
  });
  m.def("push_functionalize", [](bool reapply_views) {
    return push_interpreter(Kind::Functionalize, FunctionalizeMeta{reapply_views});
  });
  m.def("pop", &pop_interpreter);
  m.def("current_level", &current_level);
  m.def("stack_depth", [] { return local_stack().size(); });
  m.def("stack_kinds", [] {
    std::vector<std::string> kinds;
    for (const auto& i : local_stack()) kinds.emplace_back(kind_name(i.kind()));
    return kinds;
  });
  m.def("add_batch_dim", [](const at::Tensor& t, int64_t bdim, int64_t level) {
    return make_batched(t, bdim, level);
  });
  m.def("remove_batch_dim", &remove_batch_dim);
  m.def("is_batched_tensor", [](const at::Tensor& t) { return maybe_batched(t) != nullptr; });
  m.def("batched_at", [](const at::Tensor& t, int64_t level) { return batched_at(t, level); });
  m.def("wrap_for_grad", [](const at::Tensor& t, int64_t level) { return wrap_for_grad(t, level); });
  m.def("unwrap_for_grad", &unwrap_for_grad);
  m.def("make_duals", &make_duals);
  m.def("unpack_duals", &unpack_duals);
  m.def("is_grad_tensor", [](const at::Tensor& t) { return maybe_grad_tensor(t) != nullptr; });
  m.def("tensor_level", &tensor_level);
  m.def("unwrap_one", &unwrap_one);
  m.def("describe", &describe);
  m.def("wrapper_info", &wrapper_info);
  m.def("top_interpreter_info", &top_interpreter_info);
  // True while an interpreter processes an op (the front key is excluded then), e.g. when
  // an op's Python autograd kernel runs at a grad level.
  m.def("processing_op", [] { return c10::impl::tls_is_dispatch_key_excluded(kFrontKey); });
  m.def("unwrap_batched", [](const at::Tensor& t, int64_t level) { return unwrap_at(t, level); });
  m.def("unwrap_if_dead", &unwrap_if_dead);
  pybind11::class_<PyLowered>(m, "lowered")
      .def(pybind11::init<>())
      .def("__enter__", [](PyLowered& self) {
        TORCH_CHECK(!local_stack().empty(), "torchfunc: internal error: lowered() with an empty stack");
        TORCH_CHECK(!self.guard.has_value(), "torchfunc: internal error: lowered() entered twice");
        self.guard.emplace();
      })
      .def("__exit__", [](PyLowered& self, const pybind11::args&) {
        self.guard.reset();
        return false;
      });
  pybind11::class_<PyKeysExcluded>(m, "keys_excluded")
      .def("__enter__", [](PyKeysExcluded& self) { self.guard.emplace(self.keys); })
      .def("__exit__", [](PyKeysExcluded& self, const pybind11::args&) {
        self.guard.reset();
        return false;
      });
  m.def("transforms_suspended", [] { return std::make_unique<PyKeysExcluded>(front_and_back()); });
  m.def("batched_key_excluded", [] { return std::make_unique<PyKeysExcluded>(c10::DispatchKeySet(kBatchedKey)); });
  m.def("batched_key_name", [] { return std::string(c10::toString(kBatchedKey)); });
  m.def("set_fallback_warning", &set_fallback_warning);
  m.def("set_fallback_enabled", &set_fallback_enabled);
  m.def("fallback_count", &fallback_count);
  m.def("take_fallback_ops", &take_fallback_ops);
  // The engine called from C++: torch.autograd.grad refuses outputs that carry the
  // subclass marker (NOTE in keys.h). Unused inputs give None.
  // unrecorded_level: NOTE [A grad level's last backward records nothing at its level].
  m.def("autograd_grad", [](const std::vector<at::Tensor>& outputs, const std::vector<at::Tensor>& inputs,
                            const std::vector<std::optional<at::Tensor>>& grad_outputs, bool retain_graph,
                            bool create_graph, std::optional<int64_t> unrecorded_level) {
    std::vector<at::Tensor> grads_in;
    for (const auto& g : grad_outputs) grads_in.push_back(g.value_or(at::Tensor()));
    std::vector<at::Tensor> grads;
    {
      UnrecordedLevel unrecorded(unrecorded_level);
      pybind11::gil_scoped_release release;
      grads = torch::autograd::grad(outputs, inputs, grads_in, retain_graph, create_graph, /*allow_unused=*/true);
    }
    std::vector<std::optional<at::Tensor>> out;
    for (auto& g : grads) out.push_back(g.defined() ? std::optional<at::Tensor>(std::move(g)) : std::nullopt);
    return out;
  });
  m.def("unknown_rule_ops", [] { return unknown_rule_ops(); });
  // NOTE [The rule registry] (vmap/registry.cpp)
  auto as_tuple = [](const OpRecord& r) { return std::make_tuple(r.op, r.kind, r.source, r.why); };
  m.def("explain", [as_tuple](const std::string& name, const std::string& overload) {
    auto op = c10::Dispatcher::singleton().findOp({name, overload});
    if (!op) return std::optional<std::tuple<std::string, std::string, std::string, std::string>>();
    return std::optional(as_tuple(explain_op(*op)));
  });
  m.def("registry", [as_tuple](const std::string& ns) {
    std::vector<std::tuple<std::string, std::string, std::string, std::string>> out;
    for (const auto& r : registry(ns)) out.push_back(as_tuple(r));
    return out;
  });
  m.def("record_rule", [](const std::string& op, const std::string& kind, const std::string& source,
                          const std::string& why) { record_rule({op, kind, source, why}); });
  // Test hook: calls fn on a new thread that inherits this thread's at::ThreadLocalState,
  // as autograd's device threads and at::launch do.
  m.def("_call_on_new_thread", [](pybind11::function fn) {
    at::ThreadLocalState state;
    pybind11::object result;
    std::exception_ptr error;
    {
      pybind11::gil_scoped_release release;
      std::thread worker([&] {
        at::ThreadLocalStateGuard guard(state);
        pybind11::gil_scoped_acquire acquire;
        try {
          result = fn();
        } catch (...) {
          error = std::current_exception();
        }
      });
      worker.join();
    }
    if (error) std::rethrow_exception(error);
    return result;
  });
  m.def("built_with_torch", [] { return std::string(TORCHFUNC_BUILT_WITH_TORCH); });
  m.def("key_map", [] {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& kr : kKeyRoles) out.emplace_back(kr.role, c10::toString(kr.key));
    return out;
  });
}
