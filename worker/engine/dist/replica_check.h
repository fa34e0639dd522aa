#pragma once

// Data parallelism is only correct while every rank holds the same weights.
// A fingerprint of the raw bytes of every parameter, compared across ranks,
// catches a replica that drifted (a missed all-reduce, a rank resumed from
// another checkpoint) instead of training on silently.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "torch/types.h"
#include "worker/engine/dist/collectives.h"

namespace clmae {

// 64-bit hash of the bytes, shapes and order of `tensors` (copied to the CPU
// when needed). Equal tensors give equal fingerprints on any machine.
uint64_t WeightFingerprint(const std::vector<torch::Tensor>& tensors);

// Compares this rank's fingerprint with every other rank's. Returns the
// common fingerprint; FAILED_PRECONDITION naming `when` when the replicas
// differ; the collective's error when a rank is gone.
absl::StatusOr<uint64_t> CheckReplicasIdentical(Collectives& collectives,
                                                const std::vector<torch::Tensor>& tensors,
                                                const std::string& when);

}  // namespace clmae
