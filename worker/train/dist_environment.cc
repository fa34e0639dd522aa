#include "worker/train/dist_environment.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace clmae {
namespace {

absl::Status ReadInt(const GetEnvFn& getenv, const char* name, int lo, int hi, int& out) {
  const char* value = getenv(name);
  if (value == nullptr) return absl::OkStatus();
  int parsed = 0;
  if (!absl::SimpleAtoi(value, &parsed) || parsed < lo || parsed > hi) {
    return absl::InvalidArgumentError(absl::StrCat("environment variable ", name, "='", value,
                                                   "' must be an integer in [", lo, ", ", hi, "]"));
  }
  out = parsed;
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyDistEnvironment(const GetEnvFn& getenv, DistOptions& options) {
  if (auto s = ReadInt(getenv, "WORLD_SIZE", 1, 1 << 20, options.world_size); !s.ok()) return s;
  if (auto s = ReadInt(getenv, "RANK", 0, options.world_size - 1, options.rank); !s.ok()) return s;
  if (auto s = ReadInt(getenv, "LOCAL_RANK", 0, 1 << 16, options.local_rank); !s.ok()) return s;
  if (auto s = ReadInt(getenv, "MASTER_PORT", 1, 65535, options.master_port); !s.ok()) return s;
  if (const char* addr = getenv("MASTER_ADDR"); addr != nullptr && *addr != '\0') {
    options.master_addr = addr;
  }
  if (options.world_size > 1 && getenv("MASTER_PORT") == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("WORLD_SIZE=", options.world_size,
                     " needs MASTER_PORT (and MASTER_ADDR unless rank 0 is on this machine); "
                     "or use clmae-train --nproc N to start N local ranks"));
  }
  return absl::OkStatus();
}

std::string RankDevice(const std::string& device, const DistOptions& options) {
  if (device == "cuda" && options.world_size > 1) return absl::StrCat("cuda:", options.local_rank);
  return device;
}

}  // namespace clmae
