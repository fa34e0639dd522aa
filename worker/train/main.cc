// clmae-train: trains one CL-MAE (or plain MAE) job from a YAML job spec.
//
//   clmae-train --config examples/tiny-fashion-mnist.yaml [--resume auto]
//   clmae-train --config job.yaml --nproc 2      # 2 data-parallel ranks here
//
// A rank of a larger job reads torchrun's variables (RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
//
// Exit codes: 0 done, 1 training failed, 2 bad command line or spec, 75
// stopped on request (SIGTERM/SIGINT) after a checkpoint; with --nproc, the
// first failing rank's code (or 128 + its signal).

#include <poll.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/command_line.h"
#include "common/exit_codes.h"
#include "common/job_spec/job_spec_defaults.h"
#include "common/job_spec/job_spec_yaml.h"
#include "common/metrics_server.h"
#include "worker/engine/dist/c10d_collectives.h"
#include "worker/engine/train/trainer.h"
#include "worker/process/local_launcher.h"
#include "worker/process/signal_catcher.h"
#include "worker/train/checkpoint_uploader.h"
#include "worker/train/console_reporter.h"
#include "worker/train/coordinator_reporter.h"
#include "worker/train/dist_environment.h"
#include "worker/train/observer_fanout.h"
#include "worker/train/trainer_metrics.h"
#include "worker/train/trainer_options_from_spec.h"

ABSL_FLAG(std::string, config, "", "YAML job spec (see examples/)");
ABSL_FLAG(std::string, resume, "",
          "checkpoint to resume from, or 'auto' for the newest in the output folder");
ABSL_FLAG(std::string, init_from, "",
          "safetensors file (reference key names) to initialise the networks from; "
          "overrides train.init_from");
ABSL_FLAG(std::string, output_dir, "", "output folder; overrides output.dir");
ABSL_FLAG(std::string, device, "",
          "cpu, cuda or cuda:N; overrides train.device (a rank of a multi-rank job "
          "uses cuda:LOCAL_RANK for 'cuda')");
ABSL_FLAG(int64_t, max_steps, -1, "stop after this many iterations; overrides train.max_steps");
ABSL_FLAG(int, nproc, 0,
          "start this many data-parallel ranks on this machine (like torchrun --standalone); "
          "the job's world size becomes N");
ABSL_FLAG(std::string, coordinator, "",
          "coordinator address (host:port): report progress and the result there "
          "(set by clmae-worker; token from CLMAE_TOKEN, TLS files from CLMAE_TLS_CA, "
          "CLMAE_TLS_CERT, CLMAE_TLS_KEY)");
ABSL_FLAG(std::string, job_id, "", "the coordinator's job id (with --coordinator)");
ABSL_FLAG(int, attempt, 1, "the job's attempt number (with --coordinator)");
ABSL_FLAG(int, upload_timeout, 600,
          "seconds rank 0 waits at the end for its checkpoint uploads to reach the "
          "coordinator (with --coordinator)");
ABSL_FLAG(int, metrics_port, -1,
          "serve Prometheus metrics (/metrics) on this port: -1 off, 0 a free port (printed as "
          "'metrics on :PORT'); with --nproc use 0 or give each rank its own port");
ABSL_FLAG(int, collective_timeout, 0,
          "seconds after which a collective waiting on a dead or hung rank fails; "
          "overrides train.collective_timeout_s");

namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

// Sets `*stop` on the first SIGTERM or SIGINT; exits at once on a second.
class StopOnSignal {
 public:
  explicit StopOnSignal(std::atomic<bool>* stop) {
    auto catcher = clmae::SignalCatcher::Install({SIGTERM, SIGINT});
    if (!catcher.ok()) {
      std::fprintf(stderr, "clmae-train: warning: %s\n", catcher.status().ToString().c_str());
      return;
    }
    catcher_ = std::move(*catcher);
    thread_ = std::thread([this, stop] {
      while (!done_.load()) {
        pollfd pfd{catcher_->fd(), POLLIN, 0};
        if (poll(&pfd, 1, 200) <= 0) continue;
        for (int sig : catcher_->TakePending()) {
          if (stop->exchange(true)) std::_Exit(128 + sig);
          std::fprintf(stderr,
                       "clmae-train: signal %d: stopping after a checkpoint at the next step "
                       "(again to stop at once)\n",
                       sig);
        }
      }
    });
  }
  ~StopOnSignal() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::unique_ptr<clmae::SignalCatcher> catcher_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

int Fail(int code, absl::string_view message) {
  std::fprintf(stderr, "clmae-train: %.*s\n", static_cast<int>(message.size()), message.data());
  return code;
}

// The command line each rank of --nproc runs: ours without --nproc.
std::vector<std::string> RankCommandLine(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") {
      ++i;  // and its value
      continue;
    }
    if (absl::StartsWith(args[i], "--nproc=")) continue;
    out.push_back(args[i]);
  }
  return out;
}

