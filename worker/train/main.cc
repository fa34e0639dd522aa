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

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/exit_codes.h"
#include "services/job_spec_defaults.h"
#include "services/job_spec_yaml.h"
#include "services/metrics_server.h"
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

// Accepts --output-dir as well as Abseil's --output_dir spelling.
std::vector<char*> NormaliseFlagNames(int argc, char** argv, std::vector<std::string>& storage) {
  storage.assign(argv, argv + argc);
  std::vector<char*> out;
  for (auto& arg : storage) {
    if (arg.rfind("--", 0) == 0) {
      const size_t end = std::min(arg.find('='), arg.size());
      std::replace(arg.begin() + 2, arg.begin() + end, '-', '_');
    }
    out.push_back(arg.data());
  }
  return out;
}

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

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "clmae-train: %s\n", message.c_str());
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

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Trains a CL-MAE job on this machine.\n"
      "  clmae-train --config job.yaml [--resume auto] [--nproc N]");
  std::vector<std::string> storage;
  auto args = NormaliseFlagNames(argc, argv, storage);
  auto rest = absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  if (rest.size() > 1)
    return Fail(2, absl::StrCat("unexpected argument '", rest[1], "'; see --help"));
  const std::string config = absl::GetFlag(FLAGS_config);
  if (config.empty()) return Fail(2, "--config is required (a YAML job spec; see examples/)");

  const int nproc = absl::GetFlag(FLAGS_nproc);
  if (nproc < 0) return Fail(2, absl::StrCat("--nproc must be at least 1, got ", nproc));
  if (nproc > 1) {
    if (std::getenv("RANK") != nullptr || std::getenv("WORLD_SIZE") != nullptr) {
      return Fail(2,
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

  auto spec = clmae::LoadJobSpecFile(config);
  if (!spec.ok()) return Fail(2, std::string(spec.status().message()));
  if (!absl::GetFlag(FLAGS_device).empty())
    spec->mutable_train()->set_device(absl::GetFlag(FLAGS_device));
  if (!absl::GetFlag(FLAGS_output_dir).empty())
    spec->mutable_output()->set_dir(absl::GetFlag(FLAGS_output_dir));
  if (!absl::GetFlag(FLAGS_init_from).empty())
    spec->mutable_train()->set_init_from(absl::GetFlag(FLAGS_init_from));
  if (absl::GetFlag(FLAGS_max_steps) >= 0)
    spec->mutable_train()->set_max_steps(absl::GetFlag(FLAGS_max_steps));

  clmae::DistOptions dist;
  if (auto s = clmae::ApplyDistEnvironment([](const char* n) { return std::getenv(n); }, dist);
      !s.ok()) {
    return Fail(2, std::string(s.message()));
  }
  const int timeout_flag = absl::GetFlag(FLAGS_collective_timeout);
  if (timeout_flag < 0) return Fail(2, "--collective_timeout must be positive (seconds)");
  if (absl::GetFlag(FLAGS_upload_timeout) < 0) {
    return Fail(2, "--upload_timeout must be 0 or more (seconds)");
  }
  const absl::Duration upload_timeout = absl::Seconds(absl::GetFlag(FLAGS_upload_timeout));
  const auto& train = spec->train();
  dist.timeout = absl::Seconds(timeout_flag > 0 ? timeout_flag
                               : train.has_collective_timeout_s()
                                   ? train.collective_timeout_s()
                                   : clmae::job_spec_defaults::kCollectiveTimeoutS);

  auto options = clmae::TrainerOptionsFromSpec(*spec);
  if (!options.ok()) return Fail(2, absl::StrCat(config, ": ", options.status().message()));
  options->resume_from = absl::GetFlag(FLAGS_resume);
  options->device = clmae::RankDevice(options->device, dist);

  auto collectives = clmae::ConnectCollectives(dist, torch::Device(options->device));
  if (!collectives.ok()) {
    return Fail(absl::IsInvalidArgument(collectives.status()) ? 2 : 1,
                std::string(collectives.status().message()));
  }

  // Rank 0 speaks for the job on the console; every rank reports its
  // progress to the coordinator when there is one.
  clmae::ConsoleReporter console;
  clmae::ObserverFanout observers;
  if (dist.rank == 0) observers.Add(&console);
  std::unique_ptr<clmae::CoordinatorReporter> coordinator;
  std::unique_ptr<clmae::CheckpointUploader> uploader;
  if (!absl::GetFlag(FLAGS_coordinator).empty()) {
    clmae::CoordinatorReporterOptions ro;
    ro.client.address = absl::GetFlag(FLAGS_coordinator);
    ro.client.token = Env("CLMAE_TOKEN");
    ro.client.tls_ca_file = Env("CLMAE_TLS_CA");
    ro.client.tls_cert_file = Env("CLMAE_TLS_CERT");
    ro.client.tls_key_file = Env("CLMAE_TLS_KEY");
    ro.job_id = absl::GetFlag(FLAGS_job_id);
    ro.attempt = absl::GetFlag(FLAGS_attempt);
    ro.rank = dist.rank;
    ro.output_dir = options->output_dir;
    auto created = clmae::CoordinatorReporter::Create(ro);
    if (!created.ok()) return Fail(2, absl::StrCat("--coordinator: ", created.status().message()));
    coordinator = std::move(*created);
    observers.Add(coordinator.get());
    if (dist.rank == 0) {
      // Every checkpoint and export goes to the coordinator's store, so a
      // restarted attempt resumes from it on any node.
      clmae::CheckpointUploaderOptions uo;
      uo.client = ro.client;
      uo.job_id = ro.job_id;
      uo.attempt = ro.attempt;
      uo.cache_dir = Env("CLMAE_CHECKPOINT_CACHE");
      auto made = clmae::CheckpointUploader::Create(uo);
      if (!made.ok()) return Fail(2, absl::StrCat("--coordinator: ", made.status().message()));
      uploader = std::move(*made);
      observers.Add(uploader.get());
    }
  }
  options->stop_requested = &stop_requested;
  // Metrics (docs/metrics.md). A port that cannot be bound costs the
  // metrics, not the run.
  auto registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<clmae::TrainerMetrics> metrics;
  std::unique_ptr<clmae::MetricsServer> metrics_server;
  if (const int port = absl::GetFlag(FLAGS_metrics_port); port >= 0) {
    const std::string job = absl::GetFlag(FLAGS_job_id);
    metrics = std::make_unique<clmae::TrainerMetrics>(
        *registry, clmae::TrainerMetricsOptions{.job = job.empty() ? "standalone" : job,
                                                .rank = dist.rank,
                                                .world_size = dist.world_size,
                                                .device = options->device});
    observers.Add(metrics.get());
    auto started = clmae::MetricsServer::Start(
        {.listen_address = clmae::MetricsListenAddress(port), .threads = 1, .plain_http = true},
        {registry});
    if (started.ok()) {
      metrics_server = std::move(*started);
      std::printf("rank %d: metrics on :%d\n", dist.rank, metrics_server->port());
      std::fflush(stdout);
    } else {
      std::fprintf(stderr, "clmae-train: warning: --metrics_port: %s; training without metrics\n",
                   std::string(started.status().message()).c_str());
    }
  }
  auto trainer = clmae::Trainer::Create(*options, collectives->get(),
                                        observers.empty() ? nullptr : &observers);
  if (!trainer.ok()) {
    const bool bad_input =
        absl::IsInvalidArgument(trainer.status()) || absl::IsNotFound(trainer.status());
    return Fail(bad_input ? 2 : 1, std::string(trainer.status().message()));
  }
  absl::Status run = (*trainer)->Run();
  if (absl::IsCancelled(run)) {
    if (uploader) {
      if (auto s = uploader->Flush(upload_timeout); !s.ok()) {
        std::fprintf(stderr, "clmae-train: warning: the stop checkpoint was not uploaded: %s\n",
                     std::string(s.message()).c_str());
      }
    }
    if (coordinator) coordinator->Flush().IgnoreError();
    std::fprintf(stderr, "clmae-train: %s\n", std::string(run.message()).c_str());
    return clmae::kTrainerExitStopped;
  }
  if (!run.ok()) return Fail(1, std::string(run.message()));
  if (uploader) {
    // The final checkpoint and exports are stored before the result makes
    // the job succeed; still on local disk if they could not be.
    if (auto s = uploader->Flush(upload_timeout); !s.ok()) {
      std::fprintf(stderr, "clmae-train: warning: checkpoint uploads incomplete: %s\n",
                   std::string(s.message()).c_str());
    }
  }
  if (coordinator) {
    // The coordinator must hear the result before this rank's exit 0 makes
    // the job succeed; a coordinator out of reach does not undo the
    // training (the outputs are on disk).
    if (auto s = coordinator->Flush(); !s.ok()) {
      std::fprintf(stderr, "clmae-train: could not report the end to the coordinator: %s\n",
                   std::string(s.message()).c_str());
    }
  }
  if (dist.rank == 0) std::printf("done: %s\n", options->output_dir.c_str());
  return 0;
}
