#include "coordinator/job_store.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clmae {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

class JobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/clmae_job_store_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/jobs.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<JobStore> OpenStore() {
    auto store = JobStore::Open(JobStoreOptions{.path = path_});
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  static v1::JobSpec Spec(const std::string& name, std::map<std::string, std::string> labels = {}) {
    v1::JobSpec spec;
    spec.set_name(name);
    for (const auto& [k, v] : labels) (*spec.mutable_labels())[k] = v;
    spec.mutable_resources()->set_world_size(2);
    return spec;
  }
  // Runs SQL on the file with a separate raw connection.
  void RawExec(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }

  std::string dir_;
  std::string path_;
  const absl::Time t0_ = absl::FromUnixSeconds(1700000000);
};

TEST_F(JobStoreTest, SubmitStoresAPendingJobWithItsEvent) {
  auto store = OpenStore();
  auto outcome = store->Submit(Spec("a"), "", t0_);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_TRUE(outcome->created);
  EXPECT_EQ(outcome->job.state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(outcome->job.attempt(), 1);
  EXPECT_EQ(outcome->job.submit_time().seconds(), 1700000000);
  auto got = store->Get(outcome->job.id());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->spec().name(), "a");
  auto events = store->Events(outcome->job.id());
  ASSERT_TRUE(events.ok());
  ASSERT_THAT(*events, SizeIs(1));
  EXPECT_EQ((*events)[0].to_state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(store->Get("job-nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(JobStoreTest, RequestIdMakesSubmitIdempotent) {
  auto store = OpenStore();
  auto first = store->Submit(Spec("a"), "req-1", t0_);
  ASSERT_TRUE(first.ok());
  auto retry = store->Submit(Spec("a"), "req-1", t0_ + absl::Seconds(1));
  ASSERT_TRUE(retry.ok());
  EXPECT_FALSE(retry->created);
  EXPECT_EQ(retry->job.id(), first->job.id());
  auto other = store->Submit(Spec("b"), "req-1", t0_);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(other.status().message(), HasSubstr("req-1"));
  EXPECT_THAT(other.status().message(), HasSubstr(first->job.id()));
  // Empty request ids never collide.
  ASSERT_TRUE(store->Submit(Spec("a"), "", t0_).ok());
  ASSERT_TRUE(store->Submit(Spec("a"), "", t0_).ok());
  auto page = store->List(ListJobsQuery{});
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(page->jobs, SizeIs(3));
}

TEST_F(JobStoreTest, TransitionIsCheckedAndAppendsAnEvent) {
  auto store = OpenStore();
  v1::Job job = store->Submit(Spec("a"), "", t0_)->job;
  v1::Job next = job;
  next.set_state(v1::JOB_STATE_RUNNING);
  auto illegal = store->Transition(next, v1::JOB_STATE_PENDING, "skip", t0_);
  EXPECT_EQ(illegal.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(illegal.status().message(), HasSubstr("PENDING cannot change to RUNNING"));

  next.set_state(v1::JOB_STATE_SCHEDULED);
  next.mutable_placement()->set_master_port(29500);
  auto stale = store->Transition(next, v1::JOB_STATE_RUNNING, "wrong from", t0_);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);

  auto event = store->Transition(next, v1::JOB_STATE_PENDING, "placed", t0_ + absl::Seconds(2));
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_EQ(event->from_state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(event->to_state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(event->message(), "placed");
  EXPECT_EQ(store->Get(job.id())->placement().master_port(), 29500);
  auto events = store->Events(job.id());
  ASSERT_THAT(*events, SizeIs(2));
  EXPECT_LT((*events)[0].seq(), (*events)[1].seq());
  // Update keeps the state and needs it unchanged.
  next.mutable_result()->mutable_metrics()->insert({"knn_top1", 0.5});
  EXPECT_TRUE(store->Update(next).ok());
  next.set_state(v1::JOB_STATE_RUNNING);
  EXPECT_EQ(store->Update(next).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(JobStoreTest, JobsRecordTheirOwnerAndEventsWhoCausedThem) {
  auto store = OpenStore();
  v1::Job alice = store->Submit(Spec("a"), "req-a", t0_, "alice")->job;
  v1::Job bob = store->Submit(Spec("b"), "", t0_, "bob")->job;
  EXPECT_EQ(alice.owner(), "alice");
  EXPECT_EQ(store->Get(bob.id())->owner(), "bob");
  // Another principal's retry with the same request id gets nothing of it.
  auto stolen = store->Submit(Spec("a"), "req-a", t0_, "bob");
  EXPECT_EQ(stolen.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(stolen.status().message(), ::testing::Not(HasSubstr(alice.id())));
  EXPECT_TRUE(store->Submit(Spec("a"), "req-a", t0_, "alice").ok());

  v1::Job next = alice;
  next.set_state(v1::JOB_STATE_SCHEDULED);
  ASSERT_TRUE(store->Transition(next, v1::JOB_STATE_PENDING, "placed", t0_).ok());
  v1::Job cancelled = next;
  cancelled.set_state(v1::JOB_STATE_CANCELLED);
  ASSERT_TRUE(store->Transition(cancelled, v1::JOB_STATE_SCHEDULED, "cancelled", t0_, "ops").ok());
  auto events = store->Events(alice.id());
  ASSERT_TRUE(events.ok());
  ASSERT_THAT(*events, SizeIs(3));
  EXPECT_EQ((*events)[0].principal(), "alice");
  EXPECT_EQ((*events)[1].principal(), kCoordinatorPrincipal);
  EXPECT_EQ((*events)[2].principal(), "ops");

  ListJobsQuery mine;
  mine.owner = "bob";
  auto page = store->List(mine);
  ASSERT_TRUE(page.ok());
  ASSERT_THAT(page->jobs, SizeIs(1));
  EXPECT_EQ(page->jobs[0].id(), bob.id());
  mine.owner = "carol";
  EXPECT_THAT(store->List(mine)->jobs, SizeIs(0));
  EXPECT_THAT(store->List(ListJobsQuery{})->jobs, SizeIs(2));
}

TEST_F(JobStoreTest, AStoreFromBeforePrincipalsGainsOwnersAndKeepsItsJobs) {
  std::string job_id;
  {
    auto store = OpenStore();
    job_id = store->Submit(Spec("old"), "", t0_)->job.id();
  }
  // Back to schema 2: what a store written before principals looks like.
  RawExec(
      "DROP INDEX jobs_by_owner; ALTER TABLE jobs DROP COLUMN owner; "
      "ALTER TABLE events DROP COLUMN principal; DELETE FROM schema_migrations WHERE version = 3; "
      "PRAGMA user_version = 2");
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto old = store->Get(job_id);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->owner(), "");
  ListJobsQuery mine;
  mine.owner = "alice";
  EXPECT_THAT(store->List(mine)->jobs, SizeIs(0));  // an ownerless job is nobody's
  ASSERT_TRUE(store->Submit(Spec("new"), "", t0_, "alice").ok());
  EXPECT_THAT(store->List(mine)->jobs, SizeIs(1));
  EXPECT_EQ((*store->Events(job_id))[0].principal(), "");
}

// Concurrent writers share commits (group commit); each acknowledged write
// is durable on its own and a refused write in the same transaction undoes
// only itself.
TEST_F(JobStoreTest, ConcurrentWritesAreEachDurableAndARefusedOneUndoesOnlyItself) {
  auto store = OpenStore();
  std::vector<v1::Job> base;
  for (int i = 0; i < 8; ++i) base.push_back(store->Submit(Spec("base"), "", t0_)->job);
  constexpr int kThreads = 16;
  constexpr int kPerThread = 25;
  absl::Mutex mu;
  std::vector<std::string> acked;
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string request = absl::StrCat("t", t, "-", i);
        auto outcome = store->Submit(Spec("c"), request, t0_);
        // PENDING -> RUNNING is illegal: refused, whatever shares its commit.
        v1::Job skip = base[t % base.size()];
        skip.set_state(v1::JOB_STATE_RUNNING);
        auto illegal = store->Transition(skip, v1::JOB_STATE_PENDING, "skip", t0_);
        // The same request id with another spec is refused too.
        auto reused = store->Submit(Spec("other"), request, t0_);
        absl::MutexLock lock(&mu);
        if (!outcome.ok() || !outcome->created) {
          errors.push_back(absl::StrCat(request, ": ", outcome.status().ToString()));
        } else {
          acked.push_back(outcome->job.id());
        }
        if (illegal.status().code() != absl::StatusCode::kFailedPrecondition) {
          errors.push_back(absl::StrCat("transition: ", illegal.status().ToString()));
        }
        if (reused.status().code() != absl::StatusCode::kAlreadyExists) {
          errors.push_back(absl::StrCat("reused ", request, ": ", reused.status().ToString()));
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(errors, SizeIs(0)) << (errors.empty() ? "" : errors.front());
  ASSERT_THAT(acked, SizeIs(kThreads * kPerThread));
  EXPECT_THAT(std::set<std::string>(acked.begin(), acked.end()), SizeIs(acked.size()));

  store.reset();
  store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (const std::string& id : acked) {
    auto job = store->Get(id);
    ASSERT_TRUE(job.ok()) << id << ": " << job.status();
    EXPECT_EQ(job->state(), v1::JOB_STATE_PENDING);
    EXPECT_THAT(*store->Events(id), SizeIs(1));
  }
  for (const v1::Job& job : base) {
    EXPECT_EQ(store->Get(job.id())->state(), v1::JOB_STATE_PENDING);
    EXPECT_THAT(*store->Events(job.id()), SizeIs(1));
  }
  EXPECT_THAT(*store->LoadActive(), SizeIs(base.size() + acked.size()));
}

TEST_F(JobStoreTest, ListFiltersByStateAndLabelsInPages) {
  auto store = OpenStore();
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    auto outcome = store->Submit(
        Spec("j" + std::to_string(i), {{"team", i % 2 == 0 ? "vision" : "nlp"}, {"i", "x"}}), "",
        t0_);
    ASSERT_TRUE(outcome.ok());
    ids.push_back(outcome->job.id());
  }
  v1::Job cancelled = store->Get(ids[4]).value();
  cancelled.set_state(v1::JOB_STATE_CANCELLED);
  ASSERT_TRUE(store->Transition(cancelled, v1::JOB_STATE_PENDING, "user", t0_).ok());

  std::vector<std::string> seen;
  ListJobsQuery query{.page_size = 2};
  for (int pages = 0;; ++pages) {
    ASSERT_LT(pages, 5);
    auto page = store->List(query);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const v1::Job& j : page->jobs) seen.push_back(j.id());
    if (page->next_page_token.empty()) break;
    query.page_token = page->next_page_token;
  }
  EXPECT_THAT(seen, ElementsAre(ids[4], ids[3], ids[2], ids[1], ids[0]));

  auto vision = store->List(ListJobsQuery{.labels = {{"team", "vision"}, {"i", "x"}}});
  ASSERT_TRUE(vision.ok());
  ASSERT_THAT(vision->jobs, SizeIs(3));
  auto pending_vision =
      store->List(ListJobsQuery{.states = {v1::JOB_STATE_PENDING}, .labels = {{"team", "vision"}}});
  ASSERT_THAT(pending_vision->jobs, SizeIs(2));
  EXPECT_EQ(pending_vision->jobs[0].id(), ids[2]);
  EXPECT_TRUE(store->List(ListJobsQuery{.labels = {{"team", "audio"}}})->jobs.empty());

  EXPECT_EQ(store->List(ListJobsQuery{.page_token = "garbage"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->List(ListJobsQuery{.page_size = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto active = store->LoadActive();
  ASSERT_THAT(*active, SizeIs(4));
  EXPECT_EQ((*active)[0].id(), ids[0]);  // oldest first
}

TEST_F(JobStoreTest, SchemaIsVersionedAndNewerSchemasAreRefused) {
  { ASSERT_NE(OpenStore(), nullptr); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), JobStore::kSchemaVersion);
  sqlite3_finalize(stmt);
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  { ASSERT_NE(OpenStore(), nullptr); }  // reopening migrates nothing and works

  RawExec("PRAGMA user_version = 99");
  auto newer = JobStore::Open(JobStoreOptions{.path = path_});
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(newer.status().message(), HasSubstr("99"));
}

// A process that acknowledged submissions and a transition, then died by
// SIGKILL in the middle of a large write transaction whose pages had already
// spilled into the WAL: reopening shows every acknowledged write and nothing
// of the unfinished one.
TEST_F(JobStoreTest, ReopenAfterCrashMidTransactionKeepsCommittedState) {
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(pipefd[0]);
    auto store = JobStore::Open(JobStoreOptions{.path = path_});
    if (!store.ok()) _exit(2);
    for (int i = 0; i < 20; ++i) {
      auto outcome = (*store)->Submit(Spec("j" + std::to_string(i)), "r" + std::to_string(i), t0_);
      if (!outcome.ok()) _exit(3);
      std::string line = outcome->job.id() + "\n";  // acknowledged to the "client"
      if (write(pipefd[1], line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(4);
    }
    auto first =
        (*store)->List(ListJobsQuery{.states = {v1::JOB_STATE_PENDING}, .page_size = 1000});
    if (!first.ok()) _exit(8);
    v1::Job scheduled = first->jobs.back();  // the oldest
    scheduled.set_state(v1::JOB_STATE_SCHEDULED);
    if (!(*store)->Transition(scheduled, v1::JOB_STATE_PENDING, "placed", t0_).ok()) _exit(9);
    if (write(pipefd[1], "scheduled\n", 10) != 10) _exit(4);
    sqlite3* raw = nullptr;
    if (sqlite3_open(path_.c_str(), &raw) != SQLITE_OK) _exit(5);
    const char* sql =
        "PRAGMA cache_size = 2; BEGIN IMMEDIATE;"
        "UPDATE jobs SET state = 6, job = randomblob(200000);"
        "INSERT INTO events (job_id, time_us, from_state, to_state, attempt, message)"
        "  SELECT id, 0, 1, 6, 1, 'never committed' FROM jobs;";
    if (sqlite3_exec(raw, sql, nullptr, nullptr, nullptr) != SQLITE_OK) _exit(6);
    raise(SIGKILL);  // mid-transaction: no COMMIT, no close
    _exit(7);
  }
  close(pipefd[1]);
  std::string acked;
  char buf[256];
  for (ssize_t n; (n = read(pipefd[0], buf, sizeof(buf))) > 0;) acked.append(buf, n);
  close(pipefd[0]);
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(wstatus)) << "child exited with " << WEXITSTATUS(wstatus);
  ASSERT_EQ(WTERMSIG(wstatus), SIGKILL);
  // The unfinished transaction did reach the disk (spilled WAL frames).
  struct stat wal {};
  ASSERT_EQ(stat((path_ + "-wal").c_str(), &wal), 0);
  EXPECT_GT(wal.st_size, 20 * 200000);

  std::vector<std::string> ids = absl::StrSplit(acked, '\n', absl::SkipEmpty());
  ASSERT_THAT(ids, SizeIs(21));
  ASSERT_EQ(ids.back(), "scheduled");
  ids.pop_back();
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (size_t i = 0; i < ids.size(); ++i) {
    auto job = store->Get(ids[i]);
    ASSERT_TRUE(job.ok()) << ids[i] << ": " << job.status();
    EXPECT_EQ(job->state(), i == 0 ? v1::JOB_STATE_SCHEDULED : v1::JOB_STATE_PENDING);
    EXPECT_THAT(*store->Events(ids[i]), SizeIs(i == 0 ? 2 : 1));
  }
  EXPECT_THAT(*store->LoadActive(), SizeIs(20));
  // Retrying an acknowledged submission finds it.
  auto retry = store->Submit(Spec("j3"), "r3", t0_);
  ASSERT_TRUE(retry.ok());
  EXPECT_FALSE(retry->created);
  EXPECT_EQ(retry->job.id(), ids[3]);
}

}  // namespace
}  // namespace clmae
