#include "worker/engine/train/train_step.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/train/autocast.h"
#include "worker/engine/train/optim.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Turns off weight gradients of a frozen network for the guard's scope;
// gradients still flow through it to its inputs.
class FreezeGuard {
 public:
  explicit FreezeGuard(const std::vector<torch::Tensor>& params) : params_(params) {
    for (auto& p : params_) p.requires_grad_(false);
  }
  ~FreezeGuard() {
    for (auto& p : params_) p.requires_grad_(true);
  }

 private:
  const std::vector<torch::Tensor>& params_;
};

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

absl::Status NonFinite(const char* what, int64_t step, const char* phase, double value) {
  return absl::FailedPreconditionError(
      absl::StrCat("non-finite ", what, " (", value, ") at step ", step, " in ", phase));
}

}  // namespace

torch::Tensor RandomMaskOrder(const torch::Tensor& sample_ids, int64_t num_patches, uint64_t seed,
                              int64_t step, const torch::Device& device) {
  auto ids = sample_ids.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t batch = ids.numel();
  auto noise = torch::empty({batch, num_patches}, torch::kFloat32);
  const int64_t* id = ids.data_ptr<int64_t>();
  for (int64_t n = 0; n < batch; ++n) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(
        Mix(Mix(Mix(seed) ^ static_cast<uint64_t>(id[n])) ^ static_cast<uint64_t>(step)));
    noise[n].uniform_(0.0, 1.0, gen);
  }
  return torch::argsort(noise, /*dim=*/1, /*descending=*/false).to(device);
}

TwoPhaseStep::TwoPhaseStep(MaeVit mae, MaskingNet masker, torch::optim::AdamW* mae_optimizer,
                           torch::optim::AdamW* masker_optimizer, Collectives* collectives,
                           StepOptions options)
    : mae_(std::move(mae)),
      masker_(std::move(masker)),
      mae_optimizer_(mae_optimizer),
      masker_optimizer_(masker_optimizer),
      collectives_(collectives),
      options_(options) {
  const int64_t l = mae_->config().num_patches();
  len_keep_ = static_cast<int64_t>(std::floor(l * (1.0 - options_.mask_ratio)));
  mae_params_ = mae_->parameters();
  if (!masker_.is_empty()) masker_params_ = masker_->parameters();
}

void TwoPhaseStep::Sync(const torch::Device& device) const {
  if (options_.sync_timing && device.is_cuda()) torch::cuda::synchronize(device.index());
}

