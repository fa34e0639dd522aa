#include "worker/engine/train/preview.h"

#include <torch/torch.h>

#include <algorithm>

#include "common/file_io.h"
#include "common/status_macros.h"
#include "worker/engine/data/image_codec.h"
#include "worker/engine/train/train_step.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace {

torch::Tensor ChannelVector(const std::vector<double>& v, int64_t channels, double fallback) {
  std::vector<double> out(channels, v.empty() ? fallback : v[0]);
  if (static_cast<int64_t>(v.size()) == channels) out = v;
  return torch::tensor(out, torch::kFloat32).reshape({1, channels, 1, 1});
}

// [K, C, H, W] in [0, 1] -> [K, 3, H, W].
torch::Tensor ToRgb(const torch::Tensor& x) {
  return x.size(1) == 3 ? x : x.select(1, 0).unsqueeze(1).expand({-1, 3, -1, -1});
}

// Scores [K, L] -> blue (0, masked) .. yellow (1, kept) patches [K, 3, H, W].
torch::Tensor HeatMap(const torch::Tensor& scores, int64_t grid, int64_t patch) {
  auto s = scores.reshape({-1, 1, grid, grid});
  auto rgb = torch::cat({s, s, 1.0 - s}, 1);
  return rgb.repeat_interleave(patch, 2).repeat_interleave(patch, 3);
}

}  // namespace

torch::Tensor RenderPreview(MaeVit& mae, MaskingNet& masker, const torch::Tensor& images,
                            const PreviewOptions& o) {
  torch::NoGradGuard no_grad;
  const bool was_training = mae->is_training();
  mae->eval();
  const auto& cfg = mae->config();
  const auto device = mae->pos_embed.device();
  auto imgs = images.to(device, torch::kFloat32);
  const int64_t k = imgs.size(0), c = imgs.size(1), l = cfg.num_patches();
  const int64_t len_keep = static_cast<int64_t>(std::floor(l * (1.0 - o.mask_ratio)));

  auto x = mae->Embed(imgs);
  torch::Tensor scores, ids_shuffle;
  if (!masker.is_empty()) {
    scores = masker->forward(x);
    ids_shuffle = torch::argsort(scores, 1, /*descending=*/true);
  } else {
    ids_shuffle = RandomMaskOrder(torch::arange(k), l, o.seed, 0, device);
  }
  auto enc = mae->Encode(x, ids_shuffle, len_keep);
  auto pred = mae->Decode(enc.latent, enc.ids_restore).to(torch::kFloat32);
  if (!scores.defined()) scores = 1.0 - enc.mask;
  if (cfg.norm_pix_loss) {  // predictions are in per-patch normalised units
    auto target = mae->Patchify(imgs);
    auto mean = target.mean(-1, true);
    auto var = target.var(-1, true, true);
    pred = pred * torch::sqrt(var + 1e-6) + mean;
  }
  auto keep = (1.0 - enc.mask).unsqueeze(-1);
  auto patches = mae->Patchify(imgs);
  auto kept = mae->Unpatchify(patches * keep);
  auto recon = mae->Unpatchify(patches * keep + pred * (1.0 - keep));
  mae->train(was_training);

  auto mean = ChannelVector(o.mean, c, 0.0).to(device),
       std = ChannelVector(o.std, c, 1.0).to(device);
  auto denorm = [&](const torch::Tensor& t) { return ToRgb((t * std + mean).clamp(0, 1)); };
  auto kept_rgb = denorm(kept);
  // Removed patches of the "kept" panel are shown mid-grey.
  auto removed =
      ToRgb(mae->Unpatchify((1.0 - keep).expand_as(patches).contiguous()).slice(1, 0, 1));
  kept_rgb = kept_rgb * (1.0 - removed) + 0.5 * removed;
  auto heat = HeatMap(scores.to(torch::kFloat32), cfg.grid(), cfg.patch_size);
  auto row = torch::cat({denorm(imgs), heat, kept_rgb, denorm(recon)}, 3);  // [K, 3, H, 4W]
  const int64_t h = row.size(2);
  const int scale =
      o.scale > 0 ? o.scale : static_cast<int>(std::max<int64_t>(1, (112 + h - 1) / h));
  auto grid = row.permute({1, 0, 2, 3}).reshape({3, k * h, row.size(3)});
  grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2);
  return (grid * 255.0).round().clamp(0, 255).to(torch::kCPU, torch::kUInt8).contiguous();
}

absl::Status WritePreview(const std::string& path, MaeVit& mae, MaskingNet& masker,
                          const torch::Tensor& images, const PreviewOptions& options) {
  ASSIGN_OR_RETURN(auto rgb, CatchAll("rendering preview", [&]() -> absl::StatusOr<torch::Tensor> {
                     return RenderPreview(mae, masker, images, options);
                   }));
  ASSIGN_OR_RETURN(std::string png, EncodePng(rgb));
  return WriteFileAtomically(path, png);
}

}  // namespace clmae
