#include "worker/engine/model/losses.h"

#include <torch/torch.h>

#include <cmath>
#include <numbers>

namespace clmae {

torch::Tensor MaskedReconstructionLoss(const torch::Tensor& e, const torch::Tensor& mask) {
  return (e * mask).sum() / mask.sum();
}

torch::Tensor MaskerReconstructionLoss(const torch::Tensor& e, const torch::Tensor& m) {
  auto keep = 1.0 - m;
  return (e * keep).sum() / keep.sum();
}

torch::Tensor GaussianLoss(const torch::Tensor& m) {
  constexpr double kSigma = 0.12;
  const double alpha = -1.0 / (2.0 * kSigma * kSigma);
  const double beta = 1.0 / (kSigma * std::sqrt(2.0 * std::numbers::pi));
  return (torch::exp(alpha * (m - 0.5).pow(2)) / beta).mean();
}

torch::Tensor KlLoss(const torch::Tensor& m, double k) {
  auto p = m.mean(1);
  return (p * torch::log(p / k) + (1.0 - p) * torch::log((1.0 - p) / (1.0 - k))).sum();
}

torch::Tensor DiversityLoss(const torch::Tensor& m) {
  const int64_t n = m.size(0);
  if (n < 2) return torch::zeros({}, m.options());
  auto pairs = torch::triu_indices(n, n, /*offset=*/1, m.options().dtype(torch::kInt64));
  auto diff = m.index_select(0, pairs[0]) - m.index_select(0, pairs[1]);
  // The norm's gradient at 0 (two identical masks) is taken as 0, not NaN.
  auto dist = torch::linalg_vector_norm(diff, 2, {1});
  return torch::exp(-0.1 * dist).mean();
}

MaskerLoss ComputeMaskerLoss(const torch::Tensor& e, const torch::Tensor& m, double lambda_cl,
                             double keep_ratio, const MaskerLossWeights& w) {
  return ComputeMaskerLoss(e, m, torch::full({}, lambda_cl, e.options().dtype(torch::kFloat32)),
                           keep_ratio, w);
}

MaskerLoss ComputeMaskerLoss(const torch::Tensor& e, const torch::Tensor& m,
                             const torch::Tensor& lambda_cl, double keep_ratio,
                             const MaskerLossWeights& w) {
  MaskerLoss out;
  out.rec = MaskerReconstructionLoss(e, m);
  out.gauss = w.lambda_gauss * GaussianLoss(m);
  out.kl = w.lambda_kl * KlLoss(m, keep_ratio);
  out.div = w.lambda_div > 0 ? w.lambda_div * DiversityLoss(m) : torch::zeros({}, m.options());
  out.total = lambda_cl.to(out.rec.dtype()) * out.rec + out.gauss + out.kl + out.div;
  return out;
}

}  // namespace clmae
