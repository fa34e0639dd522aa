#include "services/checkpoint_upload.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/s3/http_call.h"
#include "common/s3/s3_client.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "services/status_mapping.h"

namespace clmae {
namespace {

// Closes the descriptor on every path out.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads up to `size` bytes at `offset` (fewer only at the end of the file).
// -1 with errno set on a read error.
ssize_t ReadAt(int fd, char* buffer, size_t size, int64_t offset) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = pread(fd, buffer + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

absl::Status ReadError(const std::string& path) {
  return absl::InternalError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
}

// A unary call's context: credentials and a deadline.
void PrepareUnary(grpc::ClientContext& context, const ClientOptions& client) {
  AuthorizeCall(context, client);
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(2)));
}

absl::Status BeginUpload(v1::WorkerControl::StubInterface& stub, const ClientOptions& client,
                         const v1::CheckpointMetadata& metadata,
                         v1::BeginCheckpointUploadResponse& plan) {
  grpc::ClientContext context;
  PrepareUnary(context, client);
  v1::BeginCheckpointUploadRequest request;
  *request.mutable_metadata() = metadata;
  plan.Clear();
  return FromGrpcStatus(stub.BeginCheckpointUpload(&context, request, &plan));
}

// Best effort: the sweep frees what this leaves.
void AbortUpload(v1::WorkerControl::StubInterface& stub, const ClientOptions& client,
                 const std::string& job_id, const std::string& upload_id) {
  grpc::ClientContext context;
  PrepareUnary(context, client);
  v1::AbortCheckpointUploadRequest request;
  request.set_job_id(job_id);
  request.set_upload_id(upload_id);
  v1::AbortCheckpointUploadResponse response;
  stub.AbortCheckpointUpload(&context, request, &response);
}

absl::StatusOr<v1::Checkpoint> CommitUpload(v1::WorkerControl::StubInterface& stub,
                                            const ClientOptions& client, const std::string& job_id,
                                            const std::string& upload_id,
                                            const std::vector<std::string>& md5s,
                                            const UploadOptions& options) {
  v1::CommitCheckpointUploadRequest request;
  request.set_job_id(job_id);
  request.set_upload_id(upload_id);
  for (const std::string& md5 : md5s) request.add_part_md5(md5);
  absl::Duration backoff = options.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext context;
    PrepareUnary(context, client);
    v1::UploadCheckpointResponse response;
    absl::Status status = FromGrpcStatus(stub.CommitCheckpointUpload(&context, request, &response));
    if (status.ok()) return std::move(*response.mutable_checkpoint());
    // UNAVAILABLE: the coordinator could not reach the store (or we could
    // not reach the coordinator); the upload is kept for another commit.
    if (!absl::IsUnavailable(status) || attempt >= options.attempts) return status;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, options.max_backoff);
  }
}

// PUTs every part to its presigned URL, each with a few tries; returns the
// parts' MD5s, each checked against the ETag the store answered.
absl::StatusOr<std::vector<std::string>> PutParts(const v1::BeginCheckpointUploadResponse& plan,
                                                  const std::string& path, int fd, int64_t size,
                                                  const UploadOptions& options) {
  std::vector<std::string> md5s;
  int64_t covered = 0;
  for (const v1::PresignedPart& part : plan.parts()) {
    if (part.offset() != covered || part.size() < 0 || part.offset() + part.size() > size) {
      return absl::InternalError(absl::StrCat("the coordinator's upload plan does not cover ", path,
                                              " part by part (part ", part.part_number(), " at ",
                                              part.offset(), ")"));
    }
    covered += part.size();
    absl::Duration backoff = options.initial_backoff;
    for (int attempt = 1;; ++attempt) {
      Md5 md5;
      HttpRequest put;
      put.method = "PUT";
      put.url = part.url();
      put.body_fd = fd;
      put.body_offset = part.offset();
      put.body_length = part.size();
      put.on_body = [&md5](absl::string_view bytes) { md5.Update(bytes); };
      put.stall_timeout = options.stall_timeout;
      absl::StatusOr<HttpResponse> response = PerformHttp(put);
      absl::Status status = response.status();
      if (response.ok() && response->status / 100 != 2) {
        status = HttpError(absl::StrCat("PUT of part ", part.part_number(), " of ",
                                        plan.parts_size(), " of ", path, " to object storage"),
                           *response);
      }
      if (status.ok()) {
        std::string etag = response->headers["etag"];
        if (etag.size() >= 2 && etag.front() == '"') etag = etag.substr(1, etag.size() - 2);
        const std::string sent = md5.HexDigest();
        if (etag != sent) {
          return absl::DataLossError(absl::StrCat("object storage stored part ", part.part_number(),
                                                  " of ", path, " with ETag ", etag,
                                                  ", but the bytes sent have MD5 ", sent));
        }
        md5s.push_back(sent);
        if (options.part_stored)
          options.part_stored(static_cast<int>(md5s.size()), plan.parts_size());
        break;
      }
      if (!absl::IsUnavailable(status) || attempt >= options.attempts) {
        // A refused PUT (an expired URL, an upload the sweep aborted) spoils
        // this upload only: ABORTED, so that the uploader begins a new one.
        return absl::Status(
            absl::IsUnavailable(status) ? status.code() : absl::StatusCode::kAborted,
            absl::StrCat("uploading part ", part.part_number(), " of ", plan.parts_size(), " of ",
                         path, " (try ", attempt, " of ", options.attempts,
                         "): ", status.message()));
      }
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, options.max_backoff);
    }
  }
  if (covered != size) {
    return absl::InternalError(absl::StrCat("the coordinator's upload plan covers ", covered,
                                            " of the ", size, " bytes of ", path));
  }
  return md5s;
}

