#include "worker/engine/data/data_loader.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <optional>
#include <utility>

#include "ATen/Parallel.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "c10/core/StreamGuard.h"
#include "c10/core/impl/DeviceGuardImplInterface.h"
#include "common/status_macros.h"
#include "torch/cuda.h"
#include "torch/torch.h"
#include "worker/engine/data/gpu_jpeg_decoder.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace {

constexpr int kMaxWorkers = 256;

// A batch as a worker hands it over: the batch or its error, and how many
// images it skipped (counted only once the batch is delivered, so work that
// StartEpoch throws away is not counted).
struct BatchResult {
  absl::StatusOr<Batch> batch;
  int64_t skipped = 0;
};

// The augmentation stream of one sample: a hash of (epoch, dataset index).
uint64_t SampleStream(int64_t epoch, int64_t index) {
  return SampleRng(static_cast<uint64_t>(epoch), static_cast<uint64_t>(index)).NextU64();
}

// Makes LibTorch's CPU ops on the calling thread run on that thread alone.
// The pool already keeps the cores busy, one image per worker; letting each
// worker's resize fan out to an OpenMP team of its own would put workers x
// cores threads on the cores (PyTorch's DataLoader sets one thread per worker
// process for the same reason). at::set_num_threads(1) cannot be used: it
// changes the whole process, the trainer's thread and MKL included. With
// OpenMP, ATen asks omp_get_max_threads(), a per-thread setting, so the
// thread sets its own, after ATen's one-time per-thread initialisation that
// would otherwise overwrite it. Looked up at run time: the engine does not
// link OpenMP itself, and a LibTorch without it makes this a no-op.
void UseOneIntraOpThread() {
  at::internal::lazy_init_num_threads();
  using SetNumThreads = void (*)(int);
  static const auto set_num_threads =
      reinterpret_cast<SetNumThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  if (set_num_threads != nullptr) set_num_threads(1);
}

absl::Status CheckOptions(const Dataset* dataset, const TransformOptions& transform,
                          const DataLoaderOptions& o) {
  if (dataset == nullptr) return absl::InvalidArgumentError("data loader: no dataset");
  if (o.batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.batch_size: ", o.batch_size, " must be at least 1"));
  }
  if (o.num_workers < 0 || o.num_workers > kMaxWorkers) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.num_workers: ", o.num_workers, " is outside 0..", kMaxWorkers));
  }
  if (o.prefetch < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.prefetch: ", o.prefetch, " must be at least 1"));
  }
  if (absl::Status s = ValidateTransformOptions(transform, dataset->channels()); !s.ok()) return s;
  if (!o.decode_device.is_cpu() && !o.decode_device.is_cuda()) {
    return absl::InvalidArgumentError(
        absl::StrCat("data loader: images are decoded on the CPU or a CUDA device, not ",
                     o.decode_device.str()));
  }
  if ((o.decode_device.is_cuda() || o.batch_decoder != nullptr) && !dataset->HasEncoded()) {
    return absl::InvalidArgumentError(absl::StrCat("data.decode GPU reads image files, and ",
                                                   dataset->Describe(),
                                                   " has none; decode it on the CPU"));
  }
  return absl::OkStatus();
}

}  // namespace

struct DataLoader::State {
  State(std::shared_ptr<const Dataset> d, DistributedSampler s, TransformOptions t,
        DataLoaderOptions o)
      : dataset(std::move(d)),
        sampler(std::move(s)),
        transform(std::move(t)),
        options(std::move(o)) {}

  // Decodes and transforms batch `b` of `epoch`; gives up early (CANCELLED)
  // once `cancelled()` is true. Never throws.
  BatchResult Build(int64_t epoch, int64_t b, const std::vector<int64_t>& indices,
                    const std::function<bool()>& cancelled) const;

