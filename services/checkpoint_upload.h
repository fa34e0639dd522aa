#pragma once

// Client side of WorkerControl.UploadCheckpoint: one file, streamed as the
// metadata message followed by its bytes in chunks, with the size and
// SHA-256 the coordinator verifies before it commits anything.

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clmae/v1/checkpoint.pb.h"
#include "clmae/v1/worker_control.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "services/grpc_client.h"

namespace clmae {

// The largest data chunk the contract allows (checkpoint.proto).
inline constexpr int64_t kMaxCheckpointChunkBytes = 1 << 20;

struct UploadOptions {
  int64_t chunk_bytes = kMaxCheckpointChunkBytes;  // 1 .. kMaxCheckpointChunkBytes
  absl::Duration timeout = absl::Hours(1);         // the whole call's deadline
  // Called with the call's context before the call starts (after the token
  // and deadline are set). The context lives until UploadCheckpointFile
  // returns; a caller may keep a pointer to it until then, e.g. to
  // TryCancel() the upload from another thread.
  std::function<void(grpc::ClientContext&)> prepare_context;
  // Presigned uploads (a coordinator with object storage): tries of each
  // part's PUT and of the commit when the store or the coordinator is
  // unreachable (UNAVAILABLE), with exponential back-off; a PUT during which
  // no byte moves for stall_timeout fails UNAVAILABLE instead of hanging.
  int attempts = 5;
  absl::Duration initial_backoff = absl::Milliseconds(500);
  absl::Duration max_backoff = absl::Seconds(10);
  absl::Duration stall_timeout = absl::Seconds(30);
  // Called after each part of a presigned upload is stored (parts done, of
  // how many), on the calling thread; may be empty.
  std::function<void(int done, int total)> part_stored;
};

// Uploads the file at `path` the way the coordinator asks
// (WorkerControl.BeginCheckpointUpload; a coordinator without that call
// gets a stream). To a coordinator with its own disk: streamed to
// WorkerControl.UploadCheckpoint, `metadata` first, with size_bytes filled
// in from the file, then the bytes in chunks of options.chunk_bytes, hashed
// as they are sent, then their SHA-256 (the file is read once). To one with
// object storage: hashed (SHA-256) first, then each part PUT to its
// presigned URL and checked against the ETag the store answers (MD5), then
// committed by CommitCheckpointUpload; the bytes never pass through the
// coordinator. Memory use does not grow with the file size. Returns the
// committed Checkpoint.
//
// Errors: INVALID_ARGUMENT for a chunk size outside 1 .. 1 MiB or a timeout
// <= 0; NOT_FOUND / PERMISSION_DENIED naming the path when the file cannot
// be opened; INTERNAL for a read error; DATA_LOSS when the file changed
// size while it was being sent (the call is cancelled, nothing is
// committed; with object storage, a file whose size or mtime changed
// between the hash and the upload); UNAVAILABLE naming the part, the try
// and the reason when the store stays unreachable (the upload is then
// aborted); otherwise the server's status, codes preserved (see
// worker_control.proto). Thread-safe (one call per invocation).
absl::StatusOr<v1::Checkpoint> UploadCheckpointFile(v1::WorkerControl::StubInterface& stub,
                                                    const ClientOptions& client,
                                                    v1::CheckpointMetadata metadata,
                                                    const std::string& path,
                                                    const UploadOptions& options);

}  // namespace clmae
