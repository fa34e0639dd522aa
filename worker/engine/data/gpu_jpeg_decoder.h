#pragma once

// JPEG decoding on a CUDA device with nvJPEG, for a data loader whose host
// cores cannot decode as fast as the GPU trains (docs/benchmarks.md: about
// 5.7 cores per GPU at the ViT-B/16 goal rate). The bytes are read on the
// host; entropy decoding runs on the GPU's JPEG engines where it has them
// (A100, H100, H200: nvJPEG's hardware backend), else on the GPU's cores
// (nvJPEG's GPU-hybrid backend); the image lands in device memory as the
// same uint8 [C, H, W] the host decoder gives.
//
// Everything nvJPEG does not take (PNG files, CMYK and other colour models,
// what the hardware decoder does not support, such as progressive JPEGs, or
// a batch nvJPEG refuses) is decoded on the host by DecodeImage and copied
// to the device, so every file the host path accepts is accepted here and a
// file it refuses gets the same DATA_LOSS message.
//
// Built only when LibTorch has CUDA and the build finds nvJPEG; otherwise
// Create() fails with FAILED_PRECONDITION.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "torch/types.h"
#include "worker/engine/data/dataset.h"

namespace clmae {

class GpuJpegDecoder {
 public:
  // Whether this build has the nvJPEG path.
  static bool Available();

  // A decoder for CUDA device `device`. FAILED_PRECONDITION: no nvJPEG in
  // this build, `device` is not CUDA, or no CUDA device is present.
  static absl::StatusOr<std::unique_ptr<GpuJpegDecoder>> Create(torch::Device device);

  virtual ~GpuJpegDecoder() = default;

  // Decodes `images` to uint8 [channels, H, W] tensors on the device
  // (channels 1 or 3, converted as DecodeImage converts), in order, on the
  // calling thread's current CUDA stream of the device, and waits for that
  // stream: on return the pixels are in device memory. Meant for loader
  // threads, not the training thread. Safe to call from several threads at
  // once (each call takes a decoding state of its own). Each entry is the
  // image or DATA_LOSS naming the file.
  virtual std::vector<absl::StatusOr<torch::Tensor>> Decode(
      const std::vector<EncodedExample>& images, int channels) = 0;

  // "hardware" (the GPU's JPEG engines) or "cuda" (GPU-hybrid).
  virtual std::string backend() const = 0;
  // The device decoded to, with its index ("cuda" resolved to the current
  // device at Create).
  virtual torch::Device device() const = 0;

  // Images decoded by nvJPEG, and images that went to the host decoder
  // instead, since construction.
  virtual int64_t decoded_on_device() const = 0;
  virtual int64_t decoded_on_host() const = 0;
};

}  // namespace clmae