  // Reads batch `b`'s files and decodes them with one decoder->Decode:
  // one entry per sample, the example or why it has none (a file that
  // cannot be read or decoded: DATA_LOSS naming it). CANCELLED when
  // superseded meanwhile.
  absl::StatusOr<std::vector<absl::StatusOr<Example>>> DecodeTogether(
      int64_t b, const std::vector<int64_t>& indices, const std::function<bool()>& cancelled,
      const std::string& context) const;

  // Whether a worker may start another batch. Requires `mu`.
  bool HasWork() const {
    return started && next_schedule < batches_per_epoch &&
           next_schedule < next_deliver + options.prefetch;
  }

  void WorkerLoop();

  const std::shared_ptr<const Dataset> dataset;
  const DistributedSampler sampler;
  const TransformOptions transform;
  const DataLoaderOptions options;
  absl::Status config_status;
  bool pin = false;
  // Decodes whole batches: decode_device CUDA's nvJPEG, or batch_decoder.
  std::shared_ptr<GpuJpegDecoder> decoder;
  // Where batches are made: the CPU, or the decoder's device (with its
  // index, which options.decode_device may leave out).
  torch::Device device = torch::kCPU;
  int64_t batches_per_epoch = 0;
  int64_t skipped = 0;  // consumer thread only

  std::mutex mu;
  std::condition_variable work_cv;   // workers: work or stop
  std::condition_variable ready_cv;  // consumer: a batch arrived
  std::atomic<bool> stop{false};
  // Bumped by StartEpoch under `mu`; read without it by workers to abandon
  // stale batches early.
  std::atomic<uint64_t> generation{0};
  bool started = false;
  int64_t epoch = 0;
  std::shared_ptr<const std::vector<int64_t>> indices;
  int64_t next_schedule = 0;  // next batch a worker will take
  int64_t next_deliver = 0;   // next batch Next() returns
  std::map<int64_t, BatchResult> ready;
  std::vector<std::thread> workers;
};

BatchResult DataLoader::State::Build(int64_t epoch, int64_t b, const std::vector<int64_t>& indices,
                                     const std::function<bool()>& cancelled) const {
  BatchResult result;
  const std::string context = absl::StrCat("batch ", b, " of epoch ", epoch);
  // On a CUDA decode device the batch's work goes to a stream of this
  // thread's own, waited for before the batch is handed over.
  std::optional<c10::StreamGuard> stream_guard;
  if (device.is_cuda()) {
    stream_guard.emplace(
        c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStreamFromGlobalPool(device));
  }
  result.batch = CatchAll(context, [&]() -> absl::StatusOr<Batch> {
    const int64_t n = options.batch_size;
    const int64_t channels = dataset->channels();
    const int64_t size = transform.size;
    torch::Tensor images = torch::empty(
        {n, channels, size, size},
        torch::TensorOptions().dtype(torch::kFloat32).device(device).pinned_memory(pin));
    // Decoded images: one at a time on the host, or the batch's files
    // together by the batch decoder (nvJPEG).
    std::vector<absl::StatusOr<Example>> decoded;
    if (decoder != nullptr) {
      ASSIGN_OR_RETURN(decoded, DecodeTogether(b, indices, cancelled, context));
    }
    std::vector<int64_t> labels;
    labels.reserve(n);
    std::vector<int64_t> ids;
    ids.reserve(n);
    absl::Status first_error;
    for (int64_t s = 0; s < n; ++s) {
      if (cancelled()) return absl::CancelledError(absl::StrCat(context, ": superseded"));
      const int64_t index = indices[b * n + s];
      absl::StatusOr<Example> example =
          decoder != nullptr ? std::move(decoded[s]) : dataset->Get(index);
      if (!example.ok()) {
        if (!absl::IsDataLoss(example.status())) {
          return absl::Status(example.status().code(),
                              absl::StrCat(context, ": ", example.status().message()));
        }
        if (options.fail_on_decode_error) return example.status();
        if (first_error.ok()) first_error = example.status();
        ++result.skipped;
        continue;
      }
      SampleRng rng(options.seed, SampleStream(epoch, index));
      torch::Tensor x = ApplyTransform(transform, example->image, rng);
      const int64_t k = static_cast<int64_t>(labels.size());
      if (x.sizes() != images[k].sizes()) {
        return absl::InternalError(absl::StrCat(context, ": sample ", index, " transformed to ",
                                                c10::str(x.sizes()), ", expected ",
                                                c10::str(images[k].sizes())));
      }
      images[k].copy_(x);
      labels.push_back(example->label);
      ids.push_back(index);
    }
    if (labels.empty()) {
      return absl::DataLossError(absl::StrCat(
          "every image of ", context, " failed to decode; the first: ", first_error.message()));
    }
    const auto kept = static_cast<int64_t>(labels.size());
    Batch batch;
    batch.images = kept == n ? images : images.narrow(0, 0, kept);
    batch.labels = torch::tensor(labels, torch::kInt64);
    batch.indices = torch::tensor(ids, torch::kInt64);
    if (pin) batch.labels = batch.labels.pin_memory();
    batch.epoch = epoch;
    batch.index = b;
    if (stream_guard) stream_guard->current_stream().synchronize();
    return batch;
  });
  return result;
}

