// clmae-coordinator: the control plane. Serves the Coordinator (clients) and
// WorkerControl (agents, trainers) gRPC services over a SQLite job store.
//
//   clmae-coordinator --data_dir /var/lib/clmae --tokens_file /etc/clmae/tokens
//   clmae-coordinator --data_dir ./state --listen 127.0.0.1:0 --port_file port
//       --insecure_no_auth
//
// Prints "clmae-coordinator listening on HOST:PORT" once it serves. SIGINT or
// SIGTERM: health NOT_SERVING, calls drained (streams cancelled after
// --shutdown_grace), exit 0. Exit codes: 0 clean shutdown, 1 could not
// start or serve, 2 bad command line.

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/command_line.h"
#include "common/exit_codes.h"
#include "common/file_io.h"
#include "common/job_spec/job_spec_validator.h"
#include "common/metrics_server.h"
#include "common/s3/s3_config.h"
#include "common/status_macros.h"
#include "coordinator/coordinator.h"
#include "prometheus/registry.h"
#include "services/auth.h"
#include "services/coordinator_metrics.h"
#include "services/server.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "host:port to serve on; port 0 picks a free one");
ABSL_FLAG(std::string, data_dir, "",
          "folder for the coordinator's state (job store: <data_dir>/coordinator.db, checkpoints: "
          "<data_dir>/checkpoints); created if missing. Required");
ABSL_FLAG(std::string, tokens_file, "",
          "principals and their tokens, one '<principal> <role> sha256:<hex>' per line (role "
          "user, operator or worker; a worker principal is named after the worker id it may "
          "register as; the SHA-256 of the token, e.g. printf %s TOKEN | sha256sum; '#' "
          "comments). CLMAE_CLIENT_TOKEN adds the operator 'local' and CLMAE_WORKER_TOKEN a "
          "worker token every node may use");
ABSL_FLAG(bool, insecure_no_auth, false,
          "accept every call without a token when none is configured (local development only)");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; with --tls_key turns TLS on");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle; when given, clients must present a certificate it signed (mutual TLS)");
ABSL_FLAG(absl::Duration, lease, absl::Seconds(15),
          "an agent without a heartbeat this long is lost and its jobs' attempts fail");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(5),
          "how often agents are told to send heartbeats; shorter than --lease");
ABSL_FLAG(absl::Duration, hang_timeout, absl::Minutes(10),
          "a running rank whose step has not advanced this long is hung (0 turns the check off)");
ABSL_FLAG(absl::Duration, cancel_grace, absl::Seconds(30),
          "agents wait this long between SIGTERM and SIGKILL when stopping a rank");
ABSL_FLAG(absl::Duration, restart_backoff_min, absl::Seconds(5),
          "after a failed attempt, the next is not placed before this long; doubles with every "
          "restart of the job (0: at once)");
ABSL_FLAG(absl::Duration, restart_backoff_max, absl::Minutes(5),
          "the longest wait between a failed attempt and the next");
ABSL_FLAG(absl::Duration, recovery_grace, absl::ZeroDuration(),
          "after a restart, how long agents have to re-attach and list their ranks before those "
          "count as lost; at least --lease plus the agents' --reconnect_backoff_max (0: --lease "
          "+ 30s)");
ABSL_FLAG(absl::Duration, store_commit_delay, absl::ZeroDuration(),
          "for benchmarks only: sleep this long after every job store commit, as a slower "
          "disk's fsync would (e.g. 4ms); 0 in service");
ABSL_FLAG(bool, backfill, true,
          "conservative backfill: a job behind a blocked job of its device kind may start only "
          "if it cannot delay that job's reservation (estimated from running jobs' progress and "
          "resources.estimated_seconds); false: strict priority order");
ABSL_FLAG(std::string, master_port_range, "29500-29999",
          "MIN-MAX ports handed to jobs for their rendezvous (MASTER_PORT) on rank 0's node");
