// End-to-end runs of the clmae-train executable: exit codes, messages and
// the files a run leaves.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/worker/train/run_command.h"

namespace {

namespace fs = std::filesystem;

using Result = clmae::train_testing::CommandResult;
using clmae::train_testing::RunCommand;

Result RunTrain(const std::string& args) {
  return RunCommand(std::string(CLMAE_TRAIN_BINARY) + " " + args);
}

class ClmaeTrainCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("cli-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }
  fs::path dir_;
};

TEST_F(ClmaeTrainCliTest, MissingConfigIsAUsageError) {
  auto r = RunTrain("");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("--config is required"), std::string::npos) << r.output;
}

// The same command line rules as clmae-coordinator and clmae-worker.
TEST_F(ClmaeTrainCliTest, AnUnknownFlagIsAUsageErrorThatNamesIt) {
  auto r = RunTrain("--config x.yaml --no-such-flag 1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("unknown flag --no_such_flag"), std::string::npos) << r.output;
  r = RunTrain("--max-steps=abc --config x.yaml");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("--max_steps=abc"), std::string::npos) << r.output;
}

TEST_F(ClmaeTrainCliTest, MissingSpecFileIsNamed) {
  auto r = RunTrain("--config " + (dir_ / "nope.yaml").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("nope.yaml"), std::string::npos) << r.output;
}

TEST_F(ClmaeTrainCliTest, InvalidFieldIsNamed) {
  auto spec = Write("bad.yaml", "name: bad\nmodel: {patch_size: 5}\n");
  auto r = RunTrain("--config " + spec);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("model.patch_size"), std::string::npos) << r.output;
}

TEST_F(ClmaeTrainCliTest, MissingDatasetIsNamed) {
  auto spec =
      Write("nodata.yaml",
            "name: nodata\ndata: {kind: MNIST, path: " + (dir_ / "no-mnist").string() + "}\n");
  auto r = RunTrain("--config " + spec + " --output-dir " + (dir_ / "out").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("no-mnist"), std::string::npos) << r.output;
}

TEST_F(ClmaeTrainCliTest, ShortSyntheticRunLeavesItsOutputsAndResumes) {
  auto spec = Write("syn.yaml", R"(name: syn
model: {preset: tiny, img_size: 16, embed_dim: 32, depth: 1, num_heads: 2,
        decoder_embed_dim: 16, decoder_depth: 1, decoder_num_heads: 2, masker_depth: 1}
data: {kind: SYNTHETIC, synthetic_size: 64, num_workers: 1}
optimizer: {warmup_epochs: 0.5}
train: {epochs: 2, batch_size: 16, log_every: 2}
eval: {enabled: true, probe_epochs: 2}
output: {checkpoint_every: 4, preview_every: 4, export_safetensors: true}
)");
  const std::string out = (dir_ / "out").string();
  auto r = RunTrain("--config " + spec + " --output-dir " + out + " --max-steps 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("lambda_cl"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("k-NN top-1"), std::string::npos) << r.output;
  for (const char* f : {"metrics.jsonl", "weights.safetensors", "encoder.safetensors", "eval.json",
                        "checkpoints/step-000000004.ckpt", "previews/step-000000004.png"}) {
    EXPECT_TRUE(fs::exists(fs::path(out) / f)) << f;
  }
  // PyTorch users load the export with the safetensors package under the
  // reference key names (skipped when the project venv is not there).
  const fs::path python = fs::path(CLMAE_SOURCE_DIR) / ".venv" / "bin" / "python";
  if (fs::exists(python)) {
    auto py = RunCommand(
        python.string() + " -c \"" +
        "from safetensors.torch import load_file; "
        "w = load_file('" +
        out +
        "/weights.safetensors'); "
        "e = load_file('" +
        out +
        "/encoder.safetensors'); "
        "assert w['blocks.0.attn.qkv.weight'].shape == (96, 32); "
        "assert 'masking_net.mlp_head.1.weight' in w and 'decoder_pred.weight' in w; "
        "assert not any(k.startswith(('decoder', 'masking_net', 'mask_token')) for k in e); "
        "print('loaded', len(w), len(e))\"");
    EXPECT_EQ(py.exit_code, 0) << py.output;
    EXPECT_NE(py.output.find("loaded"), std::string::npos) << py.output;
  }
  auto resumed = RunTrain("--config " + spec + " --output-dir " + out + " --resume auto");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from"), std::string::npos) << resumed.output;
  EXPECT_TRUE(fs::exists(fs::path(out) / "checkpoints/step-000000008.ckpt"));
}

}  // namespace
