// NOTE [The rule registry]
// Which code runs an op under vmap is decided in a few places, in this order:
//   1. vmap_process: a random op (Tag::nondeterministic_seeded) that is not composite
//      meets the randomness modes before any rule (vmap/interpreter.cpp);
//   2. a kernel on kBatchedKey: a family-table rule (rules/*.cpp, one line per op),
//      the generic pointwise rule (every op tagged pointwise and the in-place forms of
//      those), random_kernel, or a Python rule (custom_ops.py);
//   3. the batched fallback (vmap/fallback.cpp), for every other op: a composite op runs
//      its CompositeImplicitAutograd kernel on the BatchedTensors; an in-place op runs
//      its functional form and copies into self; anything else loops over the examples,
//      or is refused when a loop cannot run it.
// register_rules records every kernel of step 2 here as it registers it, with the file
// of its table; explain_op answers for any op from these records, or from the same
// tests the batched fallback makes. torchfunc.explain, the coverage report and the
// family tables of docs/writing_batching_rules.md read this registry, and
// test_registry.py checks the docs and the xfail reasons against it.
#include "registry.h"

#include "../op_traits.h"
#include "fallback.h"

#include <algorithm>
#include <mutex>
#include <unordered_map>

namespace torchfunc {
namespace {

std::string full_name(const c10::OperatorName& name) {
  return name.overload_name.empty() ? name.name : name.name + "." + name.overload_name;
}

std::mutex& records_mutex() {
  static std::mutex m;
  return m;
}

std::unordered_map<std::string, OpRecord>& records() {
  static std::unordered_map<std::string, OpRecord> r;
  return r;
}

} // namespace

void record_rule(OpRecord record) {
  std::lock_guard<std::mutex> lock(records_mutex());
  auto key = record.op;
  records()[key] = std::move(record);
}

OpRecord explain_op(const c10::OperatorHandle& op) {
  const auto name = full_name(op.schema().operator_name());
  {
    std::lock_guard<std::mutex> lock(records_mutex());
    auto it = records().find(name);
    if (it != records().end()) return it->second;
  }
  if (is_composite_implicit(op)) {
    return {name, "decomposition", "its CompositeImplicitAutograd kernel (vmap/fallback.cpp)",
            "a composite op: its kernel runs on the BatchedTensors and each op it calls meets "
            "its own rule (torchfunc.explain those)"};
  }
  if (auto functional = functional_form(op)) {
    return {name, "in-place-of", "vmap/fallback.cpp (inplace_through_functional)",
            "an in-place op without a rule: its functional form " +
                full_name(functional->schema().operator_name()) + " runs, and the result is copied into self"};
  }
  if (auto functional = out_functional_form(op)) {
    return {name, "out-of", "vmap/fallback.cpp (out_through_functional)",
            "an out= op without a rule: its functional form " + full_name(functional->schema().operator_name()) +
                " runs, and each result is copied into its out tensor"};
  }
  if (auto refusal = loop_refusal(op)) {
    return {name, "refused", "vmap/fallback.cpp (loop_rule)",
            "no rule, and the per-example loop cannot run it: " + *refusal};
  }
  return {name, "loop", "vmap/fallback.cpp (loop_rule)",
          "no rule: the per-example fallback runs it once per example and stacks the results (slow)"};
}

std::vector<OpRecord> registry(const std::string& ns) {
  std::vector<OpRecord> out;
  const auto prefix = ns + "::";
  for (const auto& name : c10::Dispatcher::singleton().getAllOpNames()) {
    if (name.name.rfind(prefix, 0) != 0) continue;
    if (auto op = c10::Dispatcher::singleton().findOp(name)) out.push_back(explain_op(*op));
  }
  std::sort(out.begin(), out.end(), [](const OpRecord& a, const OpRecord& b) { return a.op < b.op; });
  return out;
}

} // namespace torchfunc
