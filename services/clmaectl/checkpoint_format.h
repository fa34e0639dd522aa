#pragma once

// How clmaectl shows checkpoints: kind names, sizes, losses and the
// download's progress line. Pure functions, thread-safe.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "clmae/v1/checkpoint.pb.h"
#include "common/proto_enums.h"

namespace clmae::ctl {

// Binary units with one decimal past KiB: "512 B", "1.5 KiB", "3.0 MiB",
// "1.2 GiB".
std::string FormatBytes(int64_t bytes);

// The MAE loss, with the masker's total when it is non-zero:
// "0.4123 (masker 0.3000)".
std::string FormatCheckpointLoss(const v1::CheckpointMetadata& metadata);

// "ck-1 (step 400, full, 3.0 MiB)".
std::string DescribeCheckpoint(const v1::Checkpoint& checkpoint);

// One redraw of the download bar:
// "[########------------]  42%  1.3/3.0 MiB  85.3 MB/s  ETA 5s". Without a
// rate (nullopt: nothing measured yet) the rate and ETA read "-".
std::string DownloadProgressLine(int64_t done, int64_t total,
                                 std::optional<double> bytes_per_second);

}  // namespace clmae::ctl
