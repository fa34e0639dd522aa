#include "services/clmaectl/job_format.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace clmae::ctl {
std::optional<absl::Time> FromProtoTime(const google::protobuf::Timestamp& time) {
  if (time.seconds() == 0 && time.nanos() == 0) return std::nullopt;
  return absl::FromUnixSeconds(time.seconds()) + absl::Nanoseconds(time.nanos());
}

std::string FormatAge(absl::Duration age) {
  const int64_t s = std::max<int64_t>(0, absl::ToInt64Seconds(age));
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrCat(s / 60, "m");
  if (s < 86400) return absl::StrCat(s / 3600, "h");
  return absl::StrCat(s / 86400, "d");
}

std::string ShortDuration(absl::Duration duration) {
  const int64_t s = std::max<int64_t>(0, absl::ToInt64Seconds(duration + absl::Milliseconds(500)));
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrCat(s, "s");
}

std::string ProgressBar(double fraction, int width) {
  if (!std::isfinite(fraction)) fraction = 0;
  fraction = std::clamp(fraction, 0.0, 1.0);
  const int filled = static_cast<int>(std::floor(fraction * width));
  return absl::StrCat("[", std::string(filled, '#'), std::string(width - filled, '-'), "]");
}

double ProgressFraction(const v1::Progress& progress) {
  if (progress.total_steps() <= 0) return 0;
  return std::clamp(static_cast<double>(progress.step()) / progress.total_steps(), 0.0, 1.0);
}

std::string FormatSteps(const v1::Progress& progress) {
  if (progress.total_steps() <= 0) return "-";
  return absl::StrCat(progress.step(), "/", progress.total_steps());
}

std::string FormatEpochs(const v1::Progress& progress) {
  if (progress.total_epochs() <= 0) return "-";
  return absl::StrCat(std::min(progress.epoch() + 1, progress.total_epochs()), "/",
                      progress.total_epochs());
}

std::string FormatLambda(double curriculum_factor) {
  return absl::StrFormat("%+.3f", curriculum_factor);
}

std::string FormatLosses(const v1::Progress& p) {
  std::string text = absl::StrFormat("mae %.4f", p.loss_mae());
  if (p.loss_masker_recon() != 0 || p.loss_gauss() != 0 || p.loss_kl() != 0 || p.loss_div() != 0) {
    absl::StrAppendFormat(&text, " m.rec %.4f gauss %.4f kl %.4f div %.4f", p.loss_masker_recon(),
                          p.loss_gauss(), p.loss_kl(), p.loss_div());
  }
  return text;
}

std::string FormatQuality(const v1::Progress& progress) {
  if (!progress.has_quality()) return "";
  const v1::Quality& q = progress.quality();
  return absl::StrFormat(
      "k-NN top-1 %.1f%% (class token), %.1f%% (patch mean) at step %d, epoch %.2f (%d/%d images)",
      100 * q.knn_top1(), 100 * q.knn_top1_patch_mean(), q.step(), q.epoch(), q.train_images(),
      q.test_images());
}

std::string FormatQualityShort(const v1::Progress& progress) {
  if (!progress.has_quality()) return "";
  return absl::StrFormat("k-NN %.1f%%/%.1f%%", 100 * progress.quality().knn_top1(),
                         100 * progress.quality().knn_top1_patch_mean());
}

std::string FormatMetrics(const v1::JobResult& result) {
  const std::map<std::string, double> sorted(result.metrics().begin(), result.metrics().end());
  return absl::StrJoin(sorted, ", ", [](std::string* out, const auto& entry) {
    absl::StrAppendFormat(out, "%s %.4f", entry.first, entry.second);
  });
}

}  // namespace clmae::ctl
