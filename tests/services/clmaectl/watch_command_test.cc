// `clmaectl watch` against scripted WatchJob streams: the lines it prints
// off a terminal, the redraw on one, the result at the end, and the exit
// code.

#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "services/clmaectl/watch_view.h"
#include "tests/services/clmaectl/fake_coordinator.h"

namespace clmae::ctl::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

v1::JobUpdate Snapshot(const v1::Job& job) {
  v1::JobUpdate update;
  update.set_job_id(job.id());
  *update.mutable_snapshot() = job;
  return update;
}

v1::JobUpdate Event(const std::string& id, v1::JobState from, v1::JobState to, int attempt,
                    const std::string& message = "") {
  v1::JobUpdate update;
  update.set_job_id(id);
  update.mutable_event()->set_job_id(id);
  update.mutable_event()->set_from_state(from);
  update.mutable_event()->set_to_state(to);
  update.mutable_event()->set_attempt(attempt);
  update.mutable_event()->set_message(message);
  return update;
}

v1::JobUpdate ProgressUpdate(const std::string& id, const v1::Progress& progress) {
  v1::JobUpdate update;
  update.set_job_id(id);
  *update.mutable_progress() = progress;
  return update;
}

class WatchCommandTest : public ClmaectlTest {
 protected:
  // A job that goes PENDING -> RUNNING, reports twice and ends in `end`;
  // GetJob then returns it with `metrics` or `failure`.
  void ScriptJob(const std::string& id, v1::JobState end, const std::string& failure = "") {
    v1::Job job = MakeJob(id, "tiny", v1::JOB_STATE_PENDING, absl::Minutes(1));
    job.mutable_spec()->mutable_train()->set_batch_size(32);
    FakeCoordinator::WatchScript& script = fake_.watches[id];
    script.updates.push_back(Snapshot(job));
    script.updates.push_back(Event(id, v1::JOB_STATE_PENDING, v1::JOB_STATE_RUNNING, 1));
    script.updates.push_back(ProgressUpdate(id, MakeProgress(100, 400, 0, 4)));
    script.updates.push_back(ProgressUpdate(id, MakeProgress(300, 400, 2, 4)));
    script.updates.push_back(Event(id, v1::JOB_STATE_RUNNING, end, 1, failure));
    job.set_state(end);
    job.set_failure_message(failure);
    *job.mutable_progress() = MakeProgress(400, 400, 3, 4);
    job.mutable_start_time()->set_seconds(absl::ToUnixSeconds(Now() - absl::Seconds(90)));
    job.mutable_end_time()->set_seconds(absl::ToUnixSeconds(Now()));
    if (end == v1::JOB_STATE_SUCCEEDED) {
      (*job.mutable_result()->mutable_metrics())["knn_top1"] = 0.8123;
      (*job.mutable_result()->mutable_metrics())["probe_top1"] = 0.84;
    }
    fake_.jobs[id] = job;
  }
};

