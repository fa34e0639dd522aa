// Data parallelism end to end, with real clmae-train processes talking Gloo
// over loopback: 2 ranks × batch B train exactly like 1 rank × batch 2B,
// replicas stay identical, a 2-rank checkpoint resumes bit for bit, and a
// rank that dies makes the other fail within the collective timeout.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>

#include "tests/testing/files.h"
#include "tests/worker/train/run_command.h"
#include "worker/engine/train/safetensors.h"
#include "worker/process/local_launcher.h"
#include "worker/process/subprocess.h"

namespace clmae {
namespace {

using ::clmae::testing::ReadFileOrEmpty;

namespace fs = std::filesystem;

using Result = train_testing::CommandResult;
using train_testing::RunCommand;

// A tiny model on synthetic images: a few seconds per run on one core.
std::string Spec(const std::string& extra,
                 const std::string& output = "output: {export_safetensors: true}\n") {
  return R"(name: dp
model: {preset: tiny, img_size: 16, embed_dim: 32, depth: 1, num_heads: 2,
        decoder_embed_dim: 16, decoder_depth: 1, decoder_num_heads: 2, masker_depth: 1}
data: {kind: SYNTHETIC, synthetic_size: 64, num_workers: 1}
optimizer: {warmup_epochs: 0.5}
)" + output +
         extra;
}

class DataParallelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("dp-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }
  Result Train(const std::string& args) {
    return RunCommand(std::string(CLMAE_TRAIN_BINARY) + " " + args);
  }
  static NamedTensors Weights(const fs::path& out) {
    auto w = ReadSafetensors((out / "weights.safetensors").string());
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? *w : NamedTensors{};
  }
  // Largest |a - b| over all tensors (infinity when the key sets differ).
  static double MaxDifference(const NamedTensors& a, const NamedTensors& b) {
    if (a.size() != b.size() || a.empty()) return std::numeric_limits<double>::infinity();
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i].first != b[i].first || a[i].second.sizes() != b[i].second.sizes())
        return std::numeric_limits<double>::infinity();
      worst = std::max(worst, (a[i].second - b[i].second).abs().max().item<double>());
    }
    return worst;
  }
  static bool Identical(const NamedTensors& a, const NamedTensors& b) {
    if (a.size() != b.size() || a.empty()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i].first != b[i].first || !torch::equal(a[i].second, b[i].second)) return false;
    }
    return true;
  }

  // Trains `spec_extra` once with 1 rank × batch 16 and once with 2 ranks ×
  // batch 8 for 4 iterations; returns the largest weight difference.
  double OneVersusTwoRanks(const std::string& spec_extra) {
    auto one =
        Write("one.yaml",
              Spec(spec_extra + "train: {epochs: 2, batch_size: 16, threads: 1, log_every: 1}\n"));
    auto two =
        Write("two.yaml",
              Spec(spec_extra + "train: {epochs: 2, batch_size: 8, threads: 1, log_every: 1}\n"));
    auto r1 =
        Train("--config " + one + " --output-dir " + (dir_ / "one").string() + " --max-steps 4");
    EXPECT_EQ(r1.exit_code, 0) << r1.output;
    auto r2 = Train("--config " + two + " --output-dir " + (dir_ / "two").string() +
                    " --max-steps 4 --nproc 2");
    EXPECT_EQ(r2.exit_code, 0) << r2.output;
    // The lr is scaled by the same effective batch (16) in both runs.
    EXPECT_NE(r2.output.find("effective batch 16"), std::string::npos) << r2.output;
    EXPECT_NE(r2.output.find("replicas identical on all 2 ranks"), std::string::npos) << r2.output;
    return MaxDifference(Weights(dir_ / "one"), Weights(dir_ / "two"));
  }

  fs::path dir_;
};

TEST_F(DataParallelTest, PlainMaeTwoRanksEqualOneRankWithTwiceTheBatch) {
  const double diff = OneVersusTwoRanks("masking: {mode: PLAIN_MAE}\n");
  EXPECT_LT(diff, 3e-5) << "weights of 1 × 16 and 2 × 8 after 4 steps differ by " << diff;
}

// The masker's reconstruction term (a ratio of batch sums), its KL term
// (summed over the batch) and the diversity term (pairs within a rank's
// batch) are per-rank quantities by definition (docs/method.md §3), so only with
// those off is the 2-rank objective the 1-rank one: λ_cl = 0, λ_kl = 0,
// λ_div = 0 leaves the Gaussian term, a mean over images and patches. Both
// networks and both phases' all-reduces are still exercised.
TEST_F(DataParallelTest, ClMaeTwoRanksEqualOneRankWithRankLocalTermsOff) {
  const double diff = OneVersusTwoRanks(
      "masking: {mode: CLMAE, lambda_kl: 0, lambda_div: 0}\n"
      "curriculum: {shape: CONSTANT, start: 0}\n");
  EXPECT_LT(diff, 3e-5) << "weights of 1 × 16 and 2 × 8 after 4 steps differ by " << diff;
}

