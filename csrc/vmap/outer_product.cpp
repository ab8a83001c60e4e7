// NOTE [Large outer products stream their result]
// The per-example weight gradient of a linear layer is an outer product: B*r*c values
// written from B*(r+c) read, so its time is that of the writes, and a plain store
// first reads every cache line it writes (a read for ownership). Streaming
// (non-temporal) stores skip that read and the cache. Results of at least 1 MiB are
// streamed. Measured on one thread (AMD EPYC, 512 KiB L2, 32 MiB L3), with other
// memory traffic between calls as in a training step: [64, 128, c] floats took
// 129-154 / 107-116 us (col * row / streamed) at 0.5 MiB, 163-214 / 121-125 at 1 MiB,
// 532-580 / 314-318 at 4 MiB, 2.9 / 1.4 ms at 24.5 MiB (the first layer of a
// 784-128-128-10 MLP at batch 64). Called back to back with nothing in between, a
// result up to a few MiB stays in the cache and col * row is faster (127 / 205 us at
// 4 MiB); a per-sample gradient that is read next (its norm, for clipping) still came
// out ahead streamed: per-sample grads and norms of the 32-128-128-10 MLP, 0.95 of the
// time with plain stores.
//
// The kernel bypasses the dispatcher, so it runs only where nothing else would have
// seen the op: CPU operands of one dtype, float or double, that are plain tensors (no
// wrapper, subclass, conjugate or negative bit), with no autograd history to record
// (requires_grad under grad mode) and no forward gradient, and no dispatch mode
// active. Anything else, and every CPU without AVX, is col * row. The product of two
// numbers is the same rounded value either way: the result is bitwise col * row.
#include "outer_product.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mul.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>

#include <cstdint>

#if defined(__x86_64__)
#include <immintrin.h>
#define TORCHFUNC_STREAMING_STORES 1
#endif

namespace torchfunc {
namespace {

#ifdef TORCHFUNC_STREAMING_STORES
// o[j] = s * x[j] for j < c: plain stores up to a 32-byte boundary of o and after the
// last whole vector, streaming stores between.
__attribute__((target("avx"))) void stream_row(float s, const float* x, float* o, int64_t c) {
  int64_t j = 0;
  for (; j < c && (reinterpret_cast<uintptr_t>(o + j) & 31); ++j) o[j] = s * x[j];
  const __m256 v = _mm256_set1_ps(s);
  for (; j + 8 <= c; j += 8) _mm256_stream_ps(o + j, _mm256_mul_ps(v, _mm256_loadu_ps(x + j)));
  for (; j < c; ++j) o[j] = s * x[j];
}

__attribute__((target("avx"))) void stream_row(double s, const double* x, double* o, int64_t c) {
  int64_t j = 0;
  for (; j < c && (reinterpret_cast<uintptr_t>(o + j) & 31); ++j) o[j] = s * x[j];
  const __m256d v = _mm256_set1_pd(s);
  for (; j + 4 <= c; j += 4) _mm256_stream_pd(o + j, _mm256_mul_pd(v, _mm256_loadu_pd(x + j)));
  for (; j < c; ++j) o[j] = s * x[j];
}

// col [B, r, 1] (any strides), row [B, 1, c] with unit stride along c, out [B, r, c]
// contiguous.
template <typename scalar_t>
void stream_outer_product(const at::Tensor& col, const at::Tensor& row, at::Tensor& out) {
  const int64_t r = col.size(1);
  const int64_t c = row.size(2);
  const int64_t col_b = col.stride(0), col_i = col.stride(1), row_b = row.stride(0);
  const auto* col_data = col.const_data_ptr<scalar_t>();
  const auto* row_data = row.const_data_ptr<scalar_t>();
  auto* out_data = out.mutable_data_ptr<scalar_t>();
  // About 256 KiB of result per task.
  const int64_t grain = std::max<int64_t>(1, (int64_t{256} << 10) / (c * static_cast<int64_t>(sizeof(scalar_t))));
  at::parallel_for(0, col.size(0) * r, grain, [&](int64_t begin, int64_t end) {
    for (int64_t flat = begin; flat < end; ++flat) {
      const int64_t b = flat / r, i = flat % r;
      stream_row(col_data[b * col_b + i * col_i], row_data + b * row_b, out_data + flat * c, c);
    }
    _mm_sfence();  // streamed stores are weakly ordered: make them visible before returning
  });
}

bool cpu_has_avx() {
  static const bool has = __builtin_cpu_supports("avx");
  return has;
}
#endif

// NOTE [Large outer products stream their result] gives the measurements.
constexpr int64_t kStreamingThresholdBytes = int64_t{1} << 20;

// A CPU tensor's keys when nothing wraps it: dense CPU, its autograd keys, autocast.
bool plain_cpu(const at::Tensor& t) {
  static const auto allowed = c10::DispatchKeySet({c10::DispatchKey::CPU, c10::DispatchKey::AutogradCPU,
                                                   c10::DispatchKey::ADInplaceOrView,
                                                   c10::DispatchKey::AutocastCPU});
  const auto keys = t.key_set();
  return (keys.raw_repr() & ~allowed.raw_repr()) == 0 && t.layout() == at::kStrided &&
         !t._fw_grad(/*level=*/0).defined() && !(c10::GradMode::is_enabled() && t.requires_grad());
}

bool streams(const at::Tensor& col, const at::Tensor& row) {
#ifdef TORCHFUNC_STREAMING_STORES
  if (col.dim() != 3 || row.dim() != 3 || col.size(2) != 1 || row.size(1) != 1 || col.size(0) != row.size(0)) {
    return false;
  }
  const auto dtype = col.scalar_type();
  if ((dtype != at::kFloat && dtype != at::kDouble) || row.scalar_type() != dtype) return false;
  if (col.numel() * row.size(2) * col.element_size() < kStreamingThresholdBytes) return false;
  if (!cpu_has_avx() || c10::impl::TorchDispatchModeTLS::stack_len() > 0 ||
      c10::impl::tls_is_dispatch_key_included(c10::DispatchKey::Python)) {
    return false;
  }
  return plain_cpu(col) && plain_cpu(row);
#else
  (void)col;
  (void)row;
  return false;
#endif
}

} // namespace

at::Tensor outer_product(const at::Tensor& col, const at::Tensor& row) {
  if (!streams(col, row)) return at::mul(col, row);
#ifdef TORCHFUNC_STREAMING_STORES
  RECORD_FUNCTION("torchfunc::streamed_outer_product", std::vector<c10::IValue>({col, row}));  // for profiles
  auto row_unit = row.stride(2) == 1 ? row : row.contiguous();
  auto out = at::empty({col.size(0), col.size(1), row.size(2)}, col.options());
  if (col.scalar_type() == at::kFloat) {
    stream_outer_product<float>(col, row_unit, out);
  } else {
    stream_outer_product<double>(col, row_unit, out);
  }
  return out;
#else
  return at::mul(col, row);
#endif
}

} // namespace torchfunc
