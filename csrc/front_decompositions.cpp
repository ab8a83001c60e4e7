// NOTE [Decompositions at the front key]
// A few composite ops take a path, inside their composite kernel, that no level can
// batch or differentiate (a fused opaque kernel, a data-dependent shape). A kernel on
// kFrontKey for such an op runs before any level sees it, so it can take another path
// to the same result, made of ops that every level handles. The front key is only live
// while a transform is active; outside, torch's own kernel runs. Each op here has its
// NOTE below and its tests.
//
// NOTE [LSTM under transforms]
// nn.LSTM reaches aten::lstm, whose kernel picks a fused layer: oneDNN's
// mkldnn_rnn_layer on CPU, cuDNN on CUDA. Those are opaque kernels with no batching
// rule, and their backward sums the weight gradients over the RNN batch, so neither
// vmap nor per-sample gradients could see through them (the loop was the only way).
// While a transform is active, the front key runs this decomposition of lstm instead,
// before any level sees the op: the math of torch's generic CPU path, step by step,
//   gates = x W_ih^T + b_ih + h W_hh^T + b_hh,   i, f, g, o = gates.chunk(4)
//   c' = sigmoid(f) c + sigmoid(i) tanh(g),      h' = sigmoid(o) tanh(c')   (W_hr h' with proj_size)
// with the input projection of a whole layer done in one linear, dropout between
// layers as torch applies it, reversed directions, and packed sequences (lstm.data),
// whose batch shrinks step by step. Every op meets its own batching rule and autograd
// formula. Outside every transform the front key is not live and torch's kernel runs.
#include "front_decompositions.h"

#include "dispatch.h"

#include "autodiff/grad_tensor.h"
#include "vmap/batched_tensor.h"

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Reduction.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/dropout.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/nll_loss_nd.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/true_divide.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>

#include <vector>

namespace torchfunc {
namespace {

struct CellParams {
  at::Tensor w_ih, w_hh, b_ih, b_hh, w_hr;  // biases and w_hr may be undefined
};

std::vector<CellParams> cell_params(at::TensorList params, bool has_biases, int64_t num_layers, bool bidirectional) {
  const int64_t directions = bidirectional ? 2 : 1;
  const int64_t cells = num_layers * directions;
  TORCH_CHECK(cells > 0 && static_cast<int64_t>(params.size()) % cells == 0,
              "lstm: expected the parameters of ", cells, " cells, got ", params.size(), " tensors");
  const int64_t per_cell = static_cast<int64_t>(params.size()) / cells;
  const int64_t base = has_biases ? 4 : 2;
  TORCH_CHECK(per_cell == base || per_cell == base + 1, "lstm: expected ", base, " or ", base + 1,
              " parameters per cell, got ", per_cell);
  std::vector<CellParams> out;
  for (int64_t c = 0; c < cells; ++c) {
    const auto* p = params.data() + c * per_cell;
    CellParams cell{p[0], p[1]};
    if (has_biases) {
      cell.b_ih = p[2];
      cell.b_hh = p[3];
    }
    if (per_cell == base + 1) cell.w_hr = p[base];
    out.push_back(cell);
  }
  return out;
}

// One step from precomputed input gates.
std::pair<at::Tensor, at::Tensor> step(const at::Tensor& input_gates, const at::Tensor& h, const at::Tensor& c,
                                       const CellParams& p) {
  const auto gates = input_gates + at::linear(h, p.w_hh, p.b_hh);
  const auto chunks = gates.chunk(4, -1);
  const auto c_next = chunks[1].sigmoid() * c + chunks[0].sigmoid() * chunks[2].tanh();
  auto h_next = chunks[3].sigmoid() * c_next.tanh();
  if (p.w_hr.defined()) h_next = at::linear(h_next, p.w_hr);
  return {h_next, c_next};
}

struct DirectionResult {
  at::Tensor output, h, c;
};

// A padded sequence [T, B, I], forward or reversed.
DirectionResult run_padded(const at::Tensor& input, at::Tensor h, at::Tensor c, const CellParams& p, bool reverse) {
  const auto input_gates = at::linear(input, p.w_ih, p.b_ih);
  const int64_t steps = input.size(0);
  std::vector<at::Tensor> outputs(steps);
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t t = reverse ? steps - 1 - s : s;
    std::tie(h, c) = step(input_gates.select(0, t), h, c, p);
    outputs[t] = h;
  }
  auto output = steps > 0 ? at::stack(outputs) : h.unsqueeze(0).narrow(0, 0, 0);
  return {output, h, c};
}

// A packed sequence: `data` [sum(batch_sizes), I], examples sorted by decreasing length.
DirectionResult run_packed(const at::Tensor& data, const std::vector<int64_t>& batch_sizes, const at::Tensor& h0,
                           const at::Tensor& c0, const CellParams& p, bool reverse) {
  const auto input_gates = at::linear(data, p.w_ih, p.b_ih);
  const int64_t steps = static_cast<int64_t>(batch_sizes.size());
  std::vector<int64_t> starts(steps, 0);
  for (int64_t t = 1; t < steps; ++t) starts[t] = starts[t - 1] + batch_sizes[t - 1];
  std::vector<at::Tensor> outputs(steps);
  if (!reverse) {
    // The batch shrinks: sequences that end leave their final state behind.
    at::Tensor h = h0, c = c0;
    std::vector<at::Tensor> final_h, final_c;
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t b = batch_sizes[t];
      if (b < h.size(0)) {
        final_h.push_back(h.narrow(0, b, h.size(0) - b));
        final_c.push_back(c.narrow(0, b, c.size(0) - b));
        h = h.narrow(0, 0, b);
        c = c.narrow(0, 0, b);
      }
      std::tie(h, c) = step(input_gates.narrow(0, starts[t], b), h, c, p);
      outputs[t] = h;
    }
    final_h.push_back(h);
    final_c.push_back(c);
    std::reverse(final_h.begin(), final_h.end());
    std::reverse(final_c.begin(), final_c.end());
    return {at::cat(outputs), at::cat(final_h), at::cat(final_c)};
  }
  // Reversed, the batch grows: sequences join with their initial state.
  const int64_t last = steps > 0 ? batch_sizes[steps - 1] : 0;
  at::Tensor h = h0.narrow(0, 0, last), c = c0.narrow(0, 0, last);
  for (int64_t t = steps - 1; t >= 0; --t) {
    const int64_t b = batch_sizes[t];
    if (b > h.size(0)) {
      h = at::cat({h, h0.narrow(0, h.size(0), b - h.size(0))});
      c = at::cat({c, c0.narrow(0, c.size(0), b - c.size(0))});
    }
    std::tie(h, c) = step(input_gates.narrow(0, starts[t], b), h, c, p);
    outputs[t] = h;
  }
  return {at::cat(outputs), h, c};
}

