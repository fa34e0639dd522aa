#include "common/job_spec/job_spec_validator.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/job_spec/job_spec_yaml.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using v1::JobSpec;

// A spec that breaks one rule: its YAML (see JobSpecValidatorTest::Spec), the field the
// error must start with, and text it must contain (the value given or what
// is allowed).
struct BadSpec {
  const char* test_name;
  const char* yaml;
  const char* field;
  const char* detail;
};

class JobSpecValidatorTest : public ::testing::Test {
 protected:
  // `yaml`, parsed, with "name: a-job" unless it names the job itself; fails
  // the test when it does not parse.
  static JobSpec Spec(const std::string& yaml) {
    const bool named = absl::StartsWith(yaml, "name:") || absl::StrContains(yaml, "\nname:");
    auto spec = JobSpecFromYaml(named ? yaml : absl::StrCat("name: a-job\n", yaml));
    EXPECT_TRUE(spec.ok()) << spec.status();
    return spec.ok() ? *spec : JobSpec();
  }
};

TEST_F(JobSpecValidatorTest, SpecWithOnlyANameIsValid) {
  EXPECT_TRUE(ValidateJobSpec(Spec("")).ok()) << ValidateJobSpec(Spec(""));
}

// A job run by the service writes under its own folder on the worker:
// output.dir may not leave it. clmae-train on its own takes any path.
TEST_F(JobSpecValidatorTest, TheServiceKeepsOutputDirInsideTheJobFolder) {
  for (const char* ok : {"", "runs/demo/job", "out", "./a/b"}) {
    const JobSpec spec = Spec(absl::StrCat("output: {dir: '", ok, "'}"));
    EXPECT_TRUE(ValidateJobSpecForService(spec).ok())
        << ok << ": " << ValidateJobSpecForService(spec);
  }
  for (const char* escaping : {"../../../../etc", "/etc", "a/../../b", "..", "/"}) {
    const JobSpec spec = Spec(absl::StrCat("output: {dir: '", escaping, "'}"));
    EXPECT_TRUE(ValidateJobSpec(spec).ok()) << escaping;
    const absl::Status status = ValidateJobSpecForService(spec);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << escaping;
    EXPECT_THAT(std::string(status.message()),
                StartsWith("output.dir must be a relative path inside the job's folder"));
    EXPECT_THAT(std::string(status.message()), HasSubstr(absl::StrCat("got '", escaping, "'")));
  }
  // The rest of the spec is still checked first.
  EXPECT_EQ(ValidateJobSpecForService(Spec("train: {epochs: 0}")).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(JobSpecValidatorTest, AcceptsValuesAtTheEdgesOfTheirRanges) {
  const JobSpec spec = Spec(R"yaml(
name: a
labels: {team.vision_1: "", k: v}
model: {preset: tiny, patch_size: 14}
masking: {mask_ratio: 0.5, lambda_gauss: 0, lambda_kl: 0, lambda_div: 0}
curriculum: {start: 10, end: -10}
optimizer: {lr: 1e-3, min_lr: 1e-3, warmup_epochs: 0, weight_decay: 0, beta1: 0, beta2: 0.999,
            clip_grad: 0, accum_iter: 1}
data: {kind: IMAGE_FOLDER, path: /d, crop_scale_min: 1, mean: [0.5], std: [0.5],
       num_workers: 0, prefetch: 64}
train: {epochs: 1, batch_size: 65536, device: "cuda:15", precision: BF16, log_every: 1,
       bucket_mb: 4096, collective_timeout_s: 86400}
eval: {enabled: true, kind: SYNTHETIC, knn_k: 1, train_limit: 1, probe_epochs: 0}
output: {checkpoint_every: 0, keep_checkpoints: 1, preview_images: 16}
resources: {world_size: 4096, device_kind: cuda, max_restarts: 100, priority: -1000}
)yaml");
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
}

TEST_F(JobSpecValidatorTest, PerChannelStatisticsMatchingTheChannelsAreValid) {
  const JobSpec spec = Spec(
      "model: {preset: small}\ndata: {kind: SYNTHETIC, mean: [0.4, 0.5, 0.6], "
      "std: [0.2, 0.2, 0.2]}\n");
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
}

TEST_F(JobSpecValidatorTest, EvalPathDefaultsToTheTrainingPath) {
  const JobSpec spec =
      Spec("data: {kind: MNIST, path: /data/mnist}\neval: {enabled: true, kind: MNIST}\n");
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
}

TEST_F(JobSpecValidatorTest, ResolvesTheDefaultPreset) {
  auto model = ResolveModelConfig(JobSpec());
  ASSERT_TRUE(model.ok()) << model.status();
  auto tiny = ModelPreset("tiny");
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(model->embed_dim, tiny->embed_dim);
  EXPECT_EQ(model->img_size, 28);
  EXPECT_EQ(model->in_chans, 1);
}

TEST_F(JobSpecValidatorTest, AppliesOverridesToThePreset) {
  auto model = ResolveModelConfig(
      Spec("model: {preset: mae_vit_base_patch16, img_size: 112, depth: 2, norm_pix_loss: true}"));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->img_size, 112);
  EXPECT_EQ(model->depth, 2);
  EXPECT_TRUE(model->norm_pix_loss);
  EXPECT_EQ(model->embed_dim, 768);  // from the preset
  EXPECT_EQ(model->patch_size, 16);
}

TEST_F(JobSpecValidatorTest, UnknownPresetIsInvalid) {
  auto model = ResolveModelConfig(Spec("model: {preset: gigantic}"));
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("model.preset"));
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("gigantic"));
}

