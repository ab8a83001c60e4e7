#pragma once
// NOTE [Interpreters and levels]
// Each transform a user enters (vmap, grad, jvp, functionalize) pushes one
// Interpreter onto the thread's stack. Its *level* is its depth (1 = bottom).
// An interpreter answers two questions about an operator call:
//   process(op, stack)       the op reached the front key with this interpreter on
//                            top: run it "at this level" (batching rules for vmap,
//                            autograd recording for grad), with the transform range
//                            excluded except for this interpreter's own keys.
//   send_to_next(op, stack)  the op fell through to the back key: this level is
//                            done with it; pass it to the interpreter below
//                            (grad unwraps its GradTensors first and rewraps after).
// The interface is a tagged struct with a switch, not virtual calls: adding a
// transform means one Kind, one Meta struct and two functions. grad and jvp share
// theirs (both are autograd levels of GradTensors: grad records a graph, jvp
// carries forward gradients); only the mode they restore below them differs.
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <memory>
#include <variant>

namespace torchfunc {

enum class Kind : uint8_t { Vmap, Grad, Jvp, Functionalize };
enum class Randomness : uint8_t { Error, Same, Different };

const char* kind_name(Kind kind);

struct FreshTensors;  // vmap/fresh_tensors.h
struct VmapMeta {
  int64_t batch_size;
  Randomness randomness;
  // Shared by the copies of the stack that other threads build (NOTE [In-place writes
  // into fresh tensors]).
  std::shared_ptr<FreshTensors> fresh;
};
struct GradMeta {
  bool prev_grad_mode; // grad mode outside the transform (see autodiff/interpreter.cpp)
};
struct JvpMeta {
  bool prev_fwd_grad_mode; // forward-grad mode outside the transform
};
struct FunctionalizeMeta {
  bool reapply_views; // remove='mutations' (views stay views); false: views become *_copy ops
};
using Meta = std::variant<VmapMeta, GradMeta, JvpMeta, FunctionalizeMeta>;

class Interpreter {
 public:
  Interpreter(Kind kind, int64_t level, Meta meta)
      : kind_(kind), level_(level), meta_(meta), alive_(std::make_shared<bool>(true)) {}

  Kind kind() const { return kind_; }
  int64_t level() const { return level_; }
  const VmapMeta& vmap() const { return std::get<VmapMeta>(meta_); }
  const GradMeta& grad() const { return std::get<GradMeta>(meta_); }
  const JvpMeta& jvp() const { return std::get<JvpMeta>(meta_); }
  const FunctionalizeMeta& functionalize() const { return std::get<FunctionalizeMeta>(meta_); }

  // NOTE [Life handles]
  // Every BatchedTensor and GradTensor holds its interpreter's life handle. Popping
  // the interpreter sets it to false, so a tensor that escaped its transform is
  // recognised as dead even if a new interpreter later reuses the same level.
  const std::shared_ptr<bool>& life_handle() const { return alive_; }
  void kill() { *alive_ = false; }

  // The TLS key set as it was when the front key handed the current op to this
  // interpreter; the back key restores it before sending the op on. Front and back
  // calls at one level nest strictly, so one slot per interpreter suffices.
  c10::impl::LocalDispatchKeySet saved_tls = c10::impl::tls_local_dispatch_key_set();
  // The op the front key handed to this interpreter (same nesting as saved_tls): an
  // op that reaches the back key while another is processed was issued by a kernel.
  const c10::FunctionSchema* processed_op = nullptr;
  // NOTE [A grad level's last backward records nothing at its level]
  // grad(f) differentiates f's output once, with create_graph=True so that the levels
  // below (outer grad levels, and torch's autograd outside every transform) record the
  // backward's ops as they pass down. The graph those ops would build at the grad level
  // itself is dead as soon as the transform returns, so while that backward runs
  // (_C.autograd_grad with unrecorded_level) the level sends every op straight to the
  // next one (autodiff_process): no autograd kernel runs at it, so no nodes and no saved
  // tensors. The results are still lifted (GradTensors without history), so the check
  // that refuses writes into captured tensors tells a backward formula's own buffers
  // from the caller's tensors as it does in the forward (NOTE [Captured tensors are
  // immutable]). Grad mode is untouched, so the levels below record as before.
  // Measured (benchmarks/, interleaved A/B in one process): 7-9% off per-sample
  // gradients of an MLP and off hessian; leaving the results unlifted saved 1-3% more
  // but let a hook write into a captured tensor unrefused. hessian's first backward,
  // which its second differentiates, records, as vjp's and jacrev's do (vjp_fn may be
  // called again); its second runs after the level is popped (NOTE [hessian at one grad
  // level], jacobians.py). A worker thread's copy of the stack (CUDA backward) keeps
  // recording, which is correct, only slower.
  bool records_ops = true;

  void process(const c10::OperatorHandle& op, torch::jit::Stack* stack);
  void send_to_next(const c10::OperatorHandle& op, torch::jit::Stack* stack);

 private:
  Kind kind_;
  int64_t level_;
  Meta meta_;
  std::shared_ptr<bool> alive_;
};

// Per-transform halves of process/send_to_next (vmap/interpreter.cpp,
// autodiff/interpreter.cpp).
void vmap_process(const Interpreter& self, const c10::OperatorHandle& op, torch::jit::Stack* stack);
void vmap_send_to_next(const Interpreter& self, const c10::OperatorHandle& op, torch::jit::Stack* stack);
// grad and jvp (autodiff/interpreter.cpp).
void autodiff_process(const Interpreter& self, const c10::OperatorHandle& op, torch::jit::Stack* stack);
void autodiff_send_to_next(const Interpreter& self, const c10::OperatorHandle& op, torch::jit::Stack* stack);
// functionalize (functionalize/interpreter.cpp).
void functionalize_process(const Interpreter& self, const c10::OperatorHandle& op, torch::jit::Stack* stack);
void functionalize_send_to_next(const Interpreter& self, const c10::OperatorHandle& op, torch::jit::Stack* stack);

// Keys an interpreter excludes while it processes an op: the transform range less
// kBackKey, autocast and `own`.
c10::DispatchKeySet keys_to_exclude(c10::DispatchKeySet own);

} // namespace torchfunc
