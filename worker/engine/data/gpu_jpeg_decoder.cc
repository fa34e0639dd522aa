#include "worker/engine/data/gpu_jpeg_decoder.h"

#include <atomic>
#include <deque>
#include <mutex>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/data/image_codec.h"
#include "worker/engine/data/image_codec_internal.h"
#include "worker/engine/train/cuda_config.h"   // CLMAE_HAVE_CUDA
#include "worker/engine/util/codecs_config.h"  // CLMAE_HAVE_NVJPEG
#include "worker/engine/util/torch_status.h"

#if CLMAE_HAVE_CUDA && CLMAE_HAVE_NVJPEG
#define CLMAE_NVJPEG_PATH 1
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <nvjpeg.h>
#else
#define CLMAE_NVJPEG_PATH 0
#endif

namespace clmae {

#if CLMAE_NVJPEG_PATH
namespace {

// The statuses every nvJPEG of CUDA 11 and later has; newer ones by number.
std::string NvjpegError(nvjpegStatus_t status) {
  switch (status) {
    case NVJPEG_STATUS_NOT_INITIALIZED:
      return "not initialized";
    case NVJPEG_STATUS_INVALID_PARAMETER:
      return "invalid parameter";
    case NVJPEG_STATUS_BAD_JPEG:
      return "bad JPEG";
    case NVJPEG_STATUS_JPEG_NOT_SUPPORTED:
      return "JPEG not supported";
    case NVJPEG_STATUS_ALLOCATOR_FAILURE:
      return "allocation failed";
    case NVJPEG_STATUS_EXECUTION_FAILED:
      return "execution failed";
    case NVJPEG_STATUS_ARCH_MISMATCH:
      return "not supported on this GPU";
    case NVJPEG_STATUS_INTERNAL_ERROR:
      return "internal error";
    case NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED:
      return "implementation not supported";
    default:
      return absl::StrCat("status ", static_cast<int>(status));
  }
}

// The host path: DecodeImage, then a copy to the device on the current
// stream. Its errors are the host decoder's own (DATA_LOSS naming the file).
absl::StatusOr<torch::Tensor> DecodeOnHost(const EncodedExample& image, int channels,
                                           torch::Device device) {
  ASSIGN_OR_RETURN(torch::Tensor host, DecodeImage(image.bytes, channels, image.what));
  return CatchAll(absl::StrCat(image.what, ": copy to ", device.str()),
                  [&]() -> absl::StatusOr<torch::Tensor> { return host.to(device); });
}

// What one Decode call needs of nvJPEG for itself: a decoding state (which
// holds the batch's buffers) and a parsed stream for the hardware support
// check. States are kept in a pool and reused; nvJPEG's handle is shared and
// thread-safe, states are not.
struct Slot {
  nvjpegJpegState_t state = nullptr;
  nvjpegJpegStream_t stream = nullptr;
  int initialized_batch = -1;  // batch size of the last nvjpegDecodeBatchedInitialize
  int initialized_channels = 0;
};

class NvjpegDecoder : public GpuJpegDecoder {
 public:
  NvjpegDecoder(torch::Device device, nvjpegHandle_t handle, bool hardware)
      : device_(device), handle_(handle), hardware_(hardware) {}

  ~NvjpegDecoder() override {
    // Nothing may still be decoding: callers join their threads first.
    for (Slot& slot : slots_) {
      if (slot.stream != nullptr) nvjpegJpegStreamDestroy(slot.stream);
      if (slot.state != nullptr) nvjpegJpegStateDestroy(slot.state);
    }
    nvjpegDestroy(handle_);
  }

  std::string backend() const override { return hardware_ ? "hardware" : "cuda"; }
  torch::Device device() const override { return device_; }
  int64_t decoded_on_device() const override { return on_device_.load(); }
  int64_t decoded_on_host() const override { return on_host_.load(); }

