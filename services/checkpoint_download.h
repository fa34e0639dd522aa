#pragma once

// Client side of checkpoint downloads: Coordinator.DownloadCheckpoint for
// clmaectl, WorkerControl.FetchCheckpoint for the node agent. Both answer the
// same stream (checkpoint.proto): the record first, then the bytes from the
// requested offset in chunks of at most 1 MiB, or (object storage, for
// requests that set accept_url) a presigned URL the bytes are fetched from
// with a ranged GET. This file streams them to
// disk, resuming where a previous try (or a previous process) stopped, and
// verifies size and SHA-256 before the file appears under its name.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clmae/v1/checkpoint.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/sync_stream.h"

namespace clmae {

// Opens the server stream of one download starting at `offset`
// (Coordinator.DownloadCheckpoint for clients, WorkerControl.FetchCheckpoint
// for agents). `context` is owned by the caller and already carries the
// deadline/credentials the caller wants. Called once per try, each time with
// a fresh context.
using OpenDownloadStream =
    std::function<std::unique_ptr<grpc::ClientReaderInterface<v1::DownloadCheckpointResponse>>(
        grpc::ClientContext* context, int64_t offset)>;

struct DownloadOptions {
  // Continue from PATH.part when it belongs to the same checkpoint (same id
  // and SHA-256, per the sidecar); false: always start at byte 0.
  bool resume = true;
  // Tries on UNAVAILABLE / DEADLINE_EXCEEDED / a broken or truncated stream,
  // each resuming at the bytes already on disk, with exponential backoff.
  // Counted from the last try that brought new bytes, so a long download
  // over a flaky link still finishes (each such try adds at least one
  // byte, so it ends).
  int attempts = 5;
  // Wait before the second try; doubled each further try, at most
  // max_backoff.
  absl::Duration initial_backoff = absl::Milliseconds(250);
  absl::Duration max_backoff = absl::Seconds(5);
  // Called on the calling thread as bytes arrive (done, total), first with
  // the bytes already on disk; may be empty.
  std::function<void(int64_t done, int64_t total)> progress;
  // Called on the calling thread when a try's stream has sent the record
  // and the bytes are about to follow from `offset` (the bytes of this
  // checkpoint already on disk); may be empty. Lets a caller name the
  // download, and pin later tries to `checkpoint.id()`.
  std::function<void(const v1::Checkpoint& checkpoint, int64_t offset)> started;
  // Sets deadline/credentials on each context before the stream opens (e.g.
  // AuthorizeCall); may be empty.
  std::function<void(grpc::ClientContext&)> prepare_context;
  // A GET from object storage (a presigned URL) in which no byte moves this
  // long fails UNAVAILABLE and is tried again, resuming.
  absl::Duration stall_timeout = absl::Seconds(30);
};

// Where a download to `path` keeps its bytes until they are verified
// ("<path>.part"), and the sidecar naming their checkpoint
// ("<path>.part.meta": id, sha256 and size, one per line).
std::string DownloadPartPath(const std::string& path);
std::string DownloadSidecarPath(const std::string& path);

// Downloads to `path` through `path + ".part"` (plus a small sidecar naming
// the checkpoint id and sha256, so a .part of a different checkpoint is never
// resumed — it is restarted instead), appending from the bytes already
// there, then verifies the total size and the SHA-256 over the whole file
// (DATA_LOSS naming both digests on mismatch; the .part is removed), fsyncs
// and renames to `path`. Returns the checkpoint record from the stream's
// first message. A stream that does not start with the record, sends a chunk
// > 1 MiB or more bytes than the size is DATA_LOSS. Server errors keep their
// codes (after the tries, for the retryable ones); a stream that keeps ending
// early is DATA_LOSS. Local file errors carry the errno's code with the path
// in the message. A failed download whose .part holds no bytes removes it
// and its sidecar (nothing to resume); one that holds some keeps both, for
// the next call to resume. Memory stays flat in the checkpoint's size. Not
// safe to run twice at once on the same `path`; otherwise thread-compatible.
absl::StatusOr<v1::Checkpoint> DownloadCheckpointToFile(const OpenDownloadStream& open,
                                                        const std::string& path,
                                                        const DownloadOptions& options);

}  // namespace clmae
