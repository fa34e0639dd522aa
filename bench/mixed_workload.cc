#include "bench/mixed_workload.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/sim_agent_fleet.h"
#include "clmae/v1/coordinator.grpc.pb.h"
#include "common/status_macros.h"
#include "grpcpp/client_context.h"

namespace clmae::bench {
namespace {

struct MixedJob {
  int world = 1;
  int seconds = 1;
  std::string id;  // once submitted
  int64_t sent_ns = 0;
};

// A quarter wide (a quarter to three quarters of the devices, 4-8 s), the
// rest narrow (1-8 devices, 1-3 s); the same for a seed.
std::vector<MixedJob> MakeWorkload(int jobs, int devices, unsigned seed) {
  std::mt19937 random(seed);
  std::vector<MixedJob> out(jobs);
  for (MixedJob& job : out) {
    if (random() % 4 == 0) {
      const int low = std::max(1, devices / 4);
      const int high = std::max(low, devices * 3 / 4);
      job.world = low + static_cast<int>(random() % (high - low + 1));
      job.seconds = 4 + static_cast<int>(random() % 5);
    } else {
      job.world = 1 + static_cast<int>(random() % std::min(8, devices));
      job.seconds = 1 + static_cast<int>(random() % 3);
    }
  }
  return out;
}

v1::JobSpec MixedSpec(const MixedJob& job) {
  v1::JobSpec spec;
  spec.set_name("mixed-bench");
  spec.mutable_data()->set_kind(v1::DataSpec::SYNTHETIC);
  spec.mutable_train()->set_device("cuda");
  spec.mutable_train()->set_max_steps(100);
  spec.mutable_resources()->set_world_size(job.world);
  spec.mutable_resources()->set_device_kind("cuda");
  spec.mutable_resources()->set_estimated_seconds(job.seconds);
  return spec;
}

absl::Status SubmitAll(const CoordinatorProcess& coordinator, const std::string& token,
                       std::vector<MixedJob>& jobs) {
  auto stub = v1::Coordinator::NewStub(coordinator.NewChannel());
  for (size_t i = 0; i < jobs.size(); ++i) {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = MixedSpec(jobs[i]);
    request.set_request_id(absl::StrCat("mixed-", i));
    grpc::ClientContext context;
    context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    v1::Job job;
    jobs[i].sent_ns = NowNs();
    if (grpc::Status s = stub->SubmitJob(&context, request, &job); !s.ok()) {
      return absl::UnavailableError(absl::StrCat("SubmitJob ", i, ": ", s.error_message()));
    }
    jobs[i].id = job.id();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<MixedWorkloadFigures> RunMixedWorkload(const MixedWorkloadOptions& options,
                                                      const std::string& dir, bool backfill) {
  const std::string run_dir = absl::StrCat(dir, backfill ? "/mixed-backfill" : "/mixed-strict");
  std::filesystem::create_directories(run_dir);
  CoordinatorProcessOptions process = options.process;
  process.data_dir = run_dir + "/data";
  process.log_path = run_dir + "/coordinator.log";
  process.extra_flags.push_back(absl::StrCat("--backfill=", backfill ? "true" : "false"));
  ASSIGN_OR_RETURN(std::unique_ptr<CoordinatorProcess> coordinator,
                   CoordinatorProcess::Start(process, absl::Seconds(60)));
  FleetOptions fleet_options;
  fleet_options.address = coordinator->address();
  fleet_options.token = process.worker_token;
  fleet_options.agents = options.agents;
  fleet_options.gpus_per_agent = options.gpus_per_agent;
  SimAgentFleet fleet(fleet_options);
  RETURN_IF_ERROR(fleet.Start(absl::Seconds(60)));

  MixedWorkloadFigures figures;
  figures.backfill = backfill;
  figures.devices = options.agents * options.gpus_per_agent;
  figures.jobs = options.jobs;
  std::vector<MixedJob> jobs = MakeWorkload(options.jobs, figures.devices, options.seed);
  double work_s = 0;
  for (const MixedJob& job : jobs) work_s += static_cast<double>(job.world) * job.seconds;
  RETURN_IF_ERROR(SubmitAll(*coordinator, process.client_token, jobs));

  // Every job must start within the time the whole workload would take run
  // one job at a time, plus a margin.
  double serial_s = 10;
  for (const MixedJob& job : jobs) serial_s += job.seconds;
  const int64_t deadline = NowNs() + static_cast<int64_t>(serial_s * 1e9);
  int64_t last_end = 0;
  double wait_sum = 0, wide_wait_sum = 0;
  int wide = 0;
  for (const MixedJob& job : jobs) {
    AssignRecord record;
    while (!(fleet.Lookup(job.id, &record) && record.count >= job.world)) {
      if (NowNs() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "job ", job.id, " (", job.world, " devices) was not placed within ", serial_s, " s"));
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    last_end = std::max(last_end, record.last_ns + int64_t{job.seconds} * 1000000000);
    const double wait_s = (record.first_ns - job.sent_ns) * 1e-9;
    wait_sum += wait_s;
    if (job.world > options.gpus_per_agent) {
      ++wide;
      wide_wait_sum += wait_s;
      figures.max_wait_wide_s = std::max(figures.max_wait_wide_s, wait_s);
    }
  }
  // Let the last jobs end, so the coordinator stops cleanly.
  absl::SleepFor(absl::Nanoseconds(std::max<int64_t>(0, last_end - NowNs())));
  figures.makespan_s = (last_end - jobs.front().sent_ns) * 1e-9;
  figures.utilisation = work_s / (figures.devices * figures.makespan_s);
  figures.mean_wait_s = wait_sum / jobs.size();
  figures.mean_wait_wide_s = wide > 0 ? wide_wait_sum / wide : 0;
  fleet.ExpectEnd();
  coordinator->Terminate();
  fleet.Stop();
  return figures;
}

absl::Status MeasureBackfill(const MixedWorkloadOptions& options, const std::string& dir) {
  MixedWorkloadFigures runs[2];
  for (const bool backfill : {false, true}) {
    ASSIGN_OR_RETURN(runs[backfill], RunMixedWorkload(options, dir, backfill));
    const MixedWorkloadFigures& f = runs[backfill];
    std::printf(
        "mixed workload, backfill %s: %d jobs on %d devices in %.2f s, utilisation %.1f%%, mean "
        "wait %.2f s (jobs wider than a node: mean %.2f s, max %.2f s)\n",
        backfill ? "on " : "off", f.jobs, f.devices, f.makespan_s, 100 * f.utilisation,
        f.mean_wait_s, f.mean_wait_wide_s, f.max_wait_wide_s);
  }
  std::printf(
      "{\"bench\":\"coordinator_backfill\",\"jobs\":%d,\"devices\":%d,"
      "\"utilisation_strict\":%.3f,\"utilisation_backfill\":%.3f,\"mean_wait_strict_s\":%.3f,"
      "\"mean_wait_backfill_s\":%.3f,\"mean_wait_wide_strict_s\":%.3f,"
      "\"mean_wait_wide_backfill_s\":%.3f,\"makespan_strict_s\":%.2f,"
      "\"makespan_backfill_s\":%.2f}\n",
      runs[0].jobs, runs[0].devices, runs[0].utilisation, runs[1].utilisation, runs[0].mean_wait_s,
      runs[1].mean_wait_s, runs[0].mean_wait_wide_s, runs[1].mean_wait_wide_s, runs[0].makespan_s,
      runs[1].makespan_s);
  return absl::OkStatus();
}

}  // namespace clmae::bench
