#include "bench/load_recovery.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace clmae::bench {
namespace {

// GetJob of `job_id`; an error names the call.
absl::Status ProbeJob(v1::Coordinator::Stub& stub, const std::string& token,
                      const std::string& job_id) {
  grpc::ClientContext context;
  Authorize(context, token);
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  if (grpc::Status s = stub.GetJob(&context, request, &job); !s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat("GetJob after restart: ", s.error_message()));
  }
  return absl::OkStatus();
}

// Counts into `recovery` whether the Assigns `record` shows for `job` (as the
// restarted coordinator lists it) were made twice or are not held by it.
void CheckAssigns(const v1::Job& job, const AssignRecord& record, RecoveryFigures& recovery) {
  std::set<std::pair<int, int>> seen;  // attempt, rank
  std::set<int> attempts;
  bool twice = false;
  for (const AssignedRank& r : record.ranks) {
    twice |= !seen.emplace(r.attempt, r.rank).second;
    attempts.insert(r.attempt);
  }
  recovery.assigned_twice += twice || attempts.size() > 1;
  const int latest = *attempts.rbegin();
  bool held = job.state() != v1::JOB_STATE_PENDING && job.attempt() == latest;
  const v1::Placement& placement = job.placement();
  for (const AssignedRank& r : record.ranks) {
    if (!held || r.attempt != latest || placement.ranks_size() == 0) continue;
    held = r.rank < placement.ranks_size() && placement.ranks(r.rank).worker_id() == r.worker_id &&
           placement.ranks(r.rank).device_index() == r.device_index;
  }
  recovery.assigned_not_durable += !held;
}

// Pages through ListJobs, counting into `recovery` every job listed, the
// active ones, and the Assigns made twice or not held; an error names the
// call.
absl::Status CountListedJobs(v1::Coordinator::Stub& stub, const std::string& token,
                             SimAgentFleet& fleet, RecoveryFigures& recovery) {
  std::string page_token;
  do {
    grpc::ClientContext context;
    Authorize(context, token);
    v1::ListJobsRequest request;
    request.set_page_size(1000);
    request.set_page_token(page_token);
    v1::ListJobsResponse page;
    if (grpc::Status s = stub.ListJobs(&context, request, &page); !s.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                          absl::StrCat("ListJobs after restart: ", s.error_message()));
    }
    recovery.listed += page.jobs_size();
    for (const v1::Job& j : page.jobs()) {
      recovery.active +=
          j.state() == v1::JOB_STATE_PENDING || j.state() == v1::JOB_STATE_SCHEDULED ||
          j.state() == v1::JOB_STATE_RUNNING || j.state() == v1::JOB_STATE_RESTARTING;
      AssignRecord record;
      if (fleet.Lookup(j.id(), &record) && !record.ranks.empty()) {
        CheckAssigns(j, record, recovery);
      }
    }
    page_token = page.next_page_token();
  } while (!page_token.empty());
  return absl::OkStatus();
}

}  // namespace

void Authorize(grpc::ClientContext& context, const std::string& token) {
  context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
}

absl::StatusOr<RecoveryFigures> MeasureRecovery(const CoordinatorProcess& restarted,
                                                const std::string& token,
                                                const std::string& probe_job_id,
                                                int64_t acknowledged, SimAgentFleet& fleet) {
  auto stub = v1::Coordinator::NewStub(restarted.NewChannel());
  RETURN_IF_ERROR(ProbeJob(*stub, token, probe_job_id));
  RecoveryFigures recovery;
  // Counted from just before the exec.
  recovery.serving_s = restarted.ready().health;
  recovery.get_job_s = (NowNs() - restarted.ready().exec_ns) * 1e-9;
  RETURN_IF_ERROR(CountListedJobs(*stub, token, fleet, recovery));
  recovery.acknowledged = acknowledged;
  recovery.port_file_s = restarted.ready().port_file;
  std::printf(
      "recovery after kill -9: port file %.3f s, SERVING %.3f s, first GetJob answered "
      "%.3f s after exec; %lld jobs stored (%lld active, reloaded), %lld acknowledged, "
      "%lld missing\n",
      recovery.port_file_s, recovery.serving_s, recovery.get_job_s,
      static_cast<long long>(recovery.listed), static_cast<long long>(recovery.active),
      static_cast<long long>(acknowledged), static_cast<long long>(recovery.missing()));
  std::printf(
      "duplicated placements: %lld (jobs assigned twice before the kill: %lld; assigned but "
      "not held placed there by the restarted coordinator, so placed again: %lld)\n",
      static_cast<long long>(recovery.duplicated()),
      static_cast<long long>(recovery.assigned_twice),
      static_cast<long long>(recovery.assigned_not_durable));
  absl::StatusOr<MemoryFigures> memory_after = restarted.Memory();
  if (memory_after.ok()) {
    std::printf("recovered coordinator memory: VmRSS %.1f MiB, VmHWM %.1f MiB\n",
                memory_after->rss_kib / 1024.0, memory_after->hwm_kib / 1024.0);
  }
  return recovery;
}

}  // namespace clmae::bench
