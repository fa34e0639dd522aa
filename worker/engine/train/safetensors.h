#pragma once

// The safetensors format (8-byte little-endian header length, a JSON header
// of {name: {dtype, shape, data_offsets}}, then the raw little-endian data),
// so PyTorch / timm users load clmae weights directly.

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "torch/types.h"

namespace clmae {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Writes `tensors` (any device; F32, F16, BF16, F64, I64, I32, U8, BOOL)
// atomically to `path` with optional string `metadata`.
absl::Status WriteSafetensors(const std::string& path, const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// Reads every tensor of a safetensors file onto the CPU, in file order.
// INVALID_ARGUMENT names what is malformed (header, dtype, offsets).
absl::StatusOr<NamedTensors> ReadSafetensors(const std::string& path);

}  // namespace clmae