TEST_F(DataParallelTest, TwoRankCheckpointResumesBitForBit) {
  auto spec =
      Write("ckpt.yaml", Spec("train: {epochs: 2, batch_size: 8, threads: 1, log_every: 1}\n",
                              "output: {checkpoint_every: 2, export_safetensors: true}\n"));
  const std::string straight = (dir_ / "straight").string();
  const std::string split = (dir_ / "split").string();
  auto a = Train("--config " + spec + " --output-dir " + straight + " --max-steps 6 --nproc 2");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  auto b1 = Train("--config " + spec + " --output-dir " + split + " --max-steps 3 --nproc 2");
  ASSERT_EQ(b1.exit_code, 0) << b1.output;
  auto b2 = Train("--config " + spec + " --output-dir " + split +
                  " --max-steps 6 --nproc 2 --resume auto");
  ASSERT_EQ(b2.exit_code, 0) << b2.output;
  EXPECT_NE(b2.output.find("resumed from"), std::string::npos) << b2.output;
  EXPECT_TRUE(Identical(Weights(straight), Weights(split)))
      << "max difference " << MaxDifference(Weights(straight), Weights(split));
}

// Two ranks started by hand (as the node agent does), then rank 1 killed
// mid-run: rank 0 must stop with an error naming itself and the collective
// within the collective timeout, not hang.
TEST_F(DataParallelTest, KilledRankMakesTheOtherFailWithTheCollectiveNamed) {
  auto spec =
      Write("long.yaml", Spec("train: {epochs: 1000, batch_size: 8, threads: 1, log_every: 1}\n"));
  auto port = PickFreeLocalPort();
  ASSERT_TRUE(port.ok());
  std::unique_ptr<Subprocess> ranks[2];
  for (int r = 0; r < 2; ++r) {
    SpawnOptions o;
    o.argv = {CLMAE_TRAIN_BINARY,     "--config", spec, "--output-dir", (dir_ / "out").string(),
              "--collective-timeout", "20"};
    o.env = {{"RANK", std::to_string(r)},
             {"WORLD_SIZE", "2"},
             {"LOCAL_RANK", std::to_string(r)},
             {"MASTER_ADDR", "127.0.0.1"},
             {"MASTER_PORT", std::to_string(*port)}};
    o.output = LogFileOutput{(dir_ / ("rank" + std::to_string(r) + ".log")).string()};
    auto p = Subprocess::Spawn(o);
    ASSERT_TRUE(p.ok()) << p.status();
    ranks[r] = std::move(*p);
  }
  // Wait (at most a minute) until training is under way.
  const auto start = std::chrono::steady_clock::now();
  while (ReadFileOrEmpty((dir_ / "rank0.log").string()).find("step 3/") == std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60))
        << ReadFileOrEmpty((dir_ / "rank0.log").string())
        << ReadFileOrEmpty((dir_ / "rank1.log").string());
    ASSERT_FALSE(ranks[0]->TryWait().has_value()) << ReadFileOrEmpty((dir_ / "rank0.log").string());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(ranks[1]->Signal(SIGKILL).ok());
  // Generous safety net; the bound under test is the 20 s timeout (a dead
  // peer is usually noticed at once, through the closed connection).
  auto status = ranks[0]->Wait(absl::Seconds(60));
  ASSERT_TRUE(status.has_value()) << "rank 0 still running a minute after rank 1 died";
  EXPECT_EQ(status->ShellCode(), 1) << status->ToString();
  const std::string log = ReadFileOrEmpty((dir_ / "rank0.log").string());
  EXPECT_NE(log.find("rank 0 of 2: "), std::string::npos) << log;
  EXPECT_TRUE(log.find("all-reduce") != std::string::npos ||
              log.find("barrier") != std::string::npos ||
              log.find("broadcast") != std::string::npos)
      << log;
}

TEST_F(DataParallelTest, RankEnvironmentErrorsAreUsageErrors) {
  auto spec = Write("s.yaml", Spec("train: {epochs: 1, batch_size: 8}\n"));
  auto r = RunCommand("WORLD_SIZE=2 RANK=5 MASTER_PORT=1 " + std::string(CLMAE_TRAIN_BINARY) +
                      " --config " + spec);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("RANK='5'"), std::string::npos) << r.output;
  auto nested = RunCommand("RANK=0 WORLD_SIZE=1 " + std::string(CLMAE_TRAIN_BINARY) + " --config " +
                           spec + " --nproc 2");
  EXPECT_EQ(nested.exit_code, 2) << nested.output;
  EXPECT_NE(nested.output.find("unset RANK/WORLD_SIZE"), std::string::npos) << nested.output;
}

}  // namespace
}  // namespace clmae