absl::StatusOr<std::vector<absl::StatusOr<Example>>> DataLoader::State::DecodeTogether(
    int64_t b, const std::vector<int64_t>& indices, const std::function<bool()>& cancelled,
    const std::string& context) const {
  const int64_t n = options.batch_size;
  std::vector<EncodedExample> files;
  std::vector<absl::StatusOr<Example>> out(n);
  for (int64_t s = 0; s < n; ++s) {
    if (cancelled()) return absl::CancelledError(absl::StrCat(context, ": superseded"));
    absl::StatusOr<EncodedExample> file = dataset->GetEncoded(indices[b * n + s]);
    if (!file.ok()) {
      out[s] = file.status();
      continue;
    }
    out[s] = Example{torch::Tensor(), file->label};
    files.push_back(*std::move(file));
  }
  std::vector<absl::StatusOr<torch::Tensor>> pixels = decoder->Decode(files, dataset->channels());
  if (pixels.size() != files.size()) {
    return absl::InternalError(absl::StrCat(context, ": the batch decoder returned ", pixels.size(),
                                            " images for ", files.size(), " files"));
  }
  size_t next = 0;
  for (absl::StatusOr<Example>& example : out) {
    if (!example.ok()) continue;
    absl::StatusOr<torch::Tensor>& image = pixels[next++];
    if (image.ok()) {
      example->image = *std::move(image);
    } else {
      example = image.status();
    }
  }
  return out;
}

void DataLoader::State::WorkerLoop() {
  UseOneIntraOpThread();
  std::unique_lock<std::mutex> lock(mu);
  while (true) {
    work_cv.wait(lock, [this] { return stop.load() || HasWork(); });
    if (stop.load()) return;
    const int64_t b = next_schedule++;
    const uint64_t gen = generation.load();
    const int64_t batch_epoch = epoch;
    const std::shared_ptr<const std::vector<int64_t>> batch_indices = indices;
    lock.unlock();
    BatchResult result = Build(batch_epoch, b, *batch_indices,
                               [this, gen] { return stop.load() || generation.load() != gen; });
    lock.lock();
    if (gen == generation.load()) {
      ready.emplace(b, std::move(result));
      ready_cv.notify_all();
    }
  }
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DistributedSampler sampler,
                       TransformOptions transform, DataLoaderOptions options)
    : state_(std::make_unique<State>(std::move(dataset), std::move(sampler), std::move(transform),
                                     std::move(options))) {
  State& s = *state_;
  s.config_status = CheckOptions(s.dataset.get(), s.transform, s.options);
  if (!s.config_status.ok()) return;
  s.batches_per_epoch = s.sampler.num_samples() / s.options.batch_size;
  if (s.options.batch_decoder != nullptr) {
    s.decoder = s.options.batch_decoder;
    s.device = s.decoder->device();
  } else if (s.options.decode_device.is_cuda()) {
    absl::StatusOr<std::unique_ptr<GpuJpegDecoder>> decoder =
        GpuJpegDecoder::Create(s.options.decode_device);
    if (!decoder.ok()) {
      s.config_status = absl::Status(decoder.status().code(),
                                     absl::StrCat("data.decode GPU: ", decoder.status().message()));
      return;
    }
    s.decoder = std::move(*decoder);
    s.device = s.decoder->device();
  }
  if (s.options.pin_memory && s.decoder == nullptr) {
    // Page-locked memory needs a CUDA driver; on a CPU-only machine batches
    // stay in ordinary memory.
    absl::StatusOr<bool> cuda = CatchAll(
        "probing CUDA", []() -> absl::StatusOr<bool> { return torch::cuda::is_available(); });
    s.pin = cuda.ok() && *cuda;
  }
  try {
    for (int i = 0; i < s.options.num_workers; ++i) {
      s.workers.emplace_back([&s] { s.WorkerLoop(); });
    }
  } catch (const std::system_error& e) {
    s.config_status = absl::ResourceExhaustedError(
        absl::StrCat("data loader: cannot start worker thread ", s.workers.size(), ": ", e.what()));
  }
}

