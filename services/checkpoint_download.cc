#include "services/checkpoint_download.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_io.h"
#include "common/file_writeback.h"
#include "common/s3/http_call.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "services/status_mapping.h"

namespace clmae {
namespace {

// The largest chunk the protocol allows (checkpoint.proto).
constexpr int64_t kMaxChunkBytes = 1 << 20;

// Which checkpoint the bytes of a .part belong to.
struct PartIdentity {
  std::string id;
  std::string sha256;
  int64_t size = 0;
};

std::optional<PartIdentity> ReadSidecar(const std::string& path) {
  std::ifstream in(path);
  PartIdentity identity;
  std::string size;
  if (!std::getline(in, identity.id) || !std::getline(in, identity.sha256) ||
      !std::getline(in, size) || !absl::SimpleAtoi(size, &identity.size) || identity.id.empty() ||
      !IsSha256Hex(identity.sha256) || identity.size < 0) {
    return std::nullopt;
  }
  return identity;
}

absl::Status WriteSidecar(const std::string& path, const PartIdentity& identity) {
  return WriteFileAtomically(
      path, absl::StrCat(identity.id, "\n", identity.sha256, "\n", identity.size, "\n"));
}

PartIdentity IdentityOf(const v1::Checkpoint& checkpoint) {
  return {checkpoint.id(), checkpoint.metadata().sha256(), checkpoint.metadata().size_bytes()};
}

absl::StatusOr<int64_t> FileSize(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, "cannot stat", path);
  return static_cast<int64_t>(st.st_size);
}

// Cuts the file to `size` bytes and puts the write position there.
absl::Status TruncateTo(int fd, const std::string& path, int64_t size) {
  if (::ftruncate(fd, size) != 0) return ErrnoStatus(errno, "cannot truncate", path);
  if (::lseek(fd, size, SEEK_SET) < 0) return ErrnoStatus(errno, "cannot seek in", path);
  return absl::OkStatus();
}

absl::Status Append(int fd, const std::string& path, absl::string_view bytes) {
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "cannot write", path);
    }
    written += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Feeds the file's first `size` bytes to `hasher`, a block at a time.
absl::Status HashPrefix(int fd, const std::string& path, int64_t size, Sha256& hasher) {
  std::vector<char> block(kMaxChunkBytes);
  int64_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, block.data(), std::min<int64_t>(block.size(), size - done), done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "cannot read", path);
    }
    if (n == 0) return absl::DataLossError(absl::StrCat(path, " shrank while it was read"));
    hasher.Update(block.data(), static_cast<size_t>(n));
    done += n;
  }
  return absl::OkStatus();
}

bool IsRetryable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded;
}

using Reader = grpc::ClientReaderInterface<v1::DownloadCheckpointResponse>;

// Stops a stream this side no longer wants and reaps it.
void Abandon(grpc::ClientContext& context, Reader& reader) {
  context.TryCancel();
  v1::DownloadCheckpointResponse ignored;
  while (reader.Read(&ignored)) {
  }
  reader.Finish().ok();
}

// One download in progress: the .part, its identity and the hash of its
// bytes so far.
class Download {
 public:
  Download(std::string path, const DownloadOptions& options)
      : path_(std::move(path)),
        part_(DownloadPartPath(path_)),
        sidecar_(DownloadSidecarPath(path_)),
        options_(options) {}