ABSL_FLAG(std::string, port_file, "",
          "once serving, write the bound port (one line) to this file, atomically");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(5),
          "on SIGINT/SIGTERM, calls still open after this are cancelled");
ABSL_FLAG(std::string, metrics_listen, "0.0.0.0:9400",
          "host:port for Prometheus metrics (/metrics); port 0 picks a free one; empty turns "
          "metrics off");
ABSL_FLAG(std::string, metrics_port_file, "",
          "once serving metrics, write their bound port (one line) to this file, atomically");
ABSL_FLAG(bool, reflection, false,
          "serve gRPC server reflection (grpcurl lists and describes the services with it); it "
          "answers without a token, so keep it off where the port is reachable by others");
ABSL_FLAG(int, max_message_bytes, clmae::kDefaultMaxMessageBytes,
          "largest gRPC message accepted or sent");
ABSL_FLAG(int64_t, max_checkpoint_mb, 64 * 1024,
          "largest checkpoint upload accepted, in MiB (larger ones get RESOURCE_EXHAUSTED)");
ABSL_FLAG(int64_t, checkpoint_min_free_mb, 256,
          "refuse a checkpoint upload that would leave less free space than this (MiB) on the "
          "data folder's file system");
ABSL_FLAG(std::string, checkpoint_backend, "local",
          "where checkpoint bytes live: local (<data_dir>/checkpoints; they pass through the "
          "coordinator) or s3 (S3-compatible object storage: ranks and downloaders move them "
          "straight to and from the bucket by presigned URLs; <data_dir> keeps only the index). "
          "s3 needs --s3_endpoint and --s3_bucket, and credentials from --s3_credentials_file or "
          "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY");
ABSL_FLAG(std::string, s3_endpoint, "",
          "object store URL, scheme://host[:port] (e.g. https://s3.us-east-1.amazonaws.com, "
          "http://minio:9000); requests use path style");
ABSL_FLAG(std::string, s3_bucket, "", "bucket holding the checkpoints");
ABSL_FLAG(std::string, s3_prefix, "clmae/",
          "key prefix; objects are <prefix>jobs/<job id>/<checkpoint id>");
ABSL_FLAG(std::string, s3_region, "us-east-1", "region signed for (SigV4)");
ABSL_FLAG(std::string, s3_credentials_file, "",
          "file with aws_access_key_id = ... and aws_secret_access_key = ... lines (an AWS "
          "credentials file with one profile); empty: the AWS_* environment variables");
ABSL_FLAG(int64_t, s3_part_mb, 64, "multipart upload part size in MiB (5..5120)");
ABSL_FLAG(absl::Duration, s3_url_ttl, absl::Minutes(30),
          "how long presigned upload and download URLs stay valid");
ABSL_FLAG(absl::Duration, s3_orphan_grace, absl::Hours(1),
          "objects and multipart uploads without a record are deleted once this old (an upload "
          "that died before its commit); at least --s3_url_ttl");
ABSL_FLAG(absl::Duration, s3_sweep_interval, absl::Minutes(10),
          "how often the orphan sweep runs (it also runs at start)");
ABSL_FLAG(bool, s3_create_bucket, false,
          "create the bucket at start when missing (for test and demo stores)");

namespace {

constexpr absl::Duration kTickPeriod = absl::Milliseconds(200);

// One line on stderr, with a UTC timestamp, so an operator can line an
// incident up with other logs.
void Say(absl::string_view message) {
  const std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
                   " clmae-coordinator: ", message, "\n");
  std::fputs(line.c_str(), stderr);
}

