#pragma once

// The loss terms of docs/method.md §3. All take and return float32 tensors.

#include "torch/types.h"

namespace clmae {

// Phase A: sum(e * mask) / sum(mask); e, mask [N, L], mask 1 = removed.
torch::Tensor MaskedReconstructionLoss(const torch::Tensor& e, const torch::Tensor& mask);

// L_rec = sum(e * (1 - m)) / sum(1 - m).
torch::Tensor MaskerReconstructionLoss(const torch::Tensor& e, const torch::Tensor& m);

// mean(exp(alpha (m - 0.5)^2) / beta), alpha = -1/(2 * 0.12^2),
// beta = 1/(0.12 sqrt(2 pi)); unweighted.
torch::Tensor GaussianLoss(const torch::Tensor& m);

// sum_n [p_n log(p_n / k) + (1 - p_n) log((1 - p_n) / (1 - k))], p_n the
// mean score of image n, k the keep ratio; unweighted.
torch::Tensor KlLoss(const torch::Tensor& m, double keep_ratio);

// mean over pairs i < j of exp(-0.1 * ||m_i - m_j||_2); 0 for one image;
// unweighted. Vectorised over the upper triangle.
torch::Tensor DiversityLoss(const torch::Tensor& m);

struct MaskerLossWeights {
  double lambda_gauss = 1.0;
  double lambda_kl = 0.1;
  double lambda_div = 2.0;
};

// The masker's loss and its terms (each already weighted).
struct MaskerLoss {
  torch::Tensor rec;    // L_rec (unweighted; the total weighs it by lambda_cl)
  torch::Tensor gauss;  // lambda_g * GaussianLoss
  torch::Tensor kl;     // lambda_kl * KlLoss
  torch::Tensor div;    // lambda_d * DiversityLoss
  torch::Tensor total;  // lambda_cl * rec + gauss + kl + div
};

MaskerLoss ComputeMaskerLoss(const torch::Tensor& e, const torch::Tensor& m, double lambda_cl,
                             double keep_ratio, const MaskerLossWeights& weights);
// The same with the curriculum factor as a float32 scalar tensor on the
// device (so a captured CUDA graph reads the current value).
MaskerLoss ComputeMaskerLoss(const torch::Tensor& e, const torch::Tensor& m,
                             const torch::Tensor& lambda_cl, double keep_ratio,
                             const MaskerLossWeights& weights);

}  // namespace clmae
