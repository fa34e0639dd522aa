// `clmaectl workers`.

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "clmae/v1/worker.pb.h"
#include "services/clmaectl/commands.h"
#include "services/clmaectl/job_format.h"
#include "services/clmaectl/message_output.h"
#include "services/clmaectl/text_table.h"
#include "services/status_mapping.h"

namespace clmae::ctl {
namespace {

std::string WorkerStateName(v1::WorkerState state) {
  if (!v1::WorkerState_IsValid(state))
    return absl::StrCat("UNKNOWN(", static_cast<int>(state), ")");
  absl::string_view name = v1::WorkerState_Name(state);
  absl::ConsumePrefix(&name, "WORKER_STATE_");
  return std::string(name);
}

// "2 cuda, 4 cpu" (all of them, or the free ones), naming the kinds the
// worker has; "-" for none.
std::string Capacity(const v1::Worker& worker, bool free) {
  std::vector<std::string> parts;
  if (worker.devices_size() > 0) {
    parts.push_back(absl::StrCat(free ? worker.free_devices() : worker.devices_size(), " cuda"));
  }
  if (worker.cpu_slots() > 0) {
    parts.push_back(absl::StrCat(free ? worker.free_cpu_slots() : worker.cpu_slots(), " cpu"));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, ", ");
}

}  // namespace

ExitCode RunWorkers(const WorkersOptions& /*options*/, const CommandEnv& env) {
  v1::ListWorkersResponse response;
  std::unique_ptr<grpc::ClientContext> context = NewCallContext(env.global, false);
  if (absl::Status status =
          FromGrpcStatus(env.stub.ListWorkers(context.get(), v1::ListWorkersRequest(), &response));
      !status.ok()) {
    return ReportRpcError(status, env.global, env.err);
  }
  if (env.global.output != OutputFormat::kTable) {
    if (absl::Status printed = PrintMessage(response, env.global.output, env.out); !printed.ok()) {
      env.err << "error: " << printed.message() << '\n';
      return kExitFailed;
    }
    return kExitOk;
  }
  if (response.workers().empty()) {
    env.err << "no workers attached (start clmae-worker on a node)\n";
    return kExitOk;
  }
  const absl::Time now = env.clock();
  TextTable table({"ID", "ADDRESS", "STATE", "DEVICES", "FREE", "TASKS", "LAST HEARTBEAT"});
  for (const v1::Worker& worker : response.workers()) {
    std::optional<absl::Time> heartbeat = FromProtoTime(worker.last_heartbeat_time());
    table.AddRow({worker.id(), worker.address(), WorkerStateName(worker.state()),
                  Capacity(worker, false), Capacity(worker, true),
                  absl::StrCat(worker.running_tasks_size()),
                  heartbeat.has_value() ? absl::StrCat(FormatAge(now - *heartbeat), " ago") : "-"});
  }
  table.Print(env.out);
  return kExitOk;
}

ExitCode RunDrain(const DrainOptions& options, const CommandEnv& env) {
  v1::DrainWorkerRequest request;
  request.set_worker_id(options.worker_id);
  request.set_undo(options.undo);
  request.set_keep_jobs(options.keep_jobs);
  v1::Worker worker;
  std::unique_ptr<grpc::ClientContext> context = NewCallContext(env.global, false);
  if (absl::Status status = FromGrpcStatus(env.stub.DrainWorker(context.get(), request, &worker));
      !status.ok()) {
    return ReportRpcError(status, env.global, env.err);
  }
  if (env.global.output != OutputFormat::kTable) {
    if (absl::Status printed = PrintMessage(worker, env.global.output, env.out); !printed.ok()) {
      env.err << "error: " << printed.message() << '\n';
      return kExitFailed;
    }
    return kExitOk;
  }
  env.out << "worker " << worker.id() << ": " << WorkerStateName(worker.state())
          << (options.undo        ? " (takes ranks again)\n"
              : options.keep_jobs ? " (no new ranks; running jobs stay)\n"
                                  : " (no new ranks; its jobs checkpoint and move)\n");
  return kExitOk;
}

}  // namespace clmae::ctl
