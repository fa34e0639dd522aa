#include "worker/engine/data/data_loader.h"

#include <atomic>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "ATen/Parallel.h"
#include "absl/strings/str_cat.h"
#include "common/file_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "torch/torch.h"
#include "worker/engine/data/byte_io.h"
#include "worker/engine/data/image_codec.h"
#include "worker/engine/data/image_folder_dataset.h"
#include "worker/engine/data/synthetic_dataset.h"

namespace clmae {
namespace {

using ::testing::HasSubstr;

// A synthetic dataset whose chosen indices fail: DATA_LOSS, or a thrown
// exception (which must never escape a worker thread).
class FlakyDataset : public Dataset {
 public:
  FlakyDataset(int64_t size, std::set<int64_t> lost, std::set<int64_t> throwing = {})
      : lost_(std::move(lost)), throwing_(std::move(throwing)) {
    SyntheticOptions o;
    o.size = size;
    o.height = 16;
    o.width = 16;
    o.channels = 3;
    o.classes = 10;
    o.seed = 1;
    inner_ = *SyntheticDataset::Create(o);
  }
  int64_t size() const override { return inner_->size(); }
  absl::StatusOr<Example> Get(int64_t index) const override {
    if (throwing_.count(index)) throw std::runtime_error("boom in Get");
    if (lost_.count(index)) return absl::DataLossError(absl::StrCat("record ", index, " is bad"));
    return inner_->Get(index);
  }
  int channels() const override { return 3; }
  int num_classes() const override { return 10; }
  std::string Describe() const override { return "flaky"; }

 private:
  std::unique_ptr<SyntheticDataset> inner_;
  std::set<int64_t> lost_, throwing_;
};

TransformOptions SmallCrop() {
  TransformOptions t;
  t.size = 12;
  return t;
}

DataLoaderOptions Options(int workers, int batch = 8) {
  DataLoaderOptions o;
  o.batch_size = batch;
  o.num_workers = workers;
  o.prefetch = 3;
  o.seed = 77;
  return o;
}

// Every batch of `epoch` from `start`.
std::vector<Batch> Drain(DataLoader& loader, int64_t epoch, int64_t start = 0) {
  loader.StartEpoch(epoch, start);
  std::vector<Batch> batches;
  while (true) {
    absl::StatusOr<std::optional<Batch>> next = loader.Next();
    EXPECT_TRUE(next.ok()) << next.status();
    if (!next.ok() || !next->has_value()) break;
    batches.push_back(std::move(**next));
  }
  return batches;
}

void ExpectSameBatches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].index, b[i].index);
    EXPECT_EQ(a[i].epoch, b[i].epoch);
    EXPECT_TRUE(torch::equal(a[i].images, b[i].images)) << "batch " << a[i].index;
    EXPECT_TRUE(torch::equal(a[i].labels, b[i].labels)) << "batch " << a[i].index;
  }
}

class DataLoaderTest : public ::testing::Test {
 protected:
  std::shared_ptr<const Dataset> dataset_ = std::make_shared<FlakyDataset>(53, std::set<int64_t>{});
};

TEST_F(DataLoaderTest, BatchShapesAndCount) {
  DataLoader loader(dataset_, DistributedSampler(53, 0, 1, 0), SmallCrop(), Options(2));
  EXPECT_EQ(loader.batches_per_epoch(), 6);  // 53 / 8, last partial dropped
  std::vector<Batch> batches = Drain(loader, 0);
  ASSERT_EQ(batches.size(), 6u);
  for (size_t i = 0; i < batches.size(); ++i) {
    EXPECT_EQ(batches[i].index, static_cast<int64_t>(i));
    EXPECT_EQ(batches[i].images.sizes(), (std::vector<int64_t>{8, 3, 12, 12}));
    EXPECT_EQ(batches[i].images.scalar_type(), torch::kFloat32);
    EXPECT_EQ(batches[i].labels.sizes(), (std::vector<int64_t>{8}));
    EXPECT_EQ(batches[i].labels.scalar_type(), torch::kInt64);
  }
  // Two ranks: ceil(53 / 2) = 27 samples each, 3 batches.
  DataLoader sharded(dataset_, DistributedSampler(53, 1, 2, 0), SmallCrop(), Options(0));
  EXPECT_EQ(sharded.batches_per_epoch(), 3);
}

