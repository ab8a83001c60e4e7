#include "axis.h"

#include <ATen/core/Tensor.h>

namespace torchfunc::axis {

int64_t logical_rank(const at::Tensor& value, BDim bdim) {
  return bdim.has_value() ? value.dim() - 1 : value.dim();
}

at::Tensor bdim_to_front(const at::Tensor& value, BDim bdim) {
  if (!bdim.has_value() || *bdim == 0) {
    return value;
  }
  return value.movedim(*bdim, 0);
}

at::Tensor materialize(const at::Tensor& value, BDim bdim, int64_t batch_size) {
  if (bdim.has_value()) {
    return bdim_to_front(value, bdim);
  }
  c10::SmallVector<int64_t, 6> sizes{batch_size};
  sizes.append(value.sizes().begin(), value.sizes().end());
  if (value.layout() != at::kStrided) return value.unsqueeze(0).expand(sizes);
  return value.expand(sizes);  // expand adds the leading dim itself: one op
}

at::Tensor pad_to_rank(const at::Tensor& front_batched, int64_t rank) {
  const auto current = front_batched.dim() - 1;
  if (current >= rank) {
    return front_batched;
  }
  if (front_batched.layout() != at::kStrided) {  // sparse values have no view
    auto out = front_batched;
    for (int64_t i = current; i < rank; ++i) out = out.unsqueeze(1);
    return out;
  }
  // One view inserting the size-1 dims (always viewable), not one unsqueeze per dim.
  c10::SmallVector<int64_t, 8> sizes(front_batched.sizes().begin(), front_batched.sizes().end());
  sizes.insert(sizes.begin() + 1, rank - current, 1);
  return front_batched.view(sizes);
}

int64_t physical_dim(int64_t dim, int64_t rank) {
  return c10::maybe_wrap_dim(dim, rank) + 1;
}

at::Tensor fold_into(const at::Tensor& front_batched, int64_t into) {
  auto moved = front_batched.movedim(0, into);
  c10::SmallVector<int64_t, 6> sizes(moved.sizes().begin(), moved.sizes().end());
  sizes[into] = sizes[into] * sizes[into + 1];
  sizes.erase(sizes.begin() + into + 1);
  return moved.reshape(sizes);
}

at::Tensor unfold_from(const at::Tensor& value, int64_t dim, int64_t batch_size) {
  // An empty batch has lost the example's size (NOTE [An empty batch]).
  TORCH_CHECK(batch_size > 0, "vmap: this batching rule cannot split an empty batch (batch size 0) out of dim ",
              dim, " of its result; vmap over at least one example.");
  c10::SmallVector<int64_t, 6> sizes(value.sizes().begin(), value.sizes().end());
  const auto n = sizes[dim] / batch_size;
  sizes[dim] = n;
  sizes.insert(sizes.begin() + dim, batch_size);
  return value.reshape(sizes).movedim(dim, 0);
}

} // namespace torchfunc::axis
