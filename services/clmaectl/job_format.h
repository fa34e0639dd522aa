#pragma once

// How clmaectl shows the pieces of a job: state names, times, progress, loss
// terms, results. Pure functions, thread-safe.

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "clmae/v1/job.pb.h"
#include "common/proto_enums.h"
#include "google/protobuf/timestamp.pb.h"

namespace clmae::ctl {

// An unset timestamp (0 seconds, 0 nanos) is nullopt.
std::optional<absl::Time> FromProtoTime(const google::protobuf::Timestamp& time);

// Coarse, for ages: "45s", "12m", "3h", "2d"; "0s" for a negative duration.
std::string FormatAge(absl::Duration age);

// Finer, for ETAs and run times: "12s", "3m05s", "1h02m".
std::string ShortDuration(absl::Duration duration);

// "[########------------]" with `width` cells for `fraction` in [0, 1]
// (clamped).
std::string ProgressBar(double fraction, int width);

// step / total_steps in [0, 1]; 0 without a total.
double ProgressFraction(const v1::Progress& progress);

// "420/1000"; "-" before the first report.
std::string FormatSteps(const v1::Progress& progress);

// The epoch in progress, 1-based like the trainer's console: "3/10"; "-"
// before the first report.
std::string FormatEpochs(const v1::Progress& progress);

// "+0.200"; λ_cl is +1 for a partner masker, -1 for an adversary.
std::string FormatLambda(double curriculum_factor);

// "mae 0.4123 m.rec 0.2100 gauss 0.0123 kl 0.0042 div 0.1500"; the masker's
// terms only when one of them is non-zero (plain-MAE jobs have none).
std::string FormatLosses(const v1::Progress& progress);

// "knn_top1 0.8123, probe_top1 0.8412", sorted by name; "" when none.
std::string FormatMetrics(const v1::JobResult& result);

// The latest evaluation during training: "k-NN top-1 68.2% (class token),
// 64.0% (patch mean) at step 94, epoch 1.00 (1000/500 images)"; "" when
// there is none yet.
std::string FormatQuality(const v1::Progress& progress);

// The same, short, for one-line views: "k-NN 68.2%/64.0%"; "" when none.
std::string FormatQualityShort(const v1::Progress& progress);

}  // namespace clmae::ctl