// The tokens from --tokens_file and the environment; warnings go to stderr.
absl::StatusOr<std::vector<clmae::TokenEntry>> LoadTokens() {
  std::vector<clmae::TokenEntry> tokens;
  if (const std::string path = absl::GetFlag(FLAGS_tokens_file); !path.empty()) {
    absl::StatusOr<clmae::TokenFile> file = clmae::LoadTokensFile(path);
    if (!file.ok()) return file.status();
    for (const std::string& warning : file->warnings) Say(absl::StrCat("warning: ", warning));
    tokens = std::move(file->entries);
  }
  // The shortcut for one machine (the demo, a single-team cluster): the
  // client token is the operator "local", the worker token the fleet worker
  // "worker" (any node may use it).
  struct EnvToken {
    const char* variable;
    const char* principal;
    clmae::Role role;
  };
  const EnvToken env[] = {{"CLMAE_CLIENT_TOKEN", "local", clmae::Role::kOperator},
                          {"CLMAE_WORKER_TOKEN", "worker", clmae::Role::kWorker}};
  for (const EnvToken& e : env) {
    const char* value = std::getenv(e.variable);
    if (value != nullptr && *value != '\0') {
      tokens.push_back(clmae::TokenEntry::ForToken(e.principal, e.role, value,
                                                   /*fleet=*/e.role == clmae::Role::kWorker));
    }
  }
  return tokens;
}

// "0.0.0.0:0" with port 50123 -> "0.0.0.0:50123".
std::string BoundAddress(const std::string& listen, int port) {
  const size_t colon = listen.rfind(':');
  return absl::StrCat(colon == std::string::npos ? listen : listen.substr(0, colon), ":", port);
}

// Calls Coordinator::Tick every kTickPeriod until `stop`; reports each new
// store error once. A failed job store commit leaves the coordinator's memory
// ahead of its store: the process exits at once (as a crash would), and the
// restarted one reloads the store and reconciles with the agents.
void TickUntil(clmae::Coordinator& coordinator, absl::Notification& stop) {
  std::string last_error;
  while (!stop.WaitForNotificationWithTimeout(kTickPeriod)) {
    if (const absl::Status failed = coordinator.StoreFailure(); !failed.ok()) {
      Say(absl::StrCat("exiting: ", failed.ToString()));
      std::_Exit(clmae::kExitFailure);
    }
    const absl::Status ticked = coordinator.Tick(absl::Now());
    if (!ticked.ok() && std::string(ticked.message()) != last_error) {
      last_error = std::string(ticked.message());
      Say(absl::StrCat("tick: ", ticked.ToString(), " (retrying)"));
    } else if (ticked.ok()) {
      last_error.clear();
    }
  }
}

// A start step's error as the process's exit: INVALID_ARGUMENT is a usage
// error (kExitUsage), anything else a failure to start (kExitFailure).
int ExitFor(const absl::Status& status) {
  Say(status.message());
  return absl::IsInvalidArgument(status) ? clmae::kExitUsage : clmae::kExitFailure;
}

// `status` as a usage error (INVALID_ARGUMENT) with `prefix`.
absl::Status UsageError(absl::string_view prefix, const absl::Status& status) {
  return absl::InvalidArgumentError(absl::StrCat(prefix, status.message()));
}

// `status` as a failure to start that is not the command line's fault.
absl::Status StartError(absl::string_view prefix, const absl::Status& status) {
  return absl::Status(
      absl::IsInvalidArgument(status) ? absl::StatusCode::kFailedPrecondition : status.code(),
      absl::StrCat(prefix, status.message()));
}

// The gRPC server's options from the flags: listen address, TLS, tokens.
// Auth is checked here, before the store is touched, so a misconfigured start
// leaves nothing behind.
absl::StatusOr<clmae::ServerOptions> ServerOptionsFromFlags() {
  absl::StatusOr<std::vector<clmae::TokenEntry>> tokens = LoadTokens();
  if (!tokens.ok()) return UsageError("", tokens.status());
  clmae::ServerOptions server_options;
  server_options.listen_address = absl::GetFlag(FLAGS_listen);
  server_options.tls = {absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                        absl::GetFlag(FLAGS_tls_client_ca)};
  server_options.tokens = *std::move(tokens);
  server_options.insecure_no_auth = absl::GetFlag(FLAGS_insecure_no_auth);
  server_options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  server_options.reflection = absl::GetFlag(FLAGS_reflection);
  if (absl::StatusOr<clmae::Authorizer> auth =
          clmae::Authorizer::Create(server_options.tokens, server_options.insecure_no_auth);
      !auth.ok()) {
    return UsageError("", auth.status());
  }
  if (server_options.tokens.empty()) {
    Say("warning: --insecure_no_auth: every call is accepted without a token");
  }
  if (server_options.tls.client_ca_file.empty()) {
    for (const clmae::TokenEntry& entry : server_options.tokens) {
      if (!entry.certificate) continue;
      return UsageError("", absl::InvalidArgumentError(absl::StrCat(
                                "principal '", entry.principal,
                                "' authenticates with a client certificate ('cert'), which "
                                "needs mutual TLS: give --tls_client_ca (and --tls_cert, "
                                "--tls_key)")));
    }
  }
  return server_options;
}