TEST_F(JobSpecValidatorTest, EnumNumbersOutsideTheSchemaAreInvalid) {
  struct Case {
    const char* field;
    void (*set)(JobSpec&);
  };
  const Case cases[] = {
      {"masking.mode",
       [](JobSpec& s) { s.mutable_masking()->set_mode(static_cast<v1::MaskingSpec::Mode>(9)); }},
      {"curriculum.shape",
       [](JobSpec& s) {
         s.mutable_curriculum()->set_shape(static_cast<v1::CurriculumSpec::Shape>(9));
       }},
      {"data.kind",
       [](JobSpec& s) { s.mutable_data()->set_kind(static_cast<v1::DataSpec::Kind>(9)); }},
      {"data.transform",
       [](JobSpec& s) {
         s.mutable_data()->set_transform(static_cast<v1::DataSpec::Transform>(9));
       }},
      {"train.precision",
       [](JobSpec& s) {
         s.mutable_train()->set_precision(static_cast<v1::TrainSpec::Precision>(9));
       }},
      {"eval.kind",
       [](JobSpec& s) { s.mutable_eval()->set_kind(static_cast<v1::DataSpec::Kind>(9)); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    JobSpec spec = Spec("");
    c.set(spec);
    const absl::Status status = ValidateJobSpec(spec);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()), StartsWith(c.field));
    EXPECT_THAT(std::string(status.message()), HasSubstr("got 9"));
  }
}

TEST_F(JobSpecValidatorTest, TooManyLabelsIsInvalid) {
  JobSpec spec = Spec("");
  for (int i = 0; i < 65; ++i) (*spec.mutable_labels())[absl::StrCat("k", i)] = "v";
  const absl::Status status = ValidateJobSpec(spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              StartsWith("labels must be at most 64 entries, got 65"));
}

class JobSpecRuleTest : public JobSpecValidatorTest,
                        public ::testing::WithParamInterface<BadSpec> {};

TEST_P(JobSpecRuleTest, IsInvalidArgumentNamingTheField) {
  const BadSpec& bad = GetParam();
  const absl::Status status = ValidateJobSpec(Spec(bad.yaml));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), StartsWith(bad.field));
  EXPECT_THAT(std::string(status.message()), HasSubstr(bad.detail));
}

const std::string kLongName = "name: " + std::string(64, 'a');
const std::string kLongLabel = absl::StrCat("labels: {k: ", std::string(257, 'v'), "}");

