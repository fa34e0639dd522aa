#pragma once

// DDP-style gradient averaging over a c10d backend: parameters are grouped,
// in reverse registration order (roughly the order backward produces their
// gradients), into flat buckets of about `bucket_bytes`; a hook on each
// parameter's gradient accumulator copies its gradient into its bucket, and
// when a bucket is complete its all-reduce starts while backward goes on.
// Buckets are launched strictly in index order so that every rank issues the
// same collectives in the same sequence (NCCL requires it).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "torch/csrc/distributed/c10d/Backend.hpp"
#include "torch/csrc/distributed/c10d/Work.hpp"
#include "torch/types.h"
#include "worker/engine/dist/collectives.h"

namespace torch::autograd {
struct Node;
}  // namespace torch::autograd

namespace clmae {

class BucketedGradientAverager final : public GradientAverager {
 public:
  // `params` must be leaves that require grad now (their gradient
  // accumulators are created and held here). `backend` is shared with the
  // owning Collectives, which outlives this object.
  static absl::StatusOr<std::unique_ptr<BucketedGradientAverager>> Create(
      c10::intrusive_ptr<c10d::Backend> backend, int rank, int world_size,
      std::vector<torch::Tensor> params, std::string name, GradientAveragerOptions options,
      absl::Duration timeout);
  ~BucketedGradientAverager() override;

  void Arm() override;
  absl::Status Finish() override;
  double last_wait_seconds() const override { return last_wait_seconds_; }

  int num_buckets() const { return static_cast<int>(buckets_.size()); }

 private:
  struct Bucket {
    std::vector<int> members;      // indices into params_
    std::vector<int64_t> offsets;  // element offset of each member in `flat`
    torch::Tensor flat;
    int pending = 0;  // members whose gradient has not arrived
    c10::intrusive_ptr<c10d::Work> work;
  };

  BucketedGradientAverager(c10::intrusive_ptr<c10d::Backend> backend, int rank, int world_size,
                           std::vector<torch::Tensor> params, std::string name,
                           GradientAveragerOptions options, absl::Duration timeout);
  absl::Status Build();
  void OnGradientReady(int param);  // runs on the autograd thread
  void LaunchReadyBuckets();
  void Launch(int bucket);
  std::string Describe(int bucket) const;

  c10::intrusive_ptr<c10d::Backend> backend_;
  int rank_;
  int world_size_;
  std::vector<torch::Tensor> params_;
  std::string name_;
  GradientAveragerOptions options_;
  absl::Duration timeout_;
  std::vector<Bucket> buckets_;
  std::vector<int> bucket_of_;
  std::vector<bool> ready_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<uintptr_t> hook_keys_;
  bool armed_ = false;
  size_t next_launch_ = 0;
  std::string hook_error_;  // a launch that threw inside backward, reported by Finish
  double last_wait_seconds_ = 0;
};

// Runs `fn` and turns a c10d failure into a status naming the rank and what
// was being done. Network errors and timeouts become UNAVAILABLE and
// DEADLINE_EXCEEDED.
absl::Status CollectiveStatus(int rank, int world_size, const std::string& what,
                              const std::function<void()>& fn);

}  // namespace clmae
