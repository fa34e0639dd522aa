#include "worker/agent/checkpoint_fetcher.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/sha256.h"
#include "services/checkpoint_download.h"
#include "worker/agent/agent_log.h"

namespace clmae {
namespace {

namespace fs = std::filesystem;

using Reader = grpc::ClientReaderInterface<v1::DownloadCheckpointResponse>;

// Marks an Ensure() error as the coordinator's refusal of the checkpoint.
constexpr absl::string_view kRefusedPayload = "type.clmae.dev/clmae.agent.CheckpointRefused";

void RemovePartial(const std::string& path) {
  std::error_code ignored;
  fs::remove(DownloadPartPath(path), ignored);
  fs::remove(DownloadSidecarPath(path), ignored);
}

// The checkpoint a cache entry belongs to: "<sha>" (complete) or one of the
// download's "<sha>.part" / "<sha>.part.meta"; "" for anything else.
std::string EntryKey(const std::string& name) {
  std::string key = name;
  for (const std::string& suffix : {DownloadSidecarPath(""), DownloadPartPath("")}) {
    if (absl::EndsWith(key, suffix)) {
      key.resize(key.size() - suffix.size());
      break;
    }
  }
  return IsSha256Hex(key) ? key : "";
}

}  // namespace

std::string CheckpointCacheDir(const std::string& work_dir) {
  return absl::StrCat(work_dir, "/checkpoint-cache");
}

bool IsCheckpointRefused(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kRefusedPayload).has_value();
}

// The fetch stream as the download sees it, with its context registered for
// Shutdown() while the stream exists (the download destroys a stream before
// its context, so the context is alive whenever it is registered), and the
// status it ended with copied to `finished`.
class CheckpointFetcher::TrackedReader final : public Reader {
 public:
  TrackedReader(CheckpointFetcher* fetcher, grpc::ClientContext* context,
                std::unique_ptr<Reader> reader, grpc::Status* finished)
      : fetcher_(fetcher), context_(context), reader_(std::move(reader)), finished_(finished) {
    fetcher_->Register(context_);
  }
  ~TrackedReader() override { fetcher_->Unregister(context_); }

  bool NextMessageSize(uint32_t* size) override { return reader_->NextMessageSize(size); }
  bool Read(v1::DownloadCheckpointResponse* message) override { return reader_->Read(message); }
  void WaitForInitialMetadata() override { reader_->WaitForInitialMetadata(); }
  grpc::Status Finish() override {
    *finished_ = reader_->Finish();
    return *finished_;
  }

 private:
  CheckpointFetcher* const fetcher_;
  grpc::ClientContext* const context_;
  const std::unique_ptr<Reader> reader_;
  grpc::Status* const finished_;
};

absl::StatusOr<std::unique_ptr<CheckpointFetcher>> CheckpointFetcher::Create(
    CheckpointFetcherOptions options) {
  if (options.cache_dir.empty()) return absl::InvalidArgumentError("cache_dir: empty");
  if (options.channel == nullptr) return absl::InvalidArgumentError("channel: none");
  if (options.max_files < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_files: ", options.max_files, " is below 1"));
  }
  if (options.attempts < 1) {
    return absl::InvalidArgumentError(absl::StrCat("attempts: ", options.attempts, " is below 1"));
  }
  std::error_code ec;
  fs::create_directories(options.cache_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create the checkpoint cache ", options.cache_dir, ": ", ec.message()));
  }
  auto stub = v1::WorkerControl::NewStub(options.channel);
  return std::unique_ptr<CheckpointFetcher>(
      new CheckpointFetcher(std::move(options), std::move(stub)));
}

CheckpointFetcher::CheckpointFetcher(CheckpointFetcherOptions options,
                                     std::unique_ptr<v1::WorkerControl::StubInterface> stub)
    : options_(std::move(options)), stub_(std::move(stub)) {}

CheckpointFetcher::~CheckpointFetcher() { Shutdown(); }

void CheckpointFetcher::Shutdown() {
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
  for (grpc::ClientContext* context : streams_) context->TryCancel();
}

void CheckpointFetcher::Register(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  streams_.insert(context);
  if (shut_down_) context->TryCancel();
}

void CheckpointFetcher::Unregister(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  streams_.erase(context);
}

absl::StatusOr<std::string> CheckpointFetcher::Ensure(const std::string& job_id,
                                                      const std::string& checkpoint_id,
                                                      const std::string& sha256,
                                                      int64_t size_bytes) {
  if (!IsSha256Hex(sha256)) {
    return absl::InvalidArgumentError(
        absl::StrCat("resume_sha256: '", sha256, "' is not a SHA-256 (64 lowercase hex digits)"));
  }
  if (checkpoint_id.empty()) return absl::InvalidArgumentError("resume_checkpoint: empty id");
  const std::string path = absl::StrCat(options_.cache_dir, "/", sha256);

  std::shared_ptr<InFlight> fetch;
  {
    absl::MutexLock lock(&mu_);
    // Someone fetches these bytes already: share the outcome.
    for (auto it = in_flight_.find(sha256); it != in_flight_.end(); it = in_flight_.find(sha256)) {
      const std::shared_ptr<InFlight> other = it->second;
      mu_.Await(absl::Condition(&other->done));
      if (!other->result.ok()) return other->result.status();
    }
    struct stat st;
    if (stat(path.c_str(), &st) == 0) {
      if (size_bytes <= 0 || st.st_size == size_bytes) {
        utimensat(AT_FDCWD, path.c_str(), nullptr, 0);  // most recently used
        Evict(sha256);
        return path;
      }
      AgentLog(absl::StrCat("checkpoint cache: ", path, " has ", st.st_size, " bytes, not ",
                            size_bytes, "; fetching it again"));
      unlink(path.c_str());
    }
    if (shut_down_) return absl::CancelledError("the agent is shutting down");
    fetch = std::make_shared<InFlight>();
    in_flight_[sha256] = fetch;
  }
  ++fetches_;
  absl::StatusOr<std::string> result = Fetch(job_id, checkpoint_id, sha256, size_bytes);
  absl::MutexLock lock(&mu_);
  fetch->result = result;
  fetch->done = true;
  in_flight_.erase(sha256);
  if (result.ok()) Evict(sha256);
  return result;
}

