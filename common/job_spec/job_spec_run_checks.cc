// Data, train, eval, output and resources sections of job-spec validation.

#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/job_spec/job_spec_defaults.h"
#include "common/job_spec/job_spec_sections.h"
#include "common/job_spec/spec_checks.h"
#include "common/status_macros.h"
#include "google/protobuf/repeated_field.h"

namespace clmae::job_spec_internal {
namespace {

namespace defaults = job_spec_defaults;
using spec_checks::IntInRange;
using spec_checks::Invalid;
using spec_checks::KnownEnum;
using spec_checks::NumberIn;
using spec_checks::Or;
using spec_checks::Positive;
using v1::DataSpec;

// A data kind's name, the default's (FASHION_MNIST) for an unset one.
std::string KindName(DataSpec::Kind kind) {
  return kind == DataSpec::KIND_UNSPECIFIED ? "FASHION_MNIST" : DataSpec::Kind_Name(kind);
}

// The channels a data kind delivers must be the model's input channels.
absl::Status CheckKindChannels(absl::string_view kind_field, DataSpec::Kind kind, int in_chans) {
  const std::string kind_name = KindName(kind);
  switch (kind) {
    case DataSpec::KIND_UNSPECIFIED:
    case DataSpec::FASHION_MNIST:
    case DataSpec::MNIST:
      if (in_chans == 1) return absl::OkStatus();
      return Invalid("model.in_chans",
                     absl::StrCat("1 for ", kind_field, " ", kind_name, " (grayscale IDX images)"),
                     absl::StrCat(in_chans));
    case DataSpec::IMAGE_FOLDER:
      if (in_chans == 1 || in_chans == 3) return absl::OkStatus();
      return Invalid("model.in_chans",
                     absl::StrCat("1 or 3 for ", kind_field, " ", kind_name,
                                  " (images are converted to grayscale or RGB)"),
                     absl::StrCat(in_chans));
    default:  // SYNTHETIC makes images of any channel count
      return absl::OkStatus();
  }
}

bool NeedsPath(DataSpec::Kind kind) {
  return kind == DataSpec::MNIST || kind == DataSpec::IMAGE_FOLDER;
}

absl::Status CheckPerChannel(absl::string_view field,
                             const google::protobuf::RepeatedField<double>& values, int in_chans,
                             bool positive) {
  if (values.size() != 0 && values.size() != 1 && values.size() != in_chans) {
    return Invalid(field,
                   absl::StrCat("a list of 1 or model.in_chans (", in_chans,
                                ") numbers, or unset for the default"),
                   absl::StrCat(values.size(), " numbers"));
  }
  for (int i = 0; i < values.size(); ++i) {
    const std::string item = absl::StrCat(field, "[", i, "]");
    RETURN_IF_ERROR(positive ? Positive(item, values[i])
                             : NumberIn(item, values[i], spec_checks::Interval{}));
  }
  return absl::OkStatus();
}

// "cpu" or "cuda" for a device string train.device accepts ("" is the default
// cpu; "cuda:N" is CUDA device N); nullopt for anything else.
std::optional<absl::string_view> DeviceKind(absl::string_view device) {
  if (device.empty() || device == "cpu") return "cpu";
  if (device == "cuda") return "cuda";
  constexpr absl::string_view kCudaPrefix = "cuda:";
  if (device.substr(0, kCudaPrefix.size()) != kCudaPrefix) return std::nullopt;
  const absl::string_view index = device.substr(kCudaPrefix.size());
  if (index.empty() || index.size() > 4) return std::nullopt;
  for (char c : index) {
    if (!absl::ascii_isdigit(c)) return std::nullopt;
  }
  return "cuda";
}

}  // namespace

absl::Status CheckData(const DataSpec& s, const ModelConfig& model) {
  RETURN_IF_ERROR(KnownEnum("data.kind", *DataSpec::Kind_descriptor(), s.kind()));
  if (NeedsPath(s.kind()) && s.path().empty()) {
    return Invalid("data.path", absl::StrCat("set for data.kind ", DataSpec::Kind_Name(s.kind())),
                   "nothing");
  }
  RETURN_IF_ERROR(CheckKindChannels("data.kind", s.kind(), model.in_chans));
  RETURN_IF_ERROR(KnownEnum("data.transform", *DataSpec::Transform_descriptor(), s.transform()));
  RETURN_IF_ERROR(NumberIn("data.crop_scale_min",
                           Or(s.has_crop_scale_min(), s.crop_scale_min(), defaults::kCropScaleMin),
                           {.lo = 0, .lo_open = true, .hi = 1}));
  RETURN_IF_ERROR(CheckPerChannel("data.mean", s.mean(), model.in_chans, /*positive=*/false));
  RETURN_IF_ERROR(CheckPerChannel("data.std", s.std(), model.in_chans, /*positive=*/true));
  RETURN_IF_ERROR(IntInRange(
      "data.num_workers", Or(s.has_num_workers(), s.num_workers(), defaults::kNumWorkers), 0, 64));
  RETURN_IF_ERROR(
      IntInRange("data.prefetch", Or(s.has_prefetch(), s.prefetch(), defaults::kPrefetch), 1, 64));
  RETURN_IF_ERROR(
      IntInRange("data.synthetic_size",
                 Or(s.has_synthetic_size(), s.synthetic_size(), defaults::kSyntheticSize), 1,
                 int64_t{1} << 30));
  return IntInRange("data.limit", s.limit(), 0);
}

absl::Status CheckDecode(const DataSpec& s, const v1::TrainSpec& t) {
  RETURN_IF_ERROR(KnownEnum("data.decode", *DataSpec::Decode_descriptor(), s.decode()));
  if (s.decode() != DataSpec::GPU) return absl::OkStatus();
  if (s.kind() != DataSpec::IMAGE_FOLDER) {
    return Invalid("data.decode",
                   "CPU for this data.kind (GPU decoding reads the JPEG files of IMAGE_FOLDER)",
                   absl::StrCat("GPU with data.kind ", KindName(s.kind())));
  }
  const auto device_kind = DeviceKind(t.device());
  if (device_kind && *device_kind != "cuda") {
    return Invalid("data.decode", "CPU on a CPU device (GPU decoding needs train.device cuda)",
                   absl::StrCat("GPU with train.device '",
                                t.device().empty() ? defaults::kDevice : t.device(), "'"));
  }
  return absl::OkStatus();
}

absl::Status CheckTrain(const v1::TrainSpec& t) {
  RETURN_IF_ERROR(
      IntInRange("train.epochs", Or(t.has_epochs(), t.epochs(), defaults::kEpochs), 1, 100000));
  RETURN_IF_ERROR(IntInRange(
      "train.batch_size", Or(t.has_batch_size(), t.batch_size(), defaults::kBatchSize), 1, 65536));
  RETURN_IF_ERROR(IntInRange("train.max_steps", t.max_steps(), 0));
  const auto device_kind = DeviceKind(t.device());
  if (!device_kind) {
    return Invalid("train.device", "cpu, cuda or cuda:N (N a device index)",
                   absl::StrCat("'", t.device(), "'"));
  }
  RETURN_IF_ERROR(
      KnownEnum("train.precision", *v1::TrainSpec::Precision_descriptor(), t.precision()));
  if (t.precision() == v1::TrainSpec::BF16 && *device_kind != "cuda") {
    return Invalid("train.precision", "FP32 on a CPU device (BF16 needs train.device cuda)",
                   absl::StrCat("BF16 with train.device '",
                                t.device().empty() ? defaults::kDevice : t.device(), "'"));
  }
  RETURN_IF_ERROR(IntInRange("train.threads", t.threads(), 0, 1024));
  if (t.has_bucket_mb()) {
    RETURN_IF_ERROR(
        NumberIn("train.bucket_mb", t.bucket_mb(), {.lo = 0, .lo_open = true, .hi = 4096}));
  }
  RETURN_IF_ERROR(IntInRange(
      "train.collective_timeout_s",
      Or(t.has_collective_timeout_s(), t.collective_timeout_s(), defaults::kCollectiveTimeoutS), 1,
      86400));
  return IntInRange("train.log_every", Or(t.has_log_every(), t.log_every(), defaults::kLogEvery),
                    1);
}

absl::Status CheckEval(const v1::JobSpec& spec, const ModelConfig& model) {
  const v1::EvalSpec& e = spec.eval();
  RETURN_IF_ERROR(KnownEnum("eval.kind", *DataSpec::Kind_descriptor(), e.kind()));
  const int knn_k = Or(e.has_knn_k(), e.knn_k(), defaults::kKnnK);
  RETURN_IF_ERROR(IntInRange("eval.knn_k", knn_k, 1, 1000));
  RETURN_IF_ERROR(IntInRange("eval.probe_epochs",
                             Or(e.has_probe_epochs(), e.probe_epochs(), defaults::kProbeEpochs), 0,
                             10000));
  RETURN_IF_ERROR(IntInRange("eval.train_limit", e.train_limit(), 0));
  RETURN_IF_ERROR(IntInRange("eval.test_limit", e.test_limit(), 0));
  RETURN_IF_ERROR(IntInRange("eval.every_epochs",
                             Or(e.has_every_epochs(), e.every_epochs(), defaults::kEvalEveryEpochs),
                             0, 1000000));
  RETURN_IF_ERROR(IntInRange("eval.periodic_train_limit",
                             Or<int64_t>(e.has_periodic_train_limit(), e.periodic_train_limit(),
                                         defaults::kEvalPeriodicTrainLimit),
                             1));
  RETURN_IF_ERROR(IntInRange("eval.periodic_test_limit",
                             Or<int64_t>(e.has_periodic_test_limit(), e.periodic_test_limit(),
                                         defaults::kEvalPeriodicTestLimit),
                             1));
  if (e.has_periodic_train_limit() && knn_k > e.periodic_train_limit()) {
    return Invalid(
        "eval.knn_k",
        absl::StrCat("at most eval.periodic_train_limit (", e.periodic_train_limit(), ")"),
        absl::StrCat(knn_k));
  }
  if (e.train_limit() > 0 && knn_k > e.train_limit()) {
    return Invalid("eval.knn_k", absl::StrCat("at most eval.train_limit (", e.train_limit(), ")"),
                   absl::StrCat(knn_k));
  }
  if (!e.enabled()) return absl::OkStatus();
  // Unset kind: the training data's. Unset path: the training path when the
  // kinds match, else the kind's own default.
  const DataSpec::Kind kind =
      e.kind() != DataSpec::KIND_UNSPECIFIED ? e.kind() : spec.data().kind();
  const bool same_kind = e.kind() == DataSpec::KIND_UNSPECIFIED || e.kind() == spec.data().kind();
  const std::string& path = !e.path().empty() ? e.path()
                            : same_kind       ? spec.data().path()
                                              : e.path();
  if (NeedsPath(kind) && path.empty()) {
    return Invalid("eval.path", absl::StrCat("set for eval.kind ", DataSpec::Kind_Name(kind)),
                   "nothing");
  }
  return CheckKindChannels("eval.kind", kind, model.in_chans);
}

absl::Status CheckOutput(const v1::OutputSpec& o) {
  RETURN_IF_ERROR(IntInRange("output.checkpoint_every", o.checkpoint_every(), 0));
  RETURN_IF_ERROR(IntInRange(
      "output.keep_checkpoints",
      Or(o.has_keep_checkpoints(), o.keep_checkpoints(), defaults::kKeepCheckpoints), 1, 1000));
  RETURN_IF_ERROR(IntInRange("output.keep_every", o.keep_every(), 0));
  RETURN_IF_ERROR(IntInRange("output.preview_every", o.preview_every(), 0));
  return IntInRange("output.preview_images",
                    Or(o.has_preview_images(), o.preview_images(), defaults::kPreviewImages), 1,
                    16);
}

absl::Status CheckResources(const v1::JobSpec& spec) {
  const v1::ResourceSpec& r = spec.resources();
  RETURN_IF_ERROR(IntInRange("resources.world_size",
                             Or(r.has_world_size(), r.world_size(), defaults::kWorldSize), 1,
                             4096));
  if (!r.device_kind().empty()) {
    if (r.device_kind() != "cpu" && r.device_kind() != "cuda") {
      return Invalid("resources.device_kind", "cpu or cuda",
                     absl::StrCat("'", r.device_kind(), "'"));
    }
    // CheckTrain has accepted train.device.
    const absl::string_view train_kind = DeviceKind(spec.train().device()).value_or("cpu");
    if (r.device_kind() != train_kind) {
      const std::string device = spec.train().device().empty()
                                     ? absl::StrCat(defaults::kDevice, ", the default")
                                     : absl::StrCat("'", spec.train().device(), "'");
      return Invalid("resources.device_kind",
                     absl::StrCat("the kind of train.device (", device, "): ", train_kind),
                     absl::StrCat("'", r.device_kind(), "'"));
    }
  }
  RETURN_IF_ERROR(IntInRange("resources.max_restarts",
                             Or(r.has_max_restarts(), r.max_restarts(), defaults::kMaxRestarts), 0,
                             100));
  RETURN_IF_ERROR(IntInRange("resources.priority", r.priority(), -1000, 1000));
  return IntInRange("resources.estimated_seconds", r.estimated_seconds(), 0, 365 * 24 * 3600);
}

}  // namespace clmae::job_spec_internal