const BadSpec kBadSpecs[] = {
    // name
    {"NameMissing", "name: ~", "name", "got nothing"},
    {"NameUpperCase", "name: Bad_Name", "name", "'Bad_Name'"},
    {"NameLeadingDash", "name: -job", "name", "starting and ending with a letter or digit"},
    {"NameTooLong", kLongName.c_str(), "name", "1 to 63 characters"},
    // labels
    {"LabelKeyWithSpace", "labels: {'bad key': v}", "labels", "the key 'bad key'"},
    {"LabelValueTooLong", kLongLabel.c_str(), "labels.k", "at most 256 characters"},
    // model
    {"PresetUnknown", "model: {preset: gigantic}", "model.preset", "known presets"},
    {"PatchSizeNotDividing", "model: {patch_size: 5}", "model.patch_size", "(5)"},
    {"EmbedDimZero", "model: {embed_dim: 0}", "model.embed_dim", "got 0"},
    {"HeadsNotDividing", "model: {num_heads: 5}", "model.num_heads", "(5)"},
    {"ImgSizeHuge", "model: {img_size: 8192, patch_size: 512}", "model.img_size", "got 8192"},
    {"DepthHuge", "model: {depth: 1000}", "model.depth", "[1, 256]"},
    {"MlpRatioHuge", "model: {mlp_ratio: 64}", "model.mlp_ratio", "got 64"},
    {"TooManyPatches", "model: {img_size: 2048, patch_size: 4}", "model.patch_size",
     "262144 patches"},
    // masking
    {"MaskRatioZero", "masking: {mask_ratio: 0}", "masking.mask_ratio", "in (0.0, 1.0), got 0.0"},
    {"MaskRatioOne", "masking: {mask_ratio: 1}", "masking.mask_ratio", "got 1.0"},
    {"MaskRatioNegative", "masking: {mask_ratio: -0.5}", "masking.mask_ratio", "got -0.5"},
    {"MaskRatioNan", "masking: {mask_ratio: .nan}", "masking.mask_ratio", "got .nan"},
    {"MaskRatioKeepsNothing", "masking: {mask_ratio: 0.99}", "masking.mask_ratio",
     "keeps at least one of the model's L = 49 patches"},
    {"MaskRatioMasksNothing", "masking: {mask_ratio: 1e-17}", "masking.mask_ratio",
     "mask at least one"},
    {"LambdaGaussNegative", "masking: {lambda_gauss: -1}", "masking.lambda_gauss", "got -1.0"},
    {"LambdaKlInfinite", "masking: {lambda_kl: .inf}", "masking.lambda_kl", "got .inf"},
    {"LambdaDivNegative", "masking: {lambda_div: -0.1}", "masking.lambda_div", "at least 0.0"},
    // curriculum
    {"CurriculumStartTooHigh", "curriculum: {start: 11}", "curriculum.start",
     "in [-10.0, 10.0], got 11.0"},
    {"CurriculumEndTooLow", "curriculum: {end: -10.5}", "curriculum.end", "got -10.5"},
    {"CurriculumStartNan", "curriculum: {start: .nan}", "curriculum.start", "got .nan"},
    // optimizer
    {"BlrZero", "optimizer: {blr: 0}", "optimizer.blr", "greater than 0.0"},
    {"BlrNegative", "optimizer: {blr: -1e-3}", "optimizer.blr", "got -0.001"},
    {"LrZero", "optimizer: {lr: 0}", "optimizer.lr", "greater than 0.0"},
    {"LrInfinite", "optimizer: {lr: .inf}", "optimizer.lr", "got .inf"},
    {"MinLrNegative", "optimizer: {min_lr: -1e-6}", "optimizer.min_lr", "at least 0.0"},
    {"MinLrAboveLr", "optimizer: {lr: 1e-4, min_lr: 1e-3}", "optimizer.min_lr",
     "at most the peak learning rate 0.0001 (optimizer.lr)"},
    {"MinLrAboveScaledBlr", "optimizer: {blr: 1e-3, min_lr: 1e-3}", "optimizer.min_lr",
     "0.00025 (optimizer.blr * effective batch / 256)"},
    {"WarmupNegative", "optimizer: {warmup_epochs: -1}", "optimizer.warmup_epochs", "got -1.0"},
    {"WarmupDefaultTooLong", "train: {epochs: 4}", "optimizer.warmup_epochs",
     "less than train.epochs (4), got 40.0 (the default)"},
    {"WarmupEqualsEpochs", "train: {epochs: 10}\noptimizer: {warmup_epochs: 10}",
     "optimizer.warmup_epochs", "got 10.0"},
    {"WeightDecayNegative", "optimizer: {weight_decay: -0.01}", "optimizer.weight_decay",
     "got -0.01"},
    {"Beta1One", "optimizer: {beta1: 1.0}", "optimizer.beta1", "in [0.0, 1.0)"},
    {"Beta2Negative", "optimizer: {beta2: -0.1}", "optimizer.beta2", "got -0.1"},
    {"ClipGradNegative", "optimizer: {clip_grad: -1}", "optimizer.clip_grad", "got -1.0"},
    {"AccumIterZero", "optimizer: {accum_iter: 0}", "optimizer.accum_iter", "got 0"},
    // data
    {"MnistWithoutPath", "data: {kind: MNIST}", "data.path", "set for data.kind MNIST"},
    {"ImageFolderWithoutPath", "data: {kind: IMAGE_FOLDER}", "data.path",
     "set for data.kind IMAGE_FOLDER"},
    {"FashionMnistWithRgbModel", "model: {in_chans: 3}", "model.in_chans",
     "1 for data.kind FASHION_MNIST"},
    {"ImageFolderWithTwoChannels", "model: {in_chans: 2}\ndata: {kind: IMAGE_FOLDER, path: /d}",
     "model.in_chans", "1 or 3"},
    {"CropScaleZero", "data: {crop_scale_min: 0}", "data.crop_scale_min", "in (0.0, 1.0]"},
    {"CropScaleAboveOne", "data: {crop_scale_min: 1.5}", "data.crop_scale_min", "got 1.5"},
    {"MeanWrongLength", "data: {mean: [0.1, 0.2]}", "data.mean", "got 2 numbers"},
    {"StdWrongLength", "model: {preset: small}\ndata: {kind: SYNTHETIC, std: [1, 1]}", "data.std",
     "model.in_chans (3)"},
    {"MeanNan", "data: {mean: [.nan]}", "data.mean[0]", "got .nan"},
    {"StdZero", "data: {std: [0]}", "data.std[0]", "greater than 0.0, got 0.0"},
    {"StdNegative", "model: {preset: small}\ndata: {kind: SYNTHETIC, std: [0.2, -0.2, 0.2]}",
     "data.std[1]", "got -0.2"},
    {"NumWorkersTooMany", "data: {num_workers: 65}", "data.num_workers", "[0, 64], got 65"},
    {"NumWorkersNegative", "data: {num_workers: -1}", "data.num_workers", "got -1"},
    {"PrefetchZero", "data: {prefetch: 0}", "data.prefetch", "[1, 64], got 0"},
    {"PrefetchTooMany", "data: {prefetch: 65}", "data.prefetch", "got 65"},
    {"SyntheticSizeZero", "data: {synthetic_size: 0}", "data.synthetic_size", "got 0"},
    {"LimitNegative", "data: {limit: -1}", "data.limit", "at least 0, got -1"},
    {"GpuDecodeOfIdx", "data: {decode: GPU}\ntrain: {device: cuda}", "data.decode",
     "GPU with data.kind FASHION_MNIST"},
    {"GpuDecodeOnCpu", "model: {in_chans: 3}\ndata: {kind: IMAGE_FOLDER, path: /d, decode: GPU}",
     "data.decode", "GPU with train.device 'cpu'"},
    // train
    {"EpochsZero", "train: {epochs: 0}", "train.epochs", "[1, 100000], got 0"},
    {"EpochsTooMany", "train: {epochs: 100001}", "train.epochs", "got 100001"},
    {"BatchZero", "train: {batch_size: 0}", "train.batch_size", "[1, 65536], got 0"},
    {"BatchTooLarge", "train: {batch_size: 65537}", "train.batch_size", "got 65537"},
    {"MaxStepsNegative", "train: {max_steps: -1}", "train.max_steps", "got -1"},
    {"DeviceGpu", "train: {device: gpu}", "train.device", "cpu, cuda or cuda:N"},
    {"DeviceUpperCase", "train: {device: CPU}", "train.device", "got 'CPU'"},
    {"DeviceNoIndex", "train: {device: 'cuda:'}", "train.device", "got 'cuda:'"},
    {"DeviceBadIndex", "train: {device: 'cuda:x'}", "train.device", "got 'cuda:x'"},
    {"Bf16OnCpu", "train: {precision: BF16}", "train.precision", "BF16 with train.device 'cpu'"},
    {"Bf16OnExplicitCpu", "train: {precision: BF16, device: cpu}", "train.precision",
     "needs train.device cuda"},
    {"ThreadsNegative", "train: {threads: -1}", "train.threads", "got -1"},
    {"ThreadsTooMany", "train: {threads: 2000}", "train.threads", "[0, 1024]"},
    {"LogEveryZero", "train: {log_every: 0}", "train.log_every", "at least 1, got 0"},
    {"BucketZero", "train: {bucket_mb: 0}", "train.bucket_mb", "got 0"},
    {"BucketTooLarge", "train: {bucket_mb: 5000}", "train.bucket_mb", "got 5000"},
    {"CollectiveTimeoutZero", "train: {collective_timeout_s: 0}", "train.collective_timeout_s",
     "got 0"},
    // eval
    {"KnnKZero", "eval: {knn_k: 0}", "eval.knn_k", "got 0"},
    {"KnnKAboveTrainLimit", "eval: {knn_k: 20, train_limit: 10}", "eval.knn_k",
     "at most eval.train_limit (10), got 20"},
    {"ProbeEpochsNegative", "eval: {probe_epochs: -1}", "eval.probe_epochs", "got -1"},
    {"EvalEveryEpochsNegative", "eval: {every_epochs: -1}", "eval.every_epochs", "got -1"},
    {"PeriodicTrainLimitZero", "eval: {periodic_train_limit: 0}", "eval.periodic_train_limit",
     "got 0"},
    {"PeriodicTestLimitNegative", "eval: {periodic_test_limit: -3}", "eval.periodic_test_limit",
     "got -3"},
    {"KnnKAbovePeriodicTrainLimit", "eval: {knn_k: 8, periodic_train_limit: 5}", "eval.knn_k",
     "got 8"},
    {"TrainLimitNegative", "eval: {train_limit: -1}", "eval.train_limit", "got -1"},
    {"TestLimitNegative", "eval: {test_limit: -1}", "eval.test_limit", "got -1"},
    {"EvalMnistWithoutPath", "eval: {enabled: true, kind: MNIST}", "eval.path",
     "set for eval.kind MNIST"},
    {"EvalOtherKindDoesNotBorrowPath",
     "data: {kind: MNIST, path: /mnist}\neval: {enabled: true, kind: IMAGE_FOLDER}", "eval.path",
     "set for eval.kind IMAGE_FOLDER"},
    {"EvalIdxWithRgbModel",
     "model: {in_chans: 3}\ndata: {kind: SYNTHETIC}\neval: {enabled: true, kind: FASHION_MNIST}",
     "model.in_chans", "1 for eval.kind FASHION_MNIST"},
    // output
    {"CheckpointEveryNegative", "output: {checkpoint_every: -1}", "output.checkpoint_every",
     "got -1"},
    {"KeepCheckpointsZero", "output: {keep_checkpoints: 0}", "output.keep_checkpoints", "got 0"},
    {"KeepEveryNegative", "output: {keep_every: -5}", "output.keep_every", "got -5"},
    {"PreviewEveryNegative", "output: {preview_every: -1}", "output.preview_every", "got -1"},
    {"PreviewImagesZero", "output: {preview_images: 0}", "output.preview_images", "[1, 16], got 0"},
    {"PreviewImagesTooMany", "output: {preview_images: 17}", "output.preview_images", "got 17"},
    // resources
    {"WorldSizeZero", "resources: {world_size: 0}", "resources.world_size", "[1, 4096], got 0"},
    {"WorldSizeTooLarge", "resources: {world_size: 4097}", "resources.world_size", "got 4097"},
    {"DeviceKindUnknown", "resources: {device_kind: tpu}", "resources.device_kind",
     "cpu or cuda, got 'tpu'"},
    {"DeviceKindDisagrees", "resources: {device_kind: cuda}\ntrain: {device: cpu}",
     "resources.device_kind", "the kind of train.device ('cpu'): cpu, got 'cuda'"},
    {"DeviceKindDisagreesWithDefault", "resources: {device_kind: cuda}", "resources.device_kind",
     "(cpu, the default): cpu"},
    {"MaxRestartsNegative", "resources: {max_restarts: -1}", "resources.max_restarts", "got -1"},
    {"MaxRestartsTooMany", "resources: {max_restarts: 101}", "resources.max_restarts",
     "[0, 100], got 101"},
    {"PriorityTooHigh", "resources: {priority: 1001}", "resources.priority", "got 1001"},
    {"EstimatedSecondsNegative", "resources: {estimated_seconds: -1}",
     "resources.estimated_seconds", "got -1"},
};

INSTANTIATE_TEST_SUITE_P(EveryRule, JobSpecRuleTest, ::testing::ValuesIn(kBadSpecs),
                         [](const ::testing::TestParamInfo<BadSpec>& info) {
                           return std::string(info.param.test_name);
                         });

}  // namespace
}  // namespace clmae
