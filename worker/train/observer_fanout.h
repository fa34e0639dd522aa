#pragma once

// Several TrainObservers as one: the console and the coordinator reporter
// both hear every callback, in the order they were added.

#include <string>
#include <vector>

#include "worker/engine/train/trainer.h"

namespace clmae {

// Not thread-safe, like the observers it calls (the training thread).
// Holds the observers by pointer; they must outlive it.
class ObserverFanout final : public TrainObserver {
 public:
  void Add(TrainObserver* observer) {
    if (observer != nullptr) observers_.push_back(observer);
  }
  bool empty() const { return observers_.empty(); }

  void OnStart(int64_t start_step, int64_t total_steps) override {
    for (auto* o : observers_) o->OnStart(start_step, total_steps);
  }
  void OnStep(const StepReport& report) override {
    for (auto* o : observers_) o->OnStep(report);
  }
  void OnIteration(const StepReport& report) override {
    for (auto* o : observers_) o->OnIteration(report);
  }
  void OnCheckpoint(const std::string& path, int64_t step) override {
    for (auto* o : observers_) o->OnCheckpoint(path, step);
  }
  void OnExport(const std::string& kind, const std::string& path, int64_t step) override {
    for (auto* o : observers_) o->OnExport(kind, path, step);
  }
  // False when any observer still needs the file.
  bool MayDeleteCheckpoint(const std::string& path) override {
    bool may = true;
    for (auto* o : observers_) may = o->MayDeleteCheckpoint(path) && may;
    return may;
  }
  void OnEvaluation(const EvalResult& result) override {
    for (auto* o : observers_) o->OnEvaluation(result);
  }
  void OnQuality(const QualityReport& report) override {
    for (auto* o : observers_) o->OnQuality(report);
  }
  void OnMessage(const std::string& line) override {
    for (auto* o : observers_) o->OnMessage(line);
  }
  void OnPhase(const std::string& phase) override {
    for (auto* o : observers_) o->OnPhase(phase);
  }

 private:
  std::vector<TrainObserver*> observers_;
};

}  // namespace clmae
