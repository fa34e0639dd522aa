// Metrics cost (issue 6). Figures, not pass/fail (docs/benchmarks.md,
// "Metrics").
//
//   clmae-bench-metrics [--jobs 1000] [--scrapes 30] [--steps 40] [--batch 32]
//
// (a) A Coordinator domain object (temporary SQLite store) with N running
//     jobs, each with a progress report, watched by CoordinatorMetrics:
//     time per scrape (collect + text serialisation, as the /metrics
//     handler does) and its size in bytes.
// (b) The trainer's per-iteration metric update (TrainerMetrics::OnIteration)
//     against the iteration time of a tiny-preset CL-MAE step on this CPU,
//     measured in the same run: the share of the step spent on metrics.

#include <stdlib.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/metrics_server.h"
#include "common/model_config.h"
#include "coordinator/coordinator.h"
#include "prometheus/registry.h"
#include "services/coordinator_metrics.h"
#include "worker/engine/train/trainer.h"
#include "worker/train/observer_fanout.h"
#include "worker/train/trainer_metrics.h"

namespace clmae {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

struct Args {
  int jobs = 1000;
  int scrapes = 30;
  int steps = 40;
  int batch = 32;
};

class NullSink : public AgentSink {
 public:
  void Send(const v1::CoordinatorMessage&) override {}
};

int ScrapeBench(const Args& args) {
  std::string dir =
      (std::filesystem::temp_directory_path() / "clmae-metrics-bench-XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) return 1;
  CoordinatorOptions options;
  options.store_path = dir + "/coordinator.db";
  auto coordinator = Coordinator::Open(options);
  if (!coordinator.ok()) {
    std::fprintf(stderr, "open: %s\n", coordinator.status().ToString().c_str());
    return 1;
  }
  Coordinator& c = **coordinator;
  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = CoordinatorMetrics::Create(&c, *registry);
  if (!metrics.ok()) return 1;

  // Workers with a CPU slot per job; every job runs one rank.
  const int workers = std::max(1, args.jobs / 100);
  const int slots = (args.jobs + workers - 1) / workers;
  for (int w = 0; w < workers; ++w) {
    v1::Register reg;
    reg.set_worker_id("node-" + std::to_string(w));
    reg.set_address(reg.worker_id() + ".cluster");
    reg.set_cpu_slots(slots);
    if (!c.AgentAttached(reg, std::make_shared<NullSink>()).ok()) return 1;
  }
  const auto t_submit = Clock::now();
  std::vector<v1::Job> jobs;
  for (int i = 0; i < args.jobs; ++i) {
    v1::JobSpec spec;
    spec.set_name("bench-" + std::to_string(i));
    spec.mutable_train()->set_device("cpu");
    spec.mutable_resources()->set_world_size(1);
    auto job = c.Submit(spec, "");
    if (!job.ok()) return 1;
    jobs.push_back(*job);
  }
  const double submit_s = Seconds(t_submit);
  for (const v1::Job& submitted : jobs) {
    auto job = c.Get(submitted.id());
    if (!job.ok() || job->placement().ranks_size() != 1) {
      std::fprintf(stderr, "job %s was not placed\n", submitted.id().c_str());
      return 1;
    }
    v1::TaskStatus status;
    status.set_job_id(job->id());
    status.set_attempt(1);
    status.set_rank(0);
    status.set_state(v1::TaskStatus::RUNNING);
    if (!c.TaskStatus(job->placement().ranks(0).worker_id(), status).ok()) return 1;
    v1::ReportProgressRequest progress;
    progress.set_job_id(job->id());
    progress.set_attempt(1);
    progress.set_rank(0);
    v1::Progress& p = *progress.mutable_progress();
    p.set_step(1234);
    p.set_total_steps(10000);
    p.set_curriculum_factor(-0.375);
    p.set_loss_mae(0.0421);
    p.set_loss_masker_recon(0.0419);
    p.set_loss_gauss(0.8123);
    p.set_loss_kl(0.1234);
    p.set_loss_div(0.0567);
    p.set_loss_masker_total(-0.0312);
    p.set_lr(0.00123);
    p.set_images_per_sec(512.5);
    p.set_images_seen(1234 * 64);
    if (!c.ReportProgress(progress).ok()) return 1;
  }

  const std::vector<std::shared_ptr<prometheus::Collectable>> sources = {registry, *metrics};
  auto t0 = Clock::now();
  std::string text = ExpositionText(sources);
  const double first_s = Seconds(t0);
  std::vector<double> times;
  size_t bytes = 0;
  for (int i = 0; i < args.scrapes; ++i) {
    t0 = Clock::now();
    text = ExpositionText(sources);
    times.push_back(Seconds(t0));
    bytes = text.size();
  }
  std::sort(times.begin(), times.end());
  double collect_s = 0;
  for (int i = 0; i < args.scrapes; ++i) {
    t0 = Clock::now();
    auto families = (*metrics)->Collect();
    collect_s += Seconds(t0);
  }
  size_t series = 0;
  for (size_t pos = 0; (pos = text.find('\n', pos)) != std::string::npos; ++pos) ++series;
  std::printf("coordinator scrape, %d running jobs with progress (%d workers):\n", args.jobs,
              workers);
  std::printf("  setup: %d durable submissions in %.2f s\n", args.jobs, submit_s);
  std::printf("  first scrape (resolves the names of jobs first seen by their events): %.2f ms\n",
              first_s * 1e3);
  std::printf("  scrape (collect + serialise), %d scrapes: median %.2f ms, max %.2f ms\n",
              args.scrapes, times[times.size() / 2] * 1e3, times.back() * 1e3);
  std::printf("  of which CoordinatorMetrics::Collect: mean %.2f ms\n",
              collect_s / args.scrapes * 1e3);
  std::printf("  exposition: %zu bytes (%.1f KiB, %.0f bytes per job), %zu lines\n", bytes,
              bytes / 1024.0, static_cast<double>(bytes) / args.jobs, series);
  metrics->reset();
  coordinator->reset();
  std::filesystem::remove_all(dir);
  return 0;
}

// Times the metrics observer inside a real run.
class TimedObserver : public TrainObserver {
 public:
  explicit TimedObserver(TrainerMetrics* metrics) : metrics_(metrics) {}
  void OnStart(int64_t s, int64_t t) override { metrics_->OnStart(s, t); }
  void OnIteration(const StepReport& r) override {
    const auto t0 = Clock::now();
    metrics_->OnIteration(r);
    update_s += Seconds(t0);
    ++updates;
    if (updates > 3) {  // after warm-up
      step_s += r.step_seconds;
      ++steps;
    }
  }
  void OnStep(const StepReport& r) override {
    const auto t0 = Clock::now();
    metrics_->OnStep(r);
    log_update_s += Seconds(t0);
  }
  double update_s = 0, log_update_s = 0, step_s = 0;
  int updates = 0, steps = 0;

 private:
  TrainerMetrics* metrics_;
};

int TrainerBench(const Args& args) {
  auto registry = std::make_shared<prometheus::Registry>();
  TrainerMetrics metrics(*registry, {.job = "bench", .rank = 0});

  // The update alone, many times.
  StepReport r;
  r.total_steps = 1000000;
  r.stats.stepped = true;
  constexpr int kUpdates = 200000;
  auto t0 = Clock::now();
  for (int i = 1; i <= kUpdates; ++i) {
    r.step = i;
    r.images_seen = static_cast<int64_t>(i) * 32;
    r.step_seconds = 0.001 * (i % 100);
    r.data_seconds = r.step_seconds / 10;
    r.stats.loss_mae = 1.0 / i;
    metrics.OnIteration(r);
  }
  const double per_update_s = Seconds(t0) / kUpdates;
  t0 = Clock::now();
  for (int i = 0; i < 1000; ++i) metrics.UpdateDeviceMemory();
  const double per_memory_s = Seconds(t0) / 1000;

  // A tiny-preset CL-MAE run on synthetic 28x28 images, metrics attached.
  TrainerOptions o;
  auto preset = ModelPreset("tiny");
  if (!preset.ok()) return 1;
  o.model = *preset;
  o.data.kind = DatasetOptions::Kind::kSynthetic;
  o.data.synthetic_size = std::max(1024, args.batch * args.steps);
  o.data.channels = static_cast<int>(o.model.in_chans);
  o.data.synthetic_height = static_cast<int>(o.model.img_size);
  o.data.synthetic_width = static_cast<int>(o.model.img_size);
  o.transform.mean = std::vector<double>(o.model.in_chans, 0.5);
  o.transform.std = std::vector<double>(o.model.in_chans, 0.25);
  o.loader.batch_size = args.batch;
  o.epochs = 1;
  o.max_steps = args.steps;
  o.log_every = 10;
  o.lr = 1e-4;
  const std::string out =
      (std::filesystem::temp_directory_path() / ("clmae-metrics-bench-" + std::to_string(getpid())))
          .string();
  o.output_dir = out;
  o.export_safetensors = false;
  TimedObserver timed(&metrics);
  auto trainer = Trainer::Create(o, nullptr, &timed);
  if (!trainer.ok()) {
    std::fprintf(stderr, "trainer: %s\n", trainer.status().ToString().c_str());
    return 1;
  }
  if (auto s = (*trainer)->Run(); !s.ok()) {
    std::fprintf(stderr, "run: %s\n", s.ToString().c_str());
    return 1;
  }
  std::filesystem::remove_all(out);
  const double mean_step = timed.step_s / std::max(1, timed.steps);
  const double in_run_update = timed.update_s / std::max(1, timed.updates);
  const double per_step_total = in_run_update + timed.log_update_s / std::max(1, timed.updates);
  std::printf("trainer metric updates (tiny preset, batch %d, CPU, %d threads):\n", args.batch,
              torch::get_num_threads());
  std::printf("  OnIteration alone: %.0f ns per iteration (%d calls)\n", per_update_s * 1e9,
              kUpdates);
  std::printf("  device memory read (log steps only): %.1f us\n", per_memory_s * 1e6);
  std::printf(
      "  in the run: %.1f us per iteration incl. log-step memory reads, mean iteration %.1f ms "
      "(%d iterations after warm-up)\n",
      per_step_total * 1e6, mean_step * 1e3, timed.steps);
  std::printf("  share of the iteration: %.4f%% (goal < 1%%)\n", 100 * per_step_total / mean_step);
  return 0;
}

}  // namespace
}  // namespace clmae

int main(int argc, char** argv) {
  clmae::Args args;
  for (int i = 1; i + 1 < argc; i += 2) {
    const int value = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--jobs") == 0) {
      args.jobs = value;
    } else if (std::strcmp(argv[i], "--scrapes") == 0) {
      args.scrapes = value;
    } else if (std::strcmp(argv[i], "--steps") == 0) {
      args.steps = value;
    } else if (std::strcmp(argv[i], "--batch") == 0) {
      args.batch = value;
    } else {
      std::fprintf(stderr,
                   "usage: clmae-bench-metrics [--jobs N] [--scrapes N] [--steps N] [--batch N]\n");
      return 2;
    }
  }
  if (args.jobs < 1 || args.scrapes < 1 || args.steps < 5 || args.batch < 1) {
    std::fprintf(stderr, "--jobs, --scrapes, --batch at least 1; --steps at least 5\n");
    return 2;
  }
  if (int rc = clmae::ScrapeBench(args); rc != 0) return rc;
  return clmae::TrainerBench(args);
}