// The layers and directions around one of the two runners; `run(input, cell, direction)`.
template <typename Run>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_layers(const at::Tensor& input, at::TensorList hx,
                                                          at::TensorList params, bool has_biases, int64_t num_layers,
                                                          double dropout, bool train, bool bidirectional, Run run) {
  TORCH_CHECK(hx.size() == 2, "lstm expects two hidden states (h0, c0), got ", hx.size());
  const auto cells = cell_params(params, has_biases, num_layers, bidirectional);
  const int64_t directions = bidirectional ? 2 : 1;
  at::Tensor layer_input = input;
  std::vector<at::Tensor> h_n, c_n;
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    std::vector<at::Tensor> outputs;
    for (int64_t d = 0; d < directions; ++d) {
      const int64_t cell = layer * directions + d;
      auto result = run(layer_input, hx[0].select(0, cell), hx[1].select(0, cell), cells[cell], d == 1);
      outputs.push_back(result.output);
      h_n.push_back(result.h);
      c_n.push_back(result.c);
    }
    layer_input = directions == 2 ? at::cat(outputs, -1) : outputs[0];
    if (dropout > 0 && train && layer + 1 < num_layers) layer_input = at::dropout(layer_input, dropout, train);
  }
  return {layer_input, at::stack(h_n), at::stack(c_n)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_padded(const at::Tensor& input, at::TensorList hx,
                                                           at::TensorList params, bool has_biases,
                                                           int64_t num_layers, double dropout, bool train,
                                                           bool bidirectional, bool batch_first) {
  const auto x = batch_first ? input.transpose(0, 1) : input;
  auto [output, h_n, c_n] = run_layers(x, hx, params, has_biases, num_layers, dropout, train, bidirectional,
                                       [](const at::Tensor& in, const at::Tensor& h, const at::Tensor& c,
                                          const CellParams& p, bool reverse) { return run_padded(in, h, c, p, reverse); });
  return {batch_first ? output.transpose(0, 1) : output, h_n, c_n};
}

// The step sizes of a packed sequence: a plain CPU tensor, possibly under GradTensors.
std::vector<int64_t> read_batch_sizes(const at::Tensor& batch_sizes) {
  at::Tensor plain = batch_sizes;
  while (auto* g = maybe_grad_tensor(plain)) plain = g->value();
  TORCH_CHECK(maybe_batched(plain) == nullptr,
              "lstm: the batch_sizes of a packed sequence are batched under vmap; pack the sequences outside "
              "of vmap, or give every example the same lengths");
  // Read directly: an op on it would be processed by the levels (and wrapped by grad levels).
  TORCH_CHECK(plain.scalar_type() == at::kLong && plain.is_contiguous() && plain.device().is_cpu(),
              "lstm: batch_sizes must be a contiguous CPU int64 tensor, as pack_padded_sequence makes it");
  const auto* begin = plain.const_data_ptr<int64_t>();
  return {begin, begin + plain.numel()};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_packed(const at::Tensor& data, const at::Tensor& batch_sizes,
                                                           at::TensorList hx, at::TensorList params, bool has_biases,
                                                           int64_t num_layers, double dropout, bool train,
                                                           bool bidirectional) {
  const auto sizes = read_batch_sizes(batch_sizes);
  return run_layers(data, hx, params, has_biases, num_layers, dropout, train, bidirectional,
                    [&sizes](const at::Tensor& in, const at::Tensor& h, const at::Tensor& c, const CellParams& p,
                             bool reverse) { return run_packed(in, sizes, h, c, p, reverse); });
}

// NOTE [cross_entropy's label smoothing under transforms]
// cross_entropy_loss with label_smoothing, class weights and reduction='mean' divides
// by the weights of the targets that are not ignored, which torch gathers through
// target.masked_select(~ignore_mask): a shape that depends on the values, refused under
// vmap when the target is batched. torch itself takes a masked_fill path when the weight
// is a tensor subclass; here that path is taken whenever a transform is active. Every
// other combination runs torch's composite kernel unchanged.
at::Tensor smoothed_cross_entropy(const at::Tensor& self, const at::Tensor& target, const at::Tensor& weight,
                                  int64_t ignore_index, double label_smoothing) {
  const int64_t class_dim = self.dim() == 1 ? 0 : 1;
  const auto input = at::log_softmax(self, class_dim, self.scalar_type());
  const auto nll = at::nll_loss_nd(input, target, weight, at::Reduction::Mean, ignore_index);
  const auto ignore_mask = target == ignore_index;
  std::vector<int64_t> weight_shape(input.dim(), 1);
  weight_shape[class_dim] = weight.size(0);
  const auto smooth = (-(input * weight.view(weight_shape)).sum(class_dim)).masked_fill(ignore_mask, 0.0);
  const auto target_weights =
      weight.gather(0, target.masked_fill(ignore_mask, 0).flatten()).masked_fill(ignore_mask.flatten(), 0.0);
  const auto smoothed = smooth.sum() / target_weights.sum();
  return (1 - label_smoothing) * nll + smoothed * (label_smoothing / static_cast<double>(input.size(class_dim)));
}

void cross_entropy_loss(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto& schema = op.schema();
  const size_t first = stack->size() - schema.arguments().size();
  auto arg = [&](const char* name) -> const c10::IValue& {
    return (*stack)[first + *schema.argumentIndexWithName(name)];
  };
  const auto& target = arg("target").toTensor();
  const auto& weight = arg("weight");
  const bool class_indices = !at::isFloatingType(target.scalar_type()) && !at::isComplexType(target.scalar_type());
  if (!(arg("label_smoothing").toDouble() > 0.0 && class_indices && weight.isTensor() &&
        weight.toTensor().defined() && arg("reduction").toInt() == at::Reduction::Mean)) {
    front_fallback(op, stack);  // the op as every other op: processed by the top level
    return;
  }
  auto result = smoothed_cross_entropy(arg("self").toTensor(), target, weight.toTensor(),
                                       arg("ignore_index").toInt(), arg("label_smoothing").toDouble());
  torch::jit::drop(*stack, schema.arguments().size());
  stack->emplace_back(std::move(result));
}

// NOTE [Packed-sequence lengths are read, never differentiated]
// _pack_padded_sequence and _pad_packed_sequence are composite kernels that read their
// int64 lengths / batch_sizes through the data pointer. Inside grad those are
// GradTensors, which have no storage of their own, so the kernels would fail. Integer
// tensors carry no gradient: the front key peels their GradTensors before the op goes
// on as usual. A BatchedTensor stays (lengths that differ per example loop or raise).
void peel_lengths(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto& schema = op.schema();
  const size_t first = stack->size() - schema.arguments().size();
  for (const char* name : {"lengths", "batch_sizes"}) {
    const auto index = schema.argumentIndexWithName(name);
    if (!index.has_value()) continue;
    at::Tensor t = (*stack)[first + *index].toTensor();
    while (auto* g = maybe_grad_tensor(t)) t = g->value();
    (*stack)[first + *index] = t;
  }
  front_fallback(op, stack);
}

// NOTE [cov's degrees of freedom under transforms]
// cov's composite kernel zeroes norm_factor when it is <= 0 (after a warning), a test
// it makes with is_scalar_tensor_true: under vmap that reads a batched value, refused
// when the examples' weights give different answers. Here the same formula takes a
// where when only some examples have no degrees of freedom (their double backward
// then gives NaN where the loop's gives inf), the kernel's zero_() when all of them
// do, and the warning is decided on the values of every example at once.
// The kernel's checks on the weights (non-negative, a non-zero sum) stay as they are:
// they hold for every example or the op's error stands.
at::Tensor all_examples(at::Tensor t) {
  for (;;) {
    if (auto* g = maybe_grad_tensor(t)) {
      t = g->value();
    } else if (auto* b = maybe_batched(t)) {
      t = b->value();
    } else {
      return t;
    }
  }
}

at::Tensor cov_decomposition(const at::Tensor& self, int64_t correction, const std::optional<at::Tensor>& fweights,
               const std::optional<at::Tensor>& aweights) {
  TORCH_CHECK(self.dim() <= 2, "cov(): expected input to have two or fewer dimensions but got an input with ",
              self.dim(), " dimensions");
  TORCH_CHECK(self.scalar_type() != at::kBool, "cov(): bool dtype is not supported for input");
  const auto in = self.dim() < 2 ? self.view({1, -1}) : self;
  const int64_t observations = in.size(1);
  at::Tensor w;
  if (fweights.has_value() && fweights->defined()) {
    w = *fweights;
    TORCH_CHECK(w.dim() <= 1, "cov(): expected fweights to have one or fewer dimensions but got fweights with ",
                w.dim(), " dimensions");
    TORCH_CHECK(at::isIntegralType(w.scalar_type(), false), "cov(): expected fweights to have integral dtype but got fweights with ",
                w.scalar_type(), " dtype");
    TORCH_CHECK(w.numel() == observations, "cov(): expected fweights to have the same numel as there are observations in the input but got ",
                w.numel(), " != ", observations);
    TORCH_CHECK(observations == 0 || w.min().ge(0).item<bool>(), "cov(): fweights cannot be negative");
  }
  if (aweights.has_value() && aweights->defined()) {
    const auto& aw = *aweights;
    TORCH_CHECK(aw.dim() <= 1, "cov(): expected aweights to have one or fewer dimensions but got aweights with ",
                aw.dim(), " dimensions");
    TORCH_CHECK(at::isFloatingType(aw.scalar_type()), "cov(): expected aweights to have floating point dtype but got aweights with ",
                aw.scalar_type(), " dtype");
    TORCH_CHECK(aw.numel() == observations, "cov(): expected aweights to have the same numel as there are observations in the input but got ",
                aw.numel(), " != ", observations);
    TORCH_CHECK(observations == 0 || aw.min().ge(0).item<bool>(), "cov(): aweights cannot be negative");
    w = w.defined() ? w * aw : aw;
  }
  const auto w_sum = w.defined() ? w.sum() : at::scalar_tensor(observations, in.options().dtype(at::kLong));
  TORCH_CHECK(!w.defined() || w_sum.ne(0).item<bool>(), "cov(): weights sum to zero, can't be normalized");
  const auto avg = (w.defined() ? in * w : in).sum(1) / w_sum;
  at::Tensor norm_factor;
  if (w.defined() && aweights.has_value() && aweights->defined() && correction != 0) {
    norm_factor = w_sum - correction * (w * *aweights).sum() / w_sum;
  } else {
    norm_factor = w_sum - correction;
  }
  const auto no_freedom = norm_factor <= 0;
  const auto every_example = all_examples(no_freedom);
  if (every_example.any().item<bool>()) {
    TORCH_WARN("cov(): degrees of freedom is <= 0. Correction should be strictly less than the number of observations.");
    // All examples: the kernel's own zero_() (its derivatives differ from a where's
    // in their infs and NaNs).
    if (every_example.all().item<bool>()) {
      norm_factor.zero_();
    } else {
      norm_factor = at::where(no_freedom, at::zeros_like(norm_factor), norm_factor);
    }
  }
  const auto centered = in - avg.unsqueeze(1);
  const auto c = at::mm(centered, (w.defined() ? centered * w : centered).t().conj());
  return at::true_divide(c, norm_factor).squeeze();
}

} // namespace

void register_front_decompositions(torch::Library& aten_at_front) {
  aten_at_front.impl("lstm.input", TORCH_FN(lstm_padded));
  aten_at_front.impl("lstm.data", TORCH_FN(lstm_packed));
  aten_at_front.impl("cross_entropy_loss", torch::CppFunction::makeFromBoxedFunction<&cross_entropy_loss>());
  aten_at_front.impl("cov", TORCH_FN(cov_decomposition));
  for (const char* op : {"_pack_padded_sequence", "_pad_packed_sequence"}) {
    aten_at_front.impl(op, torch::CppFunction::makeFromBoxedFunction<&peel_lengths>());
  }
}

} // namespace torchfunc