// The domain's options from the flags; creates --data_dir.
absl::StatusOr<clmae::CoordinatorOptions> CoordinatorOptionsFromFlags() {
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  if (data_dir.empty()) {
    return absl::InvalidArgumentError(
        "--data_dir is required: the folder that holds the job store");
  }
  absl::StatusOr<std::pair<int, int>> ports =
      clmae::ParsePortRange(absl::GetFlag(FLAGS_master_port_range), "master_port_range");
  if (!ports.ok()) return ports.status();
  if (absl::GetFlag(FLAGS_hang_timeout) < absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_cancel_grace) < absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_recovery_grace) < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "--hang_timeout, --cancel_grace and --recovery_grace cannot be negative");
  }
  if (absl::GetFlag(FLAGS_restart_backoff_min) < absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_restart_backoff_max) < absl::GetFlag(FLAGS_restart_backoff_min)) {
    return absl::InvalidArgumentError(
        "--restart_backoff_min must be 0 or more and --restart_backoff_max at least as long");
  }
  if (absl::GetFlag(FLAGS_recovery_grace) > absl::ZeroDuration() &&
      absl::GetFlag(FLAGS_recovery_grace) < absl::GetFlag(FLAGS_lease)) {
    return absl::InvalidArgumentError("--recovery_grace must be at least --lease");
  }
  if (absl::GetFlag(FLAGS_store_commit_delay) < absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_store_commit_delay) > absl::Seconds(1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--store_commit_delay: ", absl::FormatDuration(absl::GetFlag(FLAGS_store_commit_delay)),
        " is outside 0..1s"));
  }
  constexpr int64_t kMaxMiB = int64_t{1} << 40;  // so that MiB << 20 fits in an int64
  const int64_t max_checkpoint_mb = absl::GetFlag(FLAGS_max_checkpoint_mb);
  const int64_t min_free_mb = absl::GetFlag(FLAGS_checkpoint_min_free_mb);
  if (max_checkpoint_mb < 1 || max_checkpoint_mb > kMaxMiB || min_free_mb < 0 ||
      min_free_mb > kMaxMiB) {
    return absl::InvalidArgumentError(absl::StrCat("--max_checkpoint_mb must be in 1..", kMaxMiB,
                                                   " and --checkpoint_min_free_mb in 0..",
                                                   kMaxMiB));
  }
  std::error_code error;
  std::filesystem::create_directories(data_dir, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create --data_dir '", data_dir, "': ", error.message()));
  }
  clmae::CoordinatorOptions options;
  options.store_path = (std::filesystem::path(data_dir) / "coordinator.db").string();
  options.store_extra_commit_latency = absl::GetFlag(FLAGS_store_commit_delay);
  options.backfill = absl::GetFlag(FLAGS_backfill);
  options.checkpoint_dir = (std::filesystem::path(data_dir) / "checkpoints").string();
  options.max_checkpoint_bytes = max_checkpoint_mb << 20;
  options.checkpoint_min_free_bytes = min_free_mb << 20;
  const std::string backend = absl::GetFlag(FLAGS_checkpoint_backend);
  if (backend == "s3") {
    clmae::S3BackendOptions s3;
    s3.config.endpoint = absl::GetFlag(FLAGS_s3_endpoint);
    s3.config.bucket = absl::GetFlag(FLAGS_s3_bucket);
    s3.config.prefix = absl::GetFlag(FLAGS_s3_prefix);
    s3.config.region = absl::GetFlag(FLAGS_s3_region);
    if (absl::Status loaded =
            clmae::LoadS3Credentials(absl::GetFlag(FLAGS_s3_credentials_file), s3.config);
        !loaded.ok()) {
      return loaded;
    }
    RETURN_IF_ERROR(clmae::ValidateS3Config(s3.config));
    const int64_t part_mb = absl::GetFlag(FLAGS_s3_part_mb);
    if (part_mb < 5 || part_mb > 5120) {
      return absl::InvalidArgumentError(
          absl::StrCat("--s3_part_mb is ", part_mb, "; S3 parts are 5 to 5120 MiB"));
    }
    s3.part_bytes = part_mb << 20;
    s3.url_ttl = absl::GetFlag(FLAGS_s3_url_ttl);
    s3.orphan_grace = absl::GetFlag(FLAGS_s3_orphan_grace);
    s3.create_bucket = absl::GetFlag(FLAGS_s3_create_bucket);
    if (absl::GetFlag(FLAGS_s3_sweep_interval) <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("--s3_sweep_interval must be positive");
    }
    options.checkpoint_s3 = std::move(s3);
  } else if (backend != "local") {
    return absl::InvalidArgumentError(
        absl::StrCat("--checkpoint_backend is \"", backend, "\"; give local or s3"));
  }
  options.lease = absl::GetFlag(FLAGS_lease);
  options.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  options.hang_timeout = absl::GetFlag(FLAGS_hang_timeout);
  options.cancel_grace = absl::GetFlag(FLAGS_cancel_grace);
  options.restart_backoff_min = absl::GetFlag(FLAGS_restart_backoff_min);
  options.restart_backoff_max = absl::GetFlag(FLAGS_restart_backoff_max);
  options.recovery_grace = absl::GetFlag(FLAGS_recovery_grace);
  options.log = Say;
  options.master_port_min = ports->first;
  options.master_port_max = ports->second;
  options.validate_spec = clmae::ValidateJobSpecForService;
  return options;
}

