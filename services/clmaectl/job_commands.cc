// `clmaectl get`, `list` and `cancel`.

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/job_progress.h"
#include "services/clmaectl/commands.h"
#include "services/clmaectl/job_format.h"
#include "services/clmaectl/message_output.h"
#include "services/clmaectl/text_table.h"
#include "services/status_mapping.h"

namespace clmae::ctl {
namespace {

// The largest page ListJobs serves.
constexpr int kMaxPageSize = 1000;

ExitCode PrintOrFail(const google::protobuf::Message& message, const CommandEnv& env) {
  if (absl::Status printed = PrintMessage(message, env.global.output, env.out); !printed.ok()) {
    env.err << "error: " << printed.message() << '\n';
    return kExitFailed;
  }
  return kExitOk;
}

std::string TimeAndAge(const google::protobuf::Timestamp& time, absl::Time now) {
  std::optional<absl::Time> t = FromProtoTime(time);
  if (!t.has_value()) return "";
  return absl::StrCat(absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", *t, absl::UTCTimeZone()), " (",
                      FormatAge(now - *t), " ago)");
}

void PrintJobDetails(const v1::Job& job, absl::Time now, std::ostream& out) {
  std::vector<std::pair<std::string, std::string>> rows;
  auto add = [&rows](std::string key, std::string value) {
    if (!value.empty()) rows.emplace_back(std::move(key), std::move(value));
  };
  add("ID", job.id());
  add("Name", job.spec().name());
  add("Owner", job.owner());
  const std::map<std::string, std::string> labels(job.spec().labels().begin(),
                                                  job.spec().labels().end());
  add("Labels", absl::StrJoin(labels, ", ", absl::PairFormatter("=")));
  add("State",
      absl::StrCat(
          JobStateName(job.state()), " (attempt ", job.attempt(), ", ", job.restarts(), " restarts",
          job.preemptions() > 0 ? absl::StrCat(", ", job.preemptions(), " preemptions")
                                : std::string(),
          job.node_requeues() > 0 ? absl::StrCat(", ", job.node_requeues(), " node requeues")
                                  : std::string(),
          ")"));
  if (std::optional<absl::Time> not_before = FromProtoTime(job.not_before());
      not_before.has_value() && *not_before > now && job.state() == v1::JOB_STATE_PENDING) {
    add("Next attempt",
        absl::StrCat("not before ",
                     absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", *not_before, absl::UTCTimeZone()),
                     " (in ", FormatAge(*not_before - now), "; backing off after a failure)"));
  }
  add("Request ID", job.request_id());
  add("Submitted", TimeAndAge(job.submit_time(), now));
  add("Started", TimeAndAge(job.start_time(), now));
  add("Ended", TimeAndAge(job.end_time(), now));
  const v1::Progress& p = job.progress();
  if (p.total_steps() > 0) {
    add("Progress",
        absl::StrFormat("%s %3.0f%%  epoch %s  step %s", ProgressBar(ProgressFraction(p), 20),
                        100 * ProgressFraction(p), FormatEpochs(p), FormatSteps(p)));
    add("λ_cl", FormatLambda(p.curriculum_factor()));
    add("Losses", FormatLosses(p));
    add("LR", absl::StrFormat("%.3g", p.lr()));
    if (p.has_quality()) add("Quality", FormatQuality(p));
    std::string speed = absl::StrFormat("%.1f images/s", p.images_per_sec());
    if (std::optional<absl::Duration> eta = EstimateRemaining(job);
        eta.has_value() && !IsTerminal(job.state())) {
      absl::StrAppend(&speed, ", ETA ", ShortDuration(*eta));
    }
    add("Throughput", speed);
  }
  std::vector<std::string> ranks;
  for (const v1::RankPlacement& rank : job.placement().ranks()) {
    ranks.push_back(absl::StrCat("rank ", rank.rank(), " on ", rank.worker_id(), " (",
                                 rank.device_kind(), ":", rank.device_index(), ")"));
  }
  if (!ranks.empty()) {
    add("Placement",
        absl::StrCat(absl::StrJoin(ranks, ", "), "; master ", job.placement().master_addr(), ":",
                     job.placement().master_port()));
  }
  add("Failure", job.failure_message());
  add("Result", FormatMetrics(job.result()));
  add("Output", job.result().output_dir());
  int width = 0;
  for (const auto& [key, value] : rows) width = std::max(width, DisplayWidth(key));
  for (const auto& [key, value] : rows) {
    out << key << ':' << std::string(width - DisplayWidth(key) + 2, ' ') << value << '\n';
  }
}

void PrintJobTable(const std::vector<v1::Job>& jobs, absl::Time now, std::ostream& out) {
  TextTable table(
      {"ID", "NAME", "STATE", "ATTEMPT", "PROGRESS", "EPOCH", "STEP", "λ_cl", "MAE", "AGE"});
  for (const v1::Job& job : jobs) {
    const v1::Progress& p = job.progress();
    const bool reported = p.total_steps() > 0;
    std::optional<absl::Time> submitted = FromProtoTime(job.submit_time());
    table.AddRow(
        {job.id(), job.spec().name(), JobStateName(job.state()), absl::StrCat(job.attempt()),
         reported ? absl::StrFormat("%.0f%%", 100 * ProgressFraction(p)) : "-", FormatEpochs(p),
         FormatSteps(p), reported ? FormatLambda(p.curriculum_factor()) : "-",
         reported ? absl::StrFormat("%.4f", p.loss_mae()) : "-",
         submitted.has_value() ? FormatAge(now - *submitted) : "-"});
  }
  table.Print(out);
}

}  // namespace

ExitCode RunGet(const GetOptions& options, const CommandEnv& env) {
  v1::GetJobRequest request;
  request.set_job_id(options.job_id);
  v1::Job job;
  std::unique_ptr<grpc::ClientContext> context = NewCallContext(env.global, false);
  if (absl::Status status = FromGrpcStatus(env.stub.GetJob(context.get(), request, &job));
      !status.ok()) {
    return ReportRpcError(status, env.global, env.err);
  }
  if (env.global.output != OutputFormat::kTable) return PrintOrFail(job, env);
  PrintJobDetails(job, env.clock(), env.out);
  return kExitOk;
}

ExitCode RunList(const ListOptions& options, const CommandEnv& env) {
  v1::ListJobsRequest request;
  for (v1::JobState state : options.states) request.add_states(state);
  request.mutable_label_selector()->insert(options.labels.begin(), options.labels.end());
  request.set_all_owners(options.all_owners);
  v1::ListJobsResponse all;
  do {
    const int wanted = options.limit > 0 ? options.limit - all.jobs_size() : 0;
    request.set_page_size(wanted > 0 ? std::min(wanted, kMaxPageSize) : 0);
    v1::ListJobsResponse page;
    std::unique_ptr<grpc::ClientContext> context = NewCallContext(env.global, false);
    if (absl::Status status = FromGrpcStatus(env.stub.ListJobs(context.get(), request, &page));
        !status.ok()) {
      return ReportRpcError(status, env.global, env.err);
    }
    for (v1::Job& job : *page.mutable_jobs()) {
      if (options.limit > 0 && all.jobs_size() >= options.limit) break;
      *all.add_jobs() = std::move(job);
    }
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty() &&
           (options.limit == 0 || all.jobs_size() < options.limit));

  if (env.global.output != OutputFormat::kTable) return PrintOrFail(all, env);
  if (all.jobs().empty()) {
    env.err << "no jobs" << (options.states.empty() && options.labels.empty() ? "" : " match")
            << '\n';
    return kExitOk;
  }
  PrintJobTable({all.jobs().begin(), all.jobs().end()}, env.clock(), env.out);
  return kExitOk;
}

ExitCode RunCancel(const CancelOptions& options, const CommandEnv& env) {
  v1::CancelJobRequest request;
  request.set_job_id(options.job_id);
  request.set_reason(options.reason);
  v1::Job job;
  std::unique_ptr<grpc::ClientContext> context = NewCallContext(env.global, false);
  if (absl::Status status = FromGrpcStatus(env.stub.CancelJob(context.get(), request, &job));
      !status.ok()) {
    return ReportRpcError(status, env.global, env.err);
  }
  if (env.global.output != OutputFormat::kTable) return PrintOrFail(job, env);
  if (job.state() == v1::JOB_STATE_CANCELLED) {
    env.out << "job " << job.id() << " cancelled\n";
  } else if (IsTerminal(job.state())) {
    // CancelJob returns a job that had already finished unchanged.
    env.out << "job " << job.id() << " had already finished: " << JobStateName(job.state()) << '\n';
  } else {
    env.out << "job " << job.id() << " is being cancelled (now " << JobStateName(job.state())
            << ")\n";
  }
  return kExitOk;
}

}  // namespace clmae::ctl
