// Every job spec in examples/ loads and validates, so the examples a user
// copies from cannot rot.

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "common/job_spec/job_spec_validator.h"
#include "common/job_spec/job_spec_yaml.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using v1::JobSpec;

class ExamplesTest : public ::testing::Test {
 protected:
  static std::string ExamplesDir() { return std::string(CLMAE_SOURCE_DIR) + "/examples"; }

  // Loads and validates examples/<name>, failing the test on any error.
  static JobSpec LoadValid(const std::string& name) {
    const std::string path = ExamplesDir() + "/" + name;
    auto spec = LoadJobSpecFile(path);
    EXPECT_TRUE(spec.ok()) << spec.status();
    if (!spec.ok()) return JobSpec();
    const absl::Status valid = ValidateJobSpec(*spec);
    EXPECT_TRUE(valid.ok()) << path << ": " << valid;
    return *spec;
  }
};

TEST_F(ExamplesTest, EveryExampleLoadsAndValidates) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(ExamplesDir())) {
    const std::string extension = entry.path().extension().string();
    if (entry.is_regular_file() && (extension == ".yaml" || extension == ".yml")) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  EXPECT_THAT(names, ::testing::IsSupersetOf({"tiny-fashion-mnist.yaml",
                                              "tiny-fashion-mnist-plain-mae.yaml",
                                              "vit-base-imagefolder.yaml"}));
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    const JobSpec spec = LoadValid(name);
    // The file name is the job name, so runs/<name> matches the file.
    EXPECT_EQ(spec.name() + ".yaml", name);
  }
}

TEST_F(ExamplesTest, PlainMaeBaselineHasTheSameBudgetAsClMae) {
  JobSpec clmae = LoadValid("tiny-fashion-mnist.yaml");
  JobSpec plain = LoadValid("tiny-fashion-mnist-plain-mae.yaml");
  EXPECT_EQ(clmae.masking().mode(), v1::MaskingSpec::CLMAE);
  EXPECT_EQ(plain.masking().mode(), v1::MaskingSpec::PLAIN_MAE);
  // Apart from what names the run and the masking mode, the two are one spec.
  for (JobSpec* spec : {&clmae, &plain}) {
    spec->clear_name();
    spec->clear_labels();
    spec->mutable_masking()->clear_mode();
    spec->mutable_output()->clear_dir();
  }
  EXPECT_EQ(clmae.DebugString(), plain.DebugString());
}

TEST_F(ExamplesTest, TinyExampleIsSizedForACpu) {
  const JobSpec spec = LoadValid("tiny-fashion-mnist.yaml");
  EXPECT_EQ(spec.model().preset(), "tiny");
  EXPECT_EQ(spec.train().device(), "cpu");
  EXPECT_LE(spec.train().epochs(), 10);
  EXPECT_GT(spec.data().limit(), 0);
  EXPECT_TRUE(spec.eval().enabled());
  EXPECT_GT(spec.eval().test_limit(), 0);
  EXPECT_GT(spec.output().preview_every(), 0);
}

TEST_F(ExamplesTest, VitBaseExampleIsTheDistributedGpuSetting) {
  const JobSpec spec = LoadValid("vit-base-imagefolder.yaml");
  EXPECT_EQ(spec.model().preset(), "mae_vit_base_patch16");
  EXPECT_EQ(spec.data().kind(), v1::DataSpec::IMAGE_FOLDER);
  EXPECT_EQ(spec.train().precision(), v1::TrainSpec::BF16);
  EXPECT_EQ(spec.train().epochs(), 200);
  EXPECT_EQ(spec.resources().world_size(), 8);
}

}  // namespace
}  // namespace clmae
