#include "worker/train/console_reporter.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_format.h"

namespace clmae {

ConsoleReporter::ConsoleReporter(std::FILE* out, std::string prefix)
    : out_(out), prefix_(std::move(prefix)), start_(std::chrono::steady_clock::now()) {}

std::string ConsoleReporter::FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

void ConsoleReporter::OnStart(int64_t start_step, int64_t total_steps) {
  start_step_ = start_step;
  start_ = std::chrono::steady_clock::now();
  absl::FPrintF(out_, "%straining: steps %d..%d\n", prefix_, start_step, total_steps);
  std::fflush(out_);
}

void ConsoleReporter::OnStep(const StepReport& r) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int64_t done = r.step - start_step_;
  const double eta = done > 0 ? elapsed / done * (r.total_steps - r.step) : NAN;
  const auto& s = r.stats;
  std::string masker;
  if (s.masker_total != 0 || s.masker_rec != 0) {
    masker = absl::StrFormat(" | masker %.4f (rec %.4f gauss %.4f kl %.4f div %.4f) keep %.2f",
                             s.masker_total, s.masker_rec, s.masker_gauss, s.masker_kl,
                             s.masker_div, s.mask_mean_score);
  }
  absl::FPrintF(out_,
                "%sstep %d/%d (%.0f%%) epoch %d/%d | lambda_cl %+.3f | mae %.4f%s | lr %.2e | "
                "%.1f img/s | eta %s\n",
                prefix_, r.step, r.total_steps,
                100.0 * r.step / std::max<int64_t>(1, r.total_steps),
                std::min<int64_t>(r.epoch + 1, r.epochs), r.epochs, r.lambda_cl, s.loss_mae, masker,
                r.lr, r.images_per_second, FormatDuration(eta));
  std::fflush(out_);
}

void ConsoleReporter::OnCheckpoint(const std::string& path, int64_t step) {
  absl::FPrintF(out_, "%scheckpoint at step %d: %s\n", prefix_, step, path);
  std::fflush(out_);
}

void ConsoleReporter::OnEvaluation(const EvalResult& r) {
  absl::FPrintF(out_,
                "%sevaluation (%d train / %d test images): k-NN top-1 %.2f%% (class token), "
                "%.2f%% (patch mean)",
                prefix_, r.train_images, r.test_images, 100 * r.knn_top1,
                100 * r.knn_top1_patch_mean);
  if (!std::isnan(r.probe_top1))
    absl::FPrintF(out_, ", linear probe top-1 %.2f%%", 100 * r.probe_top1);
  absl::FPrintF(out_, "\n");
  if (!std::isnan(r.raw_pixels_knn_top1) && !std::isnan(r.random_init_knn_top1)) {
    absl::FPrintF(out_,
                  "%sbaselines on the same split: k-NN top-1 %.2f%% on raw pixels; untrained "
                  "encoder %.2f%% (class token), %.2f%% (patch mean)\n",
                  prefix_, 100 * r.raw_pixels_knn_top1, 100 * r.random_init_knn_top1,
                  100 * r.random_init_knn_top1_patch_mean);
  }
  std::fflush(out_);
}

void ConsoleReporter::OnQuality(const QualityReport& q) {
  absl::FPrintF(out_,
                "%seval at step %d (epoch %.2f, lambda_cl %+.3f): k-NN top-1 %.2f%% (class "
                "token), %.2f%% (patch mean) on %d/%d images, %.1f s\n",
                prefix_, q.step, q.epoch, q.lambda_cl, 100 * q.knn_top1,
                100 * q.knn_top1_patch_mean, q.train_images, q.test_images, q.seconds);
  std::fflush(out_);
}

void ConsoleReporter::OnMessage(const std::string& line) {
  absl::FPrintF(out_, "%s%s\n", prefix_, line);
  std::fflush(out_);
}

}  // namespace clmae
