#pragma once
// NOTE [In-place writes into fresh tensors]
// `out = torch.zeros(n); out[i] = x` or `buf.add_(x)` with x batched writes batched
// data into a tensor with no batch dimension. When `func` itself allocated that
// tensor while the level was live, it is *fresh*: nobody outside the vmap can see
// it, so the level may give it a batch dimension. A tensor captured from outside
// (a module buffer, a closed-over tensor) is not fresh and the write keeps raising.
//
// Fresh is a property of storage. Each vmap level keeps the set of storages that
// ops at the level allocated: the plain outputs of ops it sent below, less outputs
// that share an input's storage (views). A pointer in the set names either that
// storage or one allocated after it while the level was live, so the set never
// mistakes a captured storage for a fresh one.
//
// Promotion happens where a batching rule meets an op that writes into an argument it
// returns (self of an in-place op, out= tensors) that is plain and fresh while another
// argument is batched (batch norm's running stats are not returned: NOTE [Shared running
// stats take one update per example, in order]):
// the level copies the whole storage, N elements, into a buffer [B, N], one row per
// example, and remembers storage -> buffer. From then on every plain tensor at the
// level that uses that storage (self, its base, any view of it, taken before or
// after) enters each op as the BatchedTensor whose value is the buffer viewed with
// the tensor's own sizes, strides and offset, plus a leading batch stride N. So the
// write lands in every example and all aliases see it; the op still returns the
// tensor it wrote. vmap's output step reads a returned tensor the same way. The buffer is made
// with ops one level down, so a lower vmap level can promote it in its turn.
//
// Under grad levels below this one (grad(vmap(f))) a fresh tensor is a GradTensor of a
// lower level: its storage is the storage of the plain tensor it wraps, and the buffer
// is made from it with ops of that grad level, so gradients flow through the copy and
// the writes. A GradTensor lifted from outside its grad level is never fresh. A fresh
// BatchedTensor of a lower vmap level written with data batched at this level still
// raises: its storage holds all of that level's examples.
#include "../interpreter.h"

#include <ATen/core/Tensor.h>
#include <ATen/core/stack.h>

namespace torchfunc {

struct Call;

// The storages a vmap level saw allocated, and those it promoted.
struct FreshTensors;
std::shared_ptr<FreshTensors> make_fresh_tensors();

// Arguments whose storage the level promoted enter as BatchedTensors (the last n). `op`,
// when given, is refused if it would change a promoted self's shape or strides in place.
void substitute_promoted(const Interpreter& level, torch::jit::Stack& stack, size_t n,
                         const c10::OperatorHandle* op);
// An op with no batched argument at the level: continue below, and remember its fresh
// outputs (those sharing no storage with an argument).
void continue_below_recording(const Interpreter& level, const c10::OperatorHandle& op, torch::jit::Stack* stack);
// Promotes the written arguments (self of an in-place op, out= tensors) that are plain
// and fresh: each becomes the batched view in call.args. Returns (index, original).
using Promotions = c10::SmallVector<std::pair<size_t, at::Tensor>, 1>;
Promotions promote_written_arguments(const Interpreter& level, Call& call);
// An op returns the tensors it wrote: the originals, which the level now reads batched.
void return_promoted(const c10::FunctionSchema& schema, const Promotions& promoted, torch::jit::Stack& stack);
// The tensor as the level reads it: batched if its storage was promoted (vmap's outputs).
at::Tensor read_at_level(const Interpreter& level, const at::Tensor& t);

} // namespace torchfunc