// Streams the file to WorkerControl.UploadCheckpoint (the coordinator
// stores it on its own disk).
absl::StatusOr<v1::Checkpoint> StreamCheckpointFile(v1::WorkerControl::StubInterface& stub,
                                                    const ClientOptions& client,
                                                    v1::CheckpointMetadata metadata,
                                                    const std::string& path, int fd_number,
                                                    int64_t size, const UploadOptions& options) {
  struct Borrowed {
    int fd;
    int get() const { return fd; }
  } fd{fd_number};
  // One pass over the file: the size leads the stream, the bytes are hashed
  // as they are sent, and the digest follows them.
  metadata.set_size_bytes(size);
  metadata.clear_sha256();
  std::vector<char> buffer(static_cast<size_t>(options.chunk_bytes));
  Sha256 hash;

  grpc::ClientContext context;
  AuthorizeCall(context, client);
  context.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  if (options.prepare_context) options.prepare_context(context);
  v1::UploadCheckpointResponse response;
  std::unique_ptr<grpc::ClientWriterInterface<v1::UploadCheckpointRequest>> writer =
      stub.UploadCheckpoint(&context, &response);

  v1::UploadCheckpointRequest request;
  *request.mutable_metadata() = std::move(metadata);
  bool open = writer->Write(request);
  int64_t sent = 0;
  absl::Status local;  // a failure on this side, which the server's status must not hide
  while (open && sent < size) {
    const size_t want = static_cast<size_t>(std::min<int64_t>(size - sent, options.chunk_bytes));
    const ssize_t n = ReadAt(fd.get(), buffer.data(), want, sent);
    if (n < 0) {
      local = ReadError(path);
      break;
    }
    if (n == 0) break;  // shrank: caught below
    hash.Update(buffer.data(), static_cast<size_t>(n));
    request.set_data(buffer.data(), static_cast<size_t>(n));
    open = writer->Write(request);
    sent += n;
  }
  if (local.ok() && open && sent == size) {
    // One byte more than was sent means the file grew meanwhile.
    char extra = 0;
    const ssize_t n = ReadAt(fd.get(), &extra, 1, size);
    if (n != 0) {
      local = n < 0 ? ReadError(path)
                    : absl::DataLossError(absl::StrCat(path, " grew while it was being uploaded"));
    }
  } else if (local.ok() && open) {
    local = absl::DataLossError(absl::StrCat(path, " shrank from ", size, " to ", sent,
                                             " bytes while it was being uploaded"));
  }
  if (local.ok() && open) {
    request.set_sha256(hash.HexDigest());
    open = writer->Write(request);
  }
  if (!local.ok()) {
    // Nothing is committed unless the stream ends cleanly.
    context.TryCancel();
    writer->Finish();  // CANCELLED, or an earlier server error: the local cause wins
    return local;
  }
  if (open) writer->WritesDone();
  absl::Status status = FromGrpcStatus(writer->Finish());
  if (!status.ok()) return status;
  return std::move(*response.mutable_checkpoint());
}

}  // namespace

absl::StatusOr<v1::Checkpoint> UploadCheckpointFile(v1::WorkerControl::StubInterface& stub,
                                                    const ClientOptions& client,
                                                    v1::CheckpointMetadata metadata,
                                                    const std::string& path,
                                                    const UploadOptions& options) {
  if (options.chunk_bytes < 1 || options.chunk_bytes > kMaxCheckpointChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat("chunk_bytes: ", options.chunk_bytes,
                                                   " is outside 1..", kMaxCheckpointChunkBytes));
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeout: must be positive");
  }
  const FileDescriptor fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    const int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("cannot open ", path));
  }
  struct stat before {};
  if (fstat(fd.get(), &before) != 0) return ReadError(path);
  const int64_t size = before.st_size;
  metadata.set_size_bytes(size);
  metadata.clear_sha256();

  // How does this coordinator take the file?
  v1::BeginCheckpointUploadResponse plan;
  absl::Status asked = BeginUpload(stub, client, metadata, plan);
  if (absl::IsUnimplemented(asked)) {
    // A coordinator from before presigned uploads: it takes streams.
    return StreamCheckpointFile(stub, client, metadata, path, fd.get(), size, options);
  }
  RETURN_IF_ERROR(asked);
  if (plan.stream()) {
    return StreamCheckpointFile(stub, client, metadata, path, fd.get(), size, options);
  }
  if (plan.sha256_required()) {
    ASSIGN_OR_RETURN(std::string sha256, Sha256File(path, size));
    metadata.set_sha256(std::move(sha256));
    RETURN_IF_ERROR(BeginUpload(stub, client, metadata, plan));
  }
  if (plan.upload_id().empty()) {
    return absl::UnknownError("the coordinator answered BeginCheckpointUpload with no upload");
  }
  absl::StatusOr<std::vector<std::string>> md5s = PutParts(plan, path, fd.get(), size, options);
  if (md5s.ok()) {
    // The SHA-256 declared was computed before the parts were read again:
    // the file must be the same one, unchanged, or the digest is not theirs.
    struct stat after {};
    if (fstat(fd.get(), &after) != 0 || after.st_size != before.st_size ||
        after.st_mtim.tv_sec != before.st_mtim.tv_sec ||
        after.st_mtim.tv_nsec != before.st_mtim.tv_nsec) {
      md5s = absl::DataLossError(
          absl::StrCat(path, " changed while it was being uploaded; nothing was committed"));
    }
  }
  if (!md5s.ok()) {
    AbortUpload(stub, client, metadata.job_id(), plan.upload_id());
    return md5s.status();
  }
  return CommitUpload(stub, client, metadata.job_id(), plan.upload_id(), *md5s, options);
}

}  // namespace clmae
