#pragma once

// One captured CUDA graph of a piece of host code that only queues device
// work, replayed instead of re-running the host code.

#include <c10/core/Device.h>

#include <functional>
#include <memory>

#include "absl/status/status.h"

namespace clmae {

// Runs work on its own CUDA stream, ordered after what the current stream
// has queued and before what it queues next. Not thread-safe. Without CUDA
// in LibTorch every call is UNIMPLEMENTED.
class CudaGraph {
 public:
  // Whether this build can capture graphs (LibTorch with CUDA).
  static bool Available();

  explicit CudaGraph(c10::Device device);
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Runs `fn` eagerly on the graph's stream (warm-up before the capture:
  // lazy initialisation and allocator pools settle there).
  absl::Status Warmup(const std::function<absl::Status()>& fn);
  // Captures `fn` (its host code runs once, its device work is recorded, not
  // run), then replays the graph once. An error from `fn` or from the capture
  // (an operation that cannot be captured) leaves no graph.
  absl::Status CaptureAndReplay(const std::function<absl::Status()>& fn);
  // Replays the captured graph. FAILED_PRECONDITION before a capture.
  absl::Status Replay();
  bool captured() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace clmae