// The coordinator's metrics and their HTTP server (docs/metrics.md), when
// --metrics_listen is set; the RPC timing interceptor joins `server_options`.
struct MetricsEndpoint {
  std::shared_ptr<prometheus::Registry> registry;
  std::shared_ptr<clmae::CoordinatorMetrics> metrics;
  std::unique_ptr<clmae::MetricsServer> server;
};

absl::StatusOr<MetricsEndpoint> StartMetrics(clmae::Coordinator* coordinator,
                                             clmae::ServerOptions& server_options) {
  MetricsEndpoint endpoint;
  const std::string listen = absl::GetFlag(FLAGS_metrics_listen);
  if (listen.empty()) return endpoint;
  endpoint.registry = std::make_shared<prometheus::Registry>();
  absl::StatusOr<std::shared_ptr<clmae::CoordinatorMetrics>> created =
      clmae::CoordinatorMetrics::Create(
          coordinator, *endpoint.registry,
          {.checkpoint_times = [coordinator] { return coordinator->LastCheckpointTimes(); }});
  if (!created.ok()) return StartError("metrics: ", created.status());
  endpoint.metrics = *std::move(created);
  absl::StatusOr<std::unique_ptr<clmae::MetricsServer>> started = clmae::MetricsServer::Start(
      {.listen_address = listen}, {endpoint.registry, endpoint.metrics});
  if (!started.ok()) {
    return absl::Status(started.status().code(),
                        absl::StrCat("--metrics_listen: ", started.status().message()));
  }
  endpoint.server = *std::move(started);
  if (const std::string file = absl::GetFlag(FLAGS_metrics_port_file); !file.empty()) {
    if (absl::Status written =
            clmae::WriteFileAtomically(file, absl::StrCat(endpoint.server->port(), "\n"));
        !written.ok()) {
      return StartError("--metrics_port_file: ", written);
    }
  }
  clmae::CoordinatorMetrics* timer = endpoint.metrics.get();
  server_options.interceptors = [timer] {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> all;
    all.push_back(timer->RpcInterceptorFactory());
    return all;
  };
  std::printf("clmae-coordinator metrics on :%d\n", endpoint.server->port());
  return endpoint;
}

