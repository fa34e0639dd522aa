// ProcessGroupNCCL from the PyTorch wheel, with the wheel's nccl.h (so the
// Options layout matches the library). Compiled to a clear UNIMPLEMENTED
// error when the build found no nccl.h or LibTorch has no CUDA.
#include "worker/engine/dist/dist_config.h"

#if CLMAE_HAVE_NCCL
#define USE_C10D_NCCL 1
#include "torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp"
#endif

#include <cstdlib>

#include "worker/engine/dist/c10d_backends.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {

absl::StatusOr<c10::intrusive_ptr<c10d::Backend>> NewNcclBackend(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int world_size,
    std::chrono::milliseconds timeout) {
#if CLMAE_HAVE_NCCL
  // Async error handling on: the watchdog aborts a communicator whose
  // collective failed or outlived the timeout, so no rank hangs in NCCL.
  // An explicit setting in the environment wins.
  setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1", /*overwrite=*/0);
  return CatchAll("creating the NCCL process group",
                  [&]() -> absl::StatusOr<c10::intrusive_ptr<c10d::Backend>> {
                    auto options = c10d::ProcessGroupNCCL::Options::create();
                    options->timeout = timeout;
                    c10::intrusive_ptr<c10d::Backend> backend =
                        c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size,
                                                                    options);
                    return backend;
                  });
#else
  (void)store;
  (void)rank;
  (void)world_size;
  (void)timeout;
  return absl::UnimplementedError(
      "this build of clmae has no NCCL (LibTorch without CUDA, or nccl.h not found at build "
      "time); use a CPU device, or rebuild against the CUDA PyTorch wheel");
#endif
}

}  // namespace clmae
