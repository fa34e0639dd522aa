// libFuzzer target: safetensors import (ReadSafetensors, used by
// train.init_from): an 8-byte header length, a JSON header (read by the
// engine's own JSON reader) and the tensor bytes.

#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_files.h"
#include "worker/engine/train/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path =
      clmae::fuzz::WriteScratch("input.safetensors", reinterpret_cast<const char*>(data), size);
  auto tensors = clmae::ReadSafetensors(path);
  if (tensors.ok()) {
    for (const auto& [name, tensor] : *tensors) (void)tensor.sum();
  }
  return 0;
}
