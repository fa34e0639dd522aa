// `clmaectl checkpoints` and `download`.

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "clmae/v1/checkpoint.pb.h"
#include "services/checkpoint_download.h"
#include "services/clmaectl/checkpoint_format.h"
#include "services/clmaectl/commands.h"
#include "services/clmaectl/job_format.h"
#include "services/clmaectl/message_output.h"
#include "services/clmaectl/text_table.h"
#include "services/grpc_client.h"
#include "services/status_mapping.h"

namespace clmae::ctl {
namespace {

// At most this often the bar is redrawn (about 10 times a second).
constexpr absl::Duration kRedrawInterval = absl::Milliseconds(100);

std::string CreatedAt(const google::protobuf::Timestamp& time) {
  std::optional<absl::Time> t = FromProtoTime(time);
  if (!t.has_value()) return "-";
  // The same form as `clmaectl get`'s times.
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", *t, absl::UTCTimeZone());
}

void PrintCheckpointTable(const v1::ListCheckpointsResponse& response, std::ostream& out) {
  TextTable table({"ID", "STEP", "EPOCH", "λ_cl", "LOSS", "SIZE", "KIND", "CREATED"});
  for (const v1::Checkpoint& checkpoint : response.checkpoints()) {
    const v1::CheckpointMetadata& m = checkpoint.metadata();
    // 1-based like the trainer's console and `clmaectl get` (the proto's is
    // the 0-based epoch in progress).
    table.AddRow({checkpoint.id(), absl::StrCat(m.step()), absl::StrCat(m.epoch() + 1),
                  FormatLambda(m.curriculum_factor()), FormatCheckpointLoss(m),
                  FormatBytes(m.size_bytes()), CheckpointKindName(m.kind()),
                  CreatedAt(checkpoint.create_time())});
  }
  table.Print(out);
}

// The download's progress on stderr: a bar redrawn in place on a terminal,
// else one line when it starts and one when it ends.
class DownloadReporter {
 public:
  DownloadReporter(const CommandEnv& env, std::string path) : env_(env), path_(std::move(path)) {}

  // Each try's start; only the first (or one of another checkpoint) is shown.
  void Started(const v1::Checkpoint& checkpoint, int64_t offset) {
    if (checkpoint.id() == id_) return;
    EndBar();
    id_ = checkpoint.id();
    start_offset_ = offset;
    start_time_ = env_.clock();
    last_draw_ = absl::InfinitePast();
    std::string line =
        absl::StrCat("downloading checkpoint ", DescribeCheckpoint(checkpoint), " to ", path_);
    if (offset > 0) {
      absl::StrAppend(&line, absl::StrFormat(", resuming at %.1f MiB",
                                             static_cast<double>(offset) / (1 << 20)));
    }
    env_.err << line << '\n';
  }

  void Progress(int64_t done, int64_t total) {
    done_ = done;
    total_ = total;
    if (!env_.err_is_tty) return;
    const absl::Time now = env_.clock();
    if (done < total && now - last_draw_ < kRedrawInterval) return;
    last_draw_ = now;
    // "\r ESC[2K" clears the line the cursor is on.
    env_.err << "\r\x1b[2K" << DownloadProgressLine(done, total, Rate(now)) << std::flush;
    bar_drawn_ = true;
  }

  // The last line, after a verified download.
  void Done() {
    EndBar();
    const absl::Time now = env_.clock();
    std::string line = absl::StrCat("received ", FormatBytes(done_ - start_offset_), " in ",
                                    ShortDuration(now - start_time_));
    if (std::optional<double> rate = Rate(now); rate.has_value()) {
      absl::StrAppend(&line, absl::StrFormat(" (%.1f MB/s)", *rate / 1e6));
    }
    absl::StrAppend(&line, "; size and SHA-256 verified");
    env_.err << line << '\n';
  }

  // Ends the bar's line, so what follows starts on its own.
  void EndBar() {
    if (!bar_drawn_) return;
    env_.err << '\n';
    bar_drawn_ = false;
  }

 private:
  std::optional<double> Rate(absl::Time now) const {
    const double seconds = absl::ToDoubleSeconds(now - start_time_);
    if (seconds <= 0) return std::nullopt;
    return static_cast<double>(done_ - start_offset_) / seconds;
  }

