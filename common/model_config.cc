#include "common/model_config.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace clmae {
namespace {

struct Preset {
  const char* name;
  ModelConfig config;
};

ModelConfig Reference(int patch, int dim, int depth, int heads) {
  ModelConfig c;
  c.img_size = 224;
  c.in_chans = 3;
  c.patch_size = patch;
  c.embed_dim = dim;
  c.depth = depth;
  c.num_heads = heads;
  c.decoder_embed_dim = 512;
  c.decoder_depth = 8;
  c.decoder_num_heads = 16;
  c.masker_depth = 5;
  c.masker_num_heads = 4;
  return c;
}

ModelConfig Small(int img, int chans, int patch, int dim, int depth, int heads, int dec_dim,
                  int dec_depth, int dec_heads, int m_depth, int m_heads) {
  ModelConfig c;
  c.img_size = img;
  c.in_chans = chans;
  c.patch_size = patch;
  c.embed_dim = dim;
  c.depth = depth;
  c.num_heads = heads;
  c.decoder_embed_dim = dec_dim;
  c.decoder_depth = dec_depth;
  c.decoder_num_heads = dec_heads;
  c.masker_depth = m_depth;
  c.masker_num_heads = m_heads;
  return c;
}

const std::vector<Preset>& Presets() {
  static const auto* presets = new std::vector<Preset>{
      {"mae_vit_base_patch16", Reference(16, 768, 12, 12)},
      {"mae_vit_base_patch8", Reference(8, 768, 12, 12)},
      {"mae_vit_large_patch16", Reference(16, 1024, 24, 16)},
      {"mae_vit_huge_patch14", Reference(14, 1280, 32, 16)},
      // CPU presets: 28x28 grayscale (MNIST / Fashion-MNIST), patch 4 -> 49 tokens.
      {"tiny", Small(28, 1, 4, 192, 6, 3, 128, 2, 4, 2, 4)},
      {"small", Small(32, 3, 4, 384, 8, 6, 256, 4, 8, 3, 4)},
  };
  return *presets;
}

absl::Status Positive(int value, const std::string& field) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, " must be a positive integer, got ", value));
}

absl::Status Divides(int divisor, const std::string& divisor_field, int value,
                     const std::string& value_field) {
  if (value % divisor == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(divisor_field, " (", divisor, ") must divide ", value_field, " (", value, ")"));
}

}  // namespace

std::vector<std::string> ModelPresetNames() {
  std::vector<std::string> names;
  for (const auto& p : Presets()) names.emplace_back(p.name);
  return names;
}

absl::StatusOr<ModelConfig> ModelPreset(const std::string& name) {
  for (const auto& p : Presets()) {
    if (name == p.name) return p.config;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("model.preset: unknown preset '", name,
                   "'; known presets: ", absl::StrJoin(ModelPresetNames(), ", ")));
}

absl::Status ValidateModelConfig(const ModelConfig& c, const std::string& p) {
  const std::pair<int, const char*> positives[] = {
      {c.img_size, "img_size"},
      {c.in_chans, "in_chans"},
      {c.patch_size, "patch_size"},
      {c.embed_dim, "embed_dim"},
      {c.depth, "depth"},
      {c.num_heads, "num_heads"},
      {c.decoder_embed_dim, "decoder_embed_dim"},
      {c.decoder_depth, "decoder_depth"},
      {c.decoder_num_heads, "decoder_num_heads"},
      {c.mlp_ratio, "mlp_ratio"},
      {c.masker_depth, "masker_depth"},
      {c.masker_num_heads, "masker_num_heads"},
  };
  for (const auto& [value, name] : positives) {
    if (auto s = Positive(value, p + name); !s.ok()) return s;
  }
  if (c.in_chans > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "in_chans must be at most 16, got ", c.in_chans));
  }
  if (auto s = Divides(c.patch_size, p + "patch_size", c.img_size, p + "img_size"); !s.ok())
    return s;
  if (c.grid() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(p, "patch_size (", c.patch_size,
                                                   ") leaves fewer than 2x2 patches of ", p,
                                                   "img_size (", c.img_size, ")"));
  }
  if (auto s = Divides(c.num_heads, p + "num_heads", c.embed_dim, p + "embed_dim"); !s.ok())
    return s;
  if (auto s = Divides(c.decoder_num_heads, p + "decoder_num_heads", c.decoder_embed_dim,
                       p + "decoder_embed_dim");
      !s.ok())
    return s;
  if (auto s = Divides(c.masker_num_heads, p + "masker_num_heads", c.embed_dim, p + "embed_dim");
      !s.ok())
    return s;
  // The 2-D sine-cosine embedding splits the width into four equal parts.
  for (const auto& [value, name] : {std::pair<int, const char*>{c.embed_dim, "embed_dim"},
                                    {c.decoder_embed_dim, "decoder_embed_dim"}}) {
    if (value % 4 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          p, name, " must be a multiple of 4 (the 2-D sine-cosine position embedding), got ",
          value));
    }
  }
  return absl::OkStatus();
}

}  // namespace clmae
