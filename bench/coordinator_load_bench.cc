// clmae-bench-coordinator: load on a real clmae-coordinator over loopback.
//
// Starts the coordinator binary on a fresh data folder, attaches N simulated
// agents (8 CUDA devices each, heartbeating, answering every Assign with
// RUNNING and, after --task_time, EXITED 0), then measures:
//   1. heartbeats handled per second (a flood, closed by an in-order probe)
//   2. durable submissions/s from --client_threads clients, and the latency
//      from SubmitJob sent to the last rank's Assign arriving at an agent
//   3. durable submissions/s while capacity is full (jobs stay PENDING),
//      storing --recovery_jobs more jobs
//   4. coordinator memory (VmRSS / VmHWM)
//   5. kill -9, restart on the same folder, time from exec to SERVING and
//      a GetJob answer; then every acknowledged job is looked for.
// Prints a line per figure and a final JSON line. Figures, not pass/fail.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/coordinator_process.h"
#include "bench/sim_agent_fleet.h"
#include "clmae/v1/coordinator.grpc.pb.h"
#include "grpcpp/client_context.h"

#ifndef CLMAE_COORDINATOR_BINARY
#define CLMAE_COORDINATOR_BINARY "clmae-coordinator"
#endif

ABSL_FLAG(int, agents, 1000, "simulated node agents");
ABSL_FLAG(int, gpus_per_agent, 8, "CUDA devices each agent registers");
ABSL_FLAG(int, agent_connections, 0, "TCP connections for the agents; 0 = one per agent");
ABSL_FLAG(int, submissions, 10000, "jobs submitted in the submit-to-assignment phase");
ABSL_FLAG(int, client_threads, 4, "client threads submitting (one connection each)");
ABSL_FLAG(int, recovery_jobs, 10000, "jobs stored (with full capacity) before the kill -9");
ABSL_FLAG(int, flood_heartbeats, 20, "heartbeats each agent writes back to back in the flood");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(1),
          "--heartbeat_interval given to the coordinator (agents use what it returns)");
ABSL_FLAG(absl::Duration, lease, absl::Seconds(20), "--lease given to the coordinator");
ABSL_FLAG(absl::Duration, task_time, absl::Milliseconds(500),
          "a simulated rank reports EXITED 0 this long after its Assign");
ABSL_FLAG(std::string, coordinator_binary, CLMAE_COORDINATOR_BINARY, "the clmae-coordinator");
ABSL_FLAG(bool, keep_data, false, "keep the temporary data folder (its path is printed)");

namespace clmae::bench {
namespace {

struct Submitted {
  std::string job_id;
  int world = 0;
  int64_t sent_ns = 0;
  int64_t acked_ns = 0;
};

struct SubmitRun {
  std::vector<Submitted> jobs;
  int64_t errors = 0;
  std::string first_error;
  double seconds = 0;
  double per_second() const { return seconds > 0 ? jobs.size() / seconds : 0; }
};

v1::JobSpec BenchSpec(int world) {
  v1::JobSpec spec;
  spec.set_name("load-bench");
  (*spec.mutable_labels())["bench"] = "coordinator-load";
  spec.mutable_data()->set_kind(v1::DataSpec::SYNTHETIC);
  spec.mutable_train()->set_device("cuda");
  spec.mutable_train()->set_max_steps(100);
  spec.mutable_resources()->set_world_size(world);
  spec.mutable_resources()->set_device_kind("cuda");
  return spec;
}

// `count` SubmitJob calls (world sizes 1..8, unique request ids) from
// `threads` threads, each on its own connection, back to back.
SubmitRun SubmitMany(const CoordinatorProcess& coordinator, const std::string& token, int count,
                     int threads, const std::string& prefix) {
  SubmitRun run;
  absl::Mutex mu;
  std::vector<std::thread> workers;
  const int64_t start = NowNs();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      auto stub = v1::Coordinator::NewStub(coordinator.NewChannel());
      std::vector<Submitted> mine;
      int64_t errors = 0;
      std::string first_error;
      for (int i = t; i < count; i += threads) {
        v1::SubmitJobRequest request;
        const int world = 1 + (i * 5) % 8;
        *request.mutable_spec() = BenchSpec(world);
        request.set_request_id(absl::StrCat(prefix, "-", i));
        grpc::ClientContext context;
        context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
        v1::Job job;
        const int64_t sent = NowNs();
        const grpc::Status status = stub->SubmitJob(&context, request, &job);
        const int64_t acked = NowNs();
        if (!status.ok()) {
          if (errors++ == 0) first_error = status.error_message();
          continue;
        }
        mine.push_back(Submitted{job.id(), world, sent, acked});
      }
      absl::MutexLock lock(&mu);
      run.jobs.insert(run.jobs.end(), mine.begin(), mine.end());
      if (run.errors == 0 && errors > 0) run.first_error = first_error;
      run.errors += errors;
    });
  }
  for (std::thread& w : workers) w.join();
  run.seconds = static_cast<double>(NowNs() - start) * 1e-9;
  return run;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return NAN;
  std::sort(values.begin(), values.end());
  const size_t rank = static_cast<size_t>(std::ceil(p * values.size()));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