// The spec with the command line's overrides, the rendezvous from the
// environment, and the engine's options. Every error is the input's:
// INVALID_ARGUMENT (exit kTrainerExitBadInput).
struct RunConfig {
  clmae::v1::JobSpec spec;
  clmae::DistOptions dist;
  clmae::TrainerOptions options;
  absl::Duration upload_timeout;
};

absl::StatusOr<RunConfig> ConfigFromFlags(const std::string& config) {
  RunConfig run;
  absl::StatusOr<clmae::v1::JobSpec> spec = clmae::LoadJobSpecFile(config);
  if (!spec.ok()) return absl::InvalidArgumentError(spec.status().message());
  run.spec = *std::move(spec);
  if (!absl::GetFlag(FLAGS_device).empty()) {
    run.spec.mutable_train()->set_device(absl::GetFlag(FLAGS_device));
  }
  if (!absl::GetFlag(FLAGS_output_dir).empty()) {
    run.spec.mutable_output()->set_dir(absl::GetFlag(FLAGS_output_dir));
  }
  if (!absl::GetFlag(FLAGS_init_from).empty()) {
    run.spec.mutable_train()->set_init_from(absl::GetFlag(FLAGS_init_from));
  }
  if (absl::GetFlag(FLAGS_max_steps) >= 0) {
    run.spec.mutable_train()->set_max_steps(absl::GetFlag(FLAGS_max_steps));
  }
  if (absl::Status s =
          clmae::ApplyDistEnvironment([](const char* n) { return std::getenv(n); }, run.dist);
      !s.ok()) {
    return absl::InvalidArgumentError(s.message());
  }
  const int timeout_flag = absl::GetFlag(FLAGS_collective_timeout);
  if (timeout_flag < 0) {
    return absl::InvalidArgumentError("--collective_timeout must be positive (seconds)");
  }
  if (absl::GetFlag(FLAGS_upload_timeout) < 0) {
    return absl::InvalidArgumentError("--upload_timeout must be 0 or more (seconds)");
  }
  run.upload_timeout = absl::Seconds(absl::GetFlag(FLAGS_upload_timeout));
  const auto& train = run.spec.train();
  run.dist.timeout = absl::Seconds(timeout_flag > 0 ? timeout_flag
                                   : train.has_collective_timeout_s()
                                       ? train.collective_timeout_s()
                                       : clmae::job_spec_defaults::kCollectiveTimeoutS);
  absl::StatusOr<clmae::TrainerOptions> options = clmae::TrainerOptionsFromSpec(run.spec);
  if (!options.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(config, ": ", options.status().message()));
  }
  run.options = *std::move(options);
  run.options.resume_from = absl::GetFlag(FLAGS_resume);
  run.options.device = clmae::RankDevice(run.options.device, run.dist);
  return run;
}

// Who hears about the run: the console (rank 0), the coordinator (every rank,
// with --coordinator; rank 0 also uploads checkpoints), Prometheus (with
// --metrics_port).
struct Observers {
  clmae::ConsoleReporter console;
  clmae::ObserverFanout fanout;
  std::unique_ptr<clmae::CoordinatorReporter> coordinator;
  std::unique_ptr<clmae::CheckpointUploader> uploader;
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<clmae::TrainerMetrics> metrics;
  std::unique_ptr<clmae::MetricsServer> metrics_server;
};

