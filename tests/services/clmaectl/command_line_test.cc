// clmaectl's command line: both flag spellings, flags before and after the
// command, environment fallbacks, and usage errors that say where to look.

#include "services/clmaectl/command_line.h"

#include <map>
#include <variant>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae::ctl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

class CommandLineTest : public ::testing::Test {
 protected:
  absl::StatusOr<CommandLine> Parse(const std::vector<std::string>& args) {
    return ParseCommandLine(args, [this](const std::string& name) -> std::optional<std::string> {
      auto it = env_.find(name);
      if (it == env_.end()) return std::nullopt;
      return it->second;
    });
  }

  // The message of a usage error; fails the test when parsing succeeds.
  std::string UsageError(const std::vector<std::string>& args) {
    absl::StatusOr<CommandLine> line = Parse(args);
    EXPECT_FALSE(line.ok());
    if (line.ok()) return "";
    EXPECT_EQ(line.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(line.status().message());
  }

  std::map<std::string, std::string> env_;
};

TEST_F(CommandLineTest, DefaultsWithoutFlagsOrEnvironment) {
  absl::StatusOr<CommandLine> line = Parse({"workers"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_TRUE(std::holds_alternative<WorkersOptions>(line->command));
  EXPECT_EQ(line->global.client.address, "localhost:50051");
  EXPECT_EQ(line->global.client.token, "");
  EXPECT_EQ(line->global.output, OutputFormat::kTable);
  EXPECT_EQ(line->global.timeout, absl::Seconds(30));
}

TEST_F(CommandLineTest, BothFlagSpellingsBeforeAndAfterTheCommand) {
  absl::StatusOr<CommandLine> line =
      Parse({"--address=coord:7000", "-o", "json", "get", "j-1", "--token", "t0k", "--timeout=2m"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(line->global.client.address, "coord:7000");
  EXPECT_EQ(line->global.client.token, "t0k");
  EXPECT_EQ(line->global.output, OutputFormat::kJson);
  EXPECT_EQ(line->global.timeout, absl::Minutes(2));
  ASSERT_TRUE(std::holds_alternative<GetOptions>(line->command));
  EXPECT_EQ(std::get<GetOptions>(line->command).job_id, "j-1");

  line = Parse({"get", "j-2", "-o=yaml", "--timeout", "1.5"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(line->global.output, OutputFormat::kYaml);
  EXPECT_EQ(line->global.timeout, absl::Milliseconds(1500));
}

TEST_F(CommandLineTest, EnvironmentFillsWhatFlagsDoNotAndFlagsWin) {
  env_ = {{"CLMAE_ADDRESS", "env-host:1"}, {"CLMAE_TOKEN", "env-token"},
          {"CLMAE_TLS_CA", "/etc/ca.pem"}, {"CLMAE_TLS_CERT", "/etc/c.pem"},
          {"CLMAE_TLS_KEY", "/etc/k.pem"}, {"CLMAE_TLS_SERVER_NAME", "coord.example"}};
  absl::StatusOr<CommandLine> line = Parse({"workers", "--token", "flag-token"});
  ASSERT_TRUE(line.ok()) << line.status();
  const ClientOptions& client = line->global.client;
  EXPECT_EQ(client.address, "env-host:1");
  EXPECT_EQ(client.token, "flag-token");
  EXPECT_EQ(client.tls_ca_file, "/etc/ca.pem");
  EXPECT_EQ(client.tls_cert_file, "/etc/c.pem");
  EXPECT_EQ(client.tls_key_file, "/etc/k.pem");
  EXPECT_EQ(client.tls_server_name, "coord.example");

  line = Parse({"workers", "--tls-ca", "/mine/ca.pem", "--address", "other:2"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(line->global.client.tls_ca_file, "/mine/ca.pem");
  EXPECT_EQ(line->global.client.address, "other:2");
}

TEST_F(CommandLineTest, EmptyEnvironmentVariableIsUnset) {
  env_ = {{"CLMAE_ADDRESS", ""}};
  absl::StatusOr<CommandLine> line = Parse({"workers"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(line->global.client.address, "localhost:50051");
}

TEST_F(CommandLineTest, Submit) {
  absl::StatusOr<CommandLine> line = Parse({"submit", "-f", "job.yaml", "--request-id=abc"});
  ASSERT_TRUE(line.ok()) << line.status();
  const auto& submit = std::get<SubmitOptions>(line->command);
  EXPECT_EQ(submit.spec_file, "job.yaml");
  EXPECT_EQ(submit.request_id, "abc");

  line = Parse({"submit", "--file=other.yaml"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(std::get<SubmitOptions>(line->command).spec_file, "other.yaml");
  EXPECT_EQ(std::get<SubmitOptions>(line->command).request_id, "");

  EXPECT_THAT(UsageError({"submit"}), HasSubstr("missing -f FILE"));
  EXPECT_THAT(UsageError({"submit", "-f", "a.yaml", "--request-id", std::string(129, 'x')}),
              HasSubstr("at most 128"));
  EXPECT_THAT(UsageError({"submit", "-f", "a.yaml", "extra"}),
              HasSubstr("unexpected argument 'extra'"));
}

TEST_F(CommandLineTest, ListFilters) {
  absl::StatusOr<CommandLine> line =
      Parse({"list", "--state", "running,PENDING", "--state=job_state_failed", "--label",
             "method=clmae", "--label=team=vision", "--limit", "7"});
  ASSERT_TRUE(line.ok()) << line.status();
  const auto& list = std::get<ListOptions>(line->command);
  EXPECT_THAT(list.states,
              ElementsAre(v1::JOB_STATE_RUNNING, v1::JOB_STATE_PENDING, v1::JOB_STATE_FAILED));
  EXPECT_THAT(list.labels, ElementsAre(Pair("method", "clmae"), Pair("team", "vision")));
  EXPECT_EQ(list.limit, 7);

  const std::string bad_state = UsageError({"list", "--state", "runing"});
  EXPECT_THAT(bad_state, HasSubstr("unknown state 'runing'"));
  EXPECT_THAT(bad_state,
              HasSubstr("pending,scheduled,running,restarting,succeeded,failed,cancelled"));
  EXPECT_THAT(bad_state, HasSubstr("clmaectl list --help"));
  EXPECT_THAT(UsageError({"list", "--label", "novalue"}), HasSubstr("is not KEY=VALUE"));
  EXPECT_THAT(UsageError({"list", "--limit", "0"}), HasSubstr("not a positive number"));
  EXPECT_THAT(UsageError({"list", "--limit", "many"}), HasSubstr("not a positive number"));
}

TEST_F(CommandLineTest, WatchJobsOrAll) {
  absl::StatusOr<CommandLine> line = Parse({"watch", "j-1", "j-2"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_THAT(std::get<WatchOptions>(line->command).job_ids, ElementsAre("j-1", "j-2"));
  EXPECT_FALSE(std::get<WatchOptions>(line->command).all);

  line = Parse({"watch", "--all"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_TRUE(std::get<WatchOptions>(line->command).all);

  EXPECT_THAT(UsageError({"watch"}), HasSubstr("missing JOB... (job ids) or --all"));
  EXPECT_THAT(UsageError({"watch", "j-1", "--all"}), HasSubstr("not both"));
  EXPECT_THAT(UsageError({"watch", "--all=yes"}), HasSubstr("--all takes no value"));
}

TEST_F(CommandLineTest, CancelWithReason) {
  absl::StatusOr<CommandLine> line = Parse({"cancel", "j-1", "--reason", "wrong lr"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(std::get<CancelOptions>(line->command).job_id, "j-1");
  EXPECT_EQ(std::get<CancelOptions>(line->command).reason, "wrong lr");
}

TEST_F(CommandLineTest, DoubleDashEndsFlags) {
  absl::StatusOr<CommandLine> line = Parse({"get", "--", "-odd-id"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(std::get<GetOptions>(line->command).job_id, "-odd-id");
}

TEST_F(CommandLineTest, UsageErrorsNameTheProblemAndWhereToLook) {
  EXPECT_THAT(UsageError({}), HasSubstr("no command given (see 'clmaectl help')"));
  EXPECT_THAT(UsageError({"frobnicate"}),
              HasSubstr("unknown command 'frobnicate' (see 'clmaectl help')"));
  EXPECT_THAT(UsageError({"get", "j-1", "--colour"}),
              HasSubstr("unknown flag '--colour' for get (see 'clmaectl get --help')"));
  // A command's flag is not another command's.
  EXPECT_THAT(UsageError({"get", "j-1", "--reason", "x"}), HasSubstr("unknown flag '--reason'"));
  EXPECT_THAT(UsageError({"get"}), HasSubstr("missing JOB"));
  EXPECT_THAT(UsageError({"get", "j-1", "j-2"}), HasSubstr("unexpected argument 'j-2'"));
  EXPECT_THAT(UsageError({"get", "j-1", "--address"}),
              HasSubstr("--address needs a value (--address HOST:PORT or --address=HOST:PORT)"));
  EXPECT_THAT(UsageError({"get", "j-1", "--token", "--timeout=1s"}),
              HasSubstr("--token needs a value"));
  EXPECT_THAT(UsageError({"get", "j-1", "-o", "xml"}),
              HasSubstr("'xml' is not an output format; use table, json or yaml"));
  EXPECT_THAT(UsageError({"get", "j-1", "--timeout", "soon"}), HasSubstr("is not a duration"));
  EXPECT_THAT(UsageError({"get", "j-1", "--timeout=-5s"}), HasSubstr("must be a positive"));
  EXPECT_THAT(UsageError({"get", "j-1", "--address="}), HasSubstr("--address is empty"));
}

TEST_F(CommandLineTest, HelpForms) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"help"}, {"--help"}, {"-h"}}) {
    absl::StatusOr<CommandLine> line = Parse(args);
    ASSERT_TRUE(line.ok()) << line.status();
    EXPECT_EQ(std::get<HelpCommand>(line->command).command, "");
  }
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"help", "watch"}, {"watch", "--help"}, {"watch", "-h"}, {"--help", "watch"}}) {
    absl::StatusOr<CommandLine> line = Parse(args);
    ASSERT_TRUE(line.ok()) << line.status();
    EXPECT_EQ(std::get<HelpCommand>(line->command).command, "watch");
  }
  // --help wins over what else is missing.
  absl::StatusOr<CommandLine> line = Parse({"submit", "--help"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(std::get<HelpCommand>(line->command).command, "submit");
  EXPECT_THAT(UsageError({"help", "nope"}), HasSubstr("unknown command 'nope'"));
}

}  // namespace
}  // namespace clmae::ctl
