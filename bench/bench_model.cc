#include "bench/bench_model.h"

#include "worker/engine/train/optim.h"

namespace clmae {

std::unique_ptr<BenchModel> BenchModel::Make(const ModelConfig& config, const torch::Device& device,
                                             bool plain, double lr) {
  auto m = std::make_unique<BenchModel>();
  torch::manual_seed(0);
  m->mae = MaeVit(config);
  m->mae->to(device);
  m->mae_opt = MakeAdamW(*m->mae, {});
  SetLearningRate(*m->mae_opt, lr);
  if (!plain) {
    m->masker = MaskingNet(config);
    m->masker->to(device);
    m->masker_opt = MakeAdamW(*m->masker, {});
    SetLearningRate(*m->masker_opt, lr);
  }
  return m;
}

TwoPhaseStep& BenchModel::Start(const StepOptions& options) {
  step =
      std::make_unique<TwoPhaseStep>(mae, masker, mae_opt.get(), masker_opt.get(), &local, options);
  return *step;
}

}  // namespace clmae
