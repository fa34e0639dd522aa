#pragma once

// A model small enough for unit tests on a CPU: 8x8 images, patch 2 (16
// patches), width 16, one block everywhere.

#include "common/model_config.h"

namespace clmae::testutil {

inline ModelConfig SmallModelConfig(int in_chans = 1, int patch_size = 2) {
  ModelConfig c;
  c.img_size = 8;
  c.in_chans = in_chans;
  c.patch_size = patch_size;
  c.embed_dim = 16;
  c.depth = 1;
  c.num_heads = 2;
  c.decoder_embed_dim = 8;
  c.decoder_depth = 1;
  c.decoder_num_heads = 2;
  c.masker_depth = 1;
  c.masker_num_heads = 4;
  return c;
}

}  // namespace clmae::testutil
