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
#include "common/sha256.h"
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

  // One pass over the file: the size leads the stream, the bytes are hashed
  // as they are sent, and the digest follows them.
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return ReadError(path);
  const int64_t size = st.st_size;
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

}  // namespace clmae
