#pragma once

// The narrow set of collectives the trainer needs (docs/conventions.md,
// "Distributed"); the backend is chosen at run time by device: c10d's
// ProcessGroupNCCL on CUDA, ProcessGroupGloo on CPU (c10d_collectives.h).
// World size 1 needs no network: LocalCollectives.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "torch/types.h"

namespace clmae {

struct GradientAveragerOptions {
  // Gradients are copied into flat buckets of about this many bytes; each
  // bucket's all-reduce starts as soon as backward has produced all of it.
  int64_t bucket_bytes = 25ll << 20;
  // false: nothing is launched during backward; Finish() reduces every bucket
  // (the baseline the benchmark compares overlap against).
  bool overlap = true;
};

// Averages the gradients of one network's parameters over ranks. Not
// thread-safe: the trainer thread calls Arm(), runs backward, then Finish().
// Every rank must make the same calls in the same order.
class GradientAverager {
 public:
  virtual ~GradientAverager() = default;
  // The next backward's gradients are final for this step: launch each
  // bucket's all-reduce as soon as backward has produced it.
  virtual void Arm() = 0;
  // Launches what backward left, waits for every bucket and replaces each
  // defined .grad() by its mean over ranks. Errors name the rank, the
  // network and the bucket; after an error the process group is unusable.
  virtual absl::Status Finish() = 0;
  // Seconds the last Finish() spent waiting for communication.
  virtual double last_wait_seconds() const = 0;
};

// Thread-compatible: one trainer thread calls it. Errors name the rank and
// the collective.
class Collectives {
 public:
  virtual ~Collectives() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // An averager for `params` (leaf tensors that require grad), called
  // `name` in errors ("MAE gradients").
  virtual absl::StatusOr<std::unique_ptr<GradientAverager>> NewGradientAverager(
      std::vector<torch::Tensor> params, std::string name,
      const GradientAveragerOptions& options) = 0;
  // Copies rank 0's values of `tensors` into every rank's, in place.
  virtual absl::Status Broadcast(const std::vector<torch::Tensor>& tensors) = 0;
  // Replaces each value by its mean over ranks.
  virtual absl::Status AverageScalars(std::vector<double>& values) = 0;
  // Replaces each value by its minimum (first half of the result) and
  // maximum over ranks: `values` of size n becomes size 2n.
  virtual absl::Status MinMaxScalars(std::vector<double>& values) = 0;
  virtual absl::Status Barrier() = 0;
};

// World size 1: every collective is the identity.
class LocalCollectives final : public Collectives {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  absl::StatusOr<std::unique_ptr<GradientAverager>> NewGradientAverager(
      std::vector<torch::Tensor>, std::string, const GradientAveragerOptions&) override;
  absl::Status Broadcast(const std::vector<torch::Tensor>&) override { return absl::OkStatus(); }
  absl::Status AverageScalars(std::vector<double>&) override { return absl::OkStatus(); }
  absl::Status MinMaxScalars(std::vector<double>& values) override;
  absl::Status Barrier() override { return absl::OkStatus(); }
};

}  // namespace clmae
