#pragma once

// The narrow set of collectives the trainer needs (CONVENTIONS.md,
// "Distributed"); backends are chosen at run time. World size 1 needs no
// network: LocalCollectives.

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "torch/types.h"

namespace clmae {

// Thread-compatible: one trainer thread calls it. Errors name the collective.
class Collectives {
 public:
  virtual ~Collectives() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Replaces each defined .grad() of `params` by its mean over ranks.
  virtual absl::Status AverageGradients(const std::vector<torch::Tensor>& params) = 0;
  // Copies rank 0's values of `tensors` into every rank's, in place.
  virtual absl::Status Broadcast(const std::vector<torch::Tensor>& tensors) = 0;
  // Replaces each value by its mean over ranks.
  virtual absl::Status AverageScalars(std::vector<double>& values) = 0;
  virtual absl::Status Barrier() = 0;
};

// World size 1: every collective is the identity.
class LocalCollectives final : public Collectives {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  absl::Status AverageGradients(const std::vector<torch::Tensor>&) override {
    return absl::OkStatus();
  }
  absl::Status Broadcast(const std::vector<torch::Tensor>&) override { return absl::OkStatus(); }
  absl::Status AverageScalars(std::vector<double>&) override { return absl::OkStatus(); }
  absl::Status Barrier() override { return absl::OkStatus(); }
};

}  // namespace clmae
