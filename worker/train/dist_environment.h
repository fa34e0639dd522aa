#pragma once

// Where this rank is in its job, from torchrun's environment variables
// (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), as set by
// `clmae-train --nproc`, the node agent, or torchrun itself.

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/dist/dist_options.h"

namespace clmae {

// Looks a variable up; nullptr when unset. Tests pass their own.
using GetEnvFn = std::function<const char*(const char*)>;

// Fills `options` from the variables that are set (world size 1 when none
// is). INVALID_ARGUMENT names the variable and its value when one is not a
// number in range, or when WORLD_SIZE > 1 comes without MASTER_PORT.
absl::Status ApplyDistEnvironment(const GetEnvFn& getenv, DistOptions& options);

// "cuda" on a multi-rank job means this rank's device, cuda:LOCAL_RANK;
// anything else is returned as is.
std::string RankDevice(const std::string& device, const DistOptions& options);

}  // namespace clmae