  const CommandEnv& env_;
  const std::string path_;
  std::string id_;  // the checkpoint being downloaded; empty before the first try
  int64_t start_offset_ = 0;
  int64_t done_ = 0;
  int64_t total_ = 0;
  absl::Time start_time_;
  absl::Time last_draw_ = absl::InfinitePast();
  bool bar_drawn_ = false;
};

bool FileExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// Where the file may go: not a directory, into a writable one. Local
// problems are reported here, so that the download's statuses are the
// server's.
std::optional<std::string> CheckDestination(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return absl::StrCat(path, " is a directory; give the file to write, e.g. ", path,
                        "/checkpoint.pt");
  }
  const size_t slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::StrCat("cannot write ", path, ": the directory ", dir, " does not exist");
  }
  if (::access(dir.c_str(), W_OK) != 0) {
    return absl::StrCat("cannot write ", path, ": ", std::strerror(errno), " (directory ", dir,
                        ")");
  }
  return std::nullopt;
}

}  // namespace

ExitCode RunCheckpoints(const CheckpointsOptions& options, const CommandEnv& env) {
  v1::ListCheckpointsRequest request;
  request.set_job_id(options.job_id);
  request.set_kind(options.kind);
  v1::ListCheckpointsResponse response;
  std::unique_ptr<grpc::ClientContext> context = NewCallContext(env.global, false);
  if (absl::Status status =
          FromGrpcStatus(env.stub.ListCheckpoints(context.get(), request, &response));
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
  if (response.checkpoints().empty()) {
    env.err << "no "
            << (options.kind == v1::CHECKPOINT_KIND_UNSPECIFIED
                    ? std::string()
                    : CheckpointKindName(options.kind) + " ")
            << "checkpoints for job " << options.job_id << '\n';
    return kExitOk;
  }
  PrintCheckpointTable(response, env.out);
  return kExitOk;
}

ExitCode RunDownload(const DownloadCheckpointOptions& options, const CommandEnv& env) {
  if (std::optional<std::string> problem = CheckDestination(options.path); problem.has_value()) {
    env.err << "error: " << *problem << '\n';
    return kExitFailed;
  }
  DownloadReporter reporter(env, options.path);
  // After the first record every further try asks for that checkpoint by
  // id, so a newer "latest" committed meanwhile cannot replace it midway.
  std::string pinned_id;
  const OpenDownloadStream open = [&](grpc::ClientContext* context, int64_t offset) {
    v1::DownloadCheckpointRequest request;
    request.set_job_id(options.job_id);
    if (!pinned_id.empty()) {
      request.set_id(pinned_id);
    } else if (!options.id.empty()) {
      request.set_id(options.id);
    } else {
      if (options.step.has_value()) {
        request.set_step(*options.step);
      } else {
        request.set_latest(true);
      }
      request.set_kind(options.kind);
    }
    request.set_offset(offset);
    request.set_accept_url(true);  // object storage: the bytes come from a presigned URL
    return env.stub.DownloadCheckpoint(context, request);
  };
  DownloadOptions download;
  download.started = [&](const v1::Checkpoint& checkpoint, int64_t offset) {
    pinned_id = checkpoint.id();
    reporter.Started(checkpoint, offset);
  };
  download.progress = [&reporter](int64_t done, int64_t total) { reporter.Progress(done, total); };
  // A stream has no deadline (a large file takes what it takes); the token
  // goes with every try.
  download.prepare_context = [&env](grpc::ClientContext& context) {
    AuthorizeCall(context, env.global.client);
  };
  absl::StatusOr<v1::Checkpoint> checkpoint =
      DownloadCheckpointToFile(open, options.path, download);
  if (!checkpoint.ok()) {
    reporter.EndBar();
    std::string hint;
    if (checkpoint.status().code() == absl::StatusCode::kNotFound) {
      hint = absl::StrCat("the job's checkpoints: clmaectl checkpoints ", options.job_id);
    } else if (FileExists(DownloadPartPath(options.path))) {
      hint = absl::StrCat("the bytes received are kept in ", DownloadPartPath(options.path),
                          "; run the same command again to resume");
    }
    return ReportRpcError(checkpoint.status(), env.global, env.err, hint);
  }
  reporter.Done();
  // sha256sum's form, so `sha256sum -c` can check the file again.
  env.out << checkpoint->metadata().sha256() << "  " << options.path << '\n';
  return kExitOk;
}

}  // namespace clmae::ctl
