#include "worker/train/checkpoint_uploader.h"

#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/agent/agent_test_util.h"
#include "tests/worker/agent/fake_worker_control.h"
#include "tests/worker/train/run_command.h"

namespace clmae {
namespace {

using agent_testing::AgentTempDir;
using agent_testing::FakeServer;
using agent_testing::FakeWorkerControl;
using agent_testing::WaitUntil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

StepReport Report(int64_t step) {
  StepReport r;
  r.step = step;
  r.total_steps = 500;
  r.epoch = 3;
  r.epochs = 10;
  r.lambda_cl = -0.25;
  r.stats.loss_mae = 0.61;
  r.stats.masker_rec = 0.42;
  r.stats.masker_gauss = 0.03;
  r.stats.masker_kl = 0.02;
  r.stats.masker_div = 0.01;
  r.stats.masker_total = -0.36;
  return r;
}

class CheckpointUploaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<FakeServer>(&service_);
    ASSERT_TRUE(server_->ok());
  }
  void TearDown() override {
    service_.HoldUploads(false);
    uploader_.reset();
  }

  CheckpointUploaderOptions Options() {
    CheckpointUploaderOptions options;
    options.client.address = server_->address();
    options.client.token = "worker-token";
    options.job_id = "job-5";
    options.attempt = 2;
    // Short delays keep the retries quick; they are not measured.
    options.initial_backoff = absl::Milliseconds(10);
    options.max_backoff = absl::Milliseconds(40);
    return options;
  }

  void Make(const CheckpointUploaderOptions& options) {
    absl::StatusOr<std::unique_ptr<CheckpointUploader>> made = CheckpointUploader::Create(options);
    ASSERT_TRUE(made.ok()) << made.status();
    uploader_ = *std::move(made);
  }

  // A small file whose bytes name it.
  std::string File(const std::string& name) {
    const std::string path = dir_.File(name);
    std::ofstream(path, std::ios::binary) << "bytes of " << name;
    return path;
  }

  std::vector<v1::CheckpointKind> UploadedKinds() {
    std::vector<v1::CheckpointKind> kinds;
    for (const auto& u : service_.uploads()) kinds.push_back(u.metadata.kind());
    return kinds;
  }

  // (kind, step) of each upload the coordinator confirmed, in order.
  std::vector<std::pair<v1::CheckpointKind, int64_t>> Uploaded() {
    std::vector<std::pair<v1::CheckpointKind, int64_t>> out;
    for (const auto& u : service_.uploads()) out.emplace_back(u.metadata.kind(), u.metadata.step());
    return out;
  }

  // Options whose retry delays are far longer than any test: a file that
  // is retried before the others would hold them up visibly.
  CheckpointUploaderOptions OptionsWithLongBackoff() {
    CheckpointUploaderOptions options = Options();
    options.initial_backoff = absl::Hours(1);
    options.max_backoff = absl::Hours(1);
    return options;
  }

  AgentTempDir dir_;
  FakeWorkerControl service_;
  std::unique_ptr<FakeServer> server_;
  std::unique_ptr<CheckpointUploader> uploader_;
};

