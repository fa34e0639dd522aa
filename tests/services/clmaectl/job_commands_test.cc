// get, list, cancel and workers against the fake coordinator: each output
// format, paging and filters, and how errors become exit codes and advice.

#include "common/job_spec/proto_yaml.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/services/clmaectl/fake_coordinator.h"

namespace clmae::ctl::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The column at which `word` starts in `line`, or npos.
size_t Column(const std::string& line, const std::string& word) {
  // Columns are counted in characters: "λ" is two bytes, one column.
  const size_t byte = line.find(word);
  if (byte == std::string::npos) return byte;
  size_t column = 0;
  for (size_t i = 0; i < byte; ++i) column += (static_cast<unsigned char>(line[i]) & 0xC0) != 0x80;
  return column;
}

class JobCommandsTest : public ClmaectlTest {
 protected:
  void SetUp() override {
    ClmaectlTest::SetUp();
    v1::Job running = MakeJob("j-1", "tiny-fashion-mnist", v1::JOB_STATE_RUNNING, absl::Minutes(5));
    (*running.mutable_spec()->mutable_labels())["method"] = "clmae";
    *running.mutable_progress() = MakeProgress(420, 1000, 2, 10);
    running.mutable_spec()->mutable_train()->set_batch_size(64);
    running.mutable_spec()->mutable_resources()->set_world_size(2);
    running.mutable_start_time()->set_seconds(absl::ToUnixSeconds(Now() - absl::Minutes(4)));
    auto* rank = running.mutable_placement()->add_ranks();
    rank->set_rank(0);
    rank->set_worker_id("node-a");
    rank->set_device_kind("cpu");
    running.mutable_placement()->set_master_addr("10.0.0.1");
    running.mutable_placement()->set_master_port(29500);
    v1::Job done = MakeJob("j-0", "baseline", v1::JOB_STATE_SUCCEEDED, absl::Hours(3));
    (*done.mutable_result()->mutable_metrics())["knn_top1"] = 0.8123;
    v1::Job pending =
        MakeJob("j-2", "queued-with-a-long-name", v1::JOB_STATE_PENDING, absl::Seconds(20));
    fake_.jobs = {{"j-0", done}, {"j-1", running}, {"j-2", pending}};
    fake_.list_order = {pending, running, done};
  }
};

TEST_F(JobCommandsTest, GetTableIsALabelledBlock) {
  RunResult r = Run({"get", "j-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ID:          j-1\n"));
  EXPECT_THAT(r.out, HasSubstr("Name:        tiny-fashion-mnist\n"));
  EXPECT_THAT(r.out, HasSubstr("Labels:      method=clmae\n"));
  EXPECT_THAT(r.out, HasSubstr("State:       RUNNING (attempt 1, 0 restarts)\n"));
  EXPECT_THAT(r.out, HasSubstr("(5m ago)"));
  fake_.jobs["j-1"].set_attempt(3);
  fake_.jobs["j-1"].set_restarts(1);
  fake_.jobs["j-1"].set_preemptions(1);
  EXPECT_THAT(Run({"get", "j-1"}).out,
              HasSubstr("State:       RUNNING (attempt 3, 1 restarts, 1 preemptions)\n"));
  EXPECT_THAT(r.out, HasSubstr("[########------------]  42%  epoch 3/10  step 420/1000"));
  EXPECT_THAT(r.out, HasSubstr("λ_cl:        +0.200\n"));
  EXPECT_THAT(r.out, HasSubstr("mae 0.4123 m.rec 0.2100 gauss 0.0123 kl 0.0042 div 0.1500"));
  // 580 steps x 64 images x 2 ranks at 128 images/s = 580 s.
  EXPECT_THAT(r.out, HasSubstr("128.0 images/s, ETA 9m40s"));
  EXPECT_THAT(r.out, HasSubstr("rank 0 on node-a (cpu:0); master 10.0.0.1:29500"));
  EXPECT_THAT(r.out, Not(HasSubstr("Result:")));

  r = Run({"get", "j-0"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Result:     knn_top1 0.8123\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("Progress:")));
}

