#include "worker/train/coordinator_reporter.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "services/status_mapping.h"

namespace clmae {
namespace {

// Failures are logged at most this often (each one is counted).
constexpr absl::Duration kErrorLogInterval = absl::Minutes(1);
constexpr absl::Duration kFirstRetryDelay = absl::Milliseconds(250);

bool Transient(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
      return true;
    default:
      return false;
  }
}

void SetNow(google::protobuf::Timestamp& t) {
  const absl::Time now = absl::Now();
  const int64_t seconds = absl::ToUnixSeconds(now);
  t.set_seconds(seconds);
  t.set_nanos(static_cast<int32_t>((now - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
}

}  // namespace

v1::Progress ProgressFromReport(const StepReport& r, bool full) {
  v1::Progress p;
  p.set_phase("train");
  p.set_step(r.step);
  p.set_epoch(static_cast<int32_t>(r.epoch));
  p.set_total_steps(r.total_steps);
  p.set_total_epochs(r.epochs);
  if (!full) return p;
  p.set_curriculum_factor(r.lambda_cl);
  p.set_loss_mae(r.stats.loss_mae);
  p.set_loss_masker_recon(r.stats.masker_rec);
  p.set_loss_gauss(r.stats.masker_gauss);
  p.set_loss_kl(r.stats.masker_kl);
  p.set_loss_div(r.stats.masker_div);
  p.set_loss_masker_total(r.stats.masker_total);
  p.set_lr(r.lr);
  p.set_images_per_sec(r.images_per_second);
  p.set_images_seen(r.images_seen);
  return p;
}

v1::Quality QualityFromReport(const QualityReport& r) {
  v1::Quality q;
  q.set_step(r.step);
  q.set_epoch(r.epoch);
  q.set_knn_top1(r.knn_top1);
  q.set_knn_top1_patch_mean(r.knn_top1_patch_mean);
  q.set_curriculum_factor(r.lambda_cl);
  q.set_train_images(r.train_images);
  q.set_test_images(r.test_images);
  return q;
}

v1::JobResult ResultFromEvaluation(const EvalResult& result, const std::string& output_dir) {
  v1::JobResult out;
  const std::pair<const char*, double> metrics[] = {
      {"knn_top1", result.knn_top1},
      {"knn_top1_patch_mean", result.knn_top1_patch_mean},
      {"probe_top1", result.probe_top1},
      {"raw_pixels_knn_top1", result.raw_pixels_knn_top1},
      {"random_init_knn_top1", result.random_init_knn_top1},
      {"random_init_knn_top1_patch_mean", result.random_init_knn_top1_patch_mean}};
  for (const auto& [name, value] : metrics) {
    if (std::isfinite(value)) (*out.mutable_metrics())[name] = value;
  }
  out.set_output_dir(output_dir);
  return out;
}

absl::StatusOr<std::unique_ptr<CoordinatorReporter>> CoordinatorReporter::Create(
    const CoordinatorReporterOptions& options) {
  if (options.job_id.empty()) return absl::InvalidArgumentError("job_id: empty");
  if (options.attempt < 1) {
    return absl::InvalidArgumentError(absl::StrCat("attempt: ", options.attempt, " is below 1"));
  }
  if (options.rank < 0) {
    return absl::InvalidArgumentError(absl::StrCat("rank: ", options.rank, " is negative"));
  }
  if (options.min_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("min_interval: must be positive");
  }
  if (options.result_attempts < 1) {
    return absl::InvalidArgumentError("result_attempts: must be at least 1");
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeClientChannel(options.client);
  if (!channel.ok()) return channel.status();
  std::unique_ptr<CoordinatorReporter> reporter(
      new CoordinatorReporter(options, v1::WorkerControl::NewStub(*channel)));
  reporter->thread_ = std::thread([r = reporter.get()] { r->SendLoop(); });
  return reporter;
}

CoordinatorReporter::CoordinatorReporter(const CoordinatorReporterOptions& options,
                                         std::unique_ptr<v1::WorkerControl::Stub> stub)
    : options_(options), stub_(std::move(stub)) {}

CoordinatorReporter::~CoordinatorReporter() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void CoordinatorReporter::OnStart(int64_t start_step, int64_t total_steps) {
  absl::MutexLock lock(&mu_);
  progress_.set_phase(phase_);
  progress_.set_step(start_step);
  progress_.set_total_steps(total_steps);
  has_progress_ = true;
}

void CoordinatorReporter::OnStep(const StepReport& report) {
  v1::Progress progress = ProgressFromReport(report, options_.rank == 0);
  absl::MutexLock lock(&mu_);
  progress_ = std::move(progress);
  progress_.set_phase(phase_);
  if (quality_.has_value()) *progress_.mutable_quality() = *quality_;
  has_progress_ = true;
}

void CoordinatorReporter::OnQuality(const QualityReport& report) {
  if (options_.rank != 0) return;
  absl::MutexLock lock(&mu_);
  quality_ = QualityFromReport(report);
  *progress_.mutable_quality() = *quality_;
  has_progress_ = true;
}

void CoordinatorReporter::OnPhase(const std::string& phase) {
  absl::MutexLock lock(&mu_);
  phase_ = phase;
  progress_.set_phase(phase);
  has_progress_ = true;
}

void CoordinatorReporter::OnEvaluation(const EvalResult& result) {
  if (options_.rank != 0) return;
  v1::ReportProgressRequest request;
  {
    absl::MutexLock lock(&mu_);
    pending_result_ = ResultFromEvaluation(result, options_.output_dir);
    request = LatestRequest();
    *request.mutable_result() = *pending_result_;
  }
  if (SendWithRetries(request).ok()) {
    absl::MutexLock lock(&mu_);
    pending_result_.reset();
  }
}

absl::Status CoordinatorReporter::Flush() {
  v1::ReportProgressRequest request;
  {
    absl::MutexLock lock(&mu_);
    if (!has_progress_ && !pending_result_.has_value()) return absl::OkStatus();
    request = LatestRequest();
    if (pending_result_.has_value()) *request.mutable_result() = *pending_result_;
  }
  absl::Status status = SendWithRetries(request);
  if (status.ok() && request.has_result()) {
    absl::MutexLock lock(&mu_);
    pending_result_.reset();
  }
  return status;
}

v1::ReportProgressRequest CoordinatorReporter::LatestRequest() {
  v1::ReportProgressRequest request;
  request.set_job_id(options_.job_id);
  request.set_attempt(options_.attempt);
  request.set_rank(options_.rank);
  *request.mutable_progress() = progress_;
  SetNow(*request.mutable_progress()->mutable_update_time());
  return request;
}

void CoordinatorReporter::SendLoop() {
  absl::Time next = absl::InfinitePast();
  for (;;) {
    v1::ReportProgressRequest request;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || has_progress_; };
      mu_.Await(absl::Condition(&ready));
      // The first report goes at once; then one per interval, the latest
      // progress or, when training has not logged since, the same again.
      mu_.AwaitWithDeadline(absl::Condition(&stop_), next);
      if (stop_) return;
      request = LatestRequest();
    }
    next = absl::Now() + options_.min_interval;
    Send(request).IgnoreError();  // counted and logged in Send()
  }
}

absl::Status CoordinatorReporter::SendWithRetries(const v1::ReportProgressRequest& request) {
  absl::Duration delay = kFirstRetryDelay;
  absl::Status status;
  for (int attempt = 1; attempt <= options_.result_attempts; ++attempt) {
    status = Send(request);
    if (status.ok() || !Transient(status)) return status;
    if (attempt < options_.result_attempts) {
      absl::SleepFor(delay);
      delay *= 2;
    }
  }
  return status;
}

absl::Status CoordinatorReporter::Send(const v1::ReportProgressRequest& request) {
  absl::MutexLock lock(&send_mu_);
  grpc::ClientContext context;
  AuthorizeCall(context, options_.client);
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
  v1::ReportProgressResponse response;
  const absl::Status status = FromGrpcStatus(stub_->ReportProgress(&context, request, &response));
  if (status.ok()) return status;
  ++rpc_errors_;
  const bool stop = status.code() == absl::StatusCode::kFailedPrecondition ||
                    status.code() == absl::StatusCode::kNotFound;
  const bool first_stop = stop && !superseded_.exchange(true);
  const absl::Time now = absl::Now();
  if (first_stop || now - last_error_log_ >= kErrorLogInterval) {
    last_error_log_ = now;
    std::fprintf(stderr, "clmae-train: progress report to %s failed (%lld so far): %s\n",
                 options_.client.address.c_str(), static_cast<long long>(rpc_errors_.load()),
                 status.ToString().c_str());
    std::fflush(stderr);
  }
  return status;
}

}  // namespace clmae