// INVALID_ARGUMENT when --coordinator cannot be used.
absl::Status AddCoordinator(const RunConfig& run, Observers& observers) {
  if (absl::GetFlag(FLAGS_coordinator).empty()) return absl::OkStatus();
  clmae::CoordinatorReporterOptions ro;
  ro.client.address = absl::GetFlag(FLAGS_coordinator);
  ro.client.token = Env("CLMAE_TOKEN");
  ro.client.tls_ca_file = Env("CLMAE_TLS_CA");
  ro.client.tls_cert_file = Env("CLMAE_TLS_CERT");
  ro.client.tls_key_file = Env("CLMAE_TLS_KEY");
  ro.job_id = absl::GetFlag(FLAGS_job_id);
  ro.attempt = absl::GetFlag(FLAGS_attempt);
  ro.rank = run.dist.rank;
  ro.output_dir = run.options.output_dir;
  auto created = clmae::CoordinatorReporter::Create(ro);
  if (!created.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--coordinator: ", created.status().message()));
  }
  observers.coordinator = std::move(*created);
  observers.fanout.Add(observers.coordinator.get());
  if (run.dist.rank != 0) return absl::OkStatus();
  // Every checkpoint and export goes to the coordinator's store, so a
  // restarted attempt resumes from it on any node.
  clmae::CheckpointUploaderOptions uo;
  uo.client = ro.client;
  uo.job_id = ro.job_id;
  uo.attempt = ro.attempt;
  uo.cache_dir = Env("CLMAE_CHECKPOINT_CACHE");
  auto made = clmae::CheckpointUploader::Create(uo);
  if (!made.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--coordinator: ", made.status().message()));
  }
  observers.uploader = std::move(*made);
  observers.fanout.Add(observers.uploader.get());
  return absl::OkStatus();
}

// Metrics (docs/metrics.md). A port that cannot be bound costs the metrics,
// not the run.
void AddMetrics(const RunConfig& run, Observers& observers) {
  const int port = absl::GetFlag(FLAGS_metrics_port);
  if (port < 0) return;
  const std::string job = absl::GetFlag(FLAGS_job_id);
  observers.metrics = std::make_unique<clmae::TrainerMetrics>(
      *observers.registry, clmae::TrainerMetricsOptions{.job = job.empty() ? "standalone" : job,
                                                        .rank = run.dist.rank,
                                                        .world_size = run.dist.world_size,
                                                        .device = run.options.device});
  observers.fanout.Add(observers.metrics.get());
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables = {observers.registry};
  if (observers.uploader) {
    // The server is destroyed before the uploader (Observers' member order),
    // so no scrape reads a destroyed uploader.
    const clmae::CheckpointUploader* uploader = observers.uploader.get();
    collectables.push_back(clmae::UploadMetrics(
        {.job = job.empty() ? "standalone" : job, .rank = run.dist.rank}, [uploader] {
          return clmae::UploadCounts{.uploaded = uploader->uploaded(),
                                     .dropped = uploader->dropped(),
                                     .deferred = uploader->deferred(),
                                     .errors = uploader->errors()};
        }));
  }
  auto started = clmae::MetricsServer::Start(
      {.listen_address = clmae::MetricsListenAddress(port), .threads = 1, .plain_http = true},
      collectables);
  if (!started.ok()) {
    std::fprintf(stderr, "clmae-train: warning: --metrics_port: %s; training without metrics\n",
                 std::string(started.status().message()).c_str());
    return;
  }
  observers.metrics_server = std::move(*started);
  std::printf("rank %d: metrics on :%d\n", run.dist.rank, observers.metrics_server->port());
  std::fflush(stdout);
}

