#include "errors.h"

#include "stack.h"

#include <algorithm>
#include <sstream>

namespace torchfunc::errors {

// NOTE [torch.func's sentence first]
// Users' tests catch torch.func's errors by class and match their messages. For an error
// torch.func also raises, ours starts with torch.func's own text, unchanged, then says
// what torchfunc adds after "torchfunc: ". Where torch.func raises nothing (or fails in
// its own code) our message stands alone.
namespace {

std::string with_torch_func_text(const std::string& theirs, const std::string& ours) {
  const char last = theirs.empty() ? '.' : theirs.back();
  const bool ends_sentence = last == '.' || last == '!' || last == '?';
  return theirs + (ends_sentence ? " " : ". ") + "torchfunc: " + ours;
}

// "aten::mul_.Tensor" -> "aten::mul_"
std::string without_overload(const std::string& op_name) {
  const auto dot = op_name.find('.');
  return dot == std::string::npos ? op_name : op_name.substr(0, dot);
}

// "aten::mul_.Tensor" -> "Tensor"
std::string overload_of(const std::string& op_name) {
  const auto dot = op_name.find('.');
  return dot == std::string::npos ? std::string() : op_name.substr(dot + 1);
}

bool is_one_of(const std::string& name, std::initializer_list<const char*> names) {
  return std::any_of(names.begin(), names.end(), [&](const char* n) { return name == n; });
}

// torch.func's in-place refusal, with the op (or "inplace arithmetic") named as its rule
// for that op names it, and "in a vmap" or "at level N" as that rule says it.
std::string torch_func_inplace_text(const std::string& name, const std::string& where) {
  return "vmap: " + name + "(self, *extra_args) is not possible because there exists a Tensor `other` "
         "in extra_args that has more elements than `self`. This happened due to `other` being vmapped "
         "over but `self` not being vmapped over " + where + ". Please try to use out-of-place operators "
         "instead of " + name + ". If said operator is being called inside the PyTorch framework, please "
         "file a bug report instead.";
}

// The vmap level whose rule is running: rules run with their level on top of the stack.
std::string at_level() {
  return "at level " + std::to_string(local_stack().size());
}

const char* const kDynamicShape =
    "vmap: We do not support batching operators that can output dynamic shape. Attempted to vmap over ";

} // namespace

std::string escaped_tensor() {
  return with_torch_func_text(
         "Either your tensor may have escaped from inside a function being vmapped and this is a user "
         "error (see https://pytorch.org/functorch/stable/ux_limitations.html), or there is an internal "
         "functorch error in `gen_vmap_plumbing` Please file an issue if it looks like the latter",
         "a BatchedTensor was used outside of the vmap that created it. "
         "A tensor created inside a function being vmapped must be returned from it "
         "(vmap then turns it back into a plain tensor); storing it in an outer variable "
         "or a list and using it later is not supported.");
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

std::string promoted_metadata_change(const std::string& op_name) {
  return "vmap: " + op_name + " would change the shape or strides in place of a tensor that became batched when "
         "batched data was written into it. Use the out-of-place version of the op (e.g. `t = t.unsqueeze(0)` "
         "instead of `t.unsqueeze_(0)`).";
}

namespace {
std::string captured_text(const std::string& op_name) {
  return op_name + " writes in place into a tensor that is not batched, using a value that "
         "is batched: the result would need a batch dimension the tensor does not have. The tensor comes from "
         "outside the vmapped function (only tensors the function creates itself take a batch dimension when "
         "batched data is written into them). Use the out-of-place version of the op, or write into a copy "
         "made inside the function (e.g. `t = t.clone()`).";
}
} // namespace

std::string out_into_unbatched(const std::string& op_name) {
  return with_torch_func_text("Batching rule not implemented for " + op_name +
                              "; the fallback path doesn't work on out= or view ops.", captured_text(op_name));
}

std::string inplace_on_unbatched(const std::string& op_name) {
  // After torch.func's text (which says "vmap:" already) ours starts with the op.
  const std::string ours = captured_text(op_name);
  const std::string base = without_overload(op_name);
  const std::string overload = overload_of(op_name);
  if (overload == "out" || (overload.size() > 4 && overload.substr(overload.size() - 4) == "_out")) {
    return out_into_unbatched(op_name);
  }
  // torch.func's rules for these name the op "inplace arithmetic".
  if (is_one_of(op_name, {"aten::sub_.Tensor", "aten::mul_.Tensor", "aten::div_.Tensor", "aten::div_.Tensor_mode",
                          "aten::true_divide_.Tensor", "aten::copy_", "aten::masked_fill_.Scalar",
                          "aten::clamp_min_.Tensor", "aten::clamp_max_.Tensor", "aten::logical_and_",
                          "aten::logical_or_", "aten::logical_xor_"})) {
    return with_torch_func_text(torch_func_inplace_text("inplace arithmetic", "in a vmap"), ours);
  }
  // ... these by their bare name.
  if (is_one_of(base, {"aten::index_add_", "aten::index_fill_", "aten::index_put_", "aten::scatter_add_",
                       "aten::scatter_reduce_", "aten::fill_"})) {
    return with_torch_func_text(torch_func_inplace_text(base.substr(6), "in a vmap"), ours);
  }
  // torch.func's add_, atan2_ and copysign_ fail in the kernel with the physical shapes
  // ("output with shape [4] doesn't match the broadcast shape [3, 4]"), which we do not have here.
  if (is_one_of(base, {"aten::add_", "aten::atan2_", "aten::copysign_"})) {
    return "vmap: " + ours;
  }
  // Every other in-place op goes through torch.func's generic in-place plumbing.
  return with_torch_func_text(torch_func_inplace_text(base, at_level()), ours);
}

std::string random_in_error_mode(const std::string& op_name) {
  return with_torch_func_text(
      "vmap: called random operation while in randomness error mode. Please either use the 'same' or "
      "'different' randomness flags on vmap or perform the randomness operation out of vmap",
      "the random operation was " + op_name + ". Pass randomness='different' to vmap for independent "
      "draws per batch element, or randomness='same' for one draw shared by all elements.");
}

std::string random_same_with_batched_input(const std::string& op_name) {
  return with_torch_func_text(
      "Vmap does not currently support same randomness with a batched tensor input. Please file an "
      "issue with functorch",
      "randomness='same' cannot be used for " + op_name + " because one of its tensor inputs is "
      "batched, so the draws cannot be the same across the batch. Use randomness='different', or make "
      "that input unbatched.");
}

std::string random_inplace_unbatched(const std::string& op_name) {
  const std::string ours = op_name + " fills an unbatched tensor in place, but randomness='different' "
         "needs one draw per batch element. Create the tensor from a batched one "
         "(e.g. `torch.empty_like(x)`) or use randomness='same'.";
  if (op_name == "aten::bernoulli_.Tensor") {  // its probabilities are batched
    return with_torch_func_text(torch_func_inplace_text("inplace bernoulli", "in a vmap"), ours);
  }
  return with_torch_func_text(
      "vmap: Cannot ask for different inplace randomness on an unbatched tensor. This will appear like "
      "same randomness. If this is necessary for your usage, please file an issue with functorch.",
      ours);
}

std::string data_dependent(const std::string& op_name) {
  const std::string ours = op_name + " needs the value of a batched tensor (data-dependent "
         "control flow or output shape), which differs per batch element. Rewrite without Python control "
         "flow on tensor values (e.g. torch.where instead of `if`), move the call outside of vmap, or pass "
         "vmap(..., chunk_size=1), which runs the function once per example on plain slices.";
  const std::string base = without_overload(op_name);
  std::string theirs;
  if (op_name == "aten::item") {
    theirs = "vmap: It looks like you're calling .item() on a Tensor. We don't support vmap over calling "
             ".item() on a Tensor, please try to rewrite what you're doing with other operations. If error "
             "is occurring somewhere inside PyTorch internals, please file a bug report.";
  } else if (op_name == "aten::_local_scalar_dense") {
    theirs = "vmap: It looks like you're either (1) calling .item() on a Tensor or (2) attempting to use a "
             "Tensor in some data-dependent control flow or (3) encountering this error in PyTorch "
             "internals. For (1): we don't support vmap over calling .item() on a Tensor, please try to "
             "rewrite what you're doing with other operations. For (2): we don't support data-dependent "
             "control flow in vmap yet, please file an issue at https://github.com/pytorch/pytorch/issues . "
             "For (3): please file an issue.";
  } else if (op_name == "aten::is_nonzero") {
    theirs = "vmap: It looks like you're attempting to use a Tensor in some data-dependent control flow. "
             "We don't support that yet, please file an issue at https://github.com/pytorch/pytorch/issues .";
  } else if (op_name == "aten::masked_select") {
    theirs = "vmap: Attempted to vmap over `mask` in torch.masked_select(self, mask) We cannot support this "
             "because for each batch this would return a differently shaped Tensor. Please file an issue at "
             "https://github.com/pytorch/pytorch/issues if you need this feature.";
  } else if (base == "aten::index") {  // a batched boolean mask
    theirs = "vmap: We do not support batching operators that can support dynamic shape. Attempting to "
             "batch over indexing with a boolean mask.";
  } else if (op_name == "aten::equal") {
    theirs = "Batching rule not implemented for aten::equal. We could not generate a fallback.";
  } else if (op_name == "aten::allclose") {
    theirs = "vmap over torch.allclose isn't supported yet. Please file an issue at "
             "https://github.com/pytorch/pytorch/issues if you need this feature.";
  } else if (base == "aten::_assert_async") {
    theirs = "Batching rule not implemented for " + op_name +
             ". The fallback path does not support operations with no returns.";
  } else if (is_one_of(base, {"aten::nonzero", "aten::_unique", "aten::_unique2", "aten::unique_dim",
                              "aten::unique_consecutive", "aten::unique_dim_consecutive"})) {
    theirs = kDynamicShape + op_name + ". Please file an issue at https://github.com/pytorch/pytorch/issues "
             "if you need this feature.";
  } else {  // torch.func runs these per example (or fails in its fallback)
    return "vmap: " + ours;
  }
  return with_torch_func_text(theirs, ours);
}

std::string fallback_disabled(const std::string& op_name) {
  return "vmap: " + op_name + " has no batching rule and the per-example fallback is disabled "
         "(torchfunc._C.set_fallback_enabled(False)).";
}

std::string no_fallback_possible(const std::string& op_name, const std::string& why) {
  const std::string ours = op_name + " has no batching rule, and the per-example fallback cannot "
         "run it because " + why + ". Please file an issue with torchfunc.";
  // torch.func's fallback refuses views and out= ops in one sentence.
  if (why == "it returns a view of its input" || why == "it writes into an argument other than self") {
    return with_torch_func_text("Batching rule not implemented for " + op_name +
                                "; the fallback path doesn't work on out= or view ops.", ours);
  }
  return "vmap: " + ours;
}

std::string storage_access(const char* tensor_kind) {
  // torch.func's own sentence first (users match it), then ours.
  return std::string("Cannot access data pointer of Tensor that doesn't have storage. ") +
         "torchfunc: cannot access the storage of a " + tensor_kind +
         " inside a transform: it has none of its own (for example .data_ptr(), .numpy(), .storage(), "
         "or an op whose kernel reads the values of a tensor argument through its data). Return the tensor from the transformed function and use it outside, or pass "
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
  return with_torch_func_text(
      "During a grad (vjp, jvp, grad, etc) transform, the function provided attempted to call in-place "
      "operation (" + op_name + ") that would mutate a captured Tensor. This is not supported; please "
      "rewrite the function being transformed to explicitly accept the mutated Tensor(s) as inputs.",
      transform + ": " + op_name + " writes in place into a tensor that the transformed function "
      "captured from outside (it is not an input of the function). Pass the tensor as an "
      "input, or clone it inside the function before writing to it.");
}

} // namespace torchfunc::errors
