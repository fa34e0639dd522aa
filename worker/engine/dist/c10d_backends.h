#pragma once

// Construction of c10d's process groups, one translation unit per backend:
// their headers need USE_C10D_GLOO / USE_C10D_NCCL and third-party headers
// (Gloo's, nccl.h) that nothing else in the engine should see.

#include <chrono>

#include "absl/status/statusor.h"
#include "torch/csrc/distributed/c10d/Backend.hpp"
#include "torch/csrc/distributed/c10d/Store.hpp"

namespace clmae {

// Gloo over TCP, bound to the interface that reaches `master_addr`.
absl::StatusOr<c10::intrusive_ptr<c10d::Backend>> NewGlooBackend(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int world_size,
    const std::string& master_addr, std::chrono::milliseconds timeout);

// NCCL on the current CUDA device, with async error handling on.
// UNIMPLEMENTED when this build has no NCCL.
absl::StatusOr<c10::intrusive_ptr<c10d::Backend>> NewNcclBackend(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int world_size,
    std::chrono::milliseconds timeout);

}  // namespace clmae