// How far a figure is from its goal: > 1 means met (with that much room).
double GoalRatio(double measured, double goal, bool higher_is_better) {
  return higher_is_better ? measured / goal : goal / measured;
}

// Median milliseconds of a 4 KiB overwrite + fdatasync in `dir` (as a
// reused WAL is written): the floor under one durable commit on this disk.
double FsyncMillis(const std::string& dir) {
  constexpr int kBlocks = 50;
  const std::string path = dir + "/fsync-probe";
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return NAN;
  const std::string block(4096, 'x');
  std::vector<double> ms;
  bool ok = true;
  for (int i = 0; i < kBlocks && ok; ++i) ok = write(fd, block.data(), block.size()) == 4096;
  ok = ok && fsync(fd) == 0;
  for (int i = 0; i < kBlocks && ok; ++i) {
    const int64_t start = NowNs();
    ok = pwrite(fd, block.data(), block.size(), off_t{i} * 4096) == 4096 && fdatasync(fd) == 0;
    ms.push_back((NowNs() - start) * 1e-6);
  }
  close(fd);
  unlink(path.c_str());
  return ok ? Percentile(ms, 0.5) : NAN;
}

std::string RandomToken() {
  std::random_device rd;
  return absl::StrFormat("%016x%016x", (uint64_t{rd()} << 32) | rd(),
                         (uint64_t{rd()} << 32) | rd());
}

int Fail(const std::string& message, const std::string& log_path = "") {
  std::fprintf(stderr, "clmae-bench-coordinator: %s\n", message.c_str());
  if (!log_path.empty()) {
    std::fprintf(stderr, "coordinator log tail:\n%s\n", FileTail(log_path, 3000).c_str());
  }
  return 1;
}

