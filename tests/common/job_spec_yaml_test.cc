#include "common/job_spec/job_spec_yaml.h"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;
using v1::CurriculumSpec;
using v1::DataSpec;
using v1::JobSpec;
using v1::MaskingSpec;
using v1::TrainSpec;

// Every section, with values that differ from the defaults.
constexpr char kFullSpec[] = R"yaml(
name: full-spec
labels:
  team: vision
  "version": "2"
model:
  preset: small
  img_size: 64
  in_chans: 3
  patch_size: 8
  embed_dim: 256
  depth: 4
  num_heads: 4
  decoder_embed_dim: 128
  decoder_depth: 2
  decoder_num_heads: 4
  mlp_ratio: 4
  masker_depth: 2
  masker_num_heads: 2
  norm_pix_loss: true
masking:
  mode: CLMAE
  mask_ratio: 0.6
  lambda_gauss: 0.5
  lambda_kl: 0.0
  lambda_div: 1.5e-1
curriculum:
  shape: COSINE
  start: 2
  end: -0.5
optimizer:
  blr: 1.5e-4
  lr: 0.0003
  min_lr: 1e-6
  warmup_epochs: 2.5
  weight_decay: 0.1
  beta1: 0.8
  beta2: 0.99
  clip_grad: 3.0
  accum_iter: 4
  decay_tokens: false
data:
  kind: IMAGE_FOLDER
  path: /data/train
  transform: EVAL
  crop_scale_min: 0.3
  mean: [0.5, 0.4, 0.3]
  std: [0.2, 0.25, 0.3]
  num_workers: 6
  prefetch: 8
  fail_on_decode_error: true
  synthetic_size: 4096
  limit: 10000000000
train:
  epochs: 12
  batch_size: 32
  max_steps: 500
  seed: 18446744073709551615
  device: cuda:1
  precision: BF16
  threads: 3
  log_every: 5
  init_from: weights/encoder.safetensors
eval:
  enabled: true
  kind: MNIST
  path: /data/mnist
  knn_k: 7
  probe_epochs: 0
  train_limit: 2000
  test_limit: 500
output:
  dir: /runs/full
  checkpoint_every: 100
  keep_checkpoints: 2
  preview_every: 20
  preview_images: 8
  export_safetensors: true
resources:
  world_size: 4
  device_kind: cuda
  max_restarts: 1
  priority: -5
)yaml";

class JobSpecYamlTest : public ::testing::Test {
 protected:
  // Parses `yaml`, failing the test when it does not parse.
  JobSpec Parse(const std::string& yaml) {
    auto spec = JobSpecFromYaml(yaml);
    EXPECT_TRUE(spec.ok()) << spec.status();
    return spec.ok() ? *spec : JobSpec();
  }

  // The error for `yaml`, which must not parse.
  absl::Status ParseError(const std::string& yaml) {
    auto spec = JobSpecFromYaml(yaml);
    EXPECT_FALSE(spec.ok()) << "parsed:\n" << spec->DebugString();
    return spec.status();
  }

