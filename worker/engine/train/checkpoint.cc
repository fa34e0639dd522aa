#include "worker/engine/train/checkpoint.h"

#include <torch/serialize.h>
#include <torch/torch.h>

#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/file_io.h"
#include "common/status_macros.h"
#include "worker/engine/util/torch_status.h"

namespace clmae {
namespace {

constexpr int64_t kFormatVersion = 1;

void WriteModule(torch::serialize::OutputArchive& archive, torch::nn::Module& module,
                 const std::string& prefix) {
  for (const auto& p : module.named_parameters()) archive.write(prefix + p.key(), p.value());
  for (const auto& b : module.named_buffers()) archive.write(prefix + b.key(), b.value(), true);
}

absl::Status ReadModule(torch::serialize::InputArchive& archive, torch::nn::Module& module,
                        const std::string& prefix, const std::string& path) {
  torch::NoGradGuard no_grad;
  auto read = [&](const std::string& key, torch::Tensor& dst) -> absl::Status {
    c10::IValue v;
    if (!archive.try_read(prefix + key, v) || !v.isTensor()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": checkpoint lacks ", prefix, key, " (a different model?)"));
    }
    const auto& src = v.toTensor();
    if (src.sizes() != dst.sizes()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", prefix, key, " has another shape than the model's"));
    }
    dst.copy_(src);
    return absl::OkStatus();
  };
  for (auto& p : module.named_parameters()) RETURN_IF_ERROR(read(p.key(), p.value()));
  for (auto& b : module.named_buffers()) RETURN_IF_ERROR(read(b.key(), b.value()));
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<T> ReadMeta(torch::serialize::InputArchive& archive, const std::string& key,
                           const std::string& path) {
  c10::IValue v;
  if (!archive.try_read("meta." + key, v)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": checkpoint lacks meta.", key));
  }
  if constexpr (std::is_same_v<T, std::string>) {
    return v.toStringRef();
  } else {
    return static_cast<T>(v.toInt());
  }
}

}  // namespace

absl::Status SaveCheckpoint(const std::string& path, TrainStateRefs state,
                            const TrainPosition& pos) {
  std::string bytes;
  RETURN_IF_ERROR(CatchAll("serialising checkpoint", [&]() -> absl::Status {
    torch::serialize::OutputArchive archive;
    archive.write("meta.format_version", c10::IValue(kFormatVersion));
    archive.write("meta.step", c10::IValue(pos.step));
    archive.write("meta.epoch", c10::IValue(pos.epoch));
    archive.write("meta.batch_in_epoch", c10::IValue(pos.batch_in_epoch));
    archive.write("meta.seed", c10::IValue(static_cast<int64_t>(pos.seed)));
    archive.write("meta.world_size", c10::IValue(static_cast<int64_t>(pos.world_size)));
    archive.write("meta.spec", c10::IValue(pos.spec));
    archive.write("meta.has_masker", c10::IValue(static_cast<int64_t>(!state.masker.is_empty())));
    WriteModule(archive, *state.mae, "mae.");
    torch::serialize::OutputArchive mae_opt;
    state.mae_optimizer->save(mae_opt);
    archive.write("optimizer_mae", mae_opt);
    if (!state.masker.is_empty()) {
      WriteModule(archive, *state.masker, "masker.");
      torch::serialize::OutputArchive masker_opt;
      state.masker_optimizer->save(masker_opt);
      archive.write("optimizer_masker", masker_opt);
    }
    std::ostringstream out;
    archive.save_to(out);
    bytes = std::move(out).str();
    return absl::OkStatus();
  }));
  return WriteFileAtomically(path, bytes);
}

absl::StatusOr<TrainPosition> LoadCheckpoint(const std::string& path, TrainStateRefs state) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return CatchAll(
      absl::StrCat("loading checkpoint ", path), [&]() -> absl::StatusOr<TrainPosition> {
        const auto device = state.mae->pos_embed.device();
        torch::serialize::InputArchive archive;
        std::istringstream in(bytes);
        archive.load_from(in, device);
        ASSIGN_OR_RETURN(int64_t version, ReadMeta<int64_t>(archive, "format_version", path));
        if (version != kFormatVersion) {
          return absl::InvalidArgumentError(absl::StrCat(path, ": checkpoint format ", version,
                                                         ", this build reads ", kFormatVersion));
        }
        ASSIGN_OR_RETURN(int64_t has_masker, ReadMeta<int64_t>(archive, "has_masker", path));
        if ((has_masker != 0) != !state.masker.is_empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(path, ": checkpoint is from a ", has_masker ? "CL-MAE" : "plain-MAE",
                           " run, the job is ", state.masker.is_empty() ? "plain MAE" : "CL-MAE"));
        }
        TrainPosition pos;
        ASSIGN_OR_RETURN(pos.step, ReadMeta<int64_t>(archive, "step", path));
        ASSIGN_OR_RETURN(pos.epoch, ReadMeta<int64_t>(archive, "epoch", path));
        ASSIGN_OR_RETURN(pos.batch_in_epoch, ReadMeta<int64_t>(archive, "batch_in_epoch", path));
        ASSIGN_OR_RETURN(pos.seed, ReadMeta<uint64_t>(archive, "seed", path));
        ASSIGN_OR_RETURN(pos.world_size, ReadMeta<int>(archive, "world_size", path));
        ASSIGN_OR_RETURN(pos.spec, ReadMeta<std::string>(archive, "spec", path));
        RETURN_IF_ERROR(ReadModule(archive, *state.mae, "mae.", path));
        torch::serialize::InputArchive mae_opt;
        archive.read("optimizer_mae", mae_opt);
        state.mae_optimizer->load(mae_opt);
        if (!state.masker.is_empty()) {
          RETURN_IF_ERROR(ReadModule(archive, *state.masker, "masker.", path));
          torch::serialize::InputArchive masker_opt;
          archive.read("optimizer_masker", masker_opt);
          state.masker_optimizer->load(masker_opt);
        }
        return pos;
      });
}

}  // namespace clmae
