#pragma once

// Preview images that let a person see the curriculum: for each of a few
// fixed images a row of original | masker scores as a heat map | kept
// patches | reconstruction (predicted removed patches + kept ones).

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "torch/types.h"
#include "worker/engine/model/mae_vit.h"
#include "worker/engine/model/masking_net.h"

namespace clmae {

struct PreviewOptions {
  double mask_ratio = 0.75;
  std::vector<double> mean;  // the normalisation to undo (1 or C entries)
  std::vector<double> std;
  int scale = 0;      // pixel upscaling; 0 = so each panel is >= 112 px
  uint64_t seed = 0;  // random masks when there is no masker
};

// Renders the rows for `images` (normalised float [K, C, H, W]) as an RGB
// image uint8 [3, K*H*s, 4*W*s]. `masker` may be empty (plain MAE: random
// masks, the heat map shows kept = 1).
torch::Tensor RenderPreview(MaeVit& mae, MaskingNet& masker, const torch::Tensor& images,
                            const PreviewOptions& options);

// RenderPreview written as a PNG file (atomically).
absl::Status WritePreview(const std::string& path, MaeVit& mae, MaskingNet& masker,
                          const torch::Tensor& images, const PreviewOptions& options);

}  // namespace clmae
