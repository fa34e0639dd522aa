#pragma once

// The node's CUDA devices, found at run time through the driver library
// (libcuda.so.1, loaded with dlopen) so the agent links no CUDA and runs on
// machines without it.

#include <vector>

#include "absl/status/statusor.h"
#include "clmae/v1/worker.pb.h"

namespace clmae {

// The CUDA devices the driver reports, in CUDA's own order (the one
// CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER shape, which is what a
// trainer's "cuda:N" names), with kind "cuda", name and total memory.
// An empty list when there is no driver library or no device (not an
// error: the node then offers CPU slots). INTERNAL when the driver is
// present but fails (its error name in the message). Thread-safe; the first
// call initialises the driver in this process.
absl::StatusOr<std::vector<v1::Device>> DiscoverCudaDevices();

}  // namespace clmae
