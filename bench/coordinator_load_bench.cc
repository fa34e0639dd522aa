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
//      a GetJob answer; then every acknowledged job is looked for, and every
//      Assign made before the kill is checked for duplicates
//      (load_recovery.h).
//   6. a mixed-size workload (mixed_workload.h) with backfill off and on:
//      utilisation and mean wait.
// Prints a line per figure and a final JSON line. Figures, not pass/fail.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/coordinator_process.h"
#include "bench/load_clients.h"
#include "bench/load_recovery.h"
#include "bench/mixed_workload.h"
#include "bench/sim_agent_fleet.h"
#include "clmae/v1/coordinator.grpc.pb.h"
#include "common/status_macros.h"
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
ABSL_FLAG(std::string, data_root, "/tmp",
          "the coordinator's data folder is made under this one (e.g. /dev/shm, a tmpfs: "
          "no disk in the commit, so the CPU bound shows)");
ABSL_FLAG(absl::Duration, commit_delay, absl::ZeroDuration(),
          "--store_commit_delay given to the coordinator: an artificial fsync time slept after "
          "every job store commit (e.g. 4ms, a slow disk)");
ABSL_FLAG(int, mixed_jobs, 48,
          "jobs of the mixed-size workload, run with backfill off and on (0 = skip it)");
ABSL_FLAG(int, mixed_agents, 8, "simulated agents (x --gpus_per_agent) of the mixed workload");
ABSL_FLAG(bool, only_mixed, false, "run only the mixed-size workload");
ABSL_FLAG(bool, keep_data, false, "keep the temporary data folder (its path is printed)");

