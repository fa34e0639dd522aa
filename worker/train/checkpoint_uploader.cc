#include "worker/train/checkpoint_uploader.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "common/proto_enums.h"
#include "common/sha256.h"

namespace clmae {
namespace {

// Failures that are retried are logged at most this often (each is counted).
constexpr absl::Duration kErrorLogInterval = absl::Minutes(1);

bool Transient(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:  // a full disk may be cleared
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
      return true;
    default:
      return false;
  }
}

bool Superseded(const absl::Status& status) {
  return status.code() == absl::StatusCode::kFailedPrecondition ||
         status.code() == absl::StatusCode::kNotFound;
}

// "step 120 (full, final": the start of every log line about one file.
std::string Describe(const v1::CheckpointMetadata& m) {
  return absl::StrCat("step ", m.step(), " (", CheckpointKindName(m.kind()), m.final() ? ", final" : "");
}

void Log(const std::string& line) {
  std::fprintf(stderr, "clmae-train: %s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace

std::string HumanBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (value >= 1024 && unit < 3) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, units[unit]);
}

absl::StatusOr<std::unique_ptr<CheckpointUploader>> CheckpointUploader::Create(
    const CheckpointUploaderOptions& options) {
  if (options.job_id.empty()) return absl::InvalidArgumentError("job_id: empty");
  if (options.attempt < 1) {
    return absl::InvalidArgumentError(absl::StrCat("attempt: ", options.attempt, " is below 1"));
  }
  if (options.initial_backoff <= absl::ZeroDuration() ||
      options.max_backoff < options.initial_backoff) {
    return absl::InvalidArgumentError(
        absl::StrCat("backoff: initial ", absl::FormatDuration(options.initial_backoff), ", max ",
                     absl::FormatDuration(options.max_backoff), " (need 0 < initial <= max)"));
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeClientChannel(options.client);
  if (!channel.ok()) return channel.status();
  std::unique_ptr<CheckpointUploader> uploader(
      new CheckpointUploader(options, v1::WorkerControl::NewStub(*channel)));
  uploader->thread_ = std::thread([u = uploader.get()] { u->UploadLoop(); });
  return uploader;
}

CheckpointUploader::CheckpointUploader(const CheckpointUploaderOptions& options,
                                       std::unique_ptr<v1::WorkerControl::Stub> stub)
    : options_(options), stub_(std::move(stub)) {}

CheckpointUploader::~CheckpointUploader() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    if (in_flight_ != nullptr) in_flight_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void CheckpointUploader::OnStep(const StepReport& report) {
  absl::MutexLock lock(&mu_);
  latest_ = report;
}

void CheckpointUploader::OnPhase(const std::string& phase) {
  absl::MutexLock lock(&mu_);
  finishing_ = phase == "finish";
}

void CheckpointUploader::OnCheckpoint(const std::string& path, int64_t step) {
  Enqueue(v1::CHECKPOINT_KIND_FULL, path, step);
}

void CheckpointUploader::OnExport(const std::string& kind, const std::string& path, int64_t step) {
  if (kind == "weights") return Enqueue(v1::CHECKPOINT_KIND_WEIGHTS, path, step);
  if (kind == "encoder") return Enqueue(v1::CHECKPOINT_KIND_ENCODER, path, step);
  if (kind == "preview") return Enqueue(v1::CHECKPOINT_KIND_PREVIEW, path, step);
  Log(absl::StrCat("not uploading ", path, ": unknown export kind '", kind, "'"));
}

void CheckpointUploader::Enqueue(v1::CheckpointKind kind, const std::string& path, int64_t step) {
  Item item;
  item.path = path;
  v1::CheckpointMetadata& m = item.metadata;
  m.set_job_id(options_.job_id);
  m.set_attempt(options_.attempt);
  m.set_kind(kind);
  m.set_step(step);
  absl::MutexLock lock(&mu_);
  if (superseded_.load()) return;  // the coordinator would refuse it
  m.set_final(finishing_);
  if (latest_.has_value()) {
    const StepReport& r = *latest_;
    m.set_epoch(static_cast<int32_t>(r.epoch));
    m.set_curriculum_factor(r.lambda_cl);
    m.set_loss_mae(r.stats.loss_mae);
    m.set_loss_masker_recon(r.stats.masker_rec);
    m.set_loss_gauss(r.stats.masker_gauss);
    m.set_loss_kl(r.stats.masker_kl);
    m.set_loss_div(r.stats.masker_div);
    m.set_loss_masker_total(r.stats.masker_total);
  }
  queue_.push_back(std::move(item));
}

bool CheckpointUploader::MayDeleteCheckpoint(const std::string& path) {
  absl::MutexLock lock(&mu_);
  return std::none_of(queue_.begin(), queue_.end(),
                      [&](const Item& item) { return item.path == path; });
}

absl::Status CheckpointUploader::Flush(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto drained = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return queue_.empty() || stop_; };
  mu_.AwaitWithTimeout(absl::Condition(&drained), timeout);
  if (queue_.empty()) return last_drop_;
  return absl::DeadlineExceededError(absl::StrCat(
      queue_.size(), " file(s) not uploaded after ", absl::FormatDuration(timeout),
      last_failure_.ok() ? "" : absl::StrCat("; last error: ", last_failure_.ToString())));
}

void CheckpointUploader::UploadLoop() {
  std::mt19937_64 random(std::random_device{}());
  absl::Duration backoff = options_.initial_backoff;
  for (;;) {
    Item item;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      item = queue_.front();
    }
    const absl::StatusOr<v1::Checkpoint> result = Upload(item);
    if (result.ok() || !Transient(result.status())) {
      backoff = options_.initial_backoff;
      Handle(item, result);
      continue;
    }
    // "Equal jitter": ranks of many jobs retrying at once spread out.
    std::uniform_real_distribution<double> fraction(0.5, 1.0);
    const absl::Duration delay = backoff * fraction(random);
    backoff = std::min(backoff * 2, options_.max_backoff);
    {
      absl::MutexLock lock(&log_mu_);
      const absl::Time now = absl::Now();
      if (now - last_error_log_ >= kErrorLogInterval) {
        last_error_log_ = now;
        Log(absl::StrCat("upload of ", Describe(item.metadata), ") to ", options_.client.address,
                         " failed (", errors_.load(), " failure(s) so far), retrying in ",
                         absl::FormatDuration(absl::Trunc(delay, absl::Milliseconds(1))), ": ",
                         result.status().ToString()));
      }
    }
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stop_), delay);
  }
}

