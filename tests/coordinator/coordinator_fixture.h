#pragma once

// A Coordinator on a temporary store with a hand-driven clock, and agents
// that record what the coordinator sends them. No network.

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "coordinator/coordinator.h"
#include "gtest/gtest.h"

namespace clmae {

class RecordingSink : public AgentSink {
 public:
  void Send(const v1::CoordinatorMessage& message) override {
    absl::MutexLock lock(&mu_);
    messages_.push_back(message);
  }
  std::vector<v1::TaskAssignment> Assigns() {
    absl::MutexLock lock(&mu_);
    std::vector<v1::TaskAssignment> out;
    for (const auto& m : messages_) {
      if (m.has_assign()) out.push_back(m.assign().task());
    }
    return out;
  }
  std::vector<v1::Cancel> Cancels() {
    absl::MutexLock lock(&mu_);
    std::vector<v1::Cancel> out;
    for (const auto& m : messages_) {
      if (m.has_cancel()) out.push_back(m.cancel());
    }
    return out;
  }
  std::vector<v1::CoordinatorMessage> All() {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  void Clear() {
    absl::MutexLock lock(&mu_);
    messages_.clear();
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::CoordinatorMessage> messages_;
};

class CoordinatorFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/clmae_coordinator_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    Reopen();
  }
  void TearDown() override {
    coordinator_.reset();
    std::filesystem::remove_all(dir_);
  }

  virtual CoordinatorOptions Options() {
    CoordinatorOptions options;
    options.store_path = dir_ + "/coordinator.db";
    options.lease = absl::Seconds(10);
    options.heartbeat_interval = absl::Seconds(2);
    options.hang_timeout = absl::Seconds(60);
    options.cancel_grace = absl::Seconds(7);
    options.master_port_min = 29500;
    options.master_port_max = 29510;
    options.clock = [this] { return now_; };
    // Tests of the back-off set it; elsewhere a requeued job is placed at once.
    options.restart_backoff_min = absl::ZeroDuration();
    options.log = [this](absl::string_view line) {
      absl::MutexLock lock(&log_mu_);
      log_.emplace_back(line);
    };
    return options;
  }
  // What the coordinator logged so far.
  std::vector<std::string> Logged() {
    absl::MutexLock lock(&log_mu_);
    return log_;
  }
  // Drops the coordinator (as a crash would: the store is all that is left)
  // and opens a new one on the same store.
  void Reopen() {
    coordinator_.reset();
    auto opened = Coordinator::Open(Options());
    ASSERT_TRUE(opened.ok()) << opened.status();
    coordinator_ = std::move(*opened);
  }

  std::shared_ptr<RecordingSink> Attach(const std::string& worker_id, int cpu_slots,
                                        const std::vector<v1::Task>& running = {}) {
    v1::Register reg;
    reg.set_worker_id(worker_id);
    reg.set_address(worker_id + ".cluster");
    reg.set_cpu_slots(cpu_slots);
    for (const v1::Task& t : running) *reg.add_running_tasks() = t;
    auto sink = std::make_shared<RecordingSink>();
    EXPECT_TRUE(coordinator_->AgentAttached(reg, sink).ok());
    Settle();
    return sink;
  }

  static v1::JobSpec CpuSpec(const std::string& name, int world_size, int max_restarts = 3,
                             int priority = 0) {
    v1::JobSpec spec;
    spec.set_name(name);
    spec.mutable_train()->set_device("cpu");
    spec.mutable_resources()->set_world_size(world_size);
    spec.mutable_resources()->set_max_restarts(max_restarts);
    spec.mutable_resources()->set_priority(priority);
    return spec;
  }

  std::string Submit(const v1::JobSpec& spec, const std::string& request_id = "") {
    auto job = coordinator_->Submit(spec, request_id);
    EXPECT_TRUE(job.ok()) << job.status();
    Settle();
    return job.ok() ? job->id() : "";
  }

  v1::Job Get(const std::string& id) {
    auto job = coordinator_->Get(id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : v1::Job();
  }
  v1::JobState State(const std::string& id) { return Get(id).state(); }

  absl::Status Report(const std::string& worker_id, const v1::TaskAssignment& task,
                      v1::TaskStatus::State state, int exit_code = 0, int signal = 0,
                      const std::string& message = "") {
    v1::TaskStatus status;
    status.set_job_id(task.job_id());
    status.set_attempt(task.attempt());
    status.set_rank(task.rank());
    status.set_state(state);
    status.set_exit_code(exit_code);
    status.set_signal(signal);
    status.set_message(message);
    absl::Status recorded = coordinator_->TaskStatus(worker_id, status);
    Settle();
    return recorded;
  }
  // Waits until what the coordinator decided is durable and delivered: the
  // agent-stream calls and Submit do not wait for their effects.
  void Settle() { EXPECT_TRUE(coordinator_->Settle().ok()); }
  void Started(const std::string& worker_id, const std::vector<v1::TaskAssignment>& tasks) {
    for (const auto& t : tasks) ASSERT_TRUE(Report(worker_id, t, v1::TaskStatus::RUNNING).ok());
  }
  absl::Status Progress(const std::string& job_id, int attempt, int rank, int64_t step,
                        const std::string& phase = "") {
    v1::ReportProgressRequest request;
    request.set_job_id(job_id);
    request.set_attempt(attempt);
    request.set_rank(rank);
    request.mutable_progress()->set_step(step);
    request.mutable_progress()->set_phase(phase);
    return coordinator_->ReportProgress(request);
  }
  static v1::Task AsTask(const v1::TaskAssignment& a) {
    v1::Task t;
    t.set_job_id(a.job_id());
    t.set_attempt(a.attempt());
    t.set_rank(a.rank());
    t.set_device_index(a.device_index());
    t.set_device_kind(a.device_kind());
    return t;
  }
  // Moves the clock forward in heartbeat-sized steps, renewing the leases of
  // `alive` workers and ticking at each step.
  void Pass(absl::Duration d, const std::vector<std::string>& alive) {
    const absl::Time end = now_ + d;
    while (now_ < end) {
      now_ = std::min(end, now_ + absl::Seconds(2));
      for (const auto& w : alive) ASSERT_TRUE(coordinator_->Heartbeat(w).ok()) << w;
      ASSERT_TRUE(coordinator_->Tick(now_).ok());
    }
  }

  absl::Mutex log_mu_;
  std::vector<std::string> log_ ABSL_GUARDED_BY(log_mu_);
  std::string dir_;
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
  std::unique_ptr<Coordinator> coordinator_;
};

}  // namespace clmae
