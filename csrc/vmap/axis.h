#pragma once
// The axis toolkit every batching rule is written with. A "bdim" is the position
// of the batch dimension in a physical value (nullopt: not batched).
#include <ATen/core/Tensor.h>

#include <optional>

namespace torchfunc::axis {

using BDim = std::optional<int64_t>;

// Logical rank: the value's rank without its batch dim.
int64_t logical_rank(const at::Tensor& value, BDim bdim);
// The batch dim moved to the front (no-op for an unbatched value).
at::Tensor bdim_to_front(const at::Tensor& value, BDim bdim);
// Batch dim at the front, materialized by expanding an unbatched value.
at::Tensor materialize(const at::Tensor& value, BDim bdim, int64_t batch_size);
// A front-batched value with size-1 dims inserted after the batch dim until its
// logical rank is `rank` (for broadcasting against higher-rank operands).
at::Tensor pad_to_rank(const at::Tensor& front_batched, int64_t rank);
// Physical dim of logical `dim` of a front-batched value of logical rank `rank`.
int64_t physical_dim(int64_t dim, int64_t rank);
// Folds the front batch dim into dim `into` (after removing it): [B, ..., N, ...] -> [..., B*N, ...].
at::Tensor fold_into(const at::Tensor& front_batched, int64_t into);
// Splits dim `dim` of size B*N back out as a front batch dim of size B.
at::Tensor unfold_from(const at::Tensor& value, int64_t dim, int64_t batch_size);

} // namespace torchfunc::axis
