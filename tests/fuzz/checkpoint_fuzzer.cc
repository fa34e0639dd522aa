// libFuzzer target: the full-checkpoint reader (LoadCheckpoint, what a
// resumed rank runs on the bytes the coordinator hands it), into a micro
// CL-MAE model (8x8 images, width 8, one block each) so that a whole
// checkpoint is a few tens of KB. The container is LibTorch's archive format;
// what this target exercises of clmae is everything after it: the format
// version, the mode, the position, the spec and the shapes of every tensor.
//
// With CLMAE_FUZZ_WRITE_SEED=FILE in the environment it writes a valid
// checkpoint of the micro model there and exits (how the seed corpus was made).

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "tests/fuzz/fuzz_files.h"
#include "worker/engine/train/checkpoint.h"
#include "worker/engine/train/optim.h"

namespace {

struct Micro {
  clmae::MaeVit mae{nullptr};
  clmae::MaskingNet masker{nullptr};
  std::unique_ptr<torch::optim::AdamW> mae_opt, masker_opt;

  Micro() {
    clmae::ModelConfig c;
    c.img_size = 8;
    c.in_chans = 1;
    c.patch_size = 4;
    c.embed_dim = 8;
    c.depth = 1;
    c.num_heads = 2;
    c.decoder_embed_dim = 8;
    c.decoder_depth = 1;
    c.decoder_num_heads = 2;
    c.mlp_ratio = 2;
    c.masker_depth = 1;
    c.masker_num_heads = 2;
    mae = clmae::MaeVit(c);
    masker = clmae::MaskingNet(c);
    mae_opt = clmae::MakeAdamW(*mae, clmae::OptimOptions());
    masker_opt = clmae::MakeAdamW(*masker, clmae::OptimOptions());
  }
  clmae::TrainStateRefs Refs() { return {mae, masker, mae_opt.get(), masker_opt.get()}; }
};

Micro& State() {
  static Micro* micro = new Micro();
  return *micro;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);
  if (const char* seed = std::getenv("CLMAE_FUZZ_WRITE_SEED")) {
    clmae::TrainPosition position;
    position.step = 3;
    position.epoch = 1;
    position.seed = 7;
    position.spec = "name: micro\n";
    const absl::Status saved = clmae::SaveCheckpoint(seed, State().Refs(), position);
    std::fprintf(stderr, "%s\n", saved.ok() ? "seed written" : saved.ToString().c_str());
    std::exit(saved.ok() ? 0 : 1);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path =
      clmae::fuzz::WriteScratch("checkpoint", reinterpret_cast<const char*>(data), size);
  (void)clmae::LoadCheckpoint(path, State().Refs());
  return 0;
}