TEST_F(DataLoaderTest, LabelsFollowTheSampler) {
  DistributedSampler sampler(53, 0, 1, 5);
  DataLoader loader(dataset_, sampler, SmallCrop(), Options(2));
  std::vector<Batch> batches = Drain(loader, 3);
  std::vector<int64_t> indices = sampler.Indices(3);
  for (const Batch& b : batches) {
    for (int64_t k = 0; k < 8; ++k) {
      EXPECT_EQ(b.labels[k].item<int64_t>(), indices[b.index * 8 + k] % 10);
    }
  }
}

TEST_F(DataLoaderTest, DeterministicAcrossWorkerCounts) {
  std::vector<std::vector<Batch>> runs;
  for (int workers : {0, 1, 3}) {
    DataLoader loader(dataset_, DistributedSampler(53, 0, 1, 0), SmallCrop(), Options(workers));
    runs.push_back(Drain(loader, 2));
  }
  ExpectSameBatches(runs[0], runs[1]);
  ExpectSameBatches(runs[0], runs[2]);
}

TEST_F(DataLoaderTest, EpochsDiffer) {
  DataLoader loader(dataset_, DistributedSampler(53, 0, 1, 0), SmallCrop(), Options(1));
  std::vector<Batch> e0 = Drain(loader, 0);
  std::vector<Batch> e1 = Drain(loader, 1);
  EXPECT_FALSE(torch::equal(e0[0].images, e1[0].images));
  EXPECT_EQ(e1[0].epoch, 1);
}

TEST_F(DataLoaderTest, AugmentationDependsOnSeed) {
  // Unshuffled sampler: only the augmentation seed differs.
  DataLoaderOptions a = Options(0), b = Options(0);
  b.seed = a.seed + 1;
  DataLoader la(dataset_, DistributedSampler(53, 0, 1, 0, false), SmallCrop(), a);
  DataLoader lb(dataset_, DistributedSampler(53, 0, 1, 0, false), SmallCrop(), b);
  std::vector<Batch> ba = Drain(la, 0), bb = Drain(lb, 0);
  EXPECT_TRUE(torch::equal(ba[0].labels, bb[0].labels));
  EXPECT_FALSE(torch::equal(ba[0].images, bb[0].images));
}

TEST_F(DataLoaderTest, ResumeEqualsTailOfFullEpoch) {
  DataLoader full(dataset_, DistributedSampler(53, 0, 1, 0), SmallCrop(), Options(2));
  std::vector<Batch> all = Drain(full, 4);
  for (int workers : {0, 2}) {
    DataLoader resumed(dataset_, DistributedSampler(53, 0, 1, 0), SmallCrop(), Options(workers));
    std::vector<Batch> tail = Drain(resumed, 4, 3);
    ExpectSameBatches(std::vector<Batch>(all.begin() + 3, all.end()), tail);
  }
  DataLoader past(dataset_, DistributedSampler(53, 0, 1, 0), SmallCrop(), Options(2));
  EXPECT_TRUE(Drain(past, 4, 6).empty());
}

TEST_F(DataLoaderTest, RestartMidEpochDiscardsPrefetchedWork) {
  DataLoader loader(dataset_, DistributedSampler(53, 0, 1, 0), SmallCrop(), Options(2));
  loader.StartEpoch(0);
  ASSERT_TRUE(loader.Next().ok());
  ASSERT_TRUE(loader.Next().ok());
  std::vector<Batch> restarted = Drain(loader, 1);
  DataLoader fresh(dataset_, DistributedSampler(53, 0, 1, 0), SmallCrop(), Options(0));
  ExpectSameBatches(Drain(fresh, 1), restarted);
}

TEST_F(DataLoaderTest, DestroyWhileWorkersArePrefetching) {
  for (int i = 0; i < 5; ++i) {
    DataLoader loader(dataset_, DistributedSampler(53, 0, 1, 0), SmallCrop(), Options(3));
    loader.StartEpoch(i);
    if (i % 2 == 1) ASSERT_TRUE(loader.Next().ok());
  }  // destructors join with work in flight
}