// Serves until SIGINT or SIGTERM (blocked in `stop_signals`), with the
// coordinator's clock ticking; then drains and stops.
int Serve(clmae::Coordinator& coordinator, const clmae::ServerOptions& server_options,
          const sigset_t& stop_signals) {
  absl::StatusOr<std::unique_ptr<clmae::CoordinatorServer>> server =
      clmae::CoordinatorServer::Start(server_options, &coordinator);
  if (!server.ok()) return ExitFor(server.status());
  absl::Notification stop_ticking;
  std::thread ticker([&] { TickUntil(coordinator, stop_ticking); });
  // Object storage: objects of uploads that died before their commit.
  std::thread sweeper([&] {
    if (!coordinator.CheckpointsPresigned()) return;
    const absl::Duration interval = absl::GetFlag(FLAGS_s3_sweep_interval);
    while (!stop_ticking.WaitForNotificationWithTimeout(interval)) {
      if (absl::Status swept = coordinator.SweepCheckpointObjects(); !swept.ok()) {
        Say(absl::StrCat("checkpoint orphan sweep: ", swept.message()));
      }
    }
  });
  auto stop = [&](absl::Duration grace) {
    (*server)->Shutdown(grace);
    stop_ticking.Notify();
    ticker.join();
    sweeper.join();
  };

  const std::string bound = BoundAddress(server_options.listen_address, (*server)->port());
  if (const std::string port_file = absl::GetFlag(FLAGS_port_file); !port_file.empty()) {
    if (absl::Status written =
            clmae::WriteFileAtomically(port_file, absl::StrCat((*server)->port(), "\n"));
        !written.ok()) {
      Say(absl::StrCat("--port_file: ", written.message()));
      stop(absl::ZeroDuration());
      return clmae::kExitFailure;
    }
  }
  std::printf("clmae-coordinator listening on %s\n", bound.c_str());
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  Say(absl::StrCat("got signal ", signal_number, "; shutting down"));
  stop(absl::GetFlag(FLAGS_shutdown_grace));
  return clmae::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "The CL-MAE training service's control plane.\n"
      "  clmae-coordinator --data_dir DIR [--listen HOST:PORT] (--tokens_file FILE | "
      "--insecure_no_auth)");
  // Blocked here, before any thread starts, so only sigwait in Serve sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  clmae::ParseCommandLineOrExit(argc, argv, "clmae-coordinator");

  absl::StatusOr<clmae::CoordinatorOptions> options = CoordinatorOptionsFromFlags();
  if (!options.ok()) return ExitFor(options.status());
  absl::StatusOr<clmae::ServerOptions> server_options = ServerOptionsFromFlags();
  if (!server_options.ok()) return ExitFor(server_options.status());
  absl::StatusOr<std::unique_ptr<clmae::Coordinator>> coordinator =
      clmae::Coordinator::Open(*std::move(options));
  if (!coordinator.ok()) {
    return ExitFor(absl::Status(
        coordinator.status().code(),
        absl::StrCat("cannot open the coordinator: ", coordinator.status().message())));
  }
  // Metrics start before the gRPC server, so a taken metrics port stops the
  // start before anything is served.
  absl::StatusOr<MetricsEndpoint> metrics = StartMetrics(coordinator->get(), *server_options);
  if (!metrics.ok()) return ExitFor(metrics.status());
  const int code = Serve(**coordinator, *server_options, stop_signals);
  metrics->server.reset();   // no scrape after this
  metrics->metrics.reset();  // stops watching the coordinator
  coordinator->reset();
  return code;
}
