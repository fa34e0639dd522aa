#include "services/clmaectl/checkpoint_format.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "services/clmaectl/job_format.h"

namespace clmae::ctl {
namespace {

// The unit FormatBytes picks for `bytes`, so that done and total share one.
struct Unit {
  double scale;
  absl::string_view name;
};

Unit UnitFor(int64_t bytes) {
  constexpr Unit kUnits[] = {{1.0, "B"},
                             {1024.0, "KiB"},
                             {1024.0 * 1024, "MiB"},
                             {1024.0 * 1024 * 1024, "GiB"},
                             {1024.0 * 1024 * 1024 * 1024, "TiB"}};
  Unit unit = kUnits[0];
  for (const Unit& u : kUnits) {
    if (std::abs(static_cast<double>(bytes)) >= u.scale) unit = u;
  }
  return unit;
}

std::string InUnit(int64_t bytes, const Unit& unit) {
  if (unit.scale == 1.0) return absl::StrCat(bytes);
  return absl::StrFormat("%.1f", static_cast<double>(bytes) / unit.scale);
}

}  // namespace

std::string FormatBytes(int64_t bytes) {
  const Unit unit = UnitFor(bytes);
  return absl::StrCat(InUnit(bytes, unit), " ", unit.name);
}

std::string FormatCheckpointLoss(const v1::CheckpointMetadata& metadata) {
  std::string loss = absl::StrFormat("%.4f", metadata.loss_mae());
  if (metadata.loss_masker_total() != 0) {
    absl::StrAppend(&loss, absl::StrFormat(" (masker %.4f)", metadata.loss_masker_total()));
  }
  return loss;
}

std::string DescribeCheckpoint(const v1::Checkpoint& checkpoint) {
  const v1::CheckpointMetadata& m = checkpoint.metadata();
  return absl::StrCat(checkpoint.id(), " (step ", m.step(), ", ", CheckpointKindName(m.kind()),
                      ", ", FormatBytes(m.size_bytes()), ")");
}

std::string DownloadProgressLine(int64_t done, int64_t total,
                                 std::optional<double> bytes_per_second) {
  const double fraction = total > 0 ? static_cast<double>(done) / total : 1.0;
  const Unit unit = UnitFor(total);
  std::string line =
      absl::StrFormat("%s %3.0f%%  %s/%s %s", ProgressBar(fraction, 20), 100 * fraction,
                      InUnit(done, unit), InUnit(total, unit), unit.name);
  if (bytes_per_second.has_value() && *bytes_per_second > 0) {
    absl::StrAppend(&line, absl::StrFormat("  %.1f MB/s", *bytes_per_second / 1e6));
    const double left = static_cast<double>(total - done) / *bytes_per_second;
    absl::StrAppend(&line, "  ETA ", ShortDuration(absl::Seconds(std::ceil(left))));
  } else {
    absl::StrAppend(&line, "  - MB/s  ETA -");
  }
  return line;
}

}  // namespace clmae::ctl