TEST_F(DataLoaderTest, DecodeErrorsAreSkippedAndCounted) {
  // Unshuffled: indices 3 and 10 fall in batches 0 and 1.
  auto flaky = std::make_shared<FlakyDataset>(53, std::set<int64_t>{3, 10});
  for (int workers : {0, 2}) {
    DataLoader loader(flaky, DistributedSampler(53, 0, 1, 0, false), SmallCrop(), Options(workers));
    std::vector<Batch> batches = Drain(loader, 0);
    ASSERT_EQ(batches.size(), 6u);
    EXPECT_EQ(batches[0].images.size(0), 7);
    EXPECT_EQ(batches[1].images.size(0), 7);
    EXPECT_EQ(batches[1].labels.size(0), 7);
    EXPECT_EQ(batches[2].images.size(0), 8);
    EXPECT_EQ(loader.skipped_images(), 2);
    // The surviving samples keep their labels: index 11 follows 9 in batch 1.
    EXPECT_EQ(batches[1].labels[1].item<int64_t>(), 9);
    EXPECT_EQ(batches[1].labels[2].item<int64_t>(), 1);
  }
}

TEST_F(DataLoaderTest, DecodeErrorFailsWhenAsked) {
  auto flaky = std::make_shared<FlakyDataset>(53, std::set<int64_t>{10});
  DataLoaderOptions o = Options(2);
  o.fail_on_decode_error = true;
  DataLoader loader(flaky, DistributedSampler(53, 0, 1, 0, false), SmallCrop(), o);
  loader.StartEpoch(0);
  EXPECT_TRUE(loader.Next().ok());
  absl::StatusOr<std::optional<Batch>> bad = loader.Next();
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(bad.status().message(), HasSubstr("record 10"));
  // The loader carries on with the next batch.
  absl::StatusOr<std::optional<Batch>> after = loader.Next();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ((*after)->index, 2);
}

TEST_F(DataLoaderTest, BatchWithNoDecodableImageIsDataLoss) {
  std::set<int64_t> lost;
  for (int64_t i = 8; i < 16; ++i) lost.insert(i);
  auto flaky = std::make_shared<FlakyDataset>(53, lost);
  DataLoader loader(flaky, DistributedSampler(53, 0, 1, 0, false), SmallCrop(), Options(1));
  loader.StartEpoch(0);
  EXPECT_TRUE(loader.Next().ok());
  absl::StatusOr<std::optional<Batch>> bad = loader.Next();
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(bad.status().message(), HasSubstr("every image"));
  EXPECT_EQ(loader.skipped_images(), 8);
}

TEST_F(DataLoaderTest, ExceptionsBecomeStatuses) {
  auto flaky = std::make_shared<FlakyDataset>(53, std::set<int64_t>{}, std::set<int64_t>{9});
  for (int workers : {0, 2}) {
    DataLoader loader(flaky, DistributedSampler(53, 0, 1, 0, false), SmallCrop(), Options(workers));
    loader.StartEpoch(0);
    EXPECT_TRUE(loader.Next().ok());
    absl::StatusOr<std::optional<Batch>> bad = loader.Next();
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInternal);
    EXPECT_THAT(bad.status().message(), HasSubstr("boom in Get"));
  }
}

TEST_F(DataLoaderTest, OtherErrorsAreNotSkipped) {
  // A sampler larger than the dataset asks for indices that do not exist.
  DataLoader loader(dataset_, DistributedSampler(80, 0, 1, 0, false), SmallCrop(), Options(0));
  std::vector<absl::StatusCode> codes;
  loader.StartEpoch(0);
  for (int i = 0; i < 10; ++i) codes.push_back(loader.Next().status().code());
  EXPECT_EQ(codes[0], absl::StatusCode::kOk);
  EXPECT_EQ(codes[6], absl::StatusCode::kOutOfRange);
  EXPECT_EQ(loader.skipped_images(), 0);
}

TEST_F(DataLoaderTest, ConfigurationErrorsComeFromNext) {
  DataLoader before(dataset_, DistributedSampler(53, 0, 1, 0), SmallCrop(), Options(1));
  EXPECT_EQ(before.Next().status().code(), absl::StatusCode::kFailedPrecondition);

  DataLoaderOptions o = Options(1);
  o.batch_size = 0;
  DataLoader bad_batch(dataset_, DistributedSampler(53, 0, 1, 0), SmallCrop(), o);
  bad_batch.StartEpoch(0);
  EXPECT_THAT(bad_batch.Next().status().message(), HasSubstr("batch_size"));

  TransformOptions t = SmallCrop();
  t.mean = {0.1, 0.2};
  DataLoader bad_transform(dataset_, DistributedSampler(53, 0, 1, 0), t, Options(2));
  bad_transform.StartEpoch(0);
  EXPECT_EQ(bad_transform.Next().status().code(), absl::StatusCode::kInvalidArgument);
}

