#pragma once

// Collectives over c10d, the communication layer under PyTorch's DDP: a
// TCPStore hosted by rank 0 for the rendezvous, then ProcessGroupNCCL for CUDA
// tensors or ProcessGroupGloo for CPU tensors. Why Gloo's headers come from
// Debian's libgloo-dev and what that relies on: docs/distributed.md.

#include <memory>

#include "absl/status/statusor.h"
#include "torch/types.h"
#include "worker/engine/dist/collectives.h"
#include "worker/engine/dist/dist_options.h"

namespace clmae {

// Joins the job's process group. World size 1 returns LocalCollectives and
// touches no network. Otherwise rank 0 listens on master_port, every rank
// connects within options.timeout, and the backend follows `device` (NCCL
// for CUDA, Gloo for CPU). UNAVAILABLE / DEADLINE_EXCEEDED when the
// rendezvous fails (a rank missing, the port taken); INVALID_ARGUMENT for
// inconsistent options; UNIMPLEMENTED for CUDA in a build without NCCL.
absl::StatusOr<std::unique_ptr<Collectives>> ConnectCollectives(const DistOptions& options,
                                                                const torch::Device& device);

}  // namespace clmae
