#include "worker/engine/train/safetensors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "tests/worker/engine/small_model_config.h"
#include "worker/engine/train/weights.h"

namespace clmae {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("st-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(SafetensorsTest, RoundTripKeepsNamesDtypesShapesValuesAndOrder) {
  NamedTensors in = {{"b.weight", torch::randn({3, 4})},
                     {"a", torch::arange(5, torch::kInt64)},
                     {"half", torch::randn({2}).to(torch::kBFloat16)},
                     {"scalar", torch::tensor(3.5)}};
  ASSERT_TRUE(WriteSafetensors(Path("x.safetensors"), in, {{"step", "7"}}).ok());
  auto out = ReadSafetensors(Path("x.safetensors"));
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ((*out)[i].first, in[i].first);
    EXPECT_EQ((*out)[i].second.scalar_type(), in[i].second.scalar_type());
    EXPECT_TRUE(torch::equal((*out)[i].second, in[i].second)) << in[i].first;
  }
}

TEST_F(SafetensorsTest, HeaderIsTheStandardLayout) {
  ASSERT_TRUE(WriteSafetensors(Path("h.safetensors"), {{"w", torch::ones({2, 2})}}).ok());
  std::ifstream f(Path("h.safetensors"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), {});
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(static_cast<unsigned char>(bytes[i])) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 16);
  EXPECT_NE(bytes.find("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}"),
            std::string::npos);
}

TEST_F(SafetensorsTest, MalformedFilesAreRejectedWithTheReason) {
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(Path(name), std::ios::binary) << bytes;
    return Path(name);
  };
  EXPECT_EQ(ReadSafetensors(Path("missing")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadSafetensors(write("short", "abc")).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::string huge(8, '\xff');
  EXPECT_EQ(ReadSafetensors(write("huge", huge)).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::string header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,8]}}";
  std::string len(8, '\0');
  len[0] = static_cast<char>(header.size());
  auto st = ReadSafetensors(write("mismatch", len + header + std::string(8, '\0')));
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.status().message().find("'w'"), std::string::npos) << st.status();
}

ModelConfig Small() {
  auto c = testutil::SmallModelConfig(/*in_chans=*/1, /*patch_size=*/4);
  c.embed_dim = 8;
  c.depth = 2;
  c.masker_num_heads = 2;
  return c;
}

TEST_F(SafetensorsTest, WeightsExportUnderReferenceNamesAndImportBack) {
  torch::manual_seed(1);
  MaeVit mae(Small());
  MaskingNet masker(Small());
  auto all = NamedWeights(mae, masker, WeightSet::kAll);
  auto enc = NamedWeights(mae, masker, WeightSet::kEncoder);
  std::set<std::string> names;
  for (auto& [n, t] : all) names.insert(n);
  for (const char* key :
       {"patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.1.attn.qkv.weight",
        "norm.bias", "decoder_embed.weight", "mask_token", "decoder_pos_embed",
        "decoder_blocks.0.mlp.fc1.weight", "decoder_pred.weight", "masking_net.cls_token",
        "masking_net.pos_embed", "masking_net.blocks.0.norm1.weight",
        "masking_net.mlp_head.0.weight", "masking_net.mlp_head.1.bias"}) {
    EXPECT_TRUE(names.count(key)) << key;
  }
  for (auto& [n, t] : enc) {
    EXPECT_EQ(n.find("decoder"), std::string::npos);
    EXPECT_EQ(n.find("masking_net"), std::string::npos);
    EXPECT_NE(n, "mask_token");
  }
  ASSERT_TRUE(WriteSafetensors(Path("w.safetensors"), all).ok());

  torch::manual_seed(2);
  MaeVit mae2(Small());
  MaskingNet masker2(Small());
  auto read = ReadSafetensors(Path("w.safetensors"));
  ASSERT_TRUE(read.ok());
  ASSERT_TRUE(LoadWeights(*read, mae2, masker2).ok());
  auto all2 = NamedWeights(mae2, masker2, WeightSet::kAll);
  for (size_t i = 0; i < all.size(); ++i)
    EXPECT_TRUE(torch::equal(all[i].second, all2[i].second)) << all[i].first;
}

TEST_F(SafetensorsTest, EncoderOnlyFileInitialisesTheEncoder) {
  MaeVit mae(Small());
  MaskingNet masker(Small());
  auto enc = NamedWeights(mae, masker, WeightSet::kEncoder);
  MaeVit mae2(Small());
  MaskingNet masker2(Small());
  auto decoder_before = mae2->decoder_pred->weight.clone();
  ASSERT_TRUE(LoadWeights(enc, mae2, masker2).ok());
  EXPECT_TRUE(torch::equal(mae2->cls_token, mae->cls_token));
  EXPECT_TRUE(torch::equal(mae2->decoder_pred->weight, decoder_before));
}

TEST_F(SafetensorsTest, ImportNamesEveryMissingUnexpectedAndMisshapedKey) {
  MaeVit mae(Small());
  MaskingNet masker(Small());
  auto enc = NamedWeights(mae, masker, WeightSet::kEncoder);
  NamedTensors bad;
  for (auto& [n, t] : enc) {
    if (n == "norm.weight" || n == "blocks.1.norm2.bias") continue;  // missing
    if (n == "cls_token") {
      bad.emplace_back(n, torch::zeros({1, 1, 4}));
      continue;
    }  // mis-shaped
    bad.emplace_back(n, t);
  }
  bad.emplace_back("head.weight", torch::zeros({10, 8}));  // unexpected
  auto status = LoadWeights(bad, mae, masker);
  ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(status.message());
  for (const char* part :
       {"missing keys: blocks.1.norm2.bias, norm.weight", "unexpected keys: head.weight",
        "cls_token (file [1, 1, 4], model [1, 1, 8])"}) {
    EXPECT_NE(msg.find(part), std::string::npos) << part << " in " << msg;
  }
}

}  // namespace
}  // namespace clmae
