#pragma once

// Batches of transformed images, decoded by a pool of threads ahead of the
// trainer. Deterministic: batch b of epoch e holds the same samples with the
// same augmentation however many threads decode, so a resumed run sees the
// data an uninterrupted one would.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "torch/types.h"
#include "worker/engine/data/dataset.h"
#include "worker/engine/data/distributed_sampler.h"
#include "worker/engine/data/gpu_jpeg_decoder.h"
#include "worker/engine/data/transforms.h"

namespace clmae {

struct DataLoaderOptions {
  int batch_size = 64;  // per rank
  // Decode threads, each running its LibTorch ops on itself alone (no intra-op
  // fan-out); 0 decodes on the caller's thread.
  int num_workers = 2;
  int prefetch = 4;         // batches decoded ahead
  bool pin_memory = false;  // page-locked host batches, for CUDA training
  // Undecodable images: skipped and counted (that batch is then smaller) or,
  // with `fail_on_decode_error`, an error.
  bool fail_on_decode_error = false;
  // Augmentation seed: dataset index i in epoch e is transformed with
  // SampleRng(seed, hash(e, i)), whichever thread does it.
  uint64_t seed = 0;
  // Where images are decoded and transformed: on the host (CPU, the
  // default), or on a CUDA device, JPEG with nvJPEG (GpuJpegDecoder) and the
  // transform with the same ops on the device; batches then live on that
  // device. The worker threads still read the files and queue the work, one
  // CUDA stream each. Needs a dataset of image files (HasEncoded()).
  torch::Device decode_device = torch::kCPU;
  // The decoder of whole batches (GetEncoded files in, decoded images out)
  // to use instead of the one decode_device CUDA makes: another
  // implementation of the interface, such as a test's on the host. Batches
  // are then made on its device().
  std::shared_ptr<GpuJpegDecoder> batch_decoder;
};

struct Batch {
  torch::Tensor images;   // float32 [B, C, size, size], on decode_device
  torch::Tensor labels;   // int64 [B]
  torch::Tensor indices;  // int64 [B]: dataset index of each image (CPU)
  int64_t epoch = 0;
  int64_t index = 0;  // batch index within the epoch
};

// Not thread-safe: one consumer. Owns its worker threads; destruction stops them.
class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, DistributedSampler sampler,
             TransformOptions transform, DataLoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Full batches per epoch (the last partial batch is dropped, as MAE does).
  int64_t batches_per_epoch() const;

  // Starts (or restarts) `epoch` at batch `start_batch`, discarding any
  // prefetched work.
  void StartEpoch(int64_t epoch, int64_t start_batch = 0);

  // The next batch of the current epoch; nullopt at its end. DATA_LOSS when an
  // image fails to decode and fail_on_decode_error is set, or when every
  // image of a batch fails.
  absl::StatusOr<std::optional<Batch>> Next();

  // Images skipped because they failed to decode, since construction; counted
  // as their batches are delivered, so work StartEpoch discards is not.
  int64_t skipped_images() const;

  // With decode_device CUDA: images nvJPEG decoded, and images decoded on
  // the host instead (PNG, CMYK, what the GPU's decoder does not take);
  // both 0 otherwise.
  int64_t images_decoded_on_device() const;
  int64_t images_decoded_on_host() const;
  // "nvJPEG on cuda:0 (hardware backend)" with decode_device CUDA; "" when
  // images are decoded on the host.
  std::string gpu_decoding() const;

 private:
  // Implementation defined in data_loader.cc.
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace clmae
