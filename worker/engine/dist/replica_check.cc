#include "worker/engine/dist/replica_check.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace {

uint64_t Mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  h *= 0xff51afd7ed558ccdULL;
  return h ^ (h >> 33);
}

}  // namespace

uint64_t WeightFingerprint(const std::vector<torch::Tensor>& tensors) {
  uint64_t h = 0x6a09e667f3bcc908ULL;
  for (const auto& t : tensors) {
    auto c = t.detach().to(torch::kCPU).contiguous();
    h = Mix(h, static_cast<uint64_t>(c.scalar_type()));
    for (int64_t s : c.sizes()) h = Mix(h, static_cast<uint64_t>(s));
    const auto* bytes = static_cast<const unsigned char*>(c.data_ptr());
    const size_t n = c.numel() * c.element_size();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t word;
      std::memcpy(&word, bytes + i, 8);
      h = Mix(h, word);
    }
    uint64_t tail = 0;
    std::memcpy(&tail, bytes + i, n - i);
    h = Mix(h, tail ^ (static_cast<uint64_t>(n - i) << 56));
  }
  return h;
}

absl::StatusOr<uint64_t> CheckReplicasIdentical(Collectives& collectives,
                                                const std::vector<torch::Tensor>& tensors,
                                                const std::string& when) {
  ASSIGN_OR_RETURN(const uint64_t mine,
                   CatchAll("fingerprinting the weights", [&]() -> absl::StatusOr<uint64_t> {
                     return WeightFingerprint(tensors);
                   }));
  if (collectives.world_size() == 1) return mine;
  // Two 32-bit halves: exact in a double.
  std::vector<double> v = {static_cast<double>(mine >> 32),
                           static_cast<double>(mine & 0xffffffffu)};
  RETURN_IF_ERROR(collectives.MinMaxScalars(v));
  if (v[0] != v[2] || v[1] != v[3]) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the %d replicas differ %s (rank %d's weight fingerprint is %016x); data-parallel "
        "training needs identical weights on every rank",
        collectives.world_size(), when, collectives.rank(), mine));
  }
  return mine;
}

}  // namespace clmae