// Records how many intra-op threads LibTorch would use on the thread that
// calls Get().
class ThreadProbeDataset : public Dataset {
 public:
  int64_t size() const override { return 16; }
  absl::StatusOr<Example> Get(int64_t index) const override {
    observed_ = at::get_num_threads();
    return Example{torch::zeros({1, 4, 4}, torch::kUInt8), 0};
  }
  int channels() const override { return 1; }
  int num_classes() const override { return 1; }
  std::string Describe() const override { return "probe"; }
  mutable std::atomic<int> observed_{0};
};

TEST(DataLoaderThreadsTest, WorkersRunTensorOpsOnOneThread) {
  const int caller_threads = at::get_num_threads();
  auto probe = std::make_shared<ThreadProbeDataset>();
  TransformOptions t;
  t.size = 4;
  t.mean = {0.5};
  t.std = {0.5};
  DataLoader loader(probe, DistributedSampler(16, 0, 1, 0), t, Options(2, 4));
  loader.StartEpoch(0);
  ASSERT_TRUE(loader.Next().ok());
  EXPECT_EQ(probe->observed_.load(), 1);
  // The caller's own setting is untouched.
  EXPECT_EQ(at::get_num_threads(), caller_threads);
}

TEST_F(DataLoaderTest, PinMemoryIsHarmlessWithoutCuda) {
  DataLoaderOptions o = Options(1);
  o.pin_memory = true;
  DataLoader loader(dataset_, DistributedSampler(53, 0, 1, 0), SmallCrop(), o);
  std::vector<Batch> batches = Drain(loader, 0);
  ASSERT_EQ(batches.size(), 6u);
  if (torch::cuda::is_available()) EXPECT_TRUE(batches[0].images.is_pinned());
  DataLoader plain(dataset_, DistributedSampler(53, 0, 1, 0), SmallCrop(), Options(0));
  ExpectSameBatches(Drain(plain, 0), batches);
}

// The real path: an image folder with one corrupt PNG.
TEST(DataLoaderImageFolderTest, CorruptImageSkippedOrFatal) {
  if (!ImageCodecAvailable(ImageFormat::kPng)) GTEST_SKIP() << "built without libpng";
  ::clmae::testing::TempDir root;
  for (int c = 0; c < 2; ++c) {
    ASSERT_TRUE(root.MakeDir(absl::StrCat("class", c)));
    for (int i = 0; i < 4; ++i) {
      const std::string path = root.File(absl::StrCat("class", c, "/", i, ".png"));
      if (c == 1 && i == 2) {
        ASSERT_TRUE(WriteFileAtomically(path, "\x89PNG\r\n\x1a\n garbage").ok());
        continue;
      }
      torch::Tensor image = torch::full({3, 10, 14}, 40 * i + 100 * c, torch::kUInt8);
      ASSERT_TRUE(WriteFileAtomically(path, *EncodePng(image)).ok());
    }
  }
  auto folder = ImageFolderDataset::Open(root.path(), 3);
  ASSERT_TRUE(folder.ok()) << folder.status();
  std::shared_ptr<const Dataset> dataset = std::move(*folder);

  TransformOptions eval;
  eval.kind = TransformOptions::Kind::kEval;
  eval.size = 8;
  DataLoader skipping(dataset, DistributedSampler(8, 0, 1, 0, false), eval, Options(2, 4));
  std::vector<Batch> batches = Drain(skipping, 0);
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].images.size(0), 4);
  EXPECT_EQ(batches[1].images.size(0), 3);
  EXPECT_EQ(skipping.skipped_images(), 1);
  EXPECT_EQ(batches[1].labels.sum().item<int64_t>(), 3);

  DataLoaderOptions strict = Options(2, 4);
  strict.fail_on_decode_error = true;
  DataLoader failing(dataset, DistributedSampler(8, 0, 1, 0, false), eval, strict);
  failing.StartEpoch(0);
  EXPECT_TRUE(failing.Next().ok());
  absl::StatusOr<std::optional<Batch>> bad = failing.Next();
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(bad.status().message(), HasSubstr("class1/2.png"));
}

}  // namespace
}  // namespace clmae