absl::StatusOr<v1::Checkpoint> CheckpointUploader::Upload(const Item& item) {
  absl::StatusOr<v1::Checkpoint> result;
  struct stat st;
  if (stat(item.path.c_str(), &st) != 0) {
    // A file gone from disk is this side's loss, not the coordinator's
    // NOT_FOUND (which would mean the job is gone): given up without a call.
    const int err = errno;
    result = absl::DataLossError(absl::StrCat("cannot read ", item.path, ": ", std::strerror(err)));
  } else {
    UploadOptions upload = options_.upload;
    upload.prepare_context = [this](grpc::ClientContext& context) {
      absl::MutexLock lock(&mu_);
      in_flight_ = &context;
      if (stop_) context.TryCancel();
    };
    result = UploadCheckpointFile(*stub_, options_.client, item.metadata, item.path, upload);
  }
  absl::MutexLock lock(&mu_);
  in_flight_ = nullptr;
  if (!result.ok()) {
    ++errors_;
    last_failure_ = result.status();
  }
  return result;
}

void CheckpointUploader::Handle(const Item& item, const absl::StatusOr<v1::Checkpoint>& result) {
  if (result.ok()) {
    ++uploaded_;
    const int64_t size = result->metadata().size_bytes();
    Log(absl::StrCat("checkpoint ", Describe(item.metadata), ", ", HumanBytes(size),
                     ") uploaded as ", result->id()));
    if (item.metadata.kind() == v1::CHECKPOINT_KIND_FULL) LinkIntoCache(item, *result);
    absl::MutexLock lock(&mu_);
    if (!queue_.empty()) queue_.pop_front();
    return;
  }
  const absl::Status& status = result.status();
  absl::MutexLock lock(&mu_);
  if (stop_) return;  // cancelled by the destructor: nothing to say
  if (Superseded(status)) {
    superseded_ = true;
    Log(absl::StrCat("the coordinator no longer takes uploads for job ", options_.job_id,
                     " attempt ", options_.attempt, "; dropping ", queue_.size(),
                     " queued file(s): ", status.ToString()));
    last_drop_ = status;
    queue_.clear();
    return;
  }
  Log(absl::StrCat("checkpoint ", Describe(item.metadata), ") ", item.path,
                   " not uploaded: ", status.ToString()));
  Drop(status);
}

void CheckpointUploader::Drop(const absl::Status& why) {
  last_drop_ = why;
  if (!queue_.empty()) queue_.pop_front();
}

void CheckpointUploader::LinkIntoCache(const Item& item, const v1::Checkpoint& checkpoint) {
  const std::string& sha = checkpoint.metadata().sha256();
  if (options_.cache_dir.empty() || !IsSha256Hex(sha)) return;
  const std::string target = absl::StrCat(options_.cache_dir, "/", sha);
  if (link(item.path.c_str(), target.c_str()) == 0 || errno == EEXIST) return;
  // Another file system (EXDEV) or no such folder: the node simply fetches
  // the checkpoint if it ever resumes from it. Said once.
  const int err = errno;
  if (!cache_warned_.exchange(true)) {
    Log(absl::StrCat("not keeping checkpoints in the node's cache ", options_.cache_dir, ": ",
                     std::strerror(err)));
  }
}

}  // namespace clmae
