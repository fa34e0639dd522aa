// checkpoints and download against the fake coordinator: the table and JSON,
// each selector as the server sees it, verified downloads, resuming a
// partial file, progress output, and usage errors.

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "common/sha256.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "services/checkpoint_download.h"
#include "services/clmaectl/error_report.h"
#include "tests/services/clmaectl/fake_coordinator.h"
#include "tests/testing/files.h"

namespace clmae::ctl::testing {
namespace {

using ::clmae::testing::ReadFileOrEmpty;

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 random(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random() & 0xFF);
  return bytes;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class CheckpointCommandsTest : public ClmaectlTest {
 protected:
  void SetUp() override {
    ClmaectlTest::SetUp();
    std::string dir = ::testing::TempDir() + "/clmaectl_checkpoints_XXXXXX";
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    dir_ = dir;
    path_ = dir_ + "/model.pt";
    Add("ck-a", v1::CHECKPOINT_KIND_FULL, 200, 1, RandomBytes(1500, 1));
    Add("ck-w", v1::CHECKPOINT_KIND_WEIGHTS, 400, 3, RandomBytes(2048, 2), /*masker=*/0.3);
    Add("ck-b", v1::CHECKPOINT_KIND_FULL, 400, 3, RandomBytes((3 << 20) + 17, 3), 0.3);
    fake_.checkpoints["j-empty"] = {};
  }

  void TearDown() override {
    ClmaectlTest::TearDown();
    std::filesystem::remove_all(dir_);
  }

  void Add(const std::string& id, v1::CheckpointKind kind, int64_t step, int epoch,
           const std::string& bytes, double masker_total = 0) {
    v1::Checkpoint checkpoint;
    checkpoint.set_id(id);
    v1::CheckpointMetadata& m = *checkpoint.mutable_metadata();
    m.set_job_id("j-1");
    m.set_attempt(1);
    m.set_kind(kind);
    m.set_step(step);
    m.set_epoch(epoch);
    m.set_curriculum_factor(0.2);
    m.set_loss_mae(0.4123);
    m.set_loss_masker_total(masker_total);
    m.set_size_bytes(static_cast<int64_t>(bytes.size()));
    m.set_sha256(Sha256Hex(bytes));
    checkpoint.mutable_create_time()->set_seconds(absl::ToUnixSeconds(Now() - absl::Hours(1)));
    fake_.checkpoints["j-1"].push_back(checkpoint);
    fake_.checkpoint_bytes[id] = bytes;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(CheckpointCommandsTest, TableHasOneRowPerCheckpoint) {
  RunResult r = Run({"checkpoints", "j-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_THAT(lines[0], StartsWith("ID    STEP  EPOCH  λ_cl    LOSS"));
  EXPECT_THAT(lines[0], HasSubstr("SIZE"));
  EXPECT_THAT(lines[0], HasSubstr("KIND"));
  EXPECT_THAT(lines[0], HasSubstr("CREATED"));
  // The epoch is shown 1-based, like `get`.
  EXPECT_THAT(lines[1], StartsWith("ck-a  200   2      +0.200  0.4123  "));
  EXPECT_THAT(lines[1], HasSubstr("1.5 KiB"));
  EXPECT_THAT(lines[1], HasSubstr("full"));
  EXPECT_THAT(lines[1], HasSubstr("2027-01-15 07:00:00 UTC"));
  EXPECT_THAT(lines[2], HasSubstr("0.4123 (masker 0.3000)"));
  EXPECT_THAT(lines[2], HasSubstr("weights"));
  EXPECT_THAT(lines[3], StartsWith("ck-b  400   4"));
  EXPECT_THAT(lines[3], HasSubstr("3.0 MiB"));
  ASSERT_EQ(fake_.list_checkpoint_requests().size(), 1u);
  EXPECT_EQ(fake_.list_checkpoint_requests()[0].job_id(), "j-1");
  EXPECT_EQ(fake_.list_checkpoint_requests()[0].kind(), v1::CHECKPOINT_KIND_UNSPECIFIED);
}

TEST_F(CheckpointCommandsTest, KindFilterReachesTheServer) {
  RunResult r = Run({"checkpoints", "j-1", "--kind", "weights"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(Lines(r.out).size(), 2u) << r.out;
  EXPECT_THAT(r.out, HasSubstr("ck-w"));
  EXPECT_EQ(fake_.list_checkpoint_requests().back().kind(), v1::CHECKPOINT_KIND_WEIGHTS);
}

TEST_F(CheckpointCommandsTest, JsonIsTheProtoRecords) {
  RunResult r = Run({"checkpoints", "j-1", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"size_bytes\""));
  EXPECT_THAT(r.out, HasSubstr("\"curriculum_factor\""));
  v1::ListCheckpointsResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r.out;
  v1::ListCheckpointsResponse expected;
  for (const v1::Checkpoint& c : fake_.checkpoints["j-1"]) *expected.add_checkpoints() = c;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, expected)) << r.out;
}

TEST_F(CheckpointCommandsTest, NoCheckpointsIsANoticeNotAnError) {
  RunResult r = Run({"checkpoints", "j-empty"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_THAT(r.err, HasSubstr("no checkpoints for job j-empty"));
}

TEST_F(CheckpointCommandsTest, AnUnknownJobIsNotFound) {
  RunResult r = Run({"checkpoints", "j-404"});
  EXPECT_EQ(r.code, kExitNotFound);
  EXPECT_THAT(r.err, HasSubstr("job j-404 not found"));
}

TEST_F(CheckpointCommandsTest, CheckpointsUsageErrors) {
  RunResult r = Run({"checkpoints"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("missing JOB"));
  r = Run({"checkpoints", "j-1", "--kind", "everything"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("--kind: unknown kind 'everything'; use full, weights, encoder, "
                               "preview"));
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(CheckpointCommandsTest, DownloadsTheLatestFullCheckpointByDefault) {
  RunResult r = Run({"download", "j-1", "-o", path_});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFileOrEmpty(path_), fake_.checkpoint_bytes["ck-b"]);
  EXPECT_FALSE(Exists(DownloadPartPath(path_)));
  // sha256sum's form on stdout.
  EXPECT_EQ(r.out, Sha256Hex(fake_.checkpoint_bytes["ck-b"]) + "  " + path_ + "\n");
  ASSERT_EQ(fake_.downloads().size(), 1u);
  const v1::DownloadCheckpointRequest request = fake_.downloads()[0];
  EXPECT_EQ(request.job_id(), "j-1");
  EXPECT_TRUE(request.latest());
  EXPECT_EQ(request.kind(), v1::CHECKPOINT_KIND_UNSPECIFIED);
  EXPECT_EQ(request.offset(), 0);
}

TEST_F(CheckpointCommandsTest, EachSelectorReachesTheServer) {
  RunResult r = Run({"download", "j-1", "--step", "200", "-o", path_});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFileOrEmpty(path_), fake_.checkpoint_bytes["ck-a"]);
  EXPECT_EQ(fake_.downloads().back().selector_case(), v1::DownloadCheckpointRequest::kStep);
  EXPECT_EQ(fake_.downloads().back().step(), 200);

  r = Run({"download", "j-1", "--id", "ck-w", "--out", path_});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFileOrEmpty(path_), fake_.checkpoint_bytes["ck-w"]);
  EXPECT_EQ(fake_.downloads().back().id(), "ck-w");

  r = Run({"download", "j-1", "--latest", "--kind", "weights", "-o", path_});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFileOrEmpty(path_), fake_.checkpoint_bytes["ck-w"]);
  EXPECT_TRUE(fake_.downloads().back().latest());
  EXPECT_EQ(fake_.downloads().back().kind(), v1::CHECKPOINT_KIND_WEIGHTS);
}

TEST_F(CheckpointCommandsTest, AnInterruptedDownloadResumesWhenRunAgain) {
  fake_.download_break = grpc::Status(grpc::StatusCode::INTERNAL, "store read failed");
  fake_.download_break_at = 1 << 20;
  RunResult r = Run({"download", "j-1", "-o", path_});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("store read failed"));
  EXPECT_THAT(r.err, HasSubstr("kept in " + DownloadPartPath(path_)));
  EXPECT_FALSE(Exists(path_));

  r = Run({"download", "j-1", "-o", path_});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("resuming at 1.0 MiB"));
  EXPECT_EQ(ReadFileOrEmpty(path_), fake_.checkpoint_bytes["ck-b"]);
  ASSERT_EQ(fake_.downloads().size(), 2u);
  EXPECT_EQ(fake_.downloads()[1].offset(), 1 << 20);
}

TEST_F(CheckpointCommandsTest, ABrokenStreamIsRetriedForTheSameCheckpoint) {
  fake_.download_break = grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection reset");
  fake_.download_break_at = 1 << 20;
  RunResult r = Run({"download", "j-1", "-o", path_});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFileOrEmpty(path_), fake_.checkpoint_bytes["ck-b"]);
  ASSERT_EQ(fake_.downloads().size(), 2u);
  // The retry names the checkpoint the first try got, not "the latest".
  EXPECT_EQ(fake_.downloads()[1].id(), "ck-b");
  EXPECT_EQ(fake_.downloads()[1].offset(), 1 << 20);
}

TEST_F(CheckpointCommandsTest, ADigestMismatchFailsAndLeavesNoFile) {
  fake_.checkpoints["j-1"][0].mutable_metadata()->set_sha256(Sha256Hex("other bytes"));
  RunResult r = Run({"download", "j-1", "--id", "ck-a", "-o", path_});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("DATA_LOSS"));
  EXPECT_THAT(r.err, HasSubstr(Sha256Hex("other bytes")));
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_FALSE(Exists(path_));
  EXPECT_FALSE(Exists(DownloadPartPath(path_)));
}

TEST_F(CheckpointCommandsTest, AMissingCheckpointIsNotFound) {
  RunResult r = Run({"download", "j-1", "--step", "999", "-o", path_});
  EXPECT_EQ(r.code, kExitNotFound);
  EXPECT_THAT(r.err, HasSubstr("no such checkpoint"));
  EXPECT_THAT(r.err, HasSubstr("clmaectl checkpoints j-1"));
  EXPECT_FALSE(Exists(path_));
}

TEST_F(CheckpointCommandsTest, ProgressWithoutATerminalIsAStartAndAnEndLine) {
  RunResult r = Run({"download", "j-1", "-o", path_});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("\r")));
  EXPECT_THAT(Lines(r.err),
              ElementsAre("downloading checkpoint ck-b (step 400, full, 3.0 MiB) to " + path_,
                          StartsWith("received 3.0 MiB in ")));
  EXPECT_THAT(r.err, HasSubstr("size and SHA-256 verified"));
}

TEST_F(CheckpointCommandsTest, ProgressOnATerminalIsABarRedrawnInPlace) {
  err_tty = true;
  RunResult r = Run({"download", "j-1", "-o", path_});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("\r\x1b[2K[--------------------]   0%  0.0/3.0 MiB"));
  EXPECT_THAT(r.err, HasSubstr("\r\x1b[2K[####################] 100%  3.0/3.0 MiB"));
  // The clock stands still here: at most one redraw before the last.
  size_t redraws = 0;
  for (size_t at = r.err.find('\r'); at != std::string::npos; at = r.err.find('\r', at + 1)) {
    ++redraws;
  }
  EXPECT_EQ(redraws, 2u) << r.err;
}

