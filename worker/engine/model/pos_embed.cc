#include "worker/engine/model/pos_embed.h"

#include <torch/torch.h>

namespace clmae {
namespace {

// [M] positions -> [M, dim]: [sin(pos * omega), cos(pos * omega)].
torch::Tensor SinCos1d(int64_t dim, const torch::Tensor& pos) {
  auto omega = torch::arange(dim / 2, torch::kFloat64) / (dim / 2.0);
  omega = 1.0 / torch::pow(10000.0, omega);
  auto out = torch::outer(pos.to(torch::kFloat64).reshape({-1}), omega);
  return torch::cat({torch::sin(out), torch::cos(out)}, 1);
}

}  // namespace

torch::Tensor SinCosPosEmbed2d(int64_t dim, int64_t grid_h, int64_t grid_w, bool cls_token) {
  TORCH_CHECK(dim % 4 == 0, "sin-cos position embedding needs a width divisible by 4, got ", dim);
  auto rows = torch::arange(grid_h, torch::kFloat64).unsqueeze(1).expand({grid_h, grid_w});
  auto cols = torch::arange(grid_w, torch::kFloat64).unsqueeze(0).expand({grid_h, grid_w});
  // The reference's meshgrid puts the column coordinate first.
  auto emb = torch::cat({SinCos1d(dim / 2, cols), SinCos1d(dim / 2, rows)}, 1);
  if (cls_token) emb = torch::cat({torch::zeros({1, dim}, torch::kFloat64), emb}, 0);
  return emb.to(torch::kFloat32).unsqueeze(0).contiguous();
}

}  // namespace clmae