DataLoader::~DataLoader() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
  }
  state_->work_cv.notify_all();
  for (std::thread& worker : state_->workers) worker.join();
}

int64_t DataLoader::batches_per_epoch() const { return state_->batches_per_epoch; }

int64_t DataLoader::skipped_images() const { return state_->skipped; }

int64_t DataLoader::images_decoded_on_device() const {
  return state_->decoder ? state_->decoder->decoded_on_device() : 0;
}

std::string DataLoader::gpu_decoding() const {
  const State& s = *state_;
  if (s.decoder == nullptr) return "";
  return absl::StrCat("nvJPEG on ", s.device.str(), " (", s.decoder->backend(), " backend)");
}

int64_t DataLoader::images_decoded_on_host() const {
  return state_->decoder ? state_->decoder->decoded_on_host() : 0;
}

void DataLoader::StartEpoch(int64_t epoch, int64_t start_batch) {
  State& s = *state_;
  if (!s.config_status.ok()) return;
  auto indices = std::make_shared<const std::vector<int64_t>>(s.sampler.Indices(epoch));
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.generation.fetch_add(1);
    s.started = true;
    s.epoch = epoch;
    s.indices = std::move(indices);
    s.next_schedule = s.next_deliver = std::clamp<int64_t>(start_batch, 0, s.batches_per_epoch);
    s.ready.clear();
  }
  s.work_cv.notify_all();
}

absl::StatusOr<std::optional<Batch>> DataLoader::Next() {
  State& s = *state_;
  if (!s.config_status.ok()) return s.config_status;
  BatchResult result;
  if (s.workers.empty()) {
    if (!s.started) return absl::FailedPreconditionError("data loader: Next before StartEpoch");
    if (s.next_deliver >= s.batches_per_epoch) return std::optional<Batch>();
    result = s.Build(s.epoch, s.next_deliver, *s.indices, [] { return false; });
    ++s.next_deliver;
  } else {
    std::unique_lock<std::mutex> lock(s.mu);
    if (!s.started) return absl::FailedPreconditionError("data loader: Next before StartEpoch");
    if (s.next_deliver >= s.batches_per_epoch) return std::optional<Batch>();
    s.ready_cv.wait(lock, [&s] { return s.ready.count(s.next_deliver) > 0; });
    auto node = s.ready.extract(s.next_deliver);
    result = std::move(node.mapped());
    ++s.next_deliver;
    lock.unlock();
    s.work_cv.notify_all();
  }
  s.skipped += result.skipped;
  if (!result.batch.ok()) return result.batch.status();
  if (result.batch->images.is_cuda()) {
    // Made on a loader stream and used on the caller's: the caching
    // allocator must not hand the memory out again before the caller's
    // stream is done with it.
    const auto* cuda = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
    result.batch->images.record_stream(cuda->getStream(result.batch->images.device()));
  }
  return std::optional<Batch>(std::move(*result.batch));
}

}  // namespace clmae
