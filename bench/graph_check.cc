#include "bench/graph_check.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "bench/bench_model.h"
#include "worker/engine/train/checkpoint.h"
#include "worker/engine/train/optim.h"
#include "worker/engine/train/train_step.h"

namespace clmae {
namespace {

constexpr int kSteps = 20;
constexpr int kBatch = 8;

struct Trace {
  std::vector<double> losses;  // loss_mae, masker_total per iteration
  std::vector<torch::Tensor> weights;
  int64_t replays = 0;
  bool ok = false;
};

// Iterations [from, to) from seed-0 weights (or the checkpoint `load`),
// queued and read at the end; writes a checkpoint to `save` when set.
Trace RunTrace(const ModelConfig& config, const torch::Device& device, bool plain, bool graphs,
               int from, int to, const std::string& load, const std::string& save) {
  Trace t;
  auto model = BenchModel::Make(config, device, plain, 1e-4);
  if (!load.empty()) {
    auto position = LoadCheckpoint(load, model->refs());
    if (!position.ok()) {
      std::printf("check graphs: loading %s: %s\n", load.c_str(),
                  std::string(position.status().message()).c_str());
      return t;
    }
  }
  StepOptions so;
  so.cuda_graphs = graphs;
  so.clip_grad = 1.0;
  TwoPhaseStep& step = model->Start(so);
  torch::optim::AdamW* o1 = model->mae_opt.get();
  torch::optim::AdamW* o2 = model->masker_opt.get();
  std::vector<PendingStep> pending;
  for (int i = from; i < to; ++i) {
    // The same batch and lr for a given iteration in every run.
    torch::manual_seed(1000 + i);
    auto imgs = torch::randn({kBatch, config.in_chans, config.img_size, config.img_size});
    SetLearningRate(*o1, 1e-4 * (1 + i % 3));
    if (o2) SetLearningRate(*o2, 1e-4 * (1 + i % 3));
    auto queued = step.Run(imgs.to(device), 1.0 - 0.1 * i, i, true);
    if (!queued.ok()) {
      std::printf("check graphs: step %d: %s\n", i, std::string(queued.status().message()).c_str());
      return t;
    }
    pending.push_back(std::move(*queued));
  }
  if (auto finite = step.CheckFinite(); !finite.ok()) {
    std::printf("check graphs: %s\n", std::string(finite.message()).c_str());
    return t;
  }
  for (const auto& s : TwoPhaseStep::Read(pending)) {
    t.losses.push_back(s.loss_mae);
    t.losses.push_back(s.masker_total);
  }
  for (const auto& p : model->mae->parameters()) t.weights.push_back(p.detach().cpu());
  if (!plain) {
    for (const auto& p : model->masker->parameters()) t.weights.push_back(p.detach().cpu());
  }
  t.replays = step.graph_replays();
  if (!save.empty()) {
    TrainPosition position;
    position.step = to;
    if (auto s = SaveCheckpoint(save, model->refs(), position); !s.ok()) {
      std::printf("check graphs: saving %s: %s\n", save.c_str(), std::string(s.message()).c_str());
      return t;
    }
  }
  t.ok = true;
  return t;
}

// Largest relative loss difference and largest absolute weight difference.
int Compare(const char* what, const Trace& eager, const Trace& graphed, size_t loss_offset) {
  if (!eager.ok || !graphed.ok) {
    std::printf("check graphs %-36s FAILED (a run did not finish)\n", what);
    return 1;
  }
  double loss_rel = 0, weight_abs = 0;
  for (size_t i = 0; i < graphed.losses.size(); ++i) {
    const double a = eager.losses[loss_offset + i], b = graphed.losses[i];
    loss_rel = std::max(loss_rel, std::abs(a - b) / std::max(1e-12, std::abs(a)));
  }
  for (size_t i = 0; i < eager.weights.size(); ++i) {
    weight_abs =
        std::max(weight_abs, (eager.weights[i] - graphed.weights[i]).abs().max().item<double>());
  }
  const bool ok = loss_rel <= 1e-6 && weight_abs <= 1e-6;
  std::printf("check graphs %-36s losses max rel %.2e, weights max abs %.2e, %lld replays: %s\n",
              what, loss_rel, weight_abs, static_cast<long long>(graphed.replays),
              ok ? "ok" : "MISMATCH");
  return ok ? 0 : 1;
}

}  // namespace

int CheckGraphsAgainstEager(const ModelConfig& config, const std::string& device_name,
                            const std::string& scratch_dir) {
  const torch::Device device(device_name);
  int failures = 0;
  std::filesystem::create_directories(scratch_dir);
  for (const bool plain : {false, true}) {
    const char* mode = plain ? "plain_mae" : "clmae";
    const std::string ckpt = scratch_dir + "/graph-check-" + mode + ".ckpt";
    const Trace eager = RunTrace(config, device, plain, false, 0, kSteps, "", "");
    const Trace graphed = RunTrace(config, device, plain, true, 0, kSteps, "", "");
    failures += Compare((std::string(mode) + ", 20 iterations").c_str(), eager, graphed, 0);
    const Trace first = RunTrace(config, device, plain, true, 0, kSteps / 2, "", ckpt);
    if (!first.ok) {
      ++failures;
    } else {
      const Trace resumed = RunTrace(config, device, plain, true, kSteps / 2, kSteps, ckpt, "");
      // Two losses per iteration: the resumed run's first is the eager run's 20th.
      failures += Compare((std::string(mode) + ", resumed at 10").c_str(), eager, resumed,
                          static_cast<size_t>(kSteps));
    }
    if (graphed.ok && graphed.replays == 0) {
      std::printf("check graphs %-36s FAILED: no iteration was replayed from a graph\n", mode);
      ++failures;
    }
    std::filesystem::remove(ckpt);
  }
  std::printf("check graphs %s\n", failures == 0 ? "PASSED" : "FAILED");
  return failures;
}

}  // namespace clmae
