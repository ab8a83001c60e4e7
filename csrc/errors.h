#pragma once
// User-facing error texts of the engine, in one place. Each says what happened,
// why the transform cannot do it, and what to write instead. Where torch.func raises
// the same error, the text starts with torch.func's own, unchanged (users match it;
// NOTE [torch.func's sentence first] in errors.cpp).
#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <string>

namespace torchfunc::errors {

std::string escaped_tensor();
std::string dead_batched_tensor(const std::string& op_name);
std::string no_stack_on_thread();
std::string mixed_with_torch_func(const std::string& op_name);
std::string inplace_on_unbatched(const std::string& op_name);
// The same for the out tensor of an out= op (any overload name: out, values, grad_input, ...).
std::string out_into_unbatched(const std::string& op_name);
// An in-place metadata change (unsqueeze_, resize_, set_) of a tensor that became batched
// when batched data was written into it (NOTE [In-place writes into fresh tensors]).
std::string promoted_metadata_change(const std::string& op_name);
std::string random_in_error_mode(const std::string& op_name);
std::string random_same_with_batched_input(const std::string& op_name);
std::string random_inplace_unbatched(const std::string& op_name);
std::string data_dependent(const std::string& op_name);
std::string fallback_disabled(const std::string& op_name);
std::string no_fallback_possible(const std::string& op_name, const std::string& why);
// Every wrapper carries this text; callers build it once per kind (one is made per op).
std::string storage_access(const char* tensor_kind);
// The per-example loop got outputs of different shapes for different examples.
std::string ragged_outputs(const std::string& op_name, size_t output, c10::IntArrayRef first,
                           c10::IntArrayRef other);
std::string mutation_of_captured(const std::string& transform, const std::string& op_name);

} // namespace torchfunc::errors
