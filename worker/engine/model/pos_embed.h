#pragma once

#include "torch/types.h"

namespace clmae {

// The fixed 2-D sine-cosine position embedding of MAE (docs/method.md §2), float32
// [1, (cls ? 1 : 0) + grid_h * grid_w, dim]. Token t = i * grid_w + j (row i,
// column j); the first dim/2 channels encode the column j, the last dim/2 the
// row i, each as [sin(pos * omega), cos(pos * omega)] with
// omega_k = 1 / 10000^(k / (dim/4)). With `cls_token` the first row is zero.
// `dim` must be a multiple of 4.
torch::Tensor SinCosPosEmbed2d(int64_t dim, int64_t grid_h, int64_t grid_w, bool cls_token);

}  // namespace clmae