  std::vector<absl::StatusOr<torch::Tensor>> Decode(const std::vector<EncodedExample>& images,
                                                    int channels) override {
    const c10::cuda::CUDAGuard guard(device_);
    std::vector<absl::StatusOr<torch::Tensor>> out(
        images.size(), absl::InternalError("GpuJpegDecoder: not decoded"));
    if (channels != 1 && channels != 3) {
      for (auto& entry : out) {
        entry = absl::InvalidArgumentError(
            absl::StrCat("GpuJpegDecoder: channels must be 1 or 3, got ", channels));
      }
      return out;
    }
    absl::StatusOr<Slot*> slot = AcquireSlot();
    if (!slot.ok()) {
      for (auto& entry : out) entry = slot.status();
      return out;
    }
    // Which images nvJPEG takes: baseline or progressive JPEG with one or
    // three components and a subsampling it knows (and, for the hardware
    // decoder, one it supports); each gets its device tensor now.
    std::vector<bool> on_host(images.size(), false);
    std::vector<size_t> batch;
    std::vector<nvjpegImage_t> destinations;
    for (size_t i = 0; i < images.size(); ++i) {
      absl::StatusOr<torch::Tensor> target = DeviceTarget(**slot, images[i], channels);
      if (!target.ok() || !target->defined()) {
        on_host[i] = target.ok();
        out[i] = std::move(target);
        continue;
      }
      nvjpegImage_t destination{};
      for (int c = 0; c < channels; ++c) {
        destination.channel[c] = (*target)[c].data_ptr<uint8_t>();
        destination.pitch[c] = static_cast<size_t>(target->size(2));
      }
      batch.push_back(i);
      destinations.push_back(destination);
      out[i] = std::move(*target);
    }
    if (!batch.empty()) {
      if (DecodeBatch(**slot, images, batch, destinations, channels)) {
        on_device_ += static_cast<int64_t>(batch.size());
      } else {
        // nvJPEG refused the batch as a whole (one corrupt image is enough):
        // the host decodes each, and names the bad one.
        for (size_t i : batch) on_host[i] = true;
      }
    }
    for (size_t i = 0; i < images.size(); ++i) {
      if (!on_host[i]) continue;
      out[i] = DecodeOnHost(images[i], channels, device_);
      ++on_host_;
    }
    // Until the stream is done, nvJPEG may still read the input bytes and
    // the state's buffers; after this the state can serve another call and
    // the tensors hold their pixels.
    absl::Status synced = CatchAll("nvJPEG: waiting for the decode", [&] {
      c10::cuda::getCurrentCUDAStream(device_.index()).synchronize();
      return absl::OkStatus();
    });
    if (!synced.ok()) {
      for (auto& entry : out) entry = synced;
    }
    ReleaseSlot(*slot);
    return out;
  }

 private:
  absl::StatusOr<Slot*> AcquireSlot() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      Slot* slot = free_.back();
      free_.pop_back();
      return slot;
    }
    Slot& slot = slots_.emplace_back();
    nvjpegStatus_t s = nvjpegJpegStateCreate(handle_, &slot.state);
    if (s == NVJPEG_STATUS_SUCCESS) s = nvjpegJpegStreamCreate(handle_, &slot.stream);
    if (s != NVJPEG_STATUS_SUCCESS) {
      return absl::ResourceExhaustedError(
          absl::StrCat("nvJPEG: cannot create a decoding state: ", NvjpegError(s)));
    }
    return &slot;
  }

