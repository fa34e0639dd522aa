#pragma once

// Shapes of the MAE backbone and the masking module (docs/method.md §2).
// Torch-free, so the control plane can validate job specs without LibTorch.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace clmae {

struct ModelConfig {
  int img_size = 224;  // square input, pixels
  int in_chans = 3;
  int patch_size = 16;
  int embed_dim = 768;  // D
  int depth = 12;
  int num_heads = 12;
  int decoder_embed_dim = 512;
  int decoder_depth = 8;
  int decoder_num_heads = 16;
  int mlp_ratio = 4;
  int masker_depth = 5;  // depth_m; the masker is D wide
  int masker_num_heads = 4;
  bool norm_pix_loss = false;

  int grid() const { return img_size / patch_size; }
  int num_patches() const { return grid() * grid(); }  // L
  int patch_dim() const { return patch_size * patch_size * in_chans; }
};

// Names of the presets: the reference's four (docs/method.md §2.4) and this
// project's small CPU ones ("tiny", "small").
std::vector<std::string> ModelPresetNames();

// The preset called `name`, or INVALID_ARGUMENT listing the known names.
absl::StatusOr<ModelConfig> ModelPreset(const std::string& name);

// Checks every field; the error names the field (as the job spec spells it,
// under `field_prefix`, e.g. "model."), the value given and what is allowed.
absl::Status ValidateModelConfig(const ModelConfig& config,
                                 const std::string& field_prefix = "model.");

}  // namespace clmae