namespace clmae::bench {
namespace {

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

// The sizes Run reads from the flags once (client_threads at least 1).
struct BenchConfig {
  int agents = 0;
  int gpus = 0;
  int submissions = 0;
  int threads = 1;
  int recovery_jobs = 0;
};

// The figures of phase 2: submissions while every job gets placed.
struct PlacementFigures {
  SubmitRun run;
  std::vector<double> to_last_ms, to_first_ms, ack_ms;
  int unassigned = 0;       // jobs not fully assigned within 60 s
  double p50 = 0, p99 = 0;  // submit -> Assign of every rank, ms
  double hb_rate = 0;       // heartbeats/s written during the submissions
};

// Everything the summary (goals and the JSON line) reports.
struct LoadFigures {
  double fsync_ms = 0;
  double attach_s = 0;
  double flood_rate = 0;  // heartbeats handled per second
  PlacementFigures placed;
  int ready_workers = 0;
  SubmitRun stored;
  MemoryFigures memory;
  RecoveryFigures recovery;
};

// The sizes given by --agents, --gpus_per_agent, --submissions,
// --client_threads and --recovery_jobs.
BenchConfig ReadConfig() {
  BenchConfig config;
  config.agents = absl::GetFlag(FLAGS_agents);
  config.gpus = absl::GetFlag(FLAGS_gpus_per_agent);
  config.submissions = absl::GetFlag(FLAGS_submissions);
  config.threads = std::max(1, absl::GetFlag(FLAGS_client_threads));
  config.recovery_jobs = absl::GetFlag(FLAGS_recovery_jobs);
  return config;
}

// How to start the coordinator on `dir`/data (log in `dir`/coordinator.log)
// with fresh random client and worker tokens and the --heartbeat_interval
// and --lease flags.
CoordinatorProcessOptions ProcessOptionsFor(const std::string& dir) {
  CoordinatorProcessOptions options;
  options.binary = absl::GetFlag(FLAGS_coordinator_binary);
  options.data_dir = dir + "/data";
  options.log_path = dir + "/coordinator.log";
  options.client_token = RandomToken();
  options.worker_token = RandomToken();
  options.extra_flags = {
      absl::StrCat("--heartbeat_interval=",
                   absl::FormatDuration(absl::GetFlag(FLAGS_heartbeat_interval))),
      absl::StrCat("--lease=", absl::FormatDuration(absl::GetFlag(FLAGS_lease))),
      absl::StrCat("--store_commit_delay=",
                   absl::FormatDuration(absl::GetFlag(FLAGS_commit_delay)))};
  return options;
}

// Prints the coordinator binary, the data folder `dir` and the hardware
// threads, then measures and prints the disk's fsync floor (FsyncMillis),
// which it returns.
double PrintSetup(const CoordinatorProcessOptions& process_options, const std::string& dir) {
  std::printf("clmae-bench-coordinator: %s, data in %s, %u hardware threads\n",
              process_options.binary.c_str(), dir.c_str(), std::thread::hardware_concurrency());
  const double fsync_ms = FsyncMillis(dir);
  std::printf("disk: 4 KiB overwrite + fdatasync takes %.2f ms (median of 50) in %s\n", fsync_ms,
              dir.c_str());
  if (const absl::Duration delay = absl::GetFlag(FLAGS_commit_delay);
      delay > absl::ZeroDuration()) {
    std::printf("plus an artificial %s after every job store commit (--commit_delay)\n",
                absl::FormatDuration(delay).c_str());
  }
  return fsync_ms;
}

// The simulated agents: `config`'s counts, --agent_connections and
// --task_time, registering at `address` with `worker_token`.
FleetOptions FleetOptionsFor(const BenchConfig& config, const std::string& address,
                             const std::string& worker_token) {
  FleetOptions options;
  options.address = address;
  options.token = worker_token;
  options.agents = config.agents;
  options.gpus_per_agent = config.gpus;
  options.connections = absl::GetFlag(FLAGS_agent_connections);
  options.task_time = absl::GetFlag(FLAGS_task_time);
  return options;
}

// Starts `fleet` (the simulated agents) and prints how long attaching and
// registering took, which it returns in `figures`; errors are Start's.
absl::Status AttachAgents(const BenchConfig& config, SimAgentFleet& fleet, LoadFigures& figures) {
  const int64_t t0 = NowNs();
  RETURN_IF_ERROR(fleet.Start(absl::Seconds(120)));
  figures.attach_s = (NowNs() - t0) * 1e-9;
  std::printf("%d agents x %d GPUs attached and registered in %.2f s (heartbeat every %s)\n",
              config.agents, config.gpus, figures.attach_s,
              absl::FormatDuration(fleet.coordinator_heartbeat_interval()).c_str());
  return absl::OkStatus();
}

// Phase 1: with the periodic heartbeats paused, every agent writes
// --flood_heartbeats back to back; prints (and sets figures.flood_rate) the
// heartbeats handled per second. Errors are FloodHeartbeats'.
absl::Status MeasureHeartbeatFlood(const BenchConfig& config, SimAgentFleet& fleet,
                                   LoadFigures& figures) {
  fleet.SetHeartbeats(false);
  const int flood = absl::GetFlag(FLAGS_flood_heartbeats);
  absl::StatusOr<double> flood_s = fleet.FloodHeartbeats(flood, absl::Seconds(120));
  if (!flood_s.ok()) return flood_s.status();
  figures.flood_rate = static_cast<double>(config.agents) * flood / *flood_s;
  std::printf(
      "heartbeats handled: %d in %.3f s = %.0f/s (flood: %d per agent, then an in-order "
      "probe answered by every agent's stream)\n",
      config.agents * flood, *flood_s, figures.flood_rate, flood);
  fleet.SetHeartbeats(true);
  return absl::OkStatus();
}

// Waits (up to 60 s in all) until `fleet` saw the Assign of every rank of
// each job in placed.run, recording the ack and Assign latencies of each
// and counting the jobs not fully assigned.
void WaitForAssigns(SimAgentFleet& fleet, PlacementFigures& placed) {
  const int64_t wait_until = NowNs() + int64_t{60} * 1000000000;
  for (const Submitted& job : placed.run.jobs) {
    AssignRecord record;
    while (!(fleet.Lookup(job.job_id, &record) && record.count >= job.world) &&
           NowNs() < wait_until) {
      absl::SleepFor(absl::Milliseconds(2));
    }
    placed.ack_ms.push_back((job.acked_ns - job.sent_ns) * 1e-6);
    if (record.count < job.world) {
      ++placed.unassigned;
      continue;
    }
    placed.to_first_ms.push_back((record.first_ns - job.sent_ns) * 1e-6);
    placed.to_last_ms.push_back((record.last_ns - job.sent_ns) * 1e-6);
  }
}

// Phase 2: --submissions durable submissions that all get placed; prints
// their rate and ack latency, the latency to every rank's Assign and the
// heartbeat rate meanwhile.
PlacementFigures MeasurePlacement(const BenchConfig& config, const CoordinatorProcess& coordinator,
                                  SimAgentFleet& fleet, const std::string& token) {
  PlacementFigures placed;
  const int64_t hb_before = fleet.heartbeats_sent();
  placed.run = SubmitMany(coordinator, token, config.submissions, config.threads, "place");
  const int64_t hb_during = fleet.heartbeats_sent() - hb_before;
  if (placed.run.errors > 0) {
    std::printf("  %lld submissions failed; first: %s\n", static_cast<long long>(placed.run.errors),
                placed.run.first_error.c_str());
  }
  WaitForAssigns(fleet, placed);
  placed.p50 = Percentile(placed.to_last_ms, 0.50);
  placed.p99 = Percentile(placed.to_last_ms, 0.99);
  std::printf(
      "durable submissions with placement: %zu in %.2f s = %.0f/s from %d client threads "
      "(ack p50 %.2f ms, p99 %.2f ms)\n",
      placed.run.jobs.size(), placed.run.seconds, placed.run.per_second(), config.threads,
      Percentile(placed.ack_ms, 0.5), Percentile(placed.ack_ms, 0.99));
  std::printf(
      "submit -> Assign of every rank: p50 %.2f ms, p99 %.2f ms, max %.2f ms (first rank: p50 "
      "%.2f ms, p99 %.2f ms); %d jobs not fully assigned within 60 s\n",
      placed.p50, placed.p99, Percentile(placed.to_last_ms, 1.0),
      Percentile(placed.to_first_ms, 0.5), Percentile(placed.to_first_ms, 0.99), placed.unassigned);
  placed.hb_rate = hb_during / std::max(placed.run.seconds, 1e-9);
  std::printf("heartbeats during submissions: %.0f/s written by the agents\n", placed.hb_rate);
  return placed;
}

// Workers the coordinator lists as READY (0 when ListWorkers fails).
int CountReadyWorkers(const CoordinatorProcess& coordinator, const std::string& token) {
  int ready_workers = 0;
  auto stub = v1::Coordinator::NewStub(coordinator.NewChannel());
  grpc::ClientContext context;
  Authorize(context, token);
  v1::ListWorkersResponse workers;
  if (stub->ListWorkers(&context, v1::ListWorkersRequest(), &workers).ok()) {
    for (const v1::Worker& w : workers.workers()) {
      ready_workers += w.state() == v1::WORKER_STATE_READY;
    }
  }
  return ready_workers;
}

// Prints (and returns) how many workers are READY after the submissions
// (every worker should still hold its lease) and how many agent streams
// broke.
int ReportReadyWorkers(const BenchConfig& config, const CoordinatorProcess& coordinator,
                       const SimAgentFleet& fleet, const std::string& token) {
  const int ready_workers = CountReadyWorkers(coordinator, token);
  std::printf("workers READY after the submissions: %d of %d; broken agent streams: %lld\n",
              ready_workers, config.agents, static_cast<long long>(fleet.broken_streams()));
  return ready_workers;
}

// Phase 3: with the agents holding their tasks (capacity fills, the rest
// stays PENDING), --recovery_jobs durable submissions; prints their rate.
SubmitRun MeasureStoredSubmissions(const BenchConfig& config, const CoordinatorProcess& coordinator,
                                   SimAgentFleet& fleet, const std::string& token) {
  fleet.SetHold(true);
  SubmitRun stored = SubmitMany(coordinator, token, config.recovery_jobs, config.threads, "store");
  std::printf(
      "durable submissions with full capacity: %zu in %.2f s = %.0f/s (tasks held "
      "running, so %d GPUs fill and the rest stays PENDING)\n",
      stored.jobs.size(), stored.seconds, stored.per_second(), config.agents * config.gpus);
  if (stored.errors > 0) {
    std::printf("  %lld submissions failed; first: %s\n", static_cast<long long>(stored.errors),
                stored.first_error.c_str());
  }
  return stored;
}

// Phase 4: prints the coordinator's memory (and sets figures.memory) with
// the agents attached and the jobs of phases 2 and 3 stored. Errors are
// Memory's.
absl::Status MeasureMemory(const BenchConfig& config, const CoordinatorProcess& coordinator,
                           LoadFigures& figures) {
  absl::StatusOr<MemoryFigures> memory = coordinator.Memory();
  if (!memory.ok()) return memory.status();
  figures.memory = *memory;
  std::printf(
      "coordinator memory: VmRSS %.1f MiB, VmHWM %.1f MiB (%d agents attached, %zu jobs "
      "stored)\n",
      memory->rss_kib / 1024.0, memory->hwm_kib / 1024.0, config.agents,
      figures.placed.run.jobs.size() + figures.stored.jobs.size());
  return absl::OkStatus();
}

// Prints each figure against its goal, then the final JSON line.
void PrintSummary(const BenchConfig& config, const LoadFigures& f) {
  const PlacementFigures& placed = f.placed;
  const RecoveryFigures& recovery = f.recovery;
  const double goal_submit = GoalRatio(f.stored.per_second(), 2000, true);
  const double goal_submit_placed = GoalRatio(placed.run.per_second(), 2000, true);
  const double goal_p99 = GoalRatio(placed.p99, 50, false);
  const double goal_recover = GoalRatio(recovery.serving_s, 2, false);
  std::printf("goals (x of goal; >= 1 met):\n");
  std::printf(
      "  durable submissions >= 2000/s: %.0f/s with full capacity = %.2fx; %.0f/s with "
      "placement = %.2fx\n",
      f.stored.per_second(), goal_submit, placed.run.per_second(), goal_submit_placed);
  std::printf("  p99 submit-to-assignment <= 50 ms at %d agents: %.2f ms = %.2fx\n", config.agents,
              placed.p99, goal_p99);
  std::printf("  recovery of %lld stored jobs <= 2 s: %.3f s = %.2fx\n",
              static_cast<long long>(recovery.listed), recovery.serving_s, goal_recover);

  std::printf(
      "{\"bench\":\"coordinator_load\",\"agents\":%d,\"gpus_per_agent\":%d,\"client_threads\":%d,"
      "\"hardware_threads\":%u,\"fsync_ms\":%.3f,\"commit_delay_ms\":%.3f,\"attach_s\":%.3f,"
      "\"heartbeats_per_s\":%.0f,"
      "\"heartbeats_per_s_during_submit\":%.0f,\"submissions_placed\":%zu,"
      "\"durable_submissions_per_s_placed\":%.1f,\"submit_to_assign_p50_ms\":%.3f,"
      "\"submit_to_assign_p99_ms\":%.3f,\"submit_ack_p50_ms\":%.3f,\"submit_ack_p99_ms\":%.3f,"
      "\"submissions_stored\":%zu,\"durable_submissions_per_s_full\":%.1f,"
      "\"submit_errors\":%lld,\"unassigned\":%d,\"ready_workers\":%d,\"vm_rss_mib\":%.1f,"
      "\"vm_hwm_mib\":%.1f,\"recovered_jobs\":%lld,\"recovered_active_jobs\":%lld,"
      "\"recovery_port_file_s\":%.3f,\"recovery_serving_s\":%.3f,\"recovery_get_job_s\":%.3f,"
      "\"missing_jobs\":%lld,\"duplicated_placements\":%lld,"
      "\"goal_submissions\":%.2f,\"goal_p99\":%.2f,\"goal_recovery\":%.2f}\n",
      config.agents, config.gpus, config.threads, std::thread::hardware_concurrency(), f.fsync_ms,
      absl::ToDoubleMilliseconds(absl::GetFlag(FLAGS_commit_delay)), f.attach_s, f.flood_rate,
      placed.hb_rate, placed.run.jobs.size(), placed.run.per_second(), placed.p50, placed.p99,
      Percentile(placed.ack_ms, 0.5), Percentile(placed.ack_ms, 0.99), f.stored.jobs.size(),
      f.stored.per_second(), static_cast<long long>(placed.run.errors + f.stored.errors),
      placed.unassigned, f.ready_workers, f.memory.rss_kib / 1024.0, f.memory.hwm_kib / 1024.0,
      static_cast<long long>(recovery.listed), static_cast<long long>(recovery.active),
      recovery.port_file_s, recovery.serving_s, recovery.get_job_s,
      static_cast<long long>(recovery.missing()), static_cast<long long>(recovery.duplicated()),
      goal_submit, goal_p99, goal_recover);
}

// The mixed-size workload of the flags with backfill off, then on
// (MeasureBackfill). Errors are RunMixedWorkload's.
absl::Status MeasureBackfillOfFlags(const CoordinatorProcessOptions& process,
                                    const std::string& dir) {
  MixedWorkloadOptions options;
  options.process = process;
  options.agents = absl::GetFlag(FLAGS_mixed_agents);
  options.gpus_per_agent = absl::GetFlag(FLAGS_gpus_per_agent);
  options.jobs = absl::GetFlag(FLAGS_mixed_jobs);
  return MeasureBackfill(options, dir);
}

int Run() {
  const BenchConfig config = ReadConfig();
  std::string dir = absl::StrCat(absl::GetFlag(FLAGS_data_root), "/clmae-load-XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) {
    return Fail(absl::StrCat("cannot make a folder under --data_root ",
                             absl::GetFlag(FLAGS_data_root), ": ", std::strerror(errno)));
  }
  const CoordinatorProcessOptions process_options = ProcessOptionsFor(dir);
  const std::string& log = process_options.log_path;
  const std::string& token = process_options.client_token;
  LoadFigures figures;
  figures.fsync_ms = PrintSetup(process_options, dir);
  if (absl::GetFlag(FLAGS_only_mixed)) {
    if (absl::Status s = MeasureBackfillOfFlags(process_options, dir); !s.ok()) {
      return Fail(s.ToString());
    }
    return 0;
  }

  absl::StatusOr<std::unique_ptr<CoordinatorProcess>> coordinator =
      CoordinatorProcess::Start(process_options, absl::Seconds(60));
  if (!coordinator.ok()) return Fail(coordinator.status().ToString(), log);
  std::printf("coordinator pid %d on %s: SERVING %.3f s after exec (empty store)\n",
              (*coordinator)->pid(), (*coordinator)->address().c_str(),
              (*coordinator)->ready().health);

  // --- Agents, then phases 1 to 4 -----------------------------------------
  SimAgentFleet fleet(
      FleetOptionsFor(config, (*coordinator)->address(), process_options.worker_token));
  if (absl::Status s = AttachAgents(config, fleet, figures); !s.ok()) {
    return Fail(s.ToString(), log);
  }
  if (absl::Status s = MeasureHeartbeatFlood(config, fleet, figures); !s.ok()) {
    return Fail(s.ToString(), log);
  }
  figures.placed = MeasurePlacement(config, **coordinator, fleet, token);
  figures.ready_workers = ReportReadyWorkers(config, **coordinator, fleet, token);
  figures.stored = MeasureStoredSubmissions(config, **coordinator, fleet, token);
  if (absl::Status s = MeasureMemory(config, **coordinator, figures); !s.ok()) {
    return Fail(s.ToString(), log);
  }

  // --- 5. kill -9 and recovery ------------------------------------------------
  fleet.ExpectEnd();
  (*coordinator)->Kill();
  fleet.Stop();
  coordinator->reset();
  absl::StatusOr<std::unique_ptr<CoordinatorProcess>> restarted =
      CoordinatorProcess::Start(process_options, absl::Seconds(60));
  if (!restarted.ok()) return Fail(restarted.status().ToString(), log);
  // The first answer after SERVING: GetJob of one of the jobs left PENDING.
  const std::string probe_id = figures.stored.jobs.empty() ? figures.placed.run.jobs.back().job_id
                                                           : figures.stored.jobs.back().job_id;
  absl::StatusOr<RecoveryFigures> recovery =
      MeasureRecovery(**restarted, token, probe_id,
                      figures.placed.run.jobs.size() + figures.stored.jobs.size(), fleet);
  if (!recovery.ok()) return Fail(std::string(recovery.status().message()), log);
  figures.recovery = *recovery;
  const std::string exit_text = (*restarted)->Terminate();
  std::printf("restarted coordinator stopped by SIGTERM: %s\n", exit_text.c_str());

  PrintSummary(config, figures);
  if (absl::GetFlag(FLAGS_mixed_jobs) > 0) {
    if (absl::Status s = MeasureBackfillOfFlags(process_options, dir); !s.ok()) {
      return Fail(s.ToString());
    }
  }
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
