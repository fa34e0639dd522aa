#include "worker/engine/train/cuda_graph.h"

#include <exception>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/engine/train/cuda_config.h"

#if CLMAE_HAVE_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace clmae {

#if CLMAE_HAVE_CUDA

// "cuda" without an index means the current device.
c10::Device WithIndex(c10::Device d) {
  return d.has_index() ? d : c10::Device(c10::DeviceType::CUDA, c10::cuda::current_device());
}

struct CudaGraph::Impl {
  explicit Impl(c10::Device d)
      : device(WithIndex(d)),
        stream(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index())) {}

  // Runs `fn` on `stream`, which first waits for the caller's stream; the
  // caller's stream then waits for it.
  absl::Status OnStream(const std::function<absl::Status()>& fn) {
    const c10::cuda::CUDAGuard device_guard(device);
    auto caller = c10::cuda::getCurrentCUDAStream(device.index());
    at::cuda::CUDAEvent before;
    before.record(caller);
    before.block(stream);
    absl::Status status;
    {
      const c10::cuda::CUDAStreamGuard guard(stream);
      try {
        status = fn();
      } catch (const std::exception& e) {
        status = absl::InternalError(e.what());
      }
    }
    at::cuda::CUDAEvent after;
    after.record(stream);
    after.block(caller);
    return status;
  }

  c10::Device device;
  c10::cuda::CUDAStream stream;
  std::optional<at::cuda::CUDAGraph> graph;
};

bool CudaGraph::Available() { return true; }

CudaGraph::CudaGraph(c10::Device device) : impl_(std::make_unique<Impl>(device)) {}
CudaGraph::~CudaGraph() = default;

absl::Status CudaGraph::Warmup(const std::function<absl::Status()>& fn) {
  return impl_->OnStream(fn);
}

absl::Status CudaGraph::CaptureAndReplay(const std::function<absl::Status()>& fn) {
  Impl& m = *impl_;
  m.graph.emplace();
  absl::Status status = m.OnStream([&]() -> absl::Status {
    // Thread-local capture: the data loader's threads keep allocating pinned
    // host memory and (with data.decode GPU) running nvJPEG and the
    // augmentation on streams of their own while this thread captures; the
    // default global mode would make those calls fail the capture.
    m.graph->capture_begin(/*pool=*/{0, 0}, cudaStreamCaptureModeThreadLocal);
    absl::Status inner;
    try {
      inner = fn();
    } catch (const std::exception& e) {
      inner = absl::InternalError(e.what());
    }
    // The capture must end whatever happened, or the stream stays capturing.
    try {
      m.graph->capture_end();
    } catch (const std::exception& e) {
      if (inner.ok()) inner = absl::InternalError(e.what());
    }
    return inner;
  });
  if (!status.ok()) {
    m.graph.reset();
    return absl::Status(status.code(), absl::StrCat("capturing a CUDA graph: ", status.message()));
  }
  return Replay();
}

absl::Status CudaGraph::Replay() {
  Impl& m = *impl_;
  if (!m.graph.has_value()) return absl::FailedPreconditionError("no CUDA graph was captured");
  return m.OnStream([&]() -> absl::Status {
    m.graph->replay();
    return absl::OkStatus();
  });
}

bool CudaGraph::captured() const { return impl_->graph.has_value(); }

#else  // !CLMAE_HAVE_CUDA

struct CudaGraph::Impl {};

bool CudaGraph::Available() { return false; }
CudaGraph::CudaGraph(c10::Device) : impl_(std::make_unique<Impl>()) {}
CudaGraph::~CudaGraph() = default;
namespace {
absl::Status NoCuda() {
  return absl::UnimplementedError("CUDA graphs need LibTorch built with CUDA");
}
}  // namespace
absl::Status CudaGraph::Warmup(const std::function<absl::Status()>&) { return NoCuda(); }
absl::Status CudaGraph::CaptureAndReplay(const std::function<absl::Status()>&) { return NoCuda(); }
absl::Status CudaGraph::Replay() { return NoCuda(); }
bool CudaGraph::captured() const { return false; }

#endif

}  // namespace clmae
