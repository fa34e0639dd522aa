#include "worker/engine/train/train_step.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/train/autocast.h"
#include "worker/engine/train/optim.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace {

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

// What a recorded failure was: the value's name and the phase.
std::pair<const char*, const char*> Describe(int64_t failure) {
  switch (failure) {
    case 1:
      return {"MAE loss", "phase A"};
    case 2:
      return {"MAE gradient norm", "phase A"};
    case 3:
      return {"masker loss", "phase B"};
    default:
      return {"masker gradient norm", "phase B"};
  }
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
  auto order = torch::argsort(noise, /*dim=*/1, /*descending=*/false);
  // From page-locked memory the copy is queued without the host waiting.
  if (device.is_cuda()) return order.pin_memory().to(device, /*non_blocking=*/true);
  return order.to(device);
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

absl::Status TwoPhaseStep::EnsureState(const torch::Device& device) {
  if (mae_averager_) return absl::OkStatus();
  ASSIGN_OR_RETURN(mae_averager_, collectives_->NewGradientAverager(mae_params_, "MAE gradients",
                                                                    options_.averaging));
  mae_stepper_ = std::make_unique<AdamWStepper>(mae_optimizer_);
  if (!plain_mae()) {
    ASSIGN_OR_RETURN(masker_averager_, collectives_->NewGradientAverager(
                                           masker_params_, "masker gradients", options_.averaging));
    masker_stepper_ = std::make_unique<AdamWStepper>(masker_optimizer_);
  }
  failed_step_ = torch::full({}, -1, torch::dtype(torch::kInt64).device(device));
  failed_what_ =
      torch::full({}, static_cast<int64_t>(kNone), torch::dtype(torch::kInt64).device(device));
  failed_value_ = torch::zeros({}, torch::dtype(torch::kFloat32).device(device));
  found_inf_ = torch::zeros({}, torch::dtype(torch::kFloat32).device(device));
  step_t_ = torch::zeros({}, torch::dtype(torch::kInt64).device(device));
  lambda_t_ = torch::zeros({}, torch::dtype(torch::kFloat32).device(device));
  if (options_.cuda_graphs && graphs_off_reason(device).empty()) {
    graph_ = std::make_unique<CudaGraph>(device);
  }
  return absl::OkStatus();
}

std::string TwoPhaseStep::graphs_off_reason(const torch::Device& device) const {
  if (!options_.cuda_graphs) return "";
  if (!CudaGraph::Available()) return "this LibTorch has no CUDA";
  if (!device.is_cuda()) return "not on a CUDA device";
  if (collectives_->world_size() != 1) return "world size > 1 (the all-reduce runs eagerly)";
  if (options_.accum_iter != 1) return "accum_iter > 1";
  return "";
}

void TwoPhaseStep::SetInputs(int64_t step, double lambda_cl) {
  torch::NoGradGuard no_grad;
  step_t_.fill_(step);
  lambda_t_.fill_(lambda_cl);
  mae_stepper_->RefreshLr();
  if (masker_stepper_) masker_stepper_->RefreshLr();
}

void TwoPhaseStep::NoteIfNonFinite(const torch::Tensor& value, Failure failure) {
  torch::NoGradGuard no_grad;
  auto first = value.detach().isfinite().logical_not().logical_and(failed_step_ < 0);
  failed_value_.copy_(torch::where(first, value.detach().to(torch::kFloat32), failed_value_));
  failed_step_.copy_(torch::where(first, step_t_, failed_step_));
  failed_what_.masked_fill_(first, static_cast<int64_t>(failure));
  found_inf_.masked_fill_(first, 1.0);
}

torch::Tensor TwoPhaseStep::BackwardSeed(const torch::Tensor& loss) const {
  torch::NoGradGuard no_grad;
  return torch::where(loss.detach().isfinite(), torch::full_like(loss, 1.0 / options_.accum_iter),
                      std::numeric_limits<double>::quiet_NaN());
}

absl::StatusOr<torch::Tensor> TwoPhaseStep::ApplyGradients(torch::nn::Module& net,
                                                           AdamWStepper& stepper,
                                                           torch::optim::AdamW& opt,
                                                           GradientAverager& averager,
                                                           Failure failure, PendingStep& pending) {
  auto params = net.parameters();
  RETURN_IF_ERROR(averager.Finish());
  pending.comm_wait_seconds += averager.last_wait_seconds();
  torch::Tensor norm = ClipGradNorm(params, options_.clip_grad);
  if (norm.defined()) NoteIfNonFinite(norm, failure);
  stepper.Step(found_inf_, /*refresh_lr=*/false);  // SetInputs refreshed the lr
  opt.zero_grad();
  return norm;
}

absl::Status TwoPhaseStep::CheckFinite() {
  if (!failed_step_.defined()) return absl::OkStatus();
  // One copy (and so one wait for the device) for the whole record.
  auto record = torch::stack({failed_step_.to(torch::kFloat64), failed_what_.to(torch::kFloat64),
                              failed_value_.to(torch::kFloat64)})
                    .to(torch::kCPU);
  auto r = record.accessor<double, 1>();
  if (r[0] < 0) return absl::OkStatus();
  const auto [what, phase] = Describe(static_cast<int64_t>(r[1]));
  return absl::FailedPreconditionError(
      absl::StrCat("non-finite ", what, " (", r[2], ") at step ", static_cast<int64_t>(r[0]),
                   " in ", phase, "; no optimizer step was applied from then on"));
}

std::vector<StepStats> TwoPhaseStep::Read(const std::vector<PendingStep>& pending) {
  std::vector<StepStats> out(pending.size());
  if (pending.empty()) return out;
  std::vector<torch::Tensor> rows;
  rows.reserve(pending.size());
  for (const auto& p : pending) rows.push_back(p.values);
  auto host = torch::stack(rows).to(torch::kCPU, torch::kFloat64).contiguous();
  auto v = host.accessor<double, 2>();
  for (size_t i = 0; i < pending.size(); ++i) {
    const PendingStep& p = pending[i];
    StepStats& s = out[i];
    s.loss_mae = v[i][kLossMae];
    s.masker_rec = v[i][kMaskerRec];
    s.masker_gauss = v[i][kMaskerGauss];
    s.masker_kl = v[i][kMaskerKl];
    s.masker_div = v[i][kMaskerDiv];
    s.masker_total = v[i][kMaskerTotal];
    s.mask_mean_score = v[i][kMaskMeanScore];
    s.mask_near_binary = v[i][kMaskNearBinary];
    s.grad_norm_mae = v[i][kGradNormMae];
    s.grad_norm_masker = v[i][kGradNormMasker];
    s.stepped = p.stepped;
    const auto& t = p.stamps;
    s.phase_a_seconds = p.clock.Seconds(t[0], t[1]);
    s.phase_b_seconds = p.clock.Seconds(t[2], t[3]);
    s.optimizer_seconds = p.clock.Seconds(t[1], t[2]) + p.clock.Seconds(t[3], t[4]);
    s.comm_wait_seconds = p.comm_wait_seconds;
    s.device_seconds = p.clock.Seconds(t[0], p.clock.size() - 1);
  }
  return out;
}

absl::StatusOr<StepStats> TwoPhaseStep::RunAndRead(const torch::Tensor& imgs, double lambda_cl,
                                                   int64_t step, bool apply,
                                                   const torch::Tensor& sample_ids) {
  std::vector<PendingStep> pending(1);
  ASSIGN_OR_RETURN(pending[0], Run(imgs, lambda_cl, step, apply, sample_ids));
  RETURN_IF_ERROR(CheckFinite());
  return Read(pending)[0];
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

absl::StatusOr<torch::Tensor> TwoPhaseStep::PhaseA(const torch::Tensor& imgs,
                                                   const torch::Tensor& order, bool apply,
                                                   PendingStep& pending, torch::Tensor& grad_norm) {
  Stamp(pending, 0);
  torch::Tensor loss;
  {
    AutocastGuard autocast(options_.bf16);
    auto x = mae_->Embed(imgs);
    torch::Tensor ids_shuffle;
    if (plain_mae()) {
      ids_shuffle = order;
    } else {
      torch::NoGradGuard no_grad;  // masker frozen: only its ranking is used
      ids_shuffle = torch::argsort(masker_->forward(x.detach()), 1, /*descending=*/true);
    }
    auto enc = mae_->Encode(x, ids_shuffle, len_keep_);
    auto pred = mae_->Decode(enc.latent, enc.ids_restore);
    loss = MaskedReconstructionLoss(mae_->PerPatchError(imgs, pred), enc.mask);
  }
  NoteIfNonFinite(loss, kMaeLoss);
  if (apply) mae_averager_->Arm();  // buckets all-reduce while backward runs
  loss.backward(BackwardSeed(loss));
  Stamp(pending, 1);
  if (apply) {
    ASSIGN_OR_RETURN(grad_norm, ApplyGradients(*mae_, *mae_stepper_, *mae_optimizer_,
                                               *mae_averager_, kMaeGradNorm, pending));
  }
  Stamp(pending, 2);
  return loss.detach();
}

absl::StatusOr<torch::Tensor> TwoPhaseStep::PhaseB(const torch::Tensor& imgs, bool apply,
                                                   PendingStep& pending, torch::Tensor& grad_norm) {
  torch::Tensor values;
  {
    FreezeGuard frozen(mae_params_);
    AutocastGuard autocast(options_.bf16);
    auto x = mae_->Embed(imgs);  // no grad: the backbone is frozen
    auto m = masker_->forward(x);
    auto gated = x * m.unsqueeze(-1).to(x.dtype());
    auto ids_shuffle = torch::argsort(m.detach(), 1, /*descending=*/true);
    auto enc = mae_->Encode(gated, ids_shuffle, x.size(1));  // drop none
    auto pred = mae_->Decode(enc.latent, enc.ids_restore);
    auto e = mae_->PerPatchError(imgs, pred);
    MaskerLoss terms =
        ComputeMaskerLoss(e, m, lambda_t_, 1.0 - options_.mask_ratio, options_.weights);
    auto md = m.detach().to(torch::kFloat32);
    values = torch::stack(
        {terms.rec.detach().to(torch::kFloat32), terms.gauss.detach().to(torch::kFloat32),
         terms.kl.detach().to(torch::kFloat32), terms.div.detach().to(torch::kFloat32),
         terms.total.detach().to(torch::kFloat32), md.mean(),
         ((md < 0.1) | (md > 0.9)).to(torch::kFloat32).mean()});
    NoteIfNonFinite(terms.total, kMaskerLoss);
    if (apply) masker_averager_->Arm();
    terms.total.backward(BackwardSeed(terms.total));
  }
  Stamp(pending, 3);
  if (apply) {
    ASSIGN_OR_RETURN(grad_norm, ApplyGradients(*masker_, *masker_stepper_, *masker_optimizer_,
                                               *masker_averager_, kMaskerGradNorm, pending));
  }
  Stamp(pending, 4);
  return values;
}

absl::Status TwoPhaseStep::Body(const torch::Tensor& imgs, const torch::Tensor& order, int64_t step,
                                bool apply, PendingStep& pending) {
  torch::Tensor loss_mae, grad_mae, masker_values, grad_masker;
  ASSIGN_OR_RETURN(loss_mae, CatchAll(absl::StrCat("step ", step, " phase A"), [&] {
                     return PhaseA(imgs, order, apply, pending, grad_mae);
                   }));
  if (!plain_mae()) {
    ASSIGN_OR_RETURN(masker_values, CatchAll(absl::StrCat("step ", step, " phase B"), [&] {
                       return PhaseB(imgs, apply, pending, grad_masker);
                     }));
  }
  return CatchAll(absl::StrCat("step ", step, " statistics"), [&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    const auto opts = torch::dtype(torch::kFloat32).device(imgs.device());
    auto scalar = [&](const torch::Tensor& t) {
      return t.defined() ? t.to(torch::kFloat32).reshape({1}) : torch::zeros({1}, opts);
    };
    pending.values = torch::cat(
        {scalar(loss_mae),
         masker_values.defined() ? masker_values : torch::zeros({kGradNormMae - kMaskerRec}, opts),
         scalar(grad_mae), scalar(grad_masker)});
    return absl::OkStatus();
  });
}

bool TwoPhaseStep::UseGraph(const torch::Tensor& imgs, bool apply) const {
  if (graph_ == nullptr || !apply) return false;
  // A batch of another shape (a short last batch) runs eagerly.
  return !static_imgs_.defined() || static_imgs_.sizes() == imgs.sizes();
}

absl::StatusOr<PendingStep> TwoPhaseStep::RunGraphed(const torch::Tensor& imgs,
                                                     const torch::Tensor& order, int64_t step) {
  // The graph reads these buffers; the copies into them are queued before
  // the graph runs (CudaGraph orders its stream after the current one).
  RETURN_IF_ERROR(CatchAll("CUDA graph inputs", [&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    if (!static_imgs_.defined()) static_imgs_ = torch::empty_like(imgs);
    static_imgs_.copy_(imgs, /*non_blocking=*/true);
    if (order.defined()) {
      if (!static_order_.defined()) static_order_ = torch::empty_like(order);
      static_order_.copy_(order, /*non_blocking=*/true);
    }
    return absl::OkStatus();
  }));
  PendingStep pending;
  pending.stepped = true;
  pending.clock = StreamClock(imgs.device());
  pending.stamps[0] = pending.clock.Stamp();
  auto body = [&]() -> absl::Status {
    PendingStep inner;
    RETURN_IF_ERROR(Body(static_imgs_, static_order_, step, /*apply=*/true, inner));
    static_values_ = inner.values;
    return absl::OkStatus();
  };
  // Eager warm-up iterations first (optimizer state, allocator pools and
  // library handles settle), then one capture, then replays.
  constexpr int64_t kWarmup = 3;
  in_graph_ = true;
  absl::Status status;
  bool replayed = false;
  if (graph_runs_ < kWarmup) {
    status = graph_->Warmup(body);
  } else if (!graph_->captured()) {
    status = graph_->CaptureAndReplay(body);  // the capture ran Step's host code once
  } else {
    status = graph_->Replay();
    replayed = status.ok();
  }
  in_graph_ = false;
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("step ", step, " (CUDA graph): ", status.message(),
                                     "; train.cuda_graphs: false runs iterations eagerly"));
  }
  if (replayed) {
    mae_stepper_->AdvanceHostCounts();
    if (masker_stepper_) masker_stepper_->AdvanceHostCounts();
    ++graph_replays_;
  }
  ++graph_runs_;
  RETURN_IF_ERROR(CatchAll("CUDA graph outputs", [&]() -> absl::Status {
    // The graph overwrites its output every replay: keep this iteration's.
    pending.values = static_values_.clone();
    return absl::OkStatus();
  }));
  pending.stamps[4] = pending.clock.Stamp();
  return pending;
}

