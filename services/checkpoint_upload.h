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
};

// Streams the file at `path` to WorkerControl.UploadCheckpoint: `metadata`
// first, with size_bytes filled in from the file, then the bytes in chunks
// of options.chunk_bytes, hashed as they are sent, then their SHA-256 (the
// file is read once). Memory use does not grow with the file size. Returns
// the committed Checkpoint.
//
// Errors: INVALID_ARGUMENT for a chunk size outside 1 .. 1 MiB or a timeout
// <= 0; NOT_FOUND / PERMISSION_DENIED naming the path when the file cannot
// be opened; INTERNAL for a read error; DATA_LOSS when the file changed
// size while it was being sent (the call is cancelled, nothing is
// committed); otherwise the server's status, codes preserved (see
// worker_control.proto). Thread-safe (one call per invocation).
absl::StatusOr<v1::Checkpoint> UploadCheckpointFile(v1::WorkerControl::StubInterface& stub,
                                                    const ClientOptions& client,
                                                    v1::CheckpointMetadata metadata,
                                                    const std::string& path,
                                                    const UploadOptions& options);

}  // namespace clmae
