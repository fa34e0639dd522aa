#include "worker/train/checkpoint_uploader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/file_io.h"
#include "common/proto_enums.h"
#include "common/sha256.h"
#include "grpcpp/client_context.h"

namespace clmae {
namespace {

// Failures that are retried are logged at most this often (each is counted).
constexpr absl::Duration kErrorLogInterval = absl::Minutes(1);
// Flush()'s message names at most this many files.
constexpr size_t kMaxListedPaths = 10;

// Failures that pass by themselves soon. Not RESOURCE_EXHAUSTED: a full
// store (or a file over its limit) stays so until someone acts, and the
// files behind this one may fit.
bool Transient(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
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
  return absl::StrCat("step ", m.step(), " (", CheckpointKindName(m.kind()),
                      m.final() ? ", final" : "");
}

void Log(const std::string& line) {
  std::fprintf(stderr, "clmae-train: %s\n", line.c_str());
  std::fflush(stderr);
}

// OK when `path` can be opened for reading; DATA_LOSS naming it otherwise.
// A file gone from disk is this side's loss, not the coordinator's
// NOT_FOUND (which would mean the job is gone).
absl::Status CheckReadable(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.valid()) return absl::OkStatus();
  return absl::DataLossError(ErrnoStatus(errno, "cannot read", path).message());
}

// "a, b, c and 4 more".
std::string ListPaths(const std::vector<std::string>& paths) {
  std::string out;
  for (size_t i = 0; i < paths.size() && i < kMaxListedPaths; ++i) {
    absl::StrAppend(&out, i == 0 ? "" : ", ", paths[i]);
  }
  if (paths.size() > kMaxListedPaths) {
    absl::StrAppend(&out, " and ", paths.size() - kMaxListedPaths, " more");
  }
  return out;
}

template <typename Queue>
auto Find(Queue& queue, uint64_t id) {
  return std::find_if(queue.begin(), queue.end(), [id](const auto& item) { return item.id == id; });
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
  if (superseded_.load()) {  // the coordinator would refuse it
    lost_.push_back({path, superseded_why_});
    ++dropped_;
    return;
  }
  item.id = next_id_++;
  item.backoff = options_.initial_backoff;
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
  wake_ = true;
}

bool CheckpointUploader::MayDeleteCheckpoint(const std::string& path) {
  absl::MutexLock lock(&mu_);
  return std::none_of(queue_.begin(), queue_.end(),
                      [&](const Item& item) { return item.path == path; }) &&
         std::find(kept_.begin(), kept_.end(), path) == kept_.end();
}

absl::Status CheckpointUploader::Flush(absl::Duration timeout,
                                       std::vector<std::string>* not_uploaded) {
  absl::MutexLock lock(&mu_);
  flushing_ = true;
  wake_ = true;
  auto drained = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return queue_.empty() || stop_; };
  mu_.AwaitWithTimeout(absl::Condition(&drained), timeout);
  std::vector<std::string> paths;
  for (const Lost& lost : lost_) paths.push_back(lost.path);
  for (const Item& item : queue_) paths.push_back(item.path);
  if (not_uploaded != nullptr) *not_uploaded = paths;
  if (!queue_.empty()) {
    return absl::DeadlineExceededError(absl::StrCat(
        queue_.size(), " file(s) not uploaded after ", absl::FormatDuration(timeout),
        last_failure_.ok() ? "" : absl::StrCat("; last error: ", last_failure_.ToString()),
        lost_.empty() ? "" : absl::StrCat("; ", lost_.size(), " more dropped"),
        "; not uploaded: ", ListPaths(paths)));
  }
  if (lost_.empty()) return absl::OkStatus();
  const absl::Status& last = lost_.back().why;
  return absl::Status(last.code(),
                      absl::StrCat(lost_.size(), " file(s) not uploaded (", ListPaths(paths),
                                   "); last error: ", last.ToString()));
}

void CheckpointUploader::UploadLoop() {
  std::mt19937_64 random(std::random_device{}());
  while (std::optional<Item> item = NextDue()) Handle(*item, Upload(*item), random);
}

std::optional<CheckpointUploader::Item> CheckpointUploader::NextDue() {
  absl::MutexLock lock(&mu_);
  for (;;) {
    if (stop_) return std::nullopt;
    absl::Time wake;
    if (const Item* item = PickDue(absl::Now(), &wake)) return *item;
    wake_ = false;
    auto woken = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || wake_; };
    mu_.AwaitWithDeadline(absl::Condition(&woken), wake);
  }
}

