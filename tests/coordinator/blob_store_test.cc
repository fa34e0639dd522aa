#include "coordinator/blob_store.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class FixedFreeSpace : public StorageIo {
 public:
  explicit FixedFreeSpace(int64_t free) : free_(free) {}
  absl::StatusOr<int64_t> FreeBytes(const std::string&) override { return free_; }

 private:
  const int64_t free_;
};

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/clmae_blobs_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    auto store = BlobStore::Open(dir_ + "/store", std::make_shared<FixedFreeSpace>(1000000));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes `bytes` to a temp file and installs it under its digest.
  absl::Status Store(const std::string& bytes) {
    auto temp = store_->NewTemp(static_cast<int64_t>(bytes.size()), 0);
    if (!temp.ok()) return temp.status();
    if (absl::Status s = (*temp)->Append(bytes); !s.ok()) return s;
    const std::string digest = (*temp)->HexDigest();
    if (absl::Status s = (*temp)->Sync(); !s.ok()) return s;
    return store_->Install(**temp, digest);
  }
  std::vector<std::string> Files(const std::string& sub) {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir_ + "/store/" + sub)) {
      if (e.is_regular_file()) out.push_back(e.path().filename().string());
    }
    return out;
  }

  std::string dir_;
  std::unique_ptr<BlobStore> store_;
};

TEST_F(BlobStoreTest, InstallNamesTheBlobByItsDigestAndReusesIdenticalOnes) {
  ASSERT_TRUE(Store("hello").ok());
  ASSERT_TRUE(Store("hello").ok());
  const std::string digest = Sha256Hex("hello");
  EXPECT_TRUE(fs::exists(dir_ + "/store/blobs/" + digest.substr(0, 2) + "/" + digest));
  EXPECT_THAT(Files("blobs"), ElementsAre(digest));
  EXPECT_THAT(Files("tmp"), IsEmpty());
  EXPECT_EQ(store_->stored_bytes(), 5);
  ASSERT_TRUE(store_->Remove(digest).ok());
  EXPECT_FALSE(store_->Contains(digest));
  EXPECT_EQ(store_->stored_bytes(), 0);
  EXPECT_TRUE(store_->Remove(digest).ok());  // absent is fine
}

TEST_F(BlobStoreTest, NamesThatAreNotDigestsAreRefused) {
  EXPECT_FALSE(store_->Remove("../../etc/passwd").ok());
  EXPECT_FALSE(store_->OpenReader("../x", 0, 1).ok());
  EXPECT_FALSE(store_->Contains("../x"));
}

TEST_F(BlobStoreTest, ReservedSpaceCountsUntilWrittenOrDropped) {
  // 1,000,000 bytes free; 100,000 must stay free.
  auto first = store_->NewTemp(600000, 100000);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = store_->NewTemp(600000, 100000);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(second.status().message(), HasSubstr("600000 of them promised"));
  first->reset();
  EXPECT_TRUE(store_->NewTemp(600000, 100000).ok());
}

TEST_F(BlobStoreTest, AppendPastTheDeclaredSizeFailsAndRemovesTheFile) {
  auto temp = store_->NewTemp(3, 0);
  ASSERT_TRUE(temp.ok());
  EXPECT_TRUE((*temp)->Append("ab").ok());
  EXPECT_EQ((*temp)->Append("cd").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Files("tmp"), IsEmpty());
  EXPECT_EQ((*temp)->Append("c").code(), absl::StatusCode::kInvalidArgument);  // sticky
}

TEST_F(BlobStoreTest, SweepKeepsOnlyReferencedBlobs) {
  ASSERT_TRUE(Store("kept").ok());
  ASSERT_TRUE(Store("orphan").ok());
  std::ofstream(dir_ + "/store/tmp/upload-stale") << "x";
  const std::string kept = Sha256Hex("kept");
  // A file whose name is a referenced digest but in the wrong prefix folder.
  fs::create_directories(dir_ + "/store/blobs/zz");
  std::ofstream(dir_ + "/store/blobs/zz/" + kept) << "kept";
  ASSERT_TRUE(store_->Sweep({kept}).ok());
  EXPECT_THAT(Files("blobs"), ElementsAre(kept));
  EXPECT_THAT(Files("tmp"), IsEmpty());
  EXPECT_EQ(store_->stored_bytes(), 4);
}

