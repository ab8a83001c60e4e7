#pragma once
// Batched outer products: col [B, r, 1] times row [B, 1, c] is [B, r, c], as
// col * row. What the k = 1 products of NOTE [Products with one unbatched operand]
// become (the per-example weight gradients of a linear layer).
#include <ATen/core/Tensor.h>

namespace torchfunc {

// col * row, written with streaming stores when the result is large (NOTE [Large
// outer products stream their result]); equal, bit for bit, to col * row.
at::Tensor outer_product(const at::Tensor& col, const at::Tensor& row);

} // namespace torchfunc