absl::StatusOr<std::string> CheckpointFetcher::Fetch(const std::string& job_id,
                                                     const std::string& checkpoint_id,
                                                     const std::string& sha256,
                                                     int64_t size_bytes) {
  const std::string path = absl::StrCat(options_.cache_dir, "/", sha256);
  for (int run = 1;; ++run) {
    grpc::Status server;
    std::string mismatch;
    absl::StatusOr<v1::Checkpoint> fetched = FetchOnce(job_id, checkpoint_id, sha256, size_bytes,
                                                       path, /*resume=*/run == 1, server, mismatch);
    if (!mismatch.empty()) {
      RemovePartial(path);
      std::error_code ignored;
      if (fetched.ok()) fs::remove(path, ignored);
      return absl::FailedPreconditionError(mismatch);
    }
    if (fetched.ok()) return path;
    absl::Status status = fetched.status();
    const grpc::StatusCode code = server.error_code();
    if (code == grpc::StatusCode::DATA_LOSS || code == grpc::StatusCode::FAILED_PRECONDITION) {
      // The coordinator's own verdict on its copy: asking again gets the same.
      RemovePartial(path);
      AgentLog(absl::StrCat("checkpoint ", checkpoint_id, " of job ", job_id,
                            " refused by the coordinator: ", status.ToString()));
      status.SetPayload(kRefusedPayload, absl::Cord());
      return status;
    }
    if (run == 1 && server.ok() && absl::IsDataLoss(status)) {
      // The coordinator sent its bytes as verified: they changed on the way.
      AgentLog(absl::StrCat("checkpoint ", checkpoint_id, " of job ", job_id, ": ",
                            status.message(), "; fetching it once more from byte 0"));
      continue;
    }
    return status;
  }
}

absl::StatusOr<v1::Checkpoint> CheckpointFetcher::FetchOnce(
    const std::string& job_id, const std::string& checkpoint_id, const std::string& sha256,
    int64_t size_bytes, const std::string& path, bool resume, grpc::Status& server,
    std::string& mismatch) {
  grpc::ClientContext* current = nullptr;  // the stream of the try in progress
  DownloadOptions download;
  download.resume = resume;
  download.attempts = options_.attempts;
  download.prepare_context = [this](grpc::ClientContext& context) {
    AuthorizeCall(context, options_.client);
    context.set_deadline(absl::ToChronoTime(absl::Now() + options_.try_timeout));
  };
  download.started = [&](const v1::Checkpoint& record, int64_t offset) {
    const v1::CheckpointMetadata& m = record.metadata();
    if (m.sha256() != sha256 || (size_bytes > 0 && m.size_bytes() != size_bytes)) {
      // Not the bytes the assignment names: stop before fetching them.
      mismatch = absl::StrCat("the coordinator's checkpoint ", record.id(), " has ", m.size_bytes(),
                              " bytes with SHA-256 ", m.sha256(), "; the assignment names ",
                              size_bytes, " bytes with SHA-256 ", sha256);
      current->TryCancel();
      return;
    }
    AgentLog(absl::StrCat("fetching checkpoint ", record.id(), " of job ", job_id, " (",
                          m.size_bytes(), " bytes",
                          offset > 0 ? absl::StrCat(", from byte ", offset) : "", ") into ", path));
  };
  OpenDownloadStream open = [&](grpc::ClientContext* context,
                                int64_t offset) -> std::unique_ptr<Reader> {
    current = context;
    server = grpc::Status::OK;
    v1::FetchCheckpointRequest request;
    request.set_job_id(job_id);
    request.set_id(checkpoint_id);
    request.set_offset(offset);
    request.set_accept_url(true);  // object storage: the bytes come from a presigned URL
    return std::make_unique<TrackedReader>(this, context, stub_->FetchCheckpoint(context, request),
                                           &server);
  };
  return DownloadCheckpointToFile(open, path, download);
}

void CheckpointFetcher::Evict(const std::string& keep) {
  struct Entry {
    fs::file_time_type used;
    std::vector<fs::path> files;
  };
  std::map<std::string, Entry> entries;
  std::error_code ec;
  for (const fs::directory_entry& file : fs::directory_iterator(options_.cache_dir, ec)) {
    const std::string key = EntryKey(file.path().filename().string());
    if (key.empty() || !file.is_regular_file(ec)) continue;
    Entry& entry = entries[key];
    const fs::file_time_type time = file.last_write_time(ec);
    if (entry.files.empty() || time > entry.used) entry.used = time;
    entry.files.push_back(file.path());
  }
  std::vector<std::pair<fs::file_time_type, std::string>> candidates;
  for (const auto& [key, entry] : entries) {
    if (key != keep && !in_flight_.contains(key)) candidates.emplace_back(entry.used, key);
  }
  std::sort(candidates.begin(), candidates.end());  // oldest first
  size_t count = entries.size();
  for (const auto& [used, key] : candidates) {
    if (count <= static_cast<size_t>(options_.max_files)) break;
    for (const fs::path& file : entries[key].files) fs::remove(file, ec);
    AgentLog(absl::StrCat("checkpoint cache: removed ", key, " (least recently used)"));
    --count;
  }
}

}  // namespace clmae
