// `clmaectl watch`: one WatchJob stream per job (or one for --all), each
// read on its own thread into one WatchView.

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/clmaectl/commands.h"
#include "services/clmaectl/job_format.h"
#include "services/clmaectl/message_output.h"
#include "services/clmaectl/watch_view.h"
#include "services/status_mapping.h"

namespace clmae::ctl {
namespace {

// The streams of one `watch`, and what they have shown so far. Thread-safe.
class Watcher {
 public:
  explicit Watcher(const CommandEnv& env)
      : env_(env),
        view_(env.global.output == OutputFormat::kTable ? env.out : discard_, env.out_is_tty,
              env.terminal_width) {}

  // Reads the stream for `job_id` ("" for every job) until it ends. Its
  // status: an error of the stream, CANCELLED when another stream failed
  // first, or UNAVAILABLE when the stream ended before a watched job
  // finished.
  absl::Status Follow(const std::string& job_id) {
    std::unique_ptr<grpc::ClientContext> context = NewCallContext(env_.global, true);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return absl::CancelledError("another watch failed");
      contexts_.push_back(context.get());
    }
    v1::WatchJobRequest request;
    request.set_job_id(job_id);
    std::unique_ptr<grpc::ClientReaderInterface<v1::JobUpdate>> reader =
        env_.stub.WatchJob(context.get(), request);
    v1::JobUpdate update;
    while (reader->Read(&update)) Show(update);
    absl::Status status = FromGrpcStatus(reader->Finish());
    std::lock_guard<std::mutex> lock(mu_);
    std::erase(contexts_, context.get());
    if (status.ok()) {
      const v1::Job* job = job_id.empty() ? nullptr : view_.Find(job_id);
      if (job_id.empty()) {
        status = absl::UnavailableError("the coordinator ended the watch of every job");
      } else if (job == nullptr || !IsTerminal(job->state())) {
        status = absl::UnavailableError(
            absl::StrCat("the watch of ", job_id, " ended before the job finished"));
      }
    }
    if (!status.ok() && !stopping_) {
      // One failed stream ends the command: stop the others.
      stopping_ = true;
      for (grpc::ClientContext* other : contexts_) other->TryCancel();
    }
    return status;
  }

  // The outcome of the watch of `job_id`, fetched again for its result
  // metrics and failure message (the stream's events carry neither); what
  // the stream showed when that fails. With -o json/yaml, printed as a last
  // snapshot update.
  v1::Job Final(const std::string& job_id) {
    v1::GetJobRequest request;
    request.set_job_id(job_id);
    v1::Job job;
    std::unique_ptr<grpc::ClientContext> context = NewCallContext(env_.global, false);
    if (env_.stub.GetJob(context.get(), request, &job).ok()) {
      if (env_.global.output != OutputFormat::kTable) {
        v1::JobUpdate update;
        update.set_job_id(job_id);
        *update.mutable_snapshot() = job;
        Show(update);
      }
      return job;
    }
    std::lock_guard<std::mutex> lock(mu_);
    const v1::Job* seen = view_.Find(job_id);
    return seen != nullptr ? *seen : v1::Job();
  }

 private:
  void Show(const v1::JobUpdate& update) {
    std::lock_guard<std::mutex> lock(mu_);
    if (env_.global.output == OutputFormat::kTable) {
      view_.Apply(update);
    } else {
      // Printing a well-formed message cannot fail; a failure would be a
      // bug in the printer, and the watch goes on.
      (void)PrintMessage(update, env_.global.output, env_.out, /*one_line=*/true);
      env_.out.flush();
      view_.Apply(update);
    }
  }

  const CommandEnv& env_;
  std::mutex mu_;
  std::ostream discard_{nullptr};  // a stream without a buffer drops what it is given
  WatchView view_;                 // in json/yaml mode it tracks states without printing
  std::vector<grpc::ClientContext*> contexts_;
  bool stopping_ = false;
};

std::string Outcome(const v1::Job& job, absl::string_view job_id) {
  std::string line = absl::StrCat(job_id, " ", JobStateName(job.state()));
  std::optional<absl::Time> start = FromProtoTime(job.start_time());
  std::optional<absl::Time> end = FromProtoTime(job.end_time());
  if (start.has_value() && end.has_value()) {
    absl::StrAppend(&line, " after ", ShortDuration(*end - *start));
  }
  if (job.attempt() > 1) absl::StrAppend(&line, " (attempt ", job.attempt(), ")");
  if (const std::string metrics = FormatMetrics(job.result()); !metrics.empty()) {
    absl::StrAppend(&line, ": ", metrics);
  }
  if (job.state() != v1::JOB_STATE_SUCCEEDED && !job.failure_message().empty()) {
    absl::StrAppend(&line, ": ", job.failure_message());
  }
  return line;
}

}  // namespace

ExitCode RunWatch(const WatchOptions& options, const CommandEnv& env) {
  Watcher watcher(env);
  std::vector<std::string> ids = options.all ? std::vector<std::string>{""} : options.job_ids;
  std::vector<absl::Status> results(ids.size());
  {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < ids.size(); ++i) {
      threads.emplace_back([&, i] { results[i] = watcher.Follow(ids[i]); });
    }
    for (std::thread& thread : threads) thread.join();
  }
  // The first error that is not another stream's cancellation.
  const absl::Status* failure = nullptr;
  for (const absl::Status& status : results) {
    if (!status.ok() && (failure == nullptr || failure->code() == absl::StatusCode::kCancelled)) {
      failure = &status;
    }
  }
  if (failure != nullptr) {
    const bool lost = failure->code() == absl::StatusCode::kUnavailable ||
                      failure->code() == absl::StatusCode::kDeadlineExceeded;
    return ReportRpcError(*failure, env.global, env.err,
                          lost ? "the jobs go on; run the same watch again to follow them" : "");
  }

  // Below the live lines (the cursor is there), or on stderr beside json/yaml.
  std::ostream& summary = env.global.output == OutputFormat::kTable ? env.out : env.err;
  bool all_succeeded = true;
  for (const std::string& id : ids) {
    const v1::Job job = watcher.Final(id);
    all_succeeded = all_succeeded && job.state() == v1::JOB_STATE_SUCCEEDED;
    summary << Outcome(job, id) << '\n';
  }
  return all_succeeded ? kExitOk : kExitFailed;
}

}  // namespace clmae::ctl