// Trains, then makes sure the checkpoints and the result reach the
// coordinator before the exit code tells the agent how the rank ended.
int TrainAndReport(RunConfig& run, clmae::Collectives* collectives, Observers& observers) {
  auto trainer = clmae::Trainer::Create(run.options, collectives,
                                        observers.fanout.empty() ? nullptr : &observers.fanout);
  if (!trainer.ok()) {
    const bool bad_input =
        absl::IsInvalidArgument(trainer.status()) || absl::IsNotFound(trainer.status());
    return Fail(bad_input ? clmae::kTrainerExitBadInput : clmae::kTrainerExitFailed,
                trainer.status().message());
  }
  const absl::Status result = (*trainer)->Run();
  if (!result.ok() && !absl::IsCancelled(result)) {
    return Fail(clmae::kTrainerExitFailed, result.message());
  }
  // Stopped on request or finished: the stop checkpoint, or the final
  // checkpoint and exports, are stored before the result makes the job
  // move on; they stay on local disk if they could not be.
  if (observers.uploader) {
    if (absl::Status s = observers.uploader->Flush(run.upload_timeout); !s.ok()) {
      std::fprintf(
          stderr, "clmae-train: warning: %s: %s\n",
          result.ok() ? "checkpoint uploads incomplete" : "the stop checkpoint was not uploaded",
          std::string(s.message()).c_str());
    }
  }
  if (observers.coordinator) {
    // The coordinator must hear the result before this rank's exit makes the
    // job succeed; a coordinator out of reach does not undo the training
    // (the outputs are on disk).
    if (absl::Status s = observers.coordinator->Flush(); !s.ok() && result.ok()) {
      std::fprintf(stderr, "clmae-train: could not report the end to the coordinator: %s\n",
                   std::string(s.message()).c_str());
    }
  }
  if (absl::IsCancelled(result)) {
    std::fprintf(stderr, "clmae-train: %s\n", std::string(result.message()).c_str());
    return clmae::kTrainerExitStopped;
  }
  if (run.dist.rank == 0) std::printf("done: %s\n", run.options.output_dir.c_str());
  return clmae::kTrainerExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Trains a CL-MAE job on this machine.\n"
      "  clmae-train --config job.yaml [--resume auto] [--nproc N]");
  clmae::ParseCommandLineOrExit(argc, argv, "clmae-train");
  const std::string config = absl::GetFlag(FLAGS_config);
  if (config.empty()) {
    return Fail(clmae::kTrainerExitBadInput,
                "--config is required (a YAML job spec; see examples/)");
  }
  const int nproc = absl::GetFlag(FLAGS_nproc);
  if (nproc < 0) {
    return Fail(clmae::kTrainerExitBadInput,
                absl::StrCat("--nproc must be at least 1, got ", nproc));
  }
  if (nproc > 1) {
    if (std::getenv("RANK") != nullptr || std::getenv("WORLD_SIZE") != nullptr) {
      return Fail(clmae::kTrainerExitBadInput,
                  "--nproc starts its own ranks; unset RANK/WORLD_SIZE (this process is "
                  "already a rank of a job)");
    }
    clmae::LocalLauncherOptions launcher;
    launcher.nproc = nproc;
    launcher.argv = RankCommandLine(std::vector<std::string>(argv, argv + argc));
    return clmae::RunLocalLauncher(launcher);
  }

  // SIGTERM/SIGINT (a drained node, an evicted pod, Ctrl-C): every rank
  // stops at the next step after rank 0's checkpoint there, which is
  // uploaded before the exit; a second signal stops at once.
  // Caught from here to the end of main(), so a signal that comes after
  // training finished (during the result, the teardown) is not fatal.
  std::atomic<bool> stop_requested{false};
  StopOnSignal stop_on_signal(&stop_requested);

  absl::StatusOr<RunConfig> run = ConfigFromFlags(config);
  if (!run.ok()) return Fail(clmae::kTrainerExitBadInput, run.status().message());
  run->options.stop_requested = &stop_requested;
  auto collectives = clmae::ConnectCollectives(run->dist, torch::Device(run->options.device));
  if (!collectives.ok()) {
    return Fail(absl::IsInvalidArgument(collectives.status()) ? clmae::kTrainerExitBadInput
                                                              : clmae::kTrainerExitFailed,
                collectives.status().message());
  }
  Observers observers;
  if (run->dist.rank == 0) observers.fanout.Add(&observers.console);
  if (absl::Status s = AddCoordinator(*run, observers); !s.ok()) {
    return Fail(clmae::kTrainerExitBadInput, s.message());
  }
  AddMetrics(*run, observers);
  return TrainAndReport(*run, collectives->get(), observers);
}