TEST_F(CheckpointCommandsTest, DownloadUsageErrors) {
  RunResult r = Run({"download", "j-1"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("missing -o PATH"));
  r = Run({"download", "j-1", "--id", "ck-a", "--step", "2", "-o", path_});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("give one of --id, --step and --latest"));
  r = Run({"download", "j-1", "--id", "ck-a", "--kind", "weights", "-o", path_});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("--kind goes with --step or --latest"));
  r = Run({"download", "j-1", "--step", "two", "-o", path_});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("--step: 'two' is not a step"));
  r = Run({"download", "-o", path_});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("missing JOB"));
  EXPECT_EQ(fake_.calls(), 0);
  EXPECT_FALSE(Exists(path_));
}

TEST_F(CheckpointCommandsTest, ADestinationThatCannotBeWrittenIsRefusedBeforeAsking) {
  RunResult r = Run({"download", "j-1", "-o", dir_ + "/no/such/dir/model.pt"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("does not exist"));
  r = Run({"download", "j-1", "-o", dir_});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("is a directory"));
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(CheckpointCommandsTest, HelpNamesTheCommandsAndTheirFlags) {
  RunResult r = Run({"help"});
  ASSERT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("checkpoints"));
  EXPECT_THAT(r.out, HasSubstr("download"));
  r = Run({"download", "--help"});
  ASSERT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("-o, --out PATH"));
  EXPECT_THAT(r.out, Not(HasSubstr("-o table|json|yaml")));
}

}  // namespace
}  // namespace clmae::ctl::testing