TEST_F(JobCommandsTest, GetJsonAndYamlReadBackToTheSameJob) {
  RunResult r = Run({"get", "j-1", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  v1::Job from_json;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &from_json).ok()) << r.out;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(from_json, fake_.jobs["j-1"]));
  EXPECT_THAT(r.out, HasSubstr("\"state\": \"JOB_STATE_RUNNING\""));
  EXPECT_THAT(r.out, HasSubstr("\"total_steps\": \"1000\""));  // proto field names

  r = Run({"get", "j-1", "-o", "yaml"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, MessageToYaml(fake_.jobs["j-1"]));
  EXPECT_THAT(r.out, HasSubstr("state: JOB_STATE_RUNNING\n"));
}

TEST_F(JobCommandsTest, GetUnknownJobIsNotFound) {
  RunResult r = Run({"get", "j-404"});
  EXPECT_EQ(r.code, 4);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "error: job j-404 not found (see 'clmaectl list')\n");
}

TEST_F(JobCommandsTest, ListTablePagesThroughAndAlignsColumns) {
  RunResult r = Run({"list"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_THAT(lines[0], StartsWith("ID   NAME                     STATE      ATTEMPT  PROGRESS"));
  EXPECT_THAT(lines[1], StartsWith("j-2  queued-with-a-long-name  PENDING    1        -"));
  EXPECT_THAT(lines[2], StartsWith("j-1  tiny-fashion-mnist       RUNNING    1        42%"));
  EXPECT_THAT(lines[3], StartsWith("j-0  baseline                 SUCCEEDED  1        -"));
  // Every column starts where its header does, λ_cl (two bytes, one column)
  // included.
  EXPECT_EQ(Column(lines[2], "3/10"), Column(lines[0], "EPOCH"));
  EXPECT_EQ(Column(lines[2], "420/1000"), Column(lines[0], "STEP"));
  EXPECT_EQ(Column(lines[2], "+0.200"), Column(lines[0], "λ_cl"));
  EXPECT_EQ(Column(lines[2], "0.4123"), Column(lines[0], "MAE"));
  EXPECT_EQ(Column(lines[2], "5m"), Column(lines[0], "AGE"));
  EXPECT_EQ(Column(lines[3], "3h"), Column(lines[0], "AGE"));
  EXPECT_EQ(Column(lines[1], "20s"), Column(lines[0], "AGE"));
  // Three jobs at the fake's default page of 2: two pages, the second asked
  // for with the first's token.
  const auto requests = fake_.list_requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].page_token(), "");
  EXPECT_EQ(requests[1].page_token(), "2");
}

TEST_F(JobCommandsTest, ListSendsFiltersAndStopsAtTheLimit) {
  RunResult r = Run({"list", "--state", "running,pending", "--label", "method=clmae", "--limit",
                     "1", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto requests = fake_.list_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_THAT(requests[0].states(), ElementsAre(v1::JOB_STATE_RUNNING, v1::JOB_STATE_PENDING));
  ASSERT_EQ(requests[0].label_selector().size(), 1u);
  EXPECT_EQ(requests[0].label_selector().at("method"), "clmae");
  EXPECT_EQ(requests[0].page_size(), 1);
  v1::ListJobsResponse listed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &listed).ok()) << r.out;
  ASSERT_EQ(listed.jobs_size(), 1);
  EXPECT_EQ(listed.jobs(0).id(), "j-2");
  EXPECT_EQ(listed.next_page_token(), "");
}

TEST_F(JobCommandsTest, ListYamlHasEveryJob) {
  RunResult r = Run({"list", "-o", "yaml"});
  ASSERT_EQ(r.code, 0) << r.err;
  v1::ListJobsResponse listed;
  ASSERT_TRUE(MessageFromYaml(r.out, &listed).ok()) << r.out;
  ASSERT_EQ(listed.jobs_size(), 3);
  EXPECT_EQ(listed.jobs(2).id(), "j-0");
}