  void ReleaseSlot(Slot* slot) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(slot);
  }

  // The device tensor image `e` decodes into, an undefined tensor when the
  // host should decode it instead, or DATA_LOSS for a size the engine
  // refuses (as the host decoder would).
  absl::StatusOr<torch::Tensor> DeviceTarget(Slot& slot, const EncodedExample& e, int channels) {
    if (SniffImageFormat(e.bytes) != ImageFormat::kJpeg) return torch::Tensor();
    const auto* data = reinterpret_cast<const unsigned char*>(e.bytes.data());
    int components = 0;
    nvjpegChromaSubsampling_t subsampling = NVJPEG_CSS_UNKNOWN;
    int widths[NVJPEG_MAX_COMPONENT] = {};
    int heights[NVJPEG_MAX_COMPONENT] = {};
    if (nvjpegGetImageInfo(handle_, data, e.bytes.size(), &components, &subsampling, widths,
                           heights) != NVJPEG_STATUS_SUCCESS ||
        (components != 1 && components != 3) || subsampling == NVJPEG_CSS_UNKNOWN) {
      return torch::Tensor();
    }
    // A grey file for three channels: the host repeats its plane (rare in
    // photo datasets; nvJPEG's RGB output of a grey stream is not relied on).
    if (components == 1 && channels == 3) return torch::Tensor();
    const int64_t width = widths[0], height = heights[0];
    if (width < 1 || height < 1 || width * height > codec_internal::kMaxPixels) {
      return absl::DataLossError(absl::StrCat(e.what, ": JPEG of ", width, "x", height,
                                              " pixels is outside what the engine accepts"));
    }
    if (hardware_) {
      int unsupported = 1;
      if (nvjpegJpegStreamParseHeader(handle_, data, e.bytes.size(), slot.stream) !=
              NVJPEG_STATUS_SUCCESS ||
          nvjpegDecodeBatchedSupported(handle_, slot.stream, &unsupported) !=
              NVJPEG_STATUS_SUCCESS ||
          unsupported != 0) {
        return torch::Tensor();
      }
    }
    return CatchAll(
        absl::StrCat(e.what, ": device memory"), [&]() -> absl::StatusOr<torch::Tensor> {
          return torch::empty({channels, height, width},
                              torch::TensorOptions().dtype(torch::kUInt8).device(device_));
        });
  }

  // Decodes images[batch[k]] into destinations[k] on the current stream;
  // false when nvJPEG refuses the batch.
  bool DecodeBatch(Slot& slot, const std::vector<EncodedExample>& images,
                   const std::vector<size_t>& batch, std::vector<nvjpegImage_t>& destinations,
                   int channels) {
    const int n = static_cast<int>(batch.size());
    // RGB planes, or luma alone; grey files come out with Y in R, G and B,
    // as the host decoder repeats them.
    const nvjpegOutputFormat_t format = channels == 3 ? NVJPEG_OUTPUT_RGB : NVJPEG_OUTPUT_Y;
    if (slot.initialized_batch != n || slot.initialized_channels != channels) {
      if (nvjpegDecodeBatchedInitialize(handle_, slot.state, n, /*max_cpu_threads=*/1, format) !=
          NVJPEG_STATUS_SUCCESS) {
        slot.initialized_batch = -1;
        return false;
      }
      slot.initialized_batch = n;
      slot.initialized_channels = channels;
    }
    std::vector<const unsigned char*> data(n);
    std::vector<size_t> lengths(n);
    for (int k = 0; k < n; ++k) {
      data[k] = reinterpret_cast<const unsigned char*>(images[batch[k]].bytes.data());
      lengths[k] = images[batch[k]].bytes.size();
    }
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device_.index()).stream();
    if (nvjpegDecodeBatched(handle_, slot.state, data.data(), lengths.data(), destinations.data(),
                            stream) != NVJPEG_STATUS_SUCCESS) {
      // A failed batch leaves the state needing a new initialisation.
      slot.initialized_batch = -1;
      return false;
    }
    return true;
  }

  const torch::Device device_;
  const nvjpegHandle_t handle_;
  const bool hardware_;
  std::mutex mu_;
  std::deque<Slot> slots_;  // stable addresses
  std::vector<Slot*> free_;
  std::atomic<int64_t> on_device_{0};
  std::atomic<int64_t> on_host_{0};
};

}  // namespace

bool GpuJpegDecoder::Available() { return true; }

absl::StatusOr<std::unique_ptr<GpuJpegDecoder>> GpuJpegDecoder::Create(torch::Device device) {
  if (!device.is_cuda()) {
    return absl::FailedPreconditionError(
        absl::StrCat("decoding JPEG on the GPU needs a CUDA training device, not ", device.str()));
  }
  const int count = c10::cuda::device_count();
  if (count == 0) {
    return absl::FailedPreconditionError(
        "decoding JPEG on the GPU needs a CUDA device, and none is present");
  }
  if (!device.has_index()) device = torch::Device(torch::kCUDA, c10::cuda::current_device());
  if (device.index() >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("decoding JPEG on ", device.str(), ": there are ", count, " CUDA devices"));
  }
  const c10::cuda::CUDAGuard guard(device);
  // The GPU's JPEG engines where it has them; else entropy decoding on its
  // cores (GPU-hybrid); else whatever nvJPEG picks.
  nvjpegStatus_t status = NVJPEG_STATUS_SUCCESS;
  for (const auto& [backend, hardware] :
       {std::pair{NVJPEG_BACKEND_HARDWARE, true}, std::pair{NVJPEG_BACKEND_GPU_HYBRID, false},
        std::pair{NVJPEG_BACKEND_DEFAULT, false}}) {
    nvjpegHandle_t handle = nullptr;
    status = nvjpegCreateEx(backend, nullptr, nullptr, NVJPEG_FLAGS_DEFAULT, &handle);
    if (status == NVJPEG_STATUS_SUCCESS) {
      return std::unique_ptr<GpuJpegDecoder>(new NvjpegDecoder(device, handle, hardware));
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("nvJPEG cannot start on ", device.str(), ": ", NvjpegError(status)));
}

#else  // !CLMAE_NVJPEG_PATH

bool GpuJpegDecoder::Available() { return false; }

absl::StatusOr<std::unique_ptr<GpuJpegDecoder>> GpuJpegDecoder::Create(torch::Device device) {
  return absl::FailedPreconditionError(
      absl::StrCat("decoding JPEG on ", device.str(),
                   " needs an engine built with CUDA and nvJPEG, and this one was built without ",
                   CLMAE_HAVE_CUDA ? "nvJPEG" : "CUDA"));
}

#endif  // CLMAE_NVJPEG_PATH

}  // namespace clmae