int Run() {
  const int agents = absl::GetFlag(FLAGS_agents);
  const int gpus = absl::GetFlag(FLAGS_gpus_per_agent);
  const int submissions = absl::GetFlag(FLAGS_submissions);
  const int threads = std::max(1, absl::GetFlag(FLAGS_client_threads));
  const int recovery_jobs = absl::GetFlag(FLAGS_recovery_jobs);

  char dir_template[] = "/tmp/clmae-load-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return Fail("mkdtemp failed");
  const std::string dir = dir_template;
  CoordinatorProcessOptions process_options;
  process_options.binary = absl::GetFlag(FLAGS_coordinator_binary);
  process_options.data_dir = dir + "/data";
  process_options.log_path = dir + "/coordinator.log";
  process_options.client_token = RandomToken();
  process_options.worker_token = RandomToken();
  process_options.extra_flags = {
      absl::StrCat("--heartbeat_interval=",
                   absl::FormatDuration(absl::GetFlag(FLAGS_heartbeat_interval))),
      absl::StrCat("--lease=", absl::FormatDuration(absl::GetFlag(FLAGS_lease)))};
  const std::string& log = process_options.log_path;
  std::printf("clmae-bench-coordinator: %s, data in %s, %u hardware threads\n",
              process_options.binary.c_str(), dir.c_str(), std::thread::hardware_concurrency());
  const double fsync_ms = FsyncMillis(dir);
  std::printf("disk: 4 KiB overwrite + fdatasync takes %.2f ms (median of 50) in %s\n", fsync_ms,
              dir.c_str());

  absl::StatusOr<std::unique_ptr<CoordinatorProcess>> coordinator =
      CoordinatorProcess::Start(process_options, absl::Seconds(60));
  if (!coordinator.ok()) return Fail(coordinator.status().ToString(), log);
  std::printf("coordinator pid %d on %s: SERVING %.3f s after exec (empty store)\n",
              (*coordinator)->pid(), (*coordinator)->address().c_str(),
              (*coordinator)->ready().health);

  // --- Agents ---------------------------------------------------------------
  FleetOptions fleet_options;
  fleet_options.address = (*coordinator)->address();
  fleet_options.token = process_options.worker_token;
  fleet_options.agents = agents;
  fleet_options.gpus_per_agent = gpus;
  fleet_options.connections = absl::GetFlag(FLAGS_agent_connections);
  fleet_options.task_time = absl::GetFlag(FLAGS_task_time);
  SimAgentFleet fleet(fleet_options);
  int64_t t0 = NowNs();
  if (absl::Status started = fleet.Start(absl::Seconds(120)); !started.ok()) {
    return Fail(started.ToString(), log);
  }
  const double attach_s = (NowNs() - t0) * 1e-9;
  std::printf("%d agents x %d GPUs attached and registered in %.2f s (heartbeat every %s)\n",
              agents, gpus, attach_s,
              absl::FormatDuration(fleet.coordinator_heartbeat_interval()).c_str());

  // --- 1. Heartbeat flood -----------------------------------------------------
  fleet.SetHeartbeats(false);
  const int flood = absl::GetFlag(FLAGS_flood_heartbeats);
  absl::StatusOr<double> flood_s = fleet.FloodHeartbeats(flood, absl::Seconds(120));
  if (!flood_s.ok()) return Fail(flood_s.status().ToString(), log);
  const double flood_rate = static_cast<double>(agents) * flood / *flood_s;
  std::printf(
      "heartbeats handled: %d in %.3f s = %.0f/s (flood: %d per agent, then an in-order "
      "probe answered by every agent's stream)\n",
      agents * flood, *flood_s, flood_rate, flood);
  fleet.SetHeartbeats(true);

  // --- 2. Submissions with placement ------------------------------------------
  const int64_t hb_before = fleet.heartbeats_sent();
  SubmitRun placed =
      SubmitMany(**coordinator, process_options.client_token, submissions, threads, "place");
  const int64_t hb_during = fleet.heartbeats_sent() - hb_before;
  if (placed.errors > 0) {
    std::printf("  %lld submissions failed; first: %s\n", static_cast<long long>(placed.errors),
                placed.first_error.c_str());
  }
  // Wait for every rank's Assign.
  std::vector<double> to_last_ms, to_first_ms, ack_ms;
  int unassigned = 0;
  const int64_t wait_until = NowNs() + int64_t{60} * 1000000000;
  for (const Submitted& job : placed.jobs) {
    AssignRecord record;
    while (!(fleet.Lookup(job.job_id, &record) && record.count >= job.world) &&
           NowNs() < wait_until) {
      absl::SleepFor(absl::Milliseconds(2));
    }
    ack_ms.push_back((job.acked_ns - job.sent_ns) * 1e-6);
    if (record.count < job.world) {
      ++unassigned;
      continue;
    }
    to_first_ms.push_back((record.first_ns - job.sent_ns) * 1e-6);
    to_last_ms.push_back((record.last_ns - job.sent_ns) * 1e-6);
  }
  const double place_p50 = Percentile(to_last_ms, 0.50);
  const double place_p99 = Percentile(to_last_ms, 0.99);
  std::printf(
      "durable submissions with placement: %zu in %.2f s = %.0f/s from %d client threads "
      "(ack p50 %.2f ms, p99 %.2f ms)\n",
      placed.jobs.size(), placed.seconds, placed.per_second(), threads, Percentile(ack_ms, 0.5),
      Percentile(ack_ms, 0.99));
  std::printf(
      "submit -> Assign of every rank: p50 %.2f ms, p99 %.2f ms, max %.2f ms (first rank: p50 "
      "%.2f ms, p99 %.2f ms); %d jobs not fully assigned within 60 s\n",
      place_p50, place_p99, Percentile(to_last_ms, 1.0), Percentile(to_first_ms, 0.5),
      Percentile(to_first_ms, 0.99), unassigned);
  const double hb_rate = hb_during / std::max(placed.seconds, 1e-9);
  std::printf("heartbeats during submissions: %.0f/s written by the agents\n", hb_rate);

  // Every worker should still hold its lease.
  int ready_workers = 0;
  {
    auto stub = v1::Coordinator::NewStub((*coordinator)->NewChannel());
    grpc::ClientContext context;
    context.AddMetadata("authorization", absl::StrCat("Bearer ", process_options.client_token));
    v1::ListWorkersResponse workers;
    if (stub->ListWorkers(&context, v1::ListWorkersRequest(), &workers).ok()) {
      for (const v1::Worker& w : workers.workers()) {
        ready_workers += w.state() == v1::WORKER_STATE_READY;
      }
    }
  }
  std::printf("workers READY after the submissions: %d of %d; broken agent streams: %lld\n",
              ready_workers, agents, static_cast<long long>(fleet.broken_streams()));

  // --- 3. Submissions with capacity full (stored, mostly PENDING) -------------
  fleet.SetHold(true);
  SubmitRun stored =
      SubmitMany(**coordinator, process_options.client_token, recovery_jobs, threads, "store");
  std::printf(
      "durable submissions with full capacity: %zu in %.2f s = %.0f/s (tasks held "
      "running, so %d GPUs fill and the rest stays PENDING)\n",
      stored.jobs.size(), stored.seconds, stored.per_second(), agents * gpus);
  if (stored.errors > 0) {
    std::printf("  %lld submissions failed; first: %s\n", static_cast<long long>(stored.errors),
                stored.first_error.c_str());
  }

  // --- 4. Memory -------------------------------------------------------------
  absl::StatusOr<MemoryFigures> memory = (*coordinator)->Memory();
  if (!memory.ok()) return Fail(memory.status().ToString(), log);
  std::printf(
      "coordinator memory: VmRSS %.1f MiB, VmHWM %.1f MiB (%d agents attached, %zu jobs "
      "stored)\n",
      memory->rss_kib / 1024.0, memory->hwm_kib / 1024.0, agents,
      placed.jobs.size() + stored.jobs.size());

  // --- 5. kill -9 and recovery ------------------------------------------------
  fleet.ExpectEnd();
  (*coordinator)->Kill();
  fleet.Stop();
  coordinator->reset();
  absl::StatusOr<std::unique_ptr<CoordinatorProcess>> restarted =
      CoordinatorProcess::Start(process_options, absl::Seconds(60));
  if (!restarted.ok()) return Fail(restarted.status().ToString(), log);
  auto stub = v1::Coordinator::NewStub((*restarted)->NewChannel());
  const auto authorize = [&](grpc::ClientContext& context) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", process_options.client_token));
  };
  // The first answer after SERVING: one of the jobs left PENDING.
  const std::string probe_id =
      stored.jobs.empty() ? placed.jobs.back().job_id : stored.jobs.back().job_id;
  {
    grpc::ClientContext context;
    authorize(context);
    v1::GetJobRequest request;
    request.set_job_id(probe_id);
    v1::Job job;
    if (grpc::Status s = stub->GetJob(&context, request, &job); !s.ok()) {
      return Fail(absl::StrCat("GetJob after restart: ", s.error_message()), log);
    }
  }
  // Counted from just before the exec.
  const double recover_s = (*restarted)->ready().health;
  const double recover_get_s = (NowNs() - (*restarted)->ready().exec_ns) * 1e-9;
  // Every acknowledged job must be there.
  int64_t listed = 0, active = 0;
  std::string token;
  do {
    grpc::ClientContext context;
    authorize(context);
    v1::ListJobsRequest request;
    request.set_page_size(1000);
    request.set_page_token(token);
    v1::ListJobsResponse page;
    if (grpc::Status s = stub->ListJobs(&context, request, &page); !s.ok()) {
      return Fail(absl::StrCat("ListJobs after restart: ", s.error_message()), log);
    }
    listed += page.jobs_size();
    for (const v1::Job& j : page.jobs()) {
      active += j.state() == v1::JOB_STATE_PENDING || j.state() == v1::JOB_STATE_SCHEDULED ||
                j.state() == v1::JOB_STATE_RUNNING || j.state() == v1::JOB_STATE_RESTARTING;
    }
    token = page.next_page_token();
  } while (!token.empty());
  const int64_t acknowledged = placed.jobs.size() + stored.jobs.size();
  std::printf(
      "recovery after kill -9: port file %.3f s, SERVING %.3f s, first GetJob answered "
      "%.3f s after exec; %lld jobs stored (%lld active, reloaded), %lld acknowledged, "
      "%lld missing\n",
      (*restarted)->ready().port_file, recover_s, recover_get_s, static_cast<long long>(listed),
      static_cast<long long>(active), static_cast<long long>(acknowledged),
      static_cast<long long>(std::max<int64_t>(0, acknowledged - listed)));
  absl::StatusOr<MemoryFigures> memory_after = (*restarted)->Memory();
  if (memory_after.ok()) {
    std::printf("recovered coordinator memory: VmRSS %.1f MiB, VmHWM %.1f MiB\n",
                memory_after->rss_kib / 1024.0, memory_after->hwm_kib / 1024.0);
  }
  const std::string exit_text = (*restarted)->Terminate();
  std::printf("restarted coordinator stopped by SIGTERM: %s\n", exit_text.c_str());

  // --- Goals -----------------------------------------------------------------
  const double goal_submit = GoalRatio(stored.per_second(), 2000, true);
  const double goal_submit_placed = GoalRatio(placed.per_second(), 2000, true);
  const double goal_p99 = GoalRatio(place_p99, 50, false);
  const double goal_recover = GoalRatio(recover_s, 2, false);
  std::printf("goals (x of goal; >= 1 met):\n");
  std::printf(
      "  durable submissions >= 2000/s: %.0f/s with full capacity = %.2fx; %.0f/s with "
      "placement = %.2fx\n",
      stored.per_second(), goal_submit, placed.per_second(), goal_submit_placed);
  std::printf("  p99 submit-to-assignment <= 50 ms at %d agents: %.2f ms = %.2fx\n", agents,
              place_p99, goal_p99);
  std::printf("  recovery of %lld stored jobs <= 2 s: %.3f s = %.2fx\n",
              static_cast<long long>(listed), recover_s, goal_recover);

  std::printf(
      "{\"bench\":\"coordinator_load\",\"agents\":%d,\"gpus_per_agent\":%d,\"client_threads\":%d,"
      "\"hardware_threads\":%u,\"fsync_ms\":%.3f,\"attach_s\":%.3f,\"heartbeats_per_s\":%.0f,"
      "\"heartbeats_per_s_during_submit\":%.0f,\"submissions_placed\":%zu,"
      "\"durable_submissions_per_s_placed\":%.1f,\"submit_to_assign_p50_ms\":%.3f,"
      "\"submit_to_assign_p99_ms\":%.3f,\"submit_ack_p50_ms\":%.3f,\"submit_ack_p99_ms\":%.3f,"
      "\"submissions_stored\":%zu,\"durable_submissions_per_s_full\":%.1f,"
      "\"submit_errors\":%lld,\"unassigned\":%d,\"ready_workers\":%d,\"vm_rss_mib\":%.1f,"
      "\"vm_hwm_mib\":%.1f,\"recovered_jobs\":%lld,\"recovered_active_jobs\":%lld,"
      "\"recovery_port_file_s\":%.3f,\"recovery_serving_s\":%.3f,\"recovery_get_job_s\":%.3f,"
      "\"missing_jobs\":%lld,"
      "\"goal_submissions\":%.2f,\"goal_p99\":%.2f,\"goal_recovery\":%.2f}\n",
      agents, gpus, threads, std::thread::hardware_concurrency(), fsync_ms, attach_s, flood_rate,
      hb_rate, placed.jobs.size(), placed.per_second(), place_p50, place_p99,
      Percentile(ack_ms, 0.5), Percentile(ack_ms, 0.99), stored.jobs.size(), stored.per_second(),
      static_cast<long long>(placed.errors + stored.errors), unassigned, ready_workers,
      memory->rss_kib / 1024.0, memory->hwm_kib / 1024.0, static_cast<long long>(listed),
      static_cast<long long>(active), (*restarted)->ready().port_file, recover_s, recover_get_s,
      static_cast<long long>(std::max<int64_t>(0, acknowledged - listed)), goal_submit, goal_p99,
      goal_recover);
  std::fflush(stdout);
  if (!absl::GetFlag(FLAGS_keep_data)) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  return 0;
}

}  // namespace
}  // namespace clmae::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Load on a clmae-coordinator it starts itself over loopback: simulated agents, a stream of "
      "submissions, memory, and recovery after kill -9.\n"
      "  clmae-bench-coordinator [--agents 1000] [--submissions 10000] [--recovery_jobs 10000]");
  absl::ParseCommandLine(argc, argv);
  return clmae::bench::Run();
}