TEST_F(WatchCommandTest, OneLinePerUpdateOffATerminalThenTheResult) {
  ScriptJob("j-1", v1::JOB_STATE_SUCCEEDED);
  RunResult r = Run({"watch", "j-1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("\x1b[")));
  EXPECT_THAT(r.out, Not(HasSubstr("\r")));
  // 300 steps left... at step 100: 300 x 32 images / 128 images/s = 75 s.
  EXPECT_THAT(
      Lines(r.out),
      ElementsAre(
          "j-1  PENDING", "j-1: PENDING -> RUNNING (attempt 1)",
          "j-1  RUNNING     [#####---------------]  25%  epoch 1/4  step 100/400  λ_cl +0.200  "
          "mae 0.4123 m.rec 0.2100 gauss 0.0123 kl 0.0042 div 0.1500  128.0 img/s  ETA 1m15s",
          "j-1  RUNNING     [###############-----]  75%  epoch 3/4  step 300/400  λ_cl +0.200  "
          "mae 0.4123 m.rec 0.2100 gauss 0.0123 kl 0.0042 div 0.1500  128.0 img/s  ETA 25s",
          "j-1: RUNNING -> SUCCEEDED (attempt 1)",
          "j-1 SUCCEEDED after 1m30s: knn_top1 0.8123, probe_top1 0.8400"));
}

TEST_F(WatchCommandTest, FailedJobExitsOneWithItsReason) {
  ScriptJob("j-1", v1::JOB_STATE_FAILED, "rank 1 exited with code 134");
  RunResult r = Run({"watch", "j-1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out,
              HasSubstr("j-1: RUNNING -> FAILED (attempt 1): rank 1 exited with code 134\n"));
  EXPECT_THAT(r.out, HasSubstr("j-1 FAILED after 1m30s: rank 1 exited with code 134\n"));
}

TEST_F(WatchCommandTest, SeveralJobsExitZeroOnlyIfAllSucceeded) {
  ScriptJob("j-1", v1::JOB_STATE_SUCCEEDED);
  ScriptJob("j-2", v1::JOB_STATE_SUCCEEDED);
  RunResult r = Run({"watch", "j-1", "j-2"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("j-1 SUCCEEDED"));
  EXPECT_THAT(r.out, HasSubstr("j-2 SUCCEEDED"));

  ScriptJob("j-3", v1::JOB_STATE_CANCELLED, "cancelled by alice");
  r = Run({"watch", "j-1", "j-3"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("j-1 SUCCEEDED"));
  EXPECT_THAT(r.out, HasSubstr("j-3 CANCELLED after 1m30s: cancelled by alice"));
}

TEST_F(WatchCommandTest, RedrawsInPlaceOnATerminal) {
  ScriptJob("j-1", v1::JOB_STATE_SUCCEEDED);
  RunResult r = Run({"watch", "j-1"}, /*tty=*/true);
  EXPECT_EQ(r.code, 0) << r.err;
  // The first draw has nothing to move over; every later one goes back up
  // over the one live line and clears it.
  EXPECT_THAT(r.out, StartsWith("\r\x1b[2Kj-1  PENDING\n\x1b[1A"));
  EXPECT_THAT(r.out, HasSubstr("\x1b[1A\r\x1b[2Kj-1: PENDING -> RUNNING (attempt 1)\n"
                               "\r\x1b[2Kj-1  RUNNING"));
  EXPECT_THAT(r.out, HasSubstr("\x1b[1A\r\x1b[2Kj-1  RUNNING     [###############-----]  75%"));
  // The result goes below the live line, which is left as last drawn.
  EXPECT_THAT(r.out, HasSubstr("\n\x1b[1A\r\x1b[2Kj-1: RUNNING -> SUCCEEDED (attempt 1)\n"
                               "\r\x1b[2Kj-1  SUCCEEDED"));
  EXPECT_THAT(r.out, ::testing::EndsWith("\nj-1 SUCCEEDED after 1m30s: knn_top1 0.8123, "
                                         "probe_top1 0.8400\n"));
}

TEST_F(WatchCommandTest, TerminalLinesAreCutToTheWidth) {
  std::ostringstream out;
  WatchView view(out, /*tty=*/true, /*terminal_width=*/20);
  v1::Job job = MakeJob("j-1", "tiny", v1::JOB_STATE_RUNNING, absl::Minutes(1));
  *job.mutable_progress() = MakeProgress(1, 10, 0, 1);
  view.Apply(Snapshot(job));
  // 19 columns: a line that fills the last one makes some terminals wrap.
  EXPECT_EQ(out.str(), "\r\x1b[2Kj-1  RUNNING     [#\n");
}

TEST_F(WatchCommandTest, JsonModePrintsEveryUpdateAndTheFinalJob) {
  ScriptJob("j-1", v1::JOB_STATE_SUCCEEDED);
  RunResult r = Run({"watch", "j-1", "-o", "json"});
  EXPECT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 6u) << r.out;  // five streamed updates + the final job
  for (const std::string& line : lines) {
    v1::JobUpdate update;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &update).ok()) << line;
    EXPECT_EQ(update.job_id(), "j-1");
  }
  v1::JobUpdate last;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines.back(), &last).ok());
  EXPECT_EQ(last.snapshot().result().metrics().at("knn_top1"), 0.8123);
  // The human summary stays off stdout.
  EXPECT_THAT(r.err, HasSubstr("j-1 SUCCEEDED after 1m30s"));
}

TEST_F(WatchCommandTest, YamlModeIsAStreamOfDocuments) {
  ScriptJob("j-1", v1::JOB_STATE_SUCCEEDED);
  RunResult r = Run({"watch", "j-1", "-o", "yaml"});
  EXPECT_EQ(r.code, 0) << r.err;
  size_t documents = 0;
  for (const std::string& line : Lines(r.out)) documents += line == "---";
  EXPECT_EQ(documents, 6u);
  EXPECT_THAT(r.out, HasSubstr("to_state: JOB_STATE_SUCCEEDED\n"));
}

TEST_F(WatchCommandTest, UnknownJobIsNotFoundAndStopsTheOtherStreams) {
  // j-1's stream never ends by itself: the watch returns only because the
  // failure of j-404's cancels it (without that, this test hangs).
  fake_.watches["j-1"].hang = true;
  RunResult r = Run({"watch", "j-1", "j-404"});
  EXPECT_EQ(r.code, 4);
  EXPECT_THAT(r.err, HasSubstr("job j-404 not found (see 'clmaectl list')"));
}

TEST_F(WatchCommandTest, StreamThatEndsBeforeTheJobFinishesIsUnavailable) {
  fake_.watches["j-1"].updates.push_back(
      Snapshot(MakeJob("j-1", "tiny", v1::JOB_STATE_RUNNING, absl::Minutes(1))));
  RunResult r = Run({"watch", "j-1"});
  EXPECT_EQ(r.code, 3);
  EXPECT_THAT(r.err, HasSubstr("the watch of j-1 ended before the job finished"));
  EXPECT_THAT(r.err, HasSubstr("run the same watch again"));
}

TEST_F(WatchCommandTest, LostCoordinatorMidStreamIsUnavailable) {
  ScriptJob("j-1", v1::JOB_STATE_SUCCEEDED);
  fake_.watches["j-1"].updates.resize(3);
  fake_.watches["j-1"].end = grpc::Status(grpc::StatusCode::UNAVAILABLE, "socket closed");
  RunResult r = Run({"watch", "j-1"});
  EXPECT_EQ(r.code, 3);
  EXPECT_THAT(r.out, HasSubstr("step 100/400"));
  EXPECT_THAT(r.err, HasSubstr("cannot reach the coordinator at localhost:50051: socket closed"));
}

TEST_F(WatchCommandTest, AllFollowsEveryJobUntilTheStreamEnds) {
  ScriptJob("j-1", v1::JOB_STATE_SUCCEEDED);
  ScriptJob("j-2", v1::JOB_STATE_FAILED, "oom");
  FakeCoordinator::WatchScript& all = fake_.watches[""];
  all.updates = fake_.watches["j-1"].updates;
  for (const auto& update : fake_.watches["j-2"].updates) all.updates.push_back(update);
  all.end = grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator shutting down");
  RunResult r = Run({"watch", "--all"});
  EXPECT_EQ(r.code, 3);
  EXPECT_THAT(r.out, HasSubstr("j-1: RUNNING -> SUCCEEDED"));
  EXPECT_THAT(r.out, HasSubstr("j-2: RUNNING -> FAILED (attempt 1): oom"));
  EXPECT_THAT(r.err, HasSubstr("coordinator shutting down"));
}

TEST_F(WatchCommandTest, RestartShowsTheAttempt) {
  v1::Job job = MakeJob("j-1", "tiny", v1::JOB_STATE_RUNNING, absl::Minutes(1));
  std::ostringstream out;
  WatchView view(out, /*tty=*/false, 0);
  view.Apply(Snapshot(job));
  view.Apply(
      Event("j-1", v1::JOB_STATE_RUNNING, v1::JOB_STATE_RESTARTING, 2, "worker node-b lost"));
  view.Apply(Event("j-1", v1::JOB_STATE_RESTARTING, v1::JOB_STATE_PENDING, 2));
  view.Apply(ProgressUpdate("j-1", MakeProgress(0, 10, 0, 1)));
  const std::vector<std::string> lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[1], "j-1: RUNNING -> RESTARTING (attempt 2): worker node-b lost");
  EXPECT_THAT(lines[3], StartsWith("j-1  PENDING (attempt 2)  [--------------------]   0%"));
  EXPECT_EQ(view.Find("j-1")->attempt(), 2);
  EXPECT_EQ(view.Find("j-1")->state(), v1::JOB_STATE_PENDING);
}

}  // namespace
}  // namespace clmae::ctl::testing
