#include "errors.h"

#include <sstream>

namespace torchfunc::errors {

std::string escaped_tensor() {
  return "torchfunc: a BatchedTensor was used outside of the vmap that created it. "
         "A tensor created inside a function being vmapped must be returned from it "
         "(vmap then turns it back into a plain tensor); storing it in an outer variable "
         "or a list and using it later is not supported.";
}

std::string dead_batched_tensor(const std::string& op_name) {
  return "torchfunc: " + op_name + " received a BatchedTensor whose vmap has already exited "
         "(it escaped that vmap through a global, a closure or a list). Return the tensor from "
         "the vmapped function instead, and use the plain tensor vmap gives back.";
}

std::string no_stack_on_thread() {
  return "torchfunc: an operator reached torchfunc's dispatch keys on a thread that has no "
         "torchfunc interpreter stack (the keys were propagated but the stack was not). "
         "This would silently compute without the transform, so it is refused. Please report "
         "how this thread was started.";
}

std::string mixed_with_torch_func(const std::string& op_name) {
  return "torchfunc: " + op_name + " ran under both a torchfunc transform and a torch.func "
         "transform. The two libraries keep separate interpreter stacks and cannot see each "
         "other's wrapped tensors, so nesting them gives wrong results. Use torchfunc (or "
         "torch.func) for the whole composition.";
}

std::string inplace_on_unbatched(const std::string& op_name) {
  return "vmap: " + op_name + " writes in place into a tensor that is not batched, using a "
         "value that is batched: the result would need a batch dimension the tensor does not "
         "have. Use the out-of-place version of the op, or create the tensor from a batched "
         "one (e.g. `torch.zeros_like(x)` or `x.new_zeros(shape)` instead of `torch.zeros(shape)`).";
}

std::string random_in_error_mode(const std::string& op_name) {
  return "vmap: called random operation " + op_name + " while in randomness='error' mode. "
         "Pass randomness='different' to vmap for independent draws per batch element, or "
         "randomness='same' for one draw shared by all elements.";
}

std::string random_same_with_batched_input(const std::string& op_name) {
  return "vmap: randomness='same' cannot be used for " + op_name + " because one of its "
         "tensor inputs is batched, so the draws cannot be the same across the batch. Use "
         "randomness='different', or make that input unbatched.";
}

std::string random_inplace_unbatched(const std::string& op_name) {
  return "vmap: " + op_name + " fills an unbatched tensor in place, but randomness='different' "
         "needs one draw per batch element. Create the tensor from a batched one "
         "(e.g. `torch.empty_like(x)`) or use randomness='same'.";
}

std::string data_dependent(const std::string& op_name) {
  return "vmap: " + op_name + " needs the value of a batched tensor (data-dependent control "
         "flow or output shape), which differs per batch element. Rewrite without Python "
         "control flow on tensor values (e.g. torch.where instead of `if`), or move the call "
         "outside of vmap.";
}

std::string fallback_disabled(const std::string& op_name) {
  return "vmap: " + op_name + " has no batching rule and the per-example fallback is disabled "
         "(torchfunc._C.set_fallback_enabled(False)).";
}

std::string no_fallback_possible(const std::string& op_name, const std::string& why) {
  return "vmap: " + op_name + " has no batching rule, and the per-example fallback cannot run "
         "it because " + why + ". Please file an issue with torchfunc.";
}

std::string storage_access(const char* tensor_kind) {
  // torch.func's own sentence first (users match it), then ours.
  return std::string("Cannot access data pointer of Tensor that doesn't have storage. ") +
         "torchfunc: cannot access the storage of a " + tensor_kind +
         " inside a transform: it has none of its own (for example .data_ptr(), .numpy(), .storage(), "
         "or an op that reads the values of a tensor argument, such as tensor_split with tensor "
         "indices). Return the tensor from the transformed function and use it outside, or pass "
         "such arguments as Python values.";
}

std::string ragged_outputs(const std::string& op_name, size_t output, c10::IntArrayRef first,
                           c10::IntArrayRef other) {
  std::ostringstream out;
  out << "vmap: " << op_name << " has no batching rule, and running it once per example gave its output "
      << output << " a different shape per example (" << first << " for one, " << other
      << " for another), which cannot be stacked into one batched tensor: the shape depends on the "
         "values of a batched input. Keep that input unbatched (in_dims=None) or call the op outside vmap.";
  return out.str();
}

std::string mutation_of_captured(const std::string& transform, const std::string& op_name) {
  return transform + ": " + op_name + " writes in place into a tensor that the transformed function "
         "captured from outside (it is not an input of the function). Pass the tensor as an "
         "input, or clone it inside the function before writing to it.";
}

} // namespace torchfunc::errors