absl::StatusOr<PendingStep> TwoPhaseStep::Run(const torch::Tensor& imgs, double lambda_cl,
                                              int64_t step, bool apply,
                                              const torch::Tensor& sample_ids) {
  RETURN_IF_ERROR(CatchAll("setting up the step", [&] { return EnsureState(imgs.device()); }));
  torch::Tensor order;
  RETURN_IF_ERROR(CatchAll(absl::StrCat("step ", step, " inputs"), [&]() -> absl::Status {
    SetInputs(step, lambda_cl);
    if (plain_mae()) {
      torch::Tensor ids = sample_ids;
      if (!ids.defined()) {
        const int64_t b = imgs.size(0);
        ids =
            torch::arange(collectives_->rank() * b, (collectives_->rank() + 1) * b, torch::kInt64);
      }
      order =
          RandomMaskOrder(ids, mae_->config().num_patches(), options_.seed, step, imgs.device());
    }
    return absl::OkStatus();
  }));
  if (UseGraph(imgs, apply)) return RunGraphed(imgs, order, step);
  PendingStep pending;
  pending.stepped = apply;
  pending.clock = StreamClock(imgs.device());
  RETURN_IF_ERROR(Body(imgs, order, step, apply, pending));
  return pending;
}

}  // namespace clmae