TEST_F(JobCommandsTest, ListOfNothingSaysSoOnStderr) {
  fake_.list_order.clear();
  RunResult r = Run({"list", "--state", "failed"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "no jobs match\n");
}

TEST_F(JobCommandsTest, CancelSendsTheReason) {
  RunResult r = Run({"cancel", "j-1", "--reason", "wrong lr"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "job j-1 cancelled\n");
  ASSERT_EQ(fake_.cancels().size(), 1u);
  EXPECT_EQ(fake_.cancels()[0].reason(), "wrong lr");

  r = Run({"cancel", "j-0"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "job j-0 had already finished: SUCCEEDED\n");

  r = Run({"cancel", "j-2", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"state\": \"JOB_STATE_CANCELLED\""));

  EXPECT_EQ(Run({"cancel", "j-404"}).code, 4);
}

TEST_F(JobCommandsTest, WorkersTable) {
  v1::Worker* gpu = fake_.workers.add_workers();
  gpu->set_id("gpu-node");
  gpu->set_address("10.0.0.7");
  gpu->set_state(v1::WORKER_STATE_READY);
  gpu->add_devices()->set_index(0);
  gpu->add_devices()->set_index(1);
  gpu->set_free_devices(1);
  gpu->add_running_tasks()->set_job_id("j-1");
  gpu->mutable_last_heartbeat_time()->set_seconds(absl::ToUnixSeconds(Now() - absl::Seconds(3)));
  v1::Worker* cpu = fake_.workers.add_workers();
  cpu->set_id("cpu-node");
  cpu->set_address("10.0.0.8");
  cpu->set_state(v1::WORKER_STATE_LOST);
  cpu->set_cpu_slots(4);
  cpu->set_free_cpu_slots(4);

  RunResult r = Run({"workers"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "ID        ADDRESS   STATE  DEVICES  FREE    TASKS  LAST HEARTBEAT\n"
            "gpu-node  10.0.0.7  READY  2 cuda   1 cuda  1      3s ago\n"
            "cpu-node  10.0.0.8  LOST   4 cpu    4 cpu   0      -\n");

  r = Run({"workers", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  v1::ListWorkersResponse listed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &listed).ok()) << r.out;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(listed, fake_.workers));
}

TEST_F(JobCommandsTest, DrainAndUndrainANode) {
  v1::Worker* node = fake_.workers.add_workers();
  node->set_id("node-a");
  node->set_state(v1::WORKER_STATE_READY);

  RunResult r = Run({"drain", "node-a"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "worker node-a: DRAINING (no new ranks; its jobs checkpoint and move)\n");
  EXPECT_EQ(fake_.workers.workers(0).state(), v1::WORKER_STATE_DRAINING);

  r = Run({"drain", "node-a", "--undo"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "worker node-a: READY (takes ranks again)\n");

  r = Run({"drain", "node-b"});
  EXPECT_EQ(r.code, 4) << r.err;
  EXPECT_THAT(r.err, HasSubstr("node-b"));

  r = Run({"drain"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("missing NODE"));
}

TEST_F(JobCommandsTest, NoWorkersSaysWhatToStart) {
  RunResult r = Run({"workers"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("no workers attached (start clmae-worker on a node)"));
}

TEST_F(JobCommandsTest, TokenTravelsWithEveryCall) {
  fake_.required_token = "s3cret";
  RunResult r = Run({"get", "j-1"});
  EXPECT_EQ(r.code, 5);
  EXPECT_THAT(r.err, HasSubstr("did not accept the credentials: missing bearer token (no token "
                               "given: set --token or CLMAE_TOKEN)"));

  r = Run({"get", "j-1", "--token", "wrong"});
  EXPECT_EQ(r.code, 5);
  EXPECT_THAT(r.err, HasSubstr("invalid bearer token (set --token or CLMAE_TOKEN"));

  EXPECT_EQ(Run({"get", "j-1", "--token", "s3cret"}).code, 0);
  env["CLMAE_TOKEN"] = "s3cret";
  EXPECT_EQ(Run({"list"}).code, 0);
  EXPECT_EQ(Run({"workers"}).code, 0);
  EXPECT_EQ(Run({"cancel", "j-2"}).code, 0);
}

TEST_F(JobCommandsTest, ServerErrorsBecomeExitCodesAndAdvice) {
  struct Case {
    grpc::StatusCode code;
    int exit_code;
    std::string advice;
  };
  const Case cases[] = {
      {grpc::StatusCode::UNAVAILABLE, 3,
       "error: cannot reach the coordinator at localhost:50051: boom (is clmae-coordinator "
       "running? set --address or CLMAE_ADDRESS)"},
      {grpc::StatusCode::DEADLINE_EXCEEDED, 3, "did not answer within 30s: boom"},
      {grpc::StatusCode::PERMISSION_DENIED, 5, "error: permission denied: boom"},
      {grpc::StatusCode::INVALID_ARGUMENT, 1, "error: the coordinator rejected the request: boom"},
      {grpc::StatusCode::INTERNAL, 1, "error: INTERNAL: boom"},
      {grpc::StatusCode::NOT_FOUND, 4, "error: boom (see 'clmaectl list')"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.advice);
    fake_.fail_all = grpc::Status(c.code, "boom");
    for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
             {"get", "j-1"}, {"list"}, {"cancel", "j-1"}, {"workers"}}) {
      RunResult r = Run(args);
      EXPECT_EQ(r.code, c.exit_code) << args[0];
      EXPECT_THAT(r.err, HasSubstr(c.advice)) << args[0];
      EXPECT_EQ(r.out, "") << args[0];
    }
  }
}

TEST_F(JobCommandsTest, UsageErrorsExitTwoWithoutConnecting) {
  RunResult r = Run({"get"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "error: missing JOB (a job id) (see 'clmaectl get --help')\n");
  r = Run({"lsit"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "error: unknown command 'lsit' (see 'clmaectl help')\n");
  EXPECT_EQ(Run({"list", "--limit"}).code, 2);
  EXPECT_EQ(Run({"help", "nope"}).code, 2);
  EXPECT_THAT(stub_options, IsEmpty());
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(JobCommandsTest, NoArgumentsPrintsTheOverviewAndExitsTwo) {
  RunResult r = Run({});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("Usage: clmaectl"));
}

TEST_F(JobCommandsTest, HelpListsCommandsAndExitCodes) {
  RunResult r = Run({"help"});
  ASSERT_EQ(r.code, 0);
  for (const char* command : {"submit", "get", "list", "watch", "cancel", "workers"}) {
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("\n  ", command, " "))) << command;
  }
  EXPECT_THAT(r.out, HasSubstr("  3  the coordinator cannot be reached"));
  EXPECT_THAT(r.out, HasSubstr("  5  not authorized"));
  EXPECT_THAT(r.out, HasSubstr("CLMAE_ADDRESS"));

  r = Run({"list", "--help"});
  ASSERT_EQ(r.code, 0);
  EXPECT_THAT(r.out,
              HasSubstr("Usage: clmaectl list [--state S,...] [--label K=V]... [--limit N]"));
  EXPECT_THAT(r.out, HasSubstr("--label KEY=VALUE"));
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(JobCommandsTest, ConnectionOptionsReachTheChannel) {
  env["CLMAE_ADDRESS"] = "coord.example:7000";
  ASSERT_EQ(Run({"workers", "--tls-ca", "/ca.pem"}).code, 0);
  ASSERT_EQ(stub_options.size(), 1u);
  EXPECT_EQ(stub_options[0].address, "coord.example:7000");
  EXPECT_EQ(stub_options[0].tls_ca_file, "/ca.pem");
}

// The production factory against nothing listening: UNAVAILABLE, exit 3.
TEST(ClmaectlUnreachableTest, NoCoordinatorExitsThreeWithAdvice) {
  std::ostringstream out, err;
  const Terminal terminal{out, err};
  const std::string address = "unix:/nonexistent/clmae-coordinator.sock";
  const int code = RunClmaectl(
      {"list", "--address", address}, [](const std::string&) { return std::nullopt; },
      MakeCoordinatorStub, terminal);
  EXPECT_EQ(code, 3);
  EXPECT_THAT(err.str(), HasSubstr("error: cannot reach the coordinator at " + address));
  EXPECT_THAT(err.str(),
              HasSubstr("(is clmae-coordinator running? set --address or CLMAE_ADDRESS)"));
}

TEST(ClmaectlUnreachableTest, UnreadableTlsFileIsAUsageError) {
  std::ostringstream out, err;
  const Terminal terminal{out, err};
  const int code = RunClmaectl(
      {"list", "--tls-ca", "/nonexistent/ca.pem"}, [](const std::string&) { return std::nullopt; },
      MakeCoordinatorStub, terminal);
  EXPECT_EQ(code, 2);
  EXPECT_THAT(err.str(), HasSubstr("cannot set up the connection to localhost:50051"));
  EXPECT_THAT(err.str(), HasSubstr("/nonexistent/ca.pem"));
}

}  // namespace
}  // namespace clmae::ctl::testing
