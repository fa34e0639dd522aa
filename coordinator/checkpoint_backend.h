#pragma once

// Where a CheckpointStore keeps the bytes of its checkpoints. The index
// (records, their verification, retention, quarantine, the orphan sweep's
// list of what is referenced) is the same for every backend; a record names
// its bytes in the backend by a "blob" name: the SHA-256 for the local
// content-addressed BlobStore, the object key for S3 (S3BlobBackend).
//
// The two backends move bytes differently, and that is outside this
// interface: the local one receives them through the coordinator
// (BlobStore::NewTemp / Install / OpenReader); the S3 one hands out
// presigned URLs and never sees a checkpoint byte. What the index needs of
// either is only this.

#include <cstdint>
#include <set>
#include <string>

#include "absl/status/status.h"

namespace clmae {

class CheckpointBackend {
 public:
  virtual ~CheckpointBackend() = default;
  // Deletes the bytes of `blob` (absent is fine). Called only after the
  // transaction that dropped the blob's last record has committed.
  virtual absl::Status Remove(const std::string& blob) = 0;
  // Deletes what no record references: every blob not in `referenced` (for
  // an object store, only what is older than its grace period, so uploads
  // in flight survive) and any half-written upload.
  virtual absl::Status Sweep(const std::set<std::string>& referenced) = 0;
  // Bytes the backend holds, as far as it tracks them (0 when it does not).
  virtual int64_t stored_bytes() const = 0;
};

}  // namespace clmae
