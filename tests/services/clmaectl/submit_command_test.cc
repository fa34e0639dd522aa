// `clmaectl submit`: a spec is checked before anything is sent, the request
// id is printed before the call so a retry can reuse it, and the server's
// refusals are reported with what to do.

#include <filesystem>
#include <fstream>
#include <regex>

#include "common/job_spec/job_spec_yaml.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/services/clmaectl/fake_coordinator.h"

namespace clmae::ctl::testing {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

class SubmitCommandTest : public ClmaectlTest {
 protected:
  static std::string Example() {
    return std::string(CLMAE_SOURCE_DIR) + "/examples/tiny-fashion-mnist.yaml";
  }

  // Writes `yaml` to a file of this test's own and returns its path.
  std::string WriteSpec(const std::string& yaml) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::filesystem::path path = std::filesystem::temp_directory_path() /
                                       (std::string("clmaectl-") + info->name() + ".yaml");
    std::ofstream(path) << yaml;
    written_.push_back(path);
    return path.string();
  }

  void TearDown() override {
    for (const auto& path : written_) std::filesystem::remove(path);
    ClmaectlTest::TearDown();
  }

  std::vector<std::filesystem::path> written_;
};

TEST_F(SubmitCommandTest, SubmitsTheSpecWithAPrintedRandomRequestId) {
  RunResult r = Run({"submit", "-f", Example()});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(fake_.submits().size(), 1u);
  const v1::SubmitJobRequest sent = fake_.submits()[0];
  absl::StatusOr<v1::JobSpec> spec = LoadJobSpecFile(Example());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(sent.spec(), *spec));
  EXPECT_THAT(sent.request_id(),
              MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"));
  // The id the user can retry with is the one that was sent.
  EXPECT_THAT(r.err, HasSubstr("with request id " + sent.request_id() + "\n"));
  EXPECT_EQ(r.out,
            "job j-new submitted (tiny-fashion-mnist, PENDING)\n"
            "follow it: clmaectl watch j-new\n");

  // A second invocation makes a different id.
  ASSERT_EQ(Run({"submit", "-f", Example()}).code, 0);
  ASSERT_EQ(fake_.submits().size(), 2u);
  EXPECT_NE(fake_.submits()[1].request_id(), sent.request_id());
}

TEST_F(SubmitCommandTest, GivenRequestIdIsSentAndJsonPrintsTheJob) {
  RunResult r = Run({"submit", "--file", Example(), "--request-id=retry-7", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(fake_.submits().size(), 1u);
  EXPECT_EQ(fake_.submits()[0].request_id(), "retry-7");
  v1::Job job;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &job).ok()) << r.out;
  EXPECT_EQ(job.id(), "j-new");
  EXPECT_EQ(job.request_id(), "retry-7");
}

TEST_F(SubmitCommandTest, BadYamlNamesLineAndColumnAndSendsNothing) {
  const std::string path = WriteSpec("name: broken\nmodel:\n  preset: tiny\n  patch_sise: 4\n");
  RunResult r = Run({"submit", "-f", path});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr(path));
  EXPECT_THAT(r.err, HasSubstr("model.patch_sise (line 4, column 3): unknown field"));
  EXPECT_THAT(r.err, HasSubstr("did you mean patch_size?"));
  EXPECT_THAT(r.err, HasSubstr("nothing was submitted"));
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(SubmitCommandTest, YamlSyntaxErrorNamesTheLine) {
  const std::string path = WriteSpec("name: x\nmodel: [unclosed\n");
  RunResult r = Run({"submit", "-f", path});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, ContainsRegex("line [0-9]+, column [0-9]+"));
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(SubmitCommandTest, SpecThatFailsValidationNamesTheFieldAndSendsNothing) {
  const std::string path = WriteSpec("name: x\nmasking:\n  mask_ratio: 1.5\n");
  RunResult r = Run({"submit", "-f", path});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr(path + ": masking.mask_ratio"));
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(SubmitCommandTest, MissingFileSendsNothing) {
  RunResult r = Run({"submit", "-f", "/nonexistent/job.yaml"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent/job.yaml"));
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(SubmitCommandTest, ServerRefusalPrintsItsMessage) {
  fake_.submit_status =
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "data.path: /data/x does not exist");
  RunResult r = Run({"submit", "-f", Example()});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: the coordinator rejected the request: data.path: /data/x "
                               "does not exist"));
}

TEST_F(SubmitCommandTest, ReusedRequestIdWithAnotherSpecSaysHowToSubmitAnew) {
  fake_.submit_status = grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "different spec");
  RunResult r = Run({"submit", "-f", Example(), "--request-id", "r-1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("request id r-1 was already used with a different spec"));
  EXPECT_THAT(r.err, HasSubstr("omit --request-id"));
}

TEST_F(SubmitCommandTest, UnavailableTellsHowToRetrySafely) {
  fake_.fail_all = grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused");
  RunResult r = Run({"submit", "-f", Example(), "--request-id", "r-9"});
  EXPECT_EQ(r.code, 3);
  EXPECT_THAT(r.err, HasSubstr("cannot reach the coordinator"));
  EXPECT_THAT(r.err, HasSubstr("clmaectl submit -f " + Example() + " --request-id r-9"));
}

}  // namespace
}  // namespace clmae::ctl::testing