absl::Status TwoPhaseStep::EnsureAveragers() {
  if (mae_averager_) return absl::OkStatus();
  ASSIGN_OR_RETURN(mae_averager_, collectives_->NewGradientAverager(mae_params_, "MAE gradients",
                                                                    options_.averaging));
  if (!plain_mae()) {
    ASSIGN_OR_RETURN(masker_averager_, collectives_->NewGradientAverager(
                                           masker_params_, "masker gradients", options_.averaging));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> TwoPhaseStep::ApplyGradients(torch::nn::Module& net,
                                                    torch::optim::AdamW& opt,
                                                    GradientAverager& averager, const char* phase,
                                                    StepStats& stats) {
  auto params = net.parameters();
  RETURN_IF_ERROR(averager.Finish());
  stats.comm_wait_seconds += averager.last_wait_seconds();
  const double norm = ClipGradNorm(params, options_.clip_grad);
  if (!std::isfinite(norm)) {
    opt.zero_grad();
    return absl::FailedPreconditionError(
        absl::StrCat("non-finite gradient norm in ", phase, "; the step was not applied"));
  }
  AdamWStep(opt);
  opt.zero_grad();
  return norm;
}

torch::Tensor TwoPhaseStep::KeptPatches(const torch::Tensor& imgs) {
  torch::NoGradGuard no_grad;
  const bool mae_training = mae_->is_training();
  const bool masker_training = masker_->is_training();
  mae_->eval();
  masker_->eval();
  auto x = mae_->Embed(imgs);
  auto keep = torch::argsort(masker_->forward(x), 1, /*descending=*/true).narrow(1, 0, len_keep_);
  auto kept = torch::zeros({x.size(0), x.size(1)}, torch::dtype(torch::kBool).device(x.device()))
                  .scatter_(1, keep, true);
  mae_->train(mae_training);
  masker_->train(masker_training);
  return kept.cpu();
}

absl::StatusOr<double> TwoPhaseStep::PhaseA(const torch::Tensor& imgs,
                                            const torch::Tensor& sample_ids, int64_t step,
                                            bool apply, StepStats& stats) {
  const auto t0 = Clock::now();
  torch::Tensor loss;
  {
    AutocastGuard autocast(options_.bf16);
    auto x = mae_->Embed(imgs);
    torch::Tensor ids_shuffle;
    if (plain_mae()) {
      ids_shuffle = RandomMaskOrder(sample_ids, x.size(1), options_.seed, step, x.device());
    } else {
      torch::NoGradGuard no_grad;  // masker frozen: only its ranking is used
      ids_shuffle = torch::argsort(masker_->forward(x.detach()), 1, /*descending=*/true);
    }
    auto enc = mae_->Encode(x, ids_shuffle, len_keep_);
    auto pred = mae_->Decode(enc.latent, enc.ids_restore);
    loss = MaskedReconstructionLoss(mae_->PerPatchError(imgs, pred), enc.mask);
  }
  const double value = loss.item<double>();
  if (!std::isfinite(value)) return NonFinite("MAE loss", step, "phase A", value);
  if (apply) mae_averager_->Arm();  // buckets all-reduce while backward runs
  (loss / options_.accum_iter).backward();
  Sync(imgs.device());
  stats.phase_a_seconds = SecondsSince(t0);
  if (apply) {
    const auto t1 = Clock::now();
    ASSIGN_OR_RETURN(stats.grad_norm_mae,
                     ApplyGradients(*mae_, *mae_optimizer_, *mae_averager_, "phase A", stats));
    Sync(imgs.device());
    stats.optimizer_seconds += SecondsSince(t1);
  }
  return value;
}

absl::Status TwoPhaseStep::PhaseB(const torch::Tensor& imgs, double lambda_cl, int64_t step,
                                  bool apply, StepStats& stats) {
  const auto t0 = Clock::now();
  MaskerLoss terms;
  torch::Tensor m;
  {
    FreezeGuard frozen(mae_params_);
    AutocastGuard autocast(options_.bf16);
    auto x = mae_->Embed(imgs);  // no grad: the backbone is frozen
    m = masker_->forward(x);
    auto gated = x * m.unsqueeze(-1).to(x.dtype());
    auto ids_shuffle = torch::argsort(m.detach(), 1, /*descending=*/true);
    auto enc = mae_->Encode(gated, ids_shuffle, x.size(1));  // drop none
    auto pred = mae_->Decode(enc.latent, enc.ids_restore);
    auto e = mae_->PerPatchError(imgs, pred);
    terms = ComputeMaskerLoss(e, m, lambda_cl, 1.0 - options_.mask_ratio, options_.weights);
    auto values =
        torch::stack({terms.rec, terms.gauss, terms.kl, terms.div, terms.total, m.detach().mean(),
                      ((m.detach() < 0.1) | (m.detach() > 0.9)).to(torch::kFloat32).mean()})
            .to(torch::kCPU, torch::kFloat64);
    auto v = values.accessor<double, 1>();
    stats.masker_rec = v[0];
    stats.masker_gauss = v[1];
    stats.masker_kl = v[2];
    stats.masker_div = v[3];
    stats.masker_total = v[4];
    stats.mask_mean_score = v[5];
    stats.mask_near_binary = v[6];
    if (!std::isfinite(stats.masker_total)) {
      return NonFinite("masker loss", step, "phase B", stats.masker_total);
    }
    if (apply) masker_averager_->Arm();
    (terms.total / options_.accum_iter).backward();
  }
  Sync(imgs.device());
  stats.phase_b_seconds = SecondsSince(t0);
  if (apply) {
    const auto t1 = Clock::now();
    ASSIGN_OR_RETURN(stats.grad_norm_masker, ApplyGradients(*masker_, *masker_optimizer_,
                                                            *masker_averager_, "phase B", stats));
    Sync(imgs.device());
    stats.optimizer_seconds += SecondsSince(t1);
  }
  return absl::OkStatus();
}

absl::StatusOr<StepStats> TwoPhaseStep::Run(const torch::Tensor& imgs, double lambda_cl,
                                            int64_t step, bool apply,
                                            const torch::Tensor& sample_ids) {
  StepStats stats;
  stats.stepped = apply;
  RETURN_IF_ERROR(CatchAll("setting up gradient averaging", [&] { return EnsureAveragers(); }));
  torch::Tensor ids = sample_ids;
  if (!ids.defined()) {
    const int64_t b = imgs.size(0);
    ids = torch::arange(collectives_->rank() * b, (collectives_->rank() + 1) * b, torch::kInt64);
  }
  ASSIGN_OR_RETURN(stats.loss_mae, CatchAll(absl::StrCat("step ", step, " phase A"),
                                            [&] { return PhaseA(imgs, ids, step, apply, stats); }));
  if (!plain_mae()) {
    RETURN_IF_ERROR(CatchAll(absl::StrCat("step ", step, " phase B"),
                             [&] { return PhaseB(imgs, lambda_cl, step, apply, stats); }));
  }
  return stats;
}

}  // namespace clmae
