#include "worker/engine/model/attention.h"

#include <ATen/ops/scaled_dot_product_attention.h>

namespace clmae {

AttentionImpl::AttentionImpl(int64_t dim, int64_t heads) : num_heads(heads) {
  qkv = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim)));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x) {
  const auto n = x.size(0), t = x.size(1), d = x.size(2);
  // [N, T, 3, H, hd] -> [3, N, H, T, hd]
  auto qkv_out = qkv(x).reshape({n, t, 3, num_heads, d / num_heads}).permute({2, 0, 3, 1, 4});
  auto out = at::scaled_dot_product_attention(qkv_out[0], qkv_out[1], qkv_out[2]);
  return proj(out.transpose(1, 2).reshape({n, t, d}));
}

}  // namespace clmae