TEST_F(CheckpointUploaderTest, UploadsArriveInOrderWithMetadataKindsAndTheFinalFlag) {
  Make(Options());
  uploader_->OnStep(Report(100));
  uploader_->OnCheckpoint(File("step-100.pt"), 100);
  uploader_->OnExport("preview", File("step-100.png"), 100);
  ASSERT_TRUE(uploader_->Flush(absl::Seconds(30)).ok());
  uploader_->OnPhase("finish");
  uploader_->OnCheckpoint(File("step-120.pt"), 120);
  uploader_->OnExport("weights", File("weights.safetensors"), 120);
  uploader_->OnExport("encoder", File("encoder.safetensors"), 120);
  ASSERT_TRUE(uploader_->Flush(absl::Seconds(30)).ok());

  EXPECT_THAT(UploadedKinds(), ElementsAre(v1::CHECKPOINT_KIND_FULL, v1::CHECKPOINT_KIND_PREVIEW,
                                           v1::CHECKPOINT_KIND_FULL, v1::CHECKPOINT_KIND_WEIGHTS,
                                           v1::CHECKPOINT_KIND_ENCODER));
  const std::vector<FakeWorkerControl::Upload> uploads = service_.uploads();
  ASSERT_EQ(uploads.size(), 5u);
  const v1::CheckpointMetadata& first = uploads[0].metadata;
  EXPECT_TRUE(uploads[0].metadata_first);
  EXPECT_EQ(first.job_id(), "job-5");
  EXPECT_EQ(first.attempt(), 2);
  EXPECT_EQ(first.step(), 100);
  EXPECT_EQ(first.epoch(), 3);
  EXPECT_DOUBLE_EQ(first.curriculum_factor(), -0.25);
  EXPECT_DOUBLE_EQ(first.loss_mae(), 0.61);
  EXPECT_DOUBLE_EQ(first.loss_masker_recon(), 0.42);
  EXPECT_DOUBLE_EQ(first.loss_gauss(), 0.03);
  EXPECT_DOUBLE_EQ(first.loss_kl(), 0.02);
  EXPECT_DOUBLE_EQ(first.loss_div(), 0.01);
  EXPECT_DOUBLE_EQ(first.loss_masker_total(), -0.36);
  EXPECT_FALSE(first.final());
  EXPECT_EQ(uploads[0].bytes, "bytes of step-100.pt");
  EXPECT_EQ(first.sha256(), Sha256Hex("bytes of step-100.pt"));
  EXPECT_EQ(first.size_bytes(), 20);
  EXPECT_FALSE(uploads[1].metadata.final());
  EXPECT_EQ(uploads[1].bytes, "bytes of step-100.png");
  for (size_t i = 2; i < uploads.size(); ++i) {
    EXPECT_TRUE(uploads[i].metadata.final()) << i;
    EXPECT_EQ(uploads[i].metadata.step(), 120) << i;
  }
  EXPECT_EQ(uploads[4].bytes, "bytes of encoder.safetensors");
  EXPECT_EQ(uploader_->uploaded(), 5);
  EXPECT_EQ(uploader_->errors(), 0);
  EXPECT_THAT(service_.tokens(), ::testing::Contains("Bearer worker-token"));
}

TEST_F(CheckpointUploaderTest, TransientFailuresAreRetriedUntilDelivered) {
  service_.FailUploads(2, grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator restarting"));
  service_.FailUploads(1, grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "slow disk"));
  Make(Options());
  uploader_->OnCheckpoint(File("step-10.pt"), 10);
  uploader_->OnCheckpoint(File("step-20.pt"), 20);
  ASSERT_TRUE(uploader_->Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(service_.upload_calls(), 5);
  EXPECT_EQ(uploader_->errors(), 3);
  EXPECT_EQ(uploader_->deferred(), 3);
  EXPECT_EQ(uploader_->dropped(), 0);
  EXPECT_EQ(uploader_->uploaded(), 2);
  EXPECT_THAT(Uploaded(), UnorderedElementsAre(Pair(v1::CHECKPOINT_KIND_FULL, 10),
                                               Pair(v1::CHECKPOINT_KIND_FULL, 20)));
}

// The chaos run's stall: a checkpoint refused for space was retried again
// and again while the files behind it, which would have fitted, waited.
TEST_F(CheckpointUploaderTest, AFileRefusedForSpaceIsDroppedAndDoesNotDelayTheNext) {
  service_.FailUploads(
      1, grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "not enough free space for 2.0 GiB"));
  Make(OptionsWithLongBackoff());
  const std::string refused = File("step-10.pt");
  const std::string next = File("step-20.pt");
  uploader_->OnCheckpoint(refused, 10);
  uploader_->OnCheckpoint(next, 20);
  std::vector<std::string> not_uploaded;
  const absl::Status flushed = uploader_->Flush(absl::Seconds(30), &not_uploaded);

  EXPECT_EQ(flushed.code(), absl::StatusCode::kResourceExhausted) << flushed;
  EXPECT_THAT(flushed.message(), HasSubstr(refused));
  EXPECT_THAT(not_uploaded, ElementsAre(refused));
  EXPECT_THAT(Uploaded(), ElementsAre(Pair(v1::CHECKPOINT_KIND_FULL, 20)));
  EXPECT_EQ(service_.upload_calls(), 2) << "the refused file is not tried again";
  EXPECT_EQ(uploader_->dropped(), 1);
  EXPECT_EQ(uploader_->deferred(), 0);
  EXPECT_EQ(uploader_->uploaded(), 1);
  EXPECT_FALSE(uploader_->MayDeleteCheckpoint(refused)) << "never confirmed: kept on local disk";
  EXPECT_TRUE(uploader_->MayDeleteCheckpoint(next));
}

