// clmae-bench-eval: what evaluation during training (eval.every_epochs)
// costs. Trains the same job twice in one invocation, from the same seed:
// once without evaluations (the baseline) and once with the spec's eval
// section at its own interval and subset (the defaults unless the spec sets
// them), and prints the training time of each up to the last iteration
// (the final evaluation, the same in both, is not counted), the time of
// each evaluation, and the overhead as a ratio of the baseline.
//
//   clmae-bench-eval [--spec examples/tiny-fashion-mnist.yaml] [--epochs 2]
//                    [--repeats 1]
//
// With --repeats N the pair is trained N times, the order alternating
// (baseline first, then evaluation first), and each figure is the fastest
// of its N runs, so a slower second run of a pair (a warmer or busier
// machine) does not pass for evaluation overhead.
//
// The spec's data, model, threads and batch are used as they are; its
// output goes to a temporary folder. The last line is a JSON record.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/job_spec/job_spec_yaml.h"
#include "common/status_macros.h"
#include "worker/engine/train/trainer.h"
#include "worker/train/trainer_options_from_spec.h"

namespace clmae {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Times a run up to its "finish" phase and collects its evaluations.
class Timer : public TrainObserver {
 public:
  void OnStart(int64_t, int64_t) override { start_ = Clock::now(); }
  void OnPhase(const std::string& phase) override {
    if (phase == "finish")
      train_seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  }
  void OnQuality(const QualityReport& q) override { quality.push_back(q); }

  double train_seconds = 0;
  std::vector<QualityReport> quality;

 private:
  Clock::time_point start_ = Clock::now();
};

int Fail(const std::string& what) {
  std::fprintf(stderr, "clmae-bench-eval: %s\n", what.c_str());
  return 1;
}

int Main(int argc, char** argv) {
  std::string spec_path = "examples/tiny-fashion-mnist.yaml";
  int epochs = 2;
  int repeats = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--spec") == 0 && i + 1 < argc) {
      spec_path = argv[++i];
    } else if (std::strcmp(argv[i], "--epochs") == 0 && i + 1 < argc) {
      epochs = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--repeats") == 0 && i + 1 < argc) {
      repeats = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: clmae-bench-eval [--spec FILE] [--epochs N] [--repeats N]\n");
      return 2;
    }
  }
  if (epochs < 1) return Fail("--epochs must be at least 1");
  if (repeats < 1) return Fail("--repeats must be at least 1");
  auto spec = LoadJobSpecFile(spec_path);
  if (!spec.ok()) return Fail(std::string(spec.status().message()));
  if (!spec->eval().enabled()) return Fail(spec_path + ": eval.enabled is false; nothing to time");
  auto options = TrainerOptionsFromSpec(*spec);
  if (!options.ok()) return Fail(std::string(options.status().message()));
  if (options->eval_every_epochs == 0) return Fail(spec_path + ": eval.every_epochs is 0");
  const fs::path work =
      fs::temp_directory_path() / absl::StrFormat("clmae-bench-eval-%d", getpid());

  // One training of the pair; its timer goes into `fastest` when quicker.
  auto train = [&](bool periodic, Timer& fastest) -> absl::Status {
    Timer timer;
    TrainerOptions o = *options;
    o.epochs = epochs;
    o.max_steps = 0;
    o.output_dir = (work / (periodic ? "with" : "without")).string();
    o.checkpoint_every = 0;
    o.preview_every = 0;
    o.export_safetensors = false;
    o.eval_enabled = periodic;
    // The final evaluation is not timed: keep it small.
    o.eval.probe_epochs = 0;
    o.eval.train_limit = std::max<int64_t>(o.eval.knn_k, 64);
    o.eval.test_limit = 64;
    auto trainer = Trainer::Create(o, nullptr, &timer);
    if (!trainer.ok()) return trainer.status();
    RETURN_IF_ERROR((*trainer)->Run());
    std::fprintf(stderr, "%s evaluation: %.1f s\n", periodic ? "with" : "without",
                 timer.train_seconds);
    if (fastest.train_seconds == 0 || timer.train_seconds < fastest.train_seconds) fastest = timer;
    std::error_code ec;
    fs::remove_all(work, ec);
    return absl::OkStatus();
  };
  Timer base;
  Timer with;
  for (int r = 0; r < repeats; ++r) {
    const bool baseline_first = r % 2 == 0;
    for (const bool periodic : {!baseline_first, baseline_first}) {
      if (absl::Status s = train(periodic, periodic ? with : base); !s.ok()) {
        return Fail(std::string(s.message()));
      }
    }
  }
  double eval_seconds = 0;
  for (const QualityReport& q : with.quality) eval_seconds += q.seconds;
  const int evaluations = static_cast<int>(with.quality.size());
  const double per_eval = evaluations > 0 ? eval_seconds / evaluations : 0;
  const double overhead = (with.train_seconds - base.train_seconds) / base.train_seconds;
  const auto& p = options->eval_periodic;
  std::printf(
      "job: %s, %d epochs, eval every %d epoch(s) on %lld train / %lld test images; "
      "fastest of %d run(s) each\n",
      spec_path.c_str(), epochs, options->eval_every_epochs, static_cast<long long>(p.train_limit),
      static_cast<long long>(p.test_limit), repeats);
  std::printf("training without evaluation: %.1f s\n", base.train_seconds);
  std::printf("training with evaluation:    %.1f s (%d evaluations, %.2f s each)\n",
              with.train_seconds, evaluations, per_eval);
  std::printf("overhead: %.1f%% of the baseline's time (evaluations alone: %.1f%%)\n",
              100 * overhead, 100 * eval_seconds / base.train_seconds);
  std::printf(
      "{\"spec\":\"%s\",\"epochs\":%d,\"repeats\":%d,\"every_epochs\":%d,\"train_images\":%lld,"
      "\"test_images\":%lld,\"baseline_s\":%.3f,\"with_eval_s\":%.3f,\"evaluations\":%d,"
      "\"eval_s\":%.3f,\"overhead\":%.4f}\n",
      spec_path.c_str(), epochs, repeats, options->eval_every_epochs,
      static_cast<long long>(p.train_limit), static_cast<long long>(p.test_limit),
      base.train_seconds, with.train_seconds, evaluations, per_eval, overhead);
  return 0;
}

}  // namespace
}  // namespace clmae

int main(int argc, char** argv) { return clmae::Main(argc, argv); }
