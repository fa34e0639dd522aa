#pragma once

// The engine's smallest real job, shared by the engine's and the trainer's
// tests: CL-MAE on 40 synthetic 16x16 one-channel images, patch 4, width 16,
// one block everywhere, batch 8 (5 iterations per epoch), one loader worker.

#include <string>

#include "worker/engine/train/trainer.h"

namespace clmae::testing {

// One epoch, one warm-up epoch, lr 1e-3, no safetensors export, outputs in
// `output_dir`; callers change what their test is about.
inline TrainerOptions TinyTrainerOptions(const std::string& output_dir) {
  TrainerOptions o;
  o.model.img_size = 16;
  o.model.in_chans = 1;
  o.model.patch_size = 4;
  o.model.embed_dim = 16;
  o.model.depth = 1;
  o.model.num_heads = 2;
  o.model.decoder_embed_dim = 8;
  o.model.decoder_depth = 1;
  o.model.decoder_num_heads = 2;
  o.model.masker_depth = 1;
  o.model.masker_num_heads = 2;
  o.data.kind = DatasetOptions::Kind::kSynthetic;
  o.data.synthetic_size = 40;
  o.data.channels = 1;
  o.data.synthetic_height = 16;
  o.data.synthetic_width = 16;
  o.transform.mean = {0.5};
  o.transform.std = {0.25};
  o.loader.batch_size = 8;
  o.loader.num_workers = 1;
  o.epochs = 1;
  o.warmup_epochs = 1;
  o.lr = 1e-3;
  o.output_dir = output_dir;
  o.export_safetensors = false;
  return o;
}

}  // namespace clmae::testing