  // Opens the .part and decides where to resume.
  absl::Status Start() {
    fd_ = UniqueFd(::open(part_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (fd_.get() < 0) return ErrnoStatus(errno, "cannot open", part_);
    if (options_.resume) known_ = ReadSidecar(sidecar_);
    int64_t offset = 0;
    if (known_.has_value()) {
      ASSIGN_OR_RETURN(offset, FileSize(fd_.get(), part_));
      // A complete .part still asks for its last byte: the stream must
      // carry the record, and an offset at the very end is not guaranteed
      // to be served.
      if (offset > known_->size) offset = 0;
      if (known_->size > 0 && offset == known_->size) offset = known_->size - 1;
    }
    return ResetTo(offset);
  }

  // One stream from offset(). OK when it ended normally with every byte.
  struct Outcome {
    absl::Status status;
    bool retryable = false;
    bool restarted = false;  // the .part was another checkpoint's: cut to 0
    int64_t new_bytes = 0;
  };
  Outcome Try(const OpenDownloadStream& open) {
    grpc::ClientContext context;
    if (options_.prepare_context) options_.prepare_context(context);
    std::unique_ptr<Reader> reader = open(&context, offset_);
    if (reader == nullptr) return {absl::InternalError("the download stream could not be opened")};
    Outcome outcome = Receive(context, *reader);
    return outcome;
  }

  // Verifies size and digest, then moves the .part to `path`.
  absl::StatusOr<v1::Checkpoint> Finish() {
    const v1::Checkpoint& record = *record_;
    ASSIGN_OR_RETURN(const int64_t size, FileSize(fd_.get(), part_));
    const std::string digest = hasher_.HexDigest();
    if (size != record.metadata().size_bytes() || digest != record.metadata().sha256()) {
      Discard();
      return absl::DataLossError(absl::StrCat(
          "checkpoint ", record.id(), ": downloaded ", size, " bytes with SHA-256 ", digest,
          ", expected ", record.metadata().size_bytes(), " bytes with SHA-256 ",
          record.metadata().sha256(), "; the partial file was removed"));
    }
    if (::fsync(fd_.get()) != 0) return ErrnoStatus(errno, "cannot fsync", part_);
    fd_.Reset();
    if (::rename(part_.c_str(), path_.c_str()) != 0)
      return ErrnoStatus(errno, "cannot rename to", path_);
    ::unlink(sidecar_.c_str());
    // Best effort: the rename is already visible; this makes it durable.
    SyncDirectory(DirectoryOf(path_)).IgnoreError();
    return record;
  }

  int64_t offset() const { return offset_; }

  // After a failure: a .part without bytes (none came, or they were another
  // checkpoint's) is no download to resume; it goes with its sidecar.
  void DiscardIfEmpty() {
    if (fd_.get() < 0) return;
    absl::StatusOr<int64_t> size = FileSize(fd_.get(), part_);
    if (size.ok() && *size == 0) Discard();
  }

 private:
  // Cuts the .part to `offset` bytes and rehashes them.
  absl::Status ResetTo(int64_t offset) {
    RETURN_IF_ERROR(TruncateTo(fd_.get(), part_, offset));
    hasher_ = Sha256();
    RETURN_IF_ERROR(HashPrefix(fd_.get(), part_, offset, hasher_));
    offset_ = offset;
    if (offset == 0) known_.reset();
    return absl::OkStatus();
  }

  void Discard() {
    fd_.Reset();
    ::unlink(part_.c_str());
    ::unlink(sidecar_.c_str());
  }

  Outcome Receive(grpc::ClientContext& context, Reader& reader) {
    v1::DownloadCheckpointResponse message;
    if (!reader.Read(&message)) {
      const absl::Status status = FromGrpcStatus(reader.Finish());
      if (!status.ok()) return {status, IsRetryable(status.code())};
      return {absl::DataLossError("the download stream ended before the checkpoint record")};
    }
    if (!message.has_checkpoint()) {
      Abandon(context, reader);
      return {absl::DataLossError("the download stream did not start with the checkpoint record")};
    }
    // A copy: `message` is reused for the data below.
    const v1::Checkpoint record = message.checkpoint();
    const int64_t size = record.metadata().size_bytes();
    if (size < 0 || !IsSha256Hex(record.metadata().sha256())) {
      Abandon(context, reader);
      return {absl::DataLossError(absl::StrCat("checkpoint '", record.id(), "' has size ", size,
                                               " and SHA-256 '", record.metadata().sha256(),
                                               "'; need a size >= 0 and 64 lowercase hex digits"))};
    }
    const PartIdentity identity = IdentityOf(record);
    if (known_.has_value() && (known_->id != identity.id || known_->sha256 != identity.sha256 ||
                               offset_ > identity.size)) {
      if (offset_ > 0) {
        // Bytes of another checkpoint (or a newer "latest"): start over.
        Abandon(context, reader);
        Outcome outcome;
        outcome.restarted = true;
        outcome.status = ResetTo(0);
        return outcome;
      }
      known_.reset();
    }
    if (!known_.has_value()) {
      if (absl::Status status = WriteSidecar(sidecar_, identity); !status.ok()) {
        Abandon(context, reader);
        return {status};
      }
      known_ = identity;
    }
    record_ = record;
    if (options_.started) options_.started(record, offset_);
    if (options_.progress) options_.progress(offset_, size);

    Outcome outcome;
    while (reader.Read(&message)) {
      if (message.has_url() && outcome.new_bytes == 0) {
        // Object storage: the bytes come from the URL, not the stream.
        const v1::PresignedDownload url = message.url();
        if (reader.Read(&message)) {
          Abandon(context, reader);
          return {absl::DataLossError("the download stream sent more after the presigned URL")};
        }
        const absl::Status status = FromGrpcStatus(reader.Finish());
        if (!status.ok()) return {status, IsRetryable(status.code())};
        return FetchUrl(url.url(), record);
      }
      absl::Status bad;
      if (!message.has_data()) {
        bad = absl::DataLossError("the download stream sent a second record among the bytes");
      } else if (static_cast<int64_t>(message.data().size()) > kMaxChunkBytes) {
        bad = absl::DataLossError(absl::StrCat("the download stream sent a chunk of ",
                                               message.data().size(),
                                               " bytes; at most 1 MiB is allowed"));
      } else if (offset_ + static_cast<int64_t>(message.data().size()) > size) {
        bad = absl::DataLossError(absl::StrCat("the download stream sent more than the ", size,
                                               " bytes of checkpoint ", record.id()));
      } else {
        bad = Append(fd_.get(), part_, message.data());
      }
      if (!bad.ok()) {
        Abandon(context, reader);
        outcome.status = bad;
        return outcome;
      }
      hasher_.Update(message.data());
      offset_ += static_cast<int64_t>(message.data().size());
      writeback_.Written(fd_.get(), offset_);
      outcome.new_bytes += static_cast<int64_t>(message.data().size());
      if (options_.progress) options_.progress(offset_, size);
    }
    const absl::Status status = FromGrpcStatus(reader.Finish());
    if (!status.ok()) {
      outcome.status = status;
      outcome.retryable = IsRetryable(status.code());
    } else if (offset_ < size) {
      outcome.status =
          absl::DataLossError(absl::StrCat("the download stream of checkpoint ", record.id(),
                                           " ended at byte ", offset_, " of ", size));
      outcome.retryable = true;
    }
    return outcome;
  }

  // Appends [offset_, size) of the checkpoint from a presigned URL (a
  // ranged GET), hashing as it goes. Retryable: an unreachable or stalled
  // store, a 5xx, an expired URL (403: the next try gets a fresh one), a
  // response that ended early.
  Outcome FetchUrl(const std::string& url, const v1::Checkpoint& record) {
    const int64_t size = record.metadata().size_bytes();
    Outcome outcome;
    if (offset_ >= size) return outcome;
    HttpRequest get;
    get.url = url;
    get.headers.emplace_back("Range", absl::StrCat("bytes=", offset_, "-"));
    get.sink_status = 206;
    get.stall_timeout = options_.stall_timeout;
    get.sink = [&](absl::string_view bytes) -> absl::Status {
      if (offset_ + static_cast<int64_t>(bytes.size()) > size) {
        return absl::DataLossError(absl::StrCat("object storage sent more than the ", size,
                                                " bytes of checkpoint ", record.id()));
      }
      RETURN_IF_ERROR(Append(fd_.get(), part_, bytes));
      hasher_.Update(bytes);
      offset_ += static_cast<int64_t>(bytes.size());
      writeback_.Written(fd_.get(), offset_);
      outcome.new_bytes += static_cast<int64_t>(bytes.size());
      if (options_.progress) options_.progress(offset_, size);
      return absl::OkStatus();
    };
    absl::StatusOr<HttpResponse> response = PerformHttp(get);
    if (!response.ok()) {
      outcome.status = response.status();
      outcome.retryable = absl::IsUnavailable(response.status());
      return outcome;
    }
    if (response->status != 206) {
      outcome.status = HttpError(
          absl::StrCat("GET of checkpoint ", record.id(), " from object storage"), *response);
      outcome.retryable = response->status == 403 || absl::IsUnavailable(outcome.status);
      return outcome;
    }
    if (offset_ < size) {
      outcome.status =
          absl::DataLossError(absl::StrCat("object storage's response for checkpoint ", record.id(),
                                           " ended at byte ", offset_, " of ", size));
      outcome.retryable = true;
    }
    return outcome;
  }

  const std::string path_;
  const std::string part_;
  const std::string sidecar_;
  const DownloadOptions& options_;
  UniqueFd fd_;
  std::optional<PartIdentity> known_;  // whose bytes the .part holds
  std::optional<v1::Checkpoint> record_;
  Sha256 hasher_;  // over the .part's first offset_ bytes
  WritebackKicker writeback_;
  int64_t offset_ = 0;  // bytes in the .part
};

}  // namespace

std::string DownloadPartPath(const std::string& path) { return path + ".part"; }

std::string DownloadSidecarPath(const std::string& path) { return path + ".part.meta"; }

namespace {

// The tries of one download, until it is verified or fails.
absl::StatusOr<v1::Checkpoint> RunTries(Download& download, const OpenDownloadStream& open,
                                        const DownloadOptions& options) {
  RETURN_IF_ERROR(download.Start());
  const int attempts = std::max(1, options.attempts);
  int failures = 0;
  bool first_try = true;
  absl::Duration backoff = options.initial_backoff;
  while (true) {
    Download::Outcome outcome = download.Try(open);
    const bool was_first = std::exchange(first_try, false);
    if (outcome.restarted) {
      if (!outcome.status.ok()) return outcome.status;
      // A stale .part found on the first try is no failure of the server.
      if (was_first || ++failures < attempts) continue;
      return absl::AbortedError(
          "the checkpoint changed under the download on every try; try again");
    }
    if (outcome.status.ok()) return download.Finish();
    if (!outcome.retryable) return outcome.status;
    if (outcome.new_bytes > 0) {
      failures = 0;
      backoff = options.initial_backoff;
    }
    if (++failures >= attempts) return outcome.status;
    std::this_thread::sleep_for(absl::ToChronoMicroseconds(backoff));
    backoff = std::min(backoff * 2, options.max_backoff);
  }
}

}  // namespace

absl::StatusOr<v1::Checkpoint> DownloadCheckpointToFile(const OpenDownloadStream& open,
                                                        const std::string& path,
                                                        const DownloadOptions& options) {
  if (path.empty()) return absl::InvalidArgumentError("the download's destination path is empty");
  Download download(path, options);
  absl::StatusOr<v1::Checkpoint> result = RunTries(download, open, options);
  if (!result.ok()) download.DiscardIfEmpty();
  return result;
}

}  // namespace clmae