  // A file under the test's temporary directory holding `text`.
  std::string WriteFile(const std::string& name, const std::string& text) {
    const std::string path = ::testing::TempDir() + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
};

TEST_F(JobSpecYamlTest, ParsesEveryFieldOfAFullSpec) {
  const JobSpec spec = Parse(kFullSpec);
  EXPECT_EQ(spec.name(), "full-spec");
  EXPECT_EQ(spec.labels().at("team"), "vision");
  EXPECT_EQ(spec.labels().at("version"), "2");

  EXPECT_EQ(spec.model().preset(), "small");
  EXPECT_EQ(spec.model().img_size(), 64);
  EXPECT_EQ(spec.model().patch_size(), 8);
  EXPECT_EQ(spec.model().masker_num_heads(), 2);
  EXPECT_TRUE(spec.model().has_norm_pix_loss());
  EXPECT_TRUE(spec.model().norm_pix_loss());

  EXPECT_EQ(spec.masking().mode(), MaskingSpec::CLMAE);
  EXPECT_DOUBLE_EQ(spec.masking().mask_ratio(), 0.6);
  EXPECT_TRUE(spec.masking().has_lambda_kl());  // set to zero, still present
  EXPECT_DOUBLE_EQ(spec.masking().lambda_kl(), 0.0);
  EXPECT_DOUBLE_EQ(spec.masking().lambda_div(), 0.15);

  EXPECT_EQ(spec.curriculum().shape(), CurriculumSpec::COSINE);
  EXPECT_DOUBLE_EQ(spec.curriculum().start(), 2.0);
  EXPECT_DOUBLE_EQ(spec.curriculum().end(), -0.5);

  EXPECT_DOUBLE_EQ(spec.optimizer().blr(), 1.5e-4);
  EXPECT_DOUBLE_EQ(spec.optimizer().min_lr(), 1e-6);
  EXPECT_DOUBLE_EQ(spec.optimizer().warmup_epochs(), 2.5);
  EXPECT_EQ(spec.optimizer().accum_iter(), 4);
  EXPECT_TRUE(spec.optimizer().has_decay_tokens());
  EXPECT_FALSE(spec.optimizer().decay_tokens());

  EXPECT_EQ(spec.data().kind(), DataSpec::IMAGE_FOLDER);
  EXPECT_EQ(spec.data().path(), "/data/train");
  EXPECT_EQ(spec.data().transform(), DataSpec::EVAL);
  EXPECT_THAT(spec.data().mean(), ::testing::ElementsAre(0.5, 0.4, 0.3));
  EXPECT_THAT(spec.data().std(), ::testing::ElementsAre(0.2, 0.25, 0.3));
  EXPECT_TRUE(spec.data().fail_on_decode_error());
  EXPECT_EQ(spec.data().limit(), int64_t{10000000000});

  EXPECT_EQ(spec.train().epochs(), 12);
  EXPECT_EQ(spec.train().max_steps(), 500);
  EXPECT_EQ(spec.train().seed(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(spec.train().device(), "cuda:1");
  EXPECT_EQ(spec.train().precision(), TrainSpec::BF16);
  EXPECT_EQ(spec.train().init_from(), "weights/encoder.safetensors");

  EXPECT_TRUE(spec.eval().enabled());
  EXPECT_EQ(spec.eval().kind(), DataSpec::MNIST);
  EXPECT_EQ(spec.eval().knn_k(), 7);
  EXPECT_TRUE(spec.eval().has_probe_epochs());
  EXPECT_EQ(spec.eval().probe_epochs(), 0);

  EXPECT_EQ(spec.output().dir(), "/runs/full");
  EXPECT_EQ(spec.output().preview_images(), 8);
  EXPECT_TRUE(spec.output().export_safetensors());

  EXPECT_EQ(spec.resources().world_size(), 4);
  EXPECT_EQ(spec.resources().device_kind(), "cuda");
  EXPECT_EQ(spec.resources().priority(), -5);
}

TEST_F(JobSpecYamlTest, UnsetFieldsStayUnset) {
  const JobSpec spec = Parse("name: minimal\nmasking:\n  mask_ratio: ~\ntrain:\n");
  EXPECT_FALSE(spec.masking().has_mask_ratio());
  EXPECT_FALSE(spec.has_train());
  EXPECT_FALSE(spec.optimizer().has_blr());
}

TEST_F(JobSpecYamlTest, EmptyDocumentIsTheEmptySpec) {
  EXPECT_TRUE(MessageDifferencer::Equals(Parse(""), JobSpec()));
  EXPECT_TRUE(MessageDifferencer::Equals(Parse("# only a comment\n"), JobSpec()));
}

TEST_F(JobSpecYamlTest, RoundTripsThroughYaml) {
  const JobSpec first = Parse(kFullSpec);
  const std::string yaml = JobSpecToYaml(first);
  const JobSpec second = Parse(yaml);
  std::string diff;
  MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differencer.Compare(first, second)) << diff << "\nYAML:\n" << yaml;
  EXPECT_EQ(JobSpecToYaml(second), yaml);  // stable
}

TEST_F(JobSpecYamlTest, RoundTripsStringsThatLookLikeOtherThings) {
  JobSpec spec;
  spec.set_name("2024");
  spec.mutable_train()->set_device("cuda:0");
  spec.mutable_output()->set_dir(" padded dir ");
  auto& labels = *spec.mutable_labels();
  labels["bool"] = "true";
  labels["yes"] = "Yes";
  labels["null"] = "~";
  labels["empty"] = "";
  labels["number"] = "1e5";
  labels["infinity"] = ".inf";
  labels["colon"] = "a: b";
  labels["hash"] = "# not a comment";
  labels["lines"] = "two\nlines";
  labels["quotes"] = "say \"hi\"";
  labels["unicode"] = "λ_cl → −1";
  const std::string yaml = JobSpecToYaml(spec);
  EXPECT_TRUE(MessageDifferencer::Equals(Parse(yaml), spec)) << yaml;
}

TEST_F(JobSpecYamlTest, RoundTripsDoublesExactly) {
  JobSpec spec;
  spec.mutable_optimizer()->set_blr(0.1);
  spec.mutable_optimizer()->set_lr(1.0 / 3.0);
  spec.mutable_optimizer()->set_min_lr(1e-20);
  spec.mutable_optimizer()->set_weight_decay(0.0);
  spec.mutable_curriculum()->set_start(1.0);
  spec.mutable_curriculum()->set_end(-std::numeric_limits<double>::infinity());
  spec.mutable_data()->add_mean(1.7976931348623157e308);
  spec.mutable_data()->add_mean(5e-324);
  const std::string yaml = JobSpecToYaml(spec);
  EXPECT_THAT(yaml, HasSubstr("blr: 0.1\n"));
  EXPECT_THAT(yaml, HasSubstr("start: 1.0\n"));
  EXPECT_THAT(yaml, HasSubstr("end: -.inf\n"));
  EXPECT_TRUE(MessageDifferencer::Equals(Parse(yaml), spec)) << yaml;
}

TEST_F(JobSpecYamlTest, WritesEnumsByNameAndOnlySetFields) {
  JobSpec spec;
  spec.set_name("x");
  spec.mutable_masking()->set_mode(MaskingSpec::PLAIN_MAE);
  spec.mutable_train()->set_epochs(0);  // set, though zero
  EXPECT_EQ(JobSpecToYaml(spec), "name: x\nmasking:\n  mode: PLAIN_MAE\ntrain:\n  epochs: 0\n");
  EXPECT_EQ(JobSpecToYaml(JobSpec()), "");
}

TEST_F(JobSpecYamlTest, AcceptsEnumNamesInAnyCase) {
  const JobSpec spec = Parse(R"yaml(
masking: {mode: plain_mae}
curriculum: {shape: per-step-linear}
data: {kind: Image_Folder, transform: eval}
train: {precision: bf16}
eval: {kind: "fashion_mnist"}
)yaml");
  EXPECT_EQ(spec.masking().mode(), MaskingSpec::PLAIN_MAE);
  EXPECT_EQ(spec.curriculum().shape(), CurriculumSpec::PER_STEP_LINEAR);
  EXPECT_EQ(spec.data().kind(), DataSpec::IMAGE_FOLDER);
  EXPECT_EQ(spec.data().transform(), DataSpec::EVAL);
  EXPECT_EQ(spec.train().precision(), TrainSpec::BF16);
  EXPECT_EQ(spec.eval().kind(), DataSpec::FASHION_MNIST);
}

TEST_F(JobSpecYamlTest, ReadsPlainScalarsAsStringsForStringFields) {
  const JobSpec spec = Parse("name: 2024\nlabels: {on: yes, n: 1.5}\ntrain: {device: cpu}\n");
  EXPECT_EQ(spec.name(), "2024");
  EXPECT_EQ(spec.labels().at("on"), "yes");
  EXPECT_EQ(spec.labels().at("n"), "1.5");
}

TEST_F(JobSpecYamlTest, ReadsYamlNumberAndBooleanSpellings) {
  const JobSpec spec = Parse(
      "masking: {mask_ratio: .5, lambda_kl: +1}\ncurriculum: {start: .nan, end: -.Inf}\n"
      "eval: {enabled: Yes}\nmodel: {norm_pix_loss: off}\ntrain: {epochs: +3}\n");
  EXPECT_DOUBLE_EQ(spec.masking().mask_ratio(), 0.5);
  EXPECT_DOUBLE_EQ(spec.masking().lambda_kl(), 1.0);
  EXPECT_TRUE(std::isnan(spec.curriculum().start()));
  EXPECT_EQ(spec.curriculum().end(), -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(spec.eval().enabled());
  EXPECT_TRUE(spec.model().has_norm_pix_loss());
  EXPECT_FALSE(spec.model().norm_pix_loss());
  EXPECT_EQ(spec.train().epochs(), 3);
}

TEST_F(JobSpecYamlTest, UnknownKeyIsNamedWithItsPositionAndTheClosestField) {
  const absl::Status status = ParseError("name: x\nmodel:\n  preset: tiny\n  patch_sise: 8\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("model.patch_sise (line 4, column 3)"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("unknown field; did you mean patch_size?"));
}

TEST_F(JobSpecYamlTest, UnknownKeyWithNoCloseMatchListsTheFields) {
  const absl::Status status = ParseError("resources:\n  gpus: 8\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("resources.gpus"));
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("world_size, device_kind, max_restarts, priority"));
}

TEST_F(JobSpecYamlTest, UnknownTopLevelKeyIsNamed) {
  const absl::Status status = ParseError("name: x\ntrainer:\n  epochs: 3\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("trainer (line 2, column 1): unknown field"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("did you mean train?"));
}

TEST_F(JobSpecYamlTest, WrongTypeIsNamedWithTheValue) {
  const absl::Status status = ParseError("name: x\ntrain:\n  epochs: ten\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("train.epochs (line 3, column 11)"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("expected an integer, got 'ten'"));
}

TEST_F(JobSpecYamlTest, RejectsValuesOfTheWrongKind) {
  struct Case {
    const char* yaml;
    const char* field;
    const char* problem;
  };
  const Case cases[] = {
      {"train: {epochs: \"10\"}", "train.epochs", "quoted string"},
      {"train: {epochs: 1.5}", "train.epochs", "expected an integer"},
      {"train: {epochs: 3000000000}", "train.epochs", "[-2147483648, 2147483647]"},
      {"train: {seed: -1}", "train.seed", "expected an integer in [0, 18446744073709551615]"},
      {"train: {device: [cuda]}", "train.device", "expected a single value"},
      {"masking: {mask_ratio: high}", "masking.mask_ratio", "expected a number"},
      {"masking: {mask_ratio: \"0.5\"}", "masking.mask_ratio", "expected a number"},
      {"masking: {mode: fancy}", "masking.mode", "allowed: CLMAE, PLAIN_MAE"},
      {"eval: {enabled: maybe}", "eval.enabled", "expected true or false"},
      {"model: tiny", "model", "expected a mapping of ModelSpec fields"},
      {"data: {mean: 0.5}", "data.mean", "expected a sequence"},
      {"data: {mean: [0.5, x]}", "data.mean[1]", "expected a number"},
      {"labels: [a, b]", "labels", "expected a mapping"},
      {"labels: {team: }", "labels.team", "expected a value"},
      {"labels: {team: {a: b}}", "labels.team", "expected a single value"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.yaml);
    const absl::Status status = ParseError(c.yaml);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()),
                ::testing::StartsWith(std::string(c.field) + " (line 1"));
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.problem));
  }
}

TEST_F(JobSpecYamlTest, DuplicateKeyIsAnError) {
  const absl::Status status = ParseError("name: a\ntrain:\n  epochs: 1\n  epochs: 2\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("train.epochs (line 4, column 3): duplicate key"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("line 3"));
}

TEST_F(JobSpecYamlTest, SyntaxErrorGivesLineAndColumn) {
  const absl::Status status = ParseError("name: x\nmodel:\n  preset: [tiny\ntrain: {}\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("YAML syntax error at line"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("column"));
}

TEST_F(JobSpecYamlTest, TopLevelMustBeAMapping) {
  const absl::Status status = ParseError("- a\n- b\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("expected a mapping of JobSpec fields"));
}

TEST_F(JobSpecYamlTest, MoreThanOneDocumentIsAnError) {
  const absl::Status status = ParseError("name: a\n---\nname: b\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("expected one YAML document, got more than one"));
}

// Found by fuzzing (tests/fuzz): yaml-cpp 0.7's LoadAll looped forever,
// allocating without bound, on a stray ',' at the start of a line.
TEST_F(JobSpecYamlTest, AStrayCommaIsASyntaxErrorNotAHang) {
  for (const std::string yaml : {", b\nname: x\n", ",", "name: x\n---\n,\n"}) {
    SCOPED_TRACE(yaml);
    const absl::Status status = ParseError(yaml);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_THAT(std::string(ParseError(", b\nname: x\n").message()),
              HasSubstr("YAML syntax error at line 1, column 1: unexpected ','"));
}

TEST_F(JobSpecYamlTest, OversizedSpecIsRejected) {
  const std::string yaml = "name: x\n" + std::string(kMaxJobSpecBytes, '#');
  const absl::Status status = ParseError(yaml);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("at most 1048576"));
}

TEST_F(JobSpecYamlTest, LoadsAFile) {
  const std::string path = WriteFile("load_ok.yaml", "name: from-file\ntrain: {epochs: 3}\n");
  auto spec = LoadJobSpecFile(path);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "from-file");
  EXPECT_EQ(spec->train().epochs(), 3);
}

TEST_F(JobSpecYamlTest, MissingFileIsNotFoundNamingThePath) {
  const std::string path = ::testing::TempDir() + "/no-such-spec.yaml";
  auto spec = LoadJobSpecFile(path);
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr(path));
}

TEST_F(JobSpecYamlTest, DirectoryIsNotASpec) {
  auto spec = LoadJobSpecFile(::testing::TempDir());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("is a directory"));
}

TEST_F(JobSpecYamlTest, FileErrorsArePrefixedWithThePath) {
  const std::string path = WriteFile("load_bad.yaml", "name: x\ntrain:\n  epochz: 3\n");
  auto spec = LoadJobSpecFile(path);
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()),
              ::testing::StartsWith(path + ": train.epochz (line 3, column 3)"));
}

}  // namespace
}  // namespace clmae