TEST_F(CheckpointUploaderTest, AFileThatCannotBeReadIsDroppedWithoutACall) {
  Make(OptionsWithLongBackoff());
  const std::string gone = dir_.File("step-10.pt");  // never written
  uploader_->OnCheckpoint(gone, 10);
  uploader_->OnCheckpoint(File("step-20.pt"), 20);
  std::vector<std::string> not_uploaded;
  const absl::Status flushed = uploader_->Flush(absl::Seconds(30), &not_uploaded);
  EXPECT_EQ(flushed.code(), absl::StatusCode::kDataLoss) << flushed;
  EXPECT_THAT(flushed.message(), HasSubstr("cannot read"));
  EXPECT_THAT(not_uploaded, ElementsAre(gone));
  EXPECT_THAT(Uploaded(), ElementsAre(Pair(v1::CHECKPOINT_KIND_FULL, 20)));
  EXPECT_EQ(service_.upload_calls(), 1);
  EXPECT_EQ(uploader_->dropped(), 1);
  EXPECT_FALSE(uploader_->attempt_superseded());
}

TEST_F(CheckpointUploaderTest, ATransientFailureDefersTheFileBehindTheOthers) {
  service_.FailUploads(1, grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator restarting"));
  Make(OptionsWithLongBackoff());
  const std::string deferred = File("step-10.pt");
  uploader_->OnCheckpoint(deferred, 10);
  uploader_->OnCheckpoint(File("step-20.pt"), 20);
  // The newer file goes while the failed one waits for its retry (an hour).
  ASSERT_TRUE(WaitUntil([&] { return service_.uploads().size() == 1; }));
  EXPECT_THAT(Uploaded(), ElementsAre(Pair(v1::CHECKPOINT_KIND_FULL, 20)));
  EXPECT_EQ(uploader_->deferred(), 1);
  EXPECT_EQ(uploader_->dropped(), 0);
  EXPECT_FALSE(uploader_->MayDeleteCheckpoint(deferred)) << "still queued";

  std::vector<std::string> not_uploaded;
  const absl::Status flushed = uploader_->Flush(absl::Milliseconds(1), &not_uploaded);
  EXPECT_EQ(flushed.code(), absl::StatusCode::kDeadlineExceeded) << flushed;
  EXPECT_THAT(flushed.message(), HasSubstr("1 file(s) not uploaded"));
  EXPECT_THAT(flushed.message(), HasSubstr("coordinator restarting"));
  EXPECT_THAT(not_uploaded, ElementsAre(deferred));
}

// At the end of a run the final checkpoint and exports go before whatever
// else is still queued.
TEST_F(CheckpointUploaderTest, FlushUploadsTheFinalFilesFirst) {
  Make(Options());
  service_.HoldUploads(true);
  uploader_->OnCheckpoint(File("step-10.pt"), 10);
  ASSERT_TRUE(WaitUntil([&] { return service_.upload_calls() == 1; }));
  uploader_->OnExport("preview", File("step-10.png"), 10);
  uploader_->OnCheckpoint(File("step-20.pt"), 20);
  uploader_->OnPhase("finish");
  uploader_->OnCheckpoint(File("step-30.pt"), 30);
  uploader_->OnExport("weights", File("weights.safetensors"), 30);
  uploader_->OnExport("encoder", File("encoder.safetensors"), 30);
  // The run has ended: a flush that cannot wait still sets the order.
  EXPECT_EQ(uploader_->Flush(absl::ZeroDuration()).code(), absl::StatusCode::kDeadlineExceeded);
  service_.HoldUploads(false);
  ASSERT_TRUE(uploader_->Flush(absl::Seconds(30)).ok());

  EXPECT_THAT(
      Uploaded(),
      ElementsAre(Pair(v1::CHECKPOINT_KIND_FULL, 10),  // already in flight
                  Pair(v1::CHECKPOINT_KIND_FULL, 30), Pair(v1::CHECKPOINT_KIND_WEIGHTS, 30),
                  Pair(v1::CHECKPOINT_KIND_ENCODER, 30), Pair(v1::CHECKPOINT_KIND_PREVIEW, 10),
                  Pair(v1::CHECKPOINT_KIND_FULL, 20)));
  for (const auto& u : service_.uploads()) {
    EXPECT_EQ(u.metadata.final(), u.metadata.step() == 30) << u.metadata.step();
  }
}

TEST_F(CheckpointUploaderTest, MayDeleteCheckpointOnlyOnceTheCoordinatorConfirmed) {
  Make(Options());
  const std::string queued = File("step-10.pt");
  EXPECT_TRUE(uploader_->MayDeleteCheckpoint(queued));
  service_.HoldUploads(true);
  uploader_->OnCheckpoint(queued, 10);
  EXPECT_FALSE(uploader_->MayDeleteCheckpoint(queued));
  ASSERT_TRUE(WaitUntil([&] { return service_.upload_calls() == 1; }));
  EXPECT_FALSE(uploader_->MayDeleteCheckpoint(queued)) << "being uploaded";
  EXPECT_TRUE(uploader_->MayDeleteCheckpoint(File("step-0.pt"))) << "not ours to hold";
  service_.HoldUploads(false);
  ASSERT_TRUE(uploader_->Flush(absl::Seconds(30)).ok());
  EXPECT_TRUE(uploader_->MayDeleteCheckpoint(queued));
}

TEST_F(CheckpointUploaderTest, FailedPreconditionDropsTheQueue) {
  service_.set_upload_answer(
      grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "attempt 2 is not current"));
  Make(Options());
  service_.HoldUploads(true);
  const std::string a = File("step-10.pt");
  const std::string b = File("step-20.pt");
  uploader_->OnCheckpoint(a, 10);
  uploader_->OnCheckpoint(b, 20);
  ASSERT_TRUE(WaitUntil([&] { return service_.upload_calls() == 1; }));
  service_.HoldUploads(false);
  const absl::Status flushed = uploader_->Flush(absl::Seconds(30));
  EXPECT_EQ(flushed.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(flushed.message(), HasSubstr("not current"));
  EXPECT_TRUE(uploader_->attempt_superseded());
  EXPECT_TRUE(uploader_->MayDeleteCheckpoint(a));
  EXPECT_TRUE(uploader_->MayDeleteCheckpoint(b));
  // Nothing more is sent for this attempt.
  uploader_->OnCheckpoint(File("step-30.pt"), 30);
  EXPECT_EQ(uploader_->Flush(absl::Seconds(30)).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(service_.upload_calls(), 1);
  EXPECT_EQ(uploader_->uploaded(), 0);
  EXPECT_EQ(uploader_->dropped(), 3);
}

TEST_F(CheckpointUploaderTest, InvalidArgumentDropsOnlyThatFile) {
  service_.FailUploads(1, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "sha256 mismatch"));
  Make(Options());
  uploader_->OnCheckpoint(File("step-10.pt"), 10);
  uploader_->OnCheckpoint(File("step-20.pt"), 20);
  const absl::Status flushed = uploader_->Flush(absl::Seconds(30));
  EXPECT_EQ(flushed.code(), absl::StatusCode::kInvalidArgument) << "the file it gave up";
  EXPECT_EQ(service_.upload_calls(), 2) << "not retried";
  ASSERT_EQ(service_.uploads().size(), 1u);
  EXPECT_EQ(service_.uploads()[0].metadata.step(), 20);
  EXPECT_FALSE(uploader_->attempt_superseded());
}

TEST_F(CheckpointUploaderTest, FlushWithAnUnreachableCoordinatorReturnsAnError) {
  CheckpointUploaderOptions options = Options();
  server_->Stop();  // the port is closed now
  Make(options);
  uploader_->OnCheckpoint(File("step-10.pt"), 10);
  const absl::Status flushed = uploader_->Flush(absl::Milliseconds(300));
  EXPECT_EQ(flushed.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(flushed.message(), HasSubstr("1 file(s) not uploaded"));
  EXPECT_FALSE(uploader_->MayDeleteCheckpoint(dir_.File("step-10.pt")));
}

TEST_F(CheckpointUploaderTest, ConfirmedFullCheckpointsAreLinkedIntoTheNodeCache) {
  CheckpointUploaderOptions options = Options();
  options.cache_dir = dir_.File("cache");
  ASSERT_EQ(mkdir(options.cache_dir.c_str(), 0755), 0);
  Make(options);
  const std::string full = File("step-10.pt");
  const std::string weights = File("weights.safetensors");
  uploader_->OnCheckpoint(full, 10);
  uploader_->OnExport("weights", weights, 10);
  ASSERT_TRUE(uploader_->Flush(absl::Seconds(30)).ok());

  struct stat original, cached, export_cached;
  ASSERT_EQ(stat(full.c_str(), &original), 0);
  const std::string cached_path = options.cache_dir + "/" + Sha256Hex("bytes of step-10.pt");
  ASSERT_EQ(stat(cached_path.c_str(), &cached), 0);
  EXPECT_EQ(cached.st_ino, original.st_ino) << "a hard link, not a copy";
  const std::string weights_path =
      options.cache_dir + "/" + Sha256Hex("bytes of weights.safetensors");
  EXPECT_NE(stat(weights_path.c_str(), &export_cached), 0) << "only full checkpoints resume";
}

TEST_F(CheckpointUploaderTest, AMissingCacheFolderDoesNotStopUploads) {
  CheckpointUploaderOptions options = Options();
  options.cache_dir = dir_.File("no-such-cache");
  Make(options);
  uploader_->OnCheckpoint(File("step-10.pt"), 10);
  uploader_->OnCheckpoint(File("step-20.pt"), 20);
  EXPECT_TRUE(uploader_->Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(uploader_->uploaded(), 2);
}

TEST_F(CheckpointUploaderTest, CreateRejectsIncompleteOptions) {
  CheckpointUploaderOptions options = Options();
  options.job_id.clear();
  EXPECT_EQ(CheckpointUploader::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = Options();
  options.max_backoff = absl::Milliseconds(1);
  absl::Status status = CheckpointUploader::Create(options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("backoff"));
}

// clmae-train --coordinator: rank 0 uploads what it writes, the final files
// flagged, and links the final checkpoint into the node's cache.
TEST_F(CheckpointUploaderTest, ClmaeTrainUploadsItsCheckpointsAndExports) {
  const std::string spec = dir_.File("syn.yaml");
  std::ofstream(spec) << R"(name: syn
model: {preset: tiny, img_size: 16, embed_dim: 32, depth: 1, num_heads: 2,
        decoder_embed_dim: 16, decoder_depth: 1, decoder_num_heads: 2, masker_depth: 1}
data: {kind: SYNTHETIC, synthetic_size: 64, num_workers: 1}
optimizer: {warmup_epochs: 0.5}
train: {epochs: 2, batch_size: 16, log_every: 2}
output: {checkpoint_every: 2, export_safetensors: true}
)";
  const std::string out = dir_.File("out");
  const std::string cache = dir_.File("cache");
  ASSERT_EQ(mkdir(cache.c_str(), 0755), 0);
  const train_testing::CommandResult r = train_testing::RunCommand(
      "CLMAE_CHECKPOINT_CACHE=" + cache + " CLMAE_TOKEN=worker-token " + CLMAE_TRAIN_BINARY +
      " --config " + spec + " --output_dir " + out + " --max_steps 4 --coordinator " +
      server_->address() + " --job_id job-e2e --attempt 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("uploaded as ck-"));

  const std::vector<FakeWorkerControl::Upload> uploads = service_.uploads();
  ASSERT_GE(uploads.size(), 4u) << r.output;
  bool seen_final = false;
  for (const auto& u : uploads) {
    EXPECT_EQ(u.metadata.job_id(), "job-e2e");
    EXPECT_EQ(u.metadata.attempt(), 3);
    EXPECT_EQ(u.metadata.sha256(), Sha256Hex(u.bytes));
    EXPECT_FALSE(seen_final && !u.metadata.final()) << "nothing intermediate after the end";
    seen_final = seen_final || u.metadata.final();
  }
  EXPECT_EQ(uploads[0].metadata.kind(), v1::CHECKPOINT_KIND_FULL);
  EXPECT_EQ(uploads[0].metadata.step(), 2);
  EXPECT_FALSE(uploads[0].metadata.final());
  const auto& weights = uploads[uploads.size() - 2];
  const auto& encoder = uploads.back();
  EXPECT_EQ(weights.metadata.kind(), v1::CHECKPOINT_KIND_WEIGHTS);
  EXPECT_EQ(encoder.metadata.kind(), v1::CHECKPOINT_KIND_ENCODER);
  EXPECT_TRUE(encoder.metadata.final());
  const auto& last_full = uploads[uploads.size() - 3];
  EXPECT_EQ(last_full.metadata.kind(), v1::CHECKPOINT_KIND_FULL);
  EXPECT_TRUE(last_full.metadata.final());
  EXPECT_EQ(last_full.metadata.step(), 4);
  EXPECT_EQ(last_full.bytes,
            agent_testing::ReadFileOrEmpty(out + "/checkpoints/step-000000004.ckpt"));
  EXPECT_EQ(agent_testing::ReadFileOrEmpty(cache + "/" + last_full.metadata.sha256()),
            last_full.bytes);
}

TEST(HumanBytesTest, PicksAUnitAUserReads) {
  EXPECT_EQ(HumanBytes(512), "512 B");
  EXPECT_EQ(HumanBytes(3'250'586), "3.1 MiB");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
}

}  // namespace
}  // namespace clmae