CheckpointUploader::Item* CheckpointUploader::PickDue(absl::Time now, absl::Time* wake) {
  *wake = absl::InfiniteFuture();
  Item* first = nullptr;
  for (Item& item : queue_) {
    if (item.due > now) {
      *wake = std::min(*wake, item.due);
      continue;
    }
    // At the end of the run the final checkpoint and exports go first.
    if (flushing_ && item.metadata.final()) return &item;
    if (first == nullptr) first = &item;
  }
  return first;
}

absl::StatusOr<v1::Checkpoint> CheckpointUploader::Upload(const Item& item) {
  absl::StatusOr<v1::Checkpoint> result;
  if (absl::Status readable = CheckReadable(item.path); !readable.ok()) {
    result = readable;
  } else {
    UploadOptions upload = options_.upload;
    upload.prepare_context = [this](grpc::ClientContext& context) {
      absl::MutexLock lock(&mu_);
      in_flight_ = &context;
      if (stop_) context.TryCancel();
    };
    result = UploadCheckpointFile(*stub_, options_.client, item.metadata, item.path, upload);
    // A file that went away meanwhile fails on this side, whatever the call
    // said (its NOT_FOUND would read as the job's).
    if (!result.ok()) {
      if (absl::Status still = CheckReadable(item.path); !still.ok()) result = still;
    }
  }
  absl::MutexLock lock(&mu_);
  in_flight_ = nullptr;
  if (!result.ok()) {
    ++errors_;
    last_failure_ = result.status();
  }
  return result;
}

void CheckpointUploader::Handle(const Item& item, const absl::StatusOr<v1::Checkpoint>& result,
                                std::mt19937_64& random) {
  if (result.ok()) {
    ++uploaded_;
    const int64_t size = result->metadata().size_bytes();
    Log(absl::StrCat("checkpoint ", Describe(item.metadata), ", ", HumanBytes(size),
                     ") uploaded as ", result->id()));
    if (item.metadata.kind() == v1::CHECKPOINT_KIND_FULL) LinkIntoCache(item, *result);
    absl::MutexLock lock(&mu_);
    if (auto it = Find(queue_, item.id); it != queue_.end()) queue_.erase(it);
    return;
  }
  const absl::Status& status = result.status();
  absl::MutexLock lock(&mu_);
  if (stop_) return;  // cancelled by the destructor: nothing to say
  if (Superseded(status)) {
    superseded_ = true;
    superseded_why_ = status;
    Log(absl::StrCat("the coordinator no longer takes uploads for job ", options_.job_id,
                     " attempt ", options_.attempt, "; dropping ", queue_.size(),
                     " queued file(s): ", status.ToString()));
    while (!queue_.empty()) {
      const Item head = queue_.front();
      Drop(head, status, /*keep=*/false);
    }
    return;
  }
  if (Transient(status)) return Defer(item, status, random);
  // Trying again would not help soon (no room, refused bytes, a file that
  // cannot be read): the files behind it go on.
  Log(absl::StrCat(
      "checkpoint ", Describe(item.metadata), ") ", item.path,
      " not uploaded, dropped from the queue and kept on local disk: ", status.ToString()));
  Drop(item, status, /*keep=*/true);
}

void CheckpointUploader::Defer(const Item& item, const absl::Status& why, std::mt19937_64& random) {
  auto it = Find(queue_, item.id);
  if (it == queue_.end()) return;
  Item deferred = std::move(*it);
  queue_.erase(it);
  // "Equal jitter": ranks of many jobs retrying at once spread out.
  std::uniform_real_distribution<double> fraction(0.5, 1.0);
  const absl::Duration delay = deferred.backoff * fraction(random);
  deferred.backoff = std::min(deferred.backoff * 2, options_.max_backoff);
  const absl::Time now = absl::Now();
  deferred.due = now + delay;
  ++deferred_;
  {
    absl::MutexLock lock(&log_mu_);
    if (now - last_error_log_ >= kErrorLogInterval) {
      last_error_log_ = now;
      Log(absl::StrCat("upload of ", Describe(item.metadata), ") to ", options_.client.address,
                       " failed (", errors_.load(), " failure(s) so far); trying it again in ",
                       absl::FormatDuration(absl::Trunc(delay, absl::Milliseconds(1))),
                       ", after the ", queue_.size(), " other queued file(s): ", why.ToString()));
    }
  }
  queue_.push_back(std::move(deferred));
}

void CheckpointUploader::Drop(const Item& item, const absl::Status& why, bool keep) {
  lost_.push_back({item.path, why});
  if (keep) kept_.push_back(item.path);
  ++dropped_;
  if (auto it = Find(queue_, item.id); it != queue_.end()) queue_.erase(it);
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
