#pragma once

// What a job's last progress report says about the time it has left: used by
// the coordinator's backfill estimates and by clmaectl's ETA.

#include <optional>

#include "absl/time/time.h"
#include "clmae/v1/job.pb.h"

namespace clmae {

// Time left at the reported throughput, from the steps left and the images
// one step takes (batch size per rank × world size, with the spec's
// defaults); nullopt without a throughput or a total.
std::optional<absl::Duration> EstimateRemaining(const v1::Job& job);

}  // namespace clmae
