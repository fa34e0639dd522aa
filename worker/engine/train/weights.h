#pragma once

// Network weights under the reference's state-dict names (docs/method.md §8.2):
// export to, and initialisation from, safetensors.

#include <string>

#include "absl/status/status.h"
#include "worker/engine/model/mae_vit.h"
#include "worker/engine/model/masking_net.h"
#include "worker/engine/train/safetensors.h"

namespace clmae {

// Which weights to name.
enum class WeightSet {
  kAll,      // encoder + decoder + masker (`masking_net.*`, when there is one)
  kEncoder,  // what timm's vit_* models load: no decoder_*, mask_token, masking_net.*
};

// Parameters and buffers (the fixed position embeddings) under reference
// names. `masker` may be empty (plain MAE).
NamedTensors NamedWeights(MaeVit& mae, MaskingNet& masker, WeightSet set);

// Copies `tensors` into the networks. The encoder's keys are all required;
// the decoder's and the masker's are each all-or-nothing (an encoder-only or
// plain-MAE file initialises what it has). INVALID_ARGUMENT lists every
// missing, unexpected and mis-shaped key.
absl::Status LoadWeights(const NamedTensors& tensors, MaeVit& mae, MaskingNet& masker);

}  // namespace clmae
