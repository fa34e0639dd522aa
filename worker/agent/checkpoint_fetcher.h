#pragma once

// The node's cache of the checkpoints trainers resume from: files named by
// their SHA-256 under <work_dir>/checkpoint-cache/. A restarted attempt's
// checkpoint is fetched from the coordinator (WorkerControl.FetchCheckpoint)
// only when the cache does not hold those bytes already, either from an
// earlier fetch or because a trainer on this node uploaded it (and
// hard-linked it here, see CheckpointUploader).

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clmae/v1/worker_control.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "services/grpc_client.h"

namespace clmae {

// <work_dir>/checkpoint-cache
std::string CheckpointCacheDir(const std::string& work_dir);

// True for an error of CheckpointFetcher::Ensure() that means the
// coordinator refuses the checkpoint itself: its file failed verification
// there (the stream ended DATA_LOSS) or it is quarantined
// (FAILED_PRECONDITION). The checkpoint will not become usable by asking
// again; the coordinator resumes the next attempt from another one.
bool IsCheckpointRefused(const absl::Status& status);

struct CheckpointFetcherOptions {
  std::string cache_dir;  // created when missing
  // Checkpoints kept (complete or partly fetched); the least recently used
  // beyond this are removed after each Ensure(). At least 1.
  int max_files = 4;
  ClientOptions client;  // the worker token (AuthorizeCall)
  std::shared_ptr<grpc::ChannelInterface> channel;
  // Tries of one fetch on UNAVAILABLE / DEADLINE_EXCEEDED / a broken stream,
  // each resuming where the last stopped (DownloadOptions.attempts).
  int attempts = 5;
  absl::Duration try_timeout = absl::Hours(1);  // the deadline of one stream
};

// Thread-safe. Ensure() blocks its caller for the whole fetch: call it from
// a thread of its own, not from one that must stay responsive.
class CheckpointFetcher {
 public:
  // INVALID_ARGUMENT for an empty cache folder or channel, max_files < 1 or
  // attempts < 1; PERMISSION_DENIED naming the folder when it cannot be
  // created.
  static absl::StatusOr<std::unique_ptr<CheckpointFetcher>> Create(
      CheckpointFetcherOptions options);
  // Shutdown().
  ~CheckpointFetcher();

  CheckpointFetcher(const CheckpointFetcher&) = delete;
  CheckpointFetcher& operator=(const CheckpointFetcher&) = delete;

  // The path of a local copy of checkpoint `checkpoint_id` of `job_id`,
  // whose bytes have SHA-256 `sha256` and length `size_bytes` (unchecked
  // when <= 0): <cache_dir>/<sha256> when the cache holds a file of that
  // size (no RPC), else fetched there first, resuming a partial file of an
  // earlier try. Callers asking for the same sha256 at once share one fetch
  // and its outcome. The file returned is the most recently used one, and
  // stays until max_files other checkpoints were used after it.
  //
  // Bytes that arrive whole from a stream the coordinator ended OK but do
  // not match its record (damaged in transit) are fetched once more from
  // byte 0 before the mismatch is returned.
  //
  // Errors: INVALID_ARGUMENT when sha256 is not 64 lowercase hex digits or
  // the id is empty; FAILED_PRECONDITION when the coordinator's record of
  // the checkpoint has another SHA-256 or size (the partial file is
  // removed); the coordinator's DATA_LOSS or FAILED_PRECONDITION, with
  // IsCheckpointRefused() true and the partial file removed, when it
  // refuses the checkpoint (failed verification there, or quarantined);
  // CANCELLED after Shutdown(); otherwise the fetch's
  // (DownloadCheckpointToFile's) error.
  absl::StatusOr<std::string> Ensure(const std::string& job_id, const std::string& checkpoint_id,
                                     const std::string& sha256, int64_t size_bytes);

  // Cancels the fetches in flight (they return CANCELLED) and every later
  // one; cache hits are still answered. Idempotent.
  void Shutdown();

  const std::string& cache_dir() const { return options_.cache_dir; }
  // Fetches started (RPC-backed Ensure() calls that were not cache hits).
  int64_t fetches() const { return fetches_.load(); }

 private:
  // One fetch in progress; others asking for the same sha256 wait on it.
  struct InFlight {
    bool done = false;
    absl::StatusOr<std::string> result;
  };
  class TrackedReader;

  CheckpointFetcher(CheckpointFetcherOptions options,
                    std::unique_ptr<v1::WorkerControl::StubInterface> stub);
  // The download itself (without mu_ held), with its one retry from byte 0.
  absl::StatusOr<std::string> Fetch(const std::string& job_id, const std::string& checkpoint_id,
                                    const std::string& sha256, int64_t size_bytes);
  // One DownloadCheckpointToFile into `path` (from byte 0 unless `resume`);
  // `server` gets the status the last stream ended with on the server's
  // side, `mismatch` a description when the record is not the one asked for.
  absl::StatusOr<v1::Checkpoint> FetchOnce(const std::string& job_id,
                                           const std::string& checkpoint_id,
                                           const std::string& sha256, int64_t size_bytes,
                                           const std::string& path, bool resume,
                                           grpc::Status& server, std::string& mismatch);
  // Removes the least recently used checkpoints beyond max_files, never
  // `keep` nor one being fetched.
  void Evict(const std::string& keep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A stream's context, cancellable by Shutdown() while it is registered.
  void Register(grpc::ClientContext* context);
  void Unregister(grpc::ClientContext* context);

  const CheckpointFetcherOptions options_;
  const std::unique_ptr<v1::WorkerControl::StubInterface> stub_;

  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<InFlight>> in_flight_ ABSL_GUARDED_BY(mu_);
  std::set<grpc::ClientContext*> streams_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int64_t> fetches_{0};
};

}  // namespace clmae