TEST_F(BlobStoreTest, ReaderReadsARangeAndReportsAShortFile) {
  ASSERT_TRUE(Store("0123456789").ok());
  auto reader = store_->OpenReader(Sha256Hex("0123456789"), 3, 10);
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(*(*reader)->Read(4), "3456");
  EXPECT_EQ(*(*reader)->Read(100), "789");
  EXPECT_EQ(*(*reader)->Read(100), "");
  // A record claiming more bytes than the file holds.
  auto longer = store_->OpenReader(Sha256Hex("0123456789"), 8, 12);
  ASSERT_TRUE(longer.ok());
  EXPECT_EQ((*longer)->Read(100).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store_->OpenReader(Sha256Hex("missing"), 0, 1).status().code(),
            absl::StatusCode::kNotFound);
}

// Overwrites the byte at `at` of the blob of `digest` on disk.
void FlipByte(const std::string& store_dir, const std::string& digest, int64_t at) {
  const std::string path = store_dir + "/blobs/" + digest.substr(0, 2) + "/" + digest;
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(file.is_open()) << path;
  file.seekg(at);
  const char c = static_cast<char>(file.get());
  file.seekp(at);
  file.put(static_cast<char>(c ^ 0x01));
}

TEST_F(BlobStoreTest, ReaderWithholdsTheLastBytesOfABlobWhoseDigestDiffers) {
  ASSERT_TRUE(Store("0123456789").ok());
  const std::string digest = Sha256Hex("0123456789");
  ASSERT_NO_FATAL_FAILURE(FlipByte(dir_ + "/store", digest, 5));
  auto reader = store_->OpenReader(digest, 0, 10);
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(*(*reader)->Read(4), "0123");
  const absl::StatusOr<std::string> last = (*reader)->Read(100);
  EXPECT_EQ(last.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(last.status().message(), HasSubstr("SHA-256"));
  EXPECT_THAT(last.status().message(), HasSubstr(digest));
  EXPECT_EQ((*reader)->Read(100).status().code(), absl::StatusCode::kDataLoss) << "sticky";
}

TEST_F(BlobStoreTest, ReaderFromAnOffsetVerifiesTheBytesBeforeIt) {
  ASSERT_TRUE(Store("0123456789").ok());
  const std::string digest = Sha256Hex("0123456789");
  // Healthy: the offset changes nothing but what is returned.
  auto healthy = store_->OpenReader(digest, 6, 10);
  ASSERT_TRUE(healthy.ok());
  EXPECT_EQ(*(*healthy)->Read(100), "6789");
  EXPECT_EQ(*(*healthy)->Read(100), "");
  // Damage before the offset is found though those bytes are never sent.
  ASSERT_NO_FATAL_FAILURE(FlipByte(dir_ + "/store", digest, 1));
  auto reader = store_->OpenReader(digest, 6, 10);
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(*(*reader)->Read(2), "67");
  EXPECT_EQ((*reader)->Read(2).status().code(), absl::StatusCode::kDataLoss);
  // An offset at the very end still checks the whole file.
  auto at_end = store_->OpenReader(digest, 10, 10);
  ASSERT_TRUE(at_end.ok());
  EXPECT_EQ((*at_end)->Read(100).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(BlobStoreTest, ReaderReportsAFileLongerThanTheRecord) {
  ASSERT_TRUE(Store("0123456789").ok());
  const std::string digest = Sha256Hex("0123456789");
  std::ofstream(dir_ + "/store/blobs/" + digest.substr(0, 2) + "/" + digest, std::ios::app)
      << "tail";
  auto reader = store_->OpenReader(digest, 0, 10);
  ASSERT_TRUE(reader.ok());
  const absl::StatusOr<std::string> all = (*reader)->Read(100);
  EXPECT_EQ(all.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(all.status().message(), HasSubstr("holds 14 bytes, the record says 10"));
}

TEST_F(BlobStoreTest, InstallReplacesABlobWhoseBytesRotted) {
  ASSERT_TRUE(Store("hello").ok());
  const std::string digest = Sha256Hex("hello");
  ASSERT_NO_FATAL_FAILURE(FlipByte(dir_ + "/store", digest, 0));
  ASSERT_TRUE(Store("hello").ok());
  auto reader = store_->OpenReader(digest, 0, 5);
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(*(*reader)->Read(100), "hello");
  EXPECT_THAT(Files("tmp"), IsEmpty());
  EXPECT_EQ(store_->stored_bytes(), 5);
}

}  // namespace
}  // namespace clmae
