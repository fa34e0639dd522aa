#pragma once

// Console progress of clmae-train: one line per logged iteration with step,
// epoch, lambda_cl, every loss term, lr, images/s and ETA.

#include <chrono>
#include <cstdio>
#include <string>

#include "worker/engine/train/trainer.h"

namespace clmae {

// Writes to `out` (stdout by default); not thread-safe (the trainer calls it
// from its one thread).
class ConsoleReporter : public TrainObserver {
 public:
  explicit ConsoleReporter(std::FILE* out = stdout, std::string prefix = "");
  void OnStart(int64_t start_step, int64_t total_steps) override;
  void OnStep(const StepReport& report) override;
  void OnCheckpoint(const std::string& path, int64_t step) override;
  void OnEvaluation(const EvalResult& result) override;
  void OnQuality(const QualityReport& report) override;
  void OnMessage(const std::string& line) override;

  // "1h02m", "3m07s", "12s".
  static std::string FormatDuration(double seconds);

 private:
  std::FILE* out_;
  std::string prefix_;
  int64_t start_step_ = 0;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace clmae
