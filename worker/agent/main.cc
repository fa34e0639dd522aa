// clmae-worker: the node agent. Flags become WorkerAgentOptions here only;
// runs until SIGTERM or SIGINT, then stops its trainers and exits 0.

#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/command_line.h"
#include "common/exit_codes.h"
#include "common/file_io.h"
#include "common/metrics_server.h"
#include "prometheus/registry.h"
#include "worker/agent/agent_log.h"
#include "worker/agent/agent_metrics.h"
#include "worker/agent/worker_agent.h"
#include "worker/process/signal_catcher.h"

ABSL_FLAG(std::string, coordinator, "",
          "coordinator address host:port (env CLMAE_ADDRESS; default localhost:50051)");
ABSL_FLAG(std::string, token, "", "bearer token with the worker role (env CLMAE_TOKEN)");
ABSL_FLAG(std::string, token_file, "",
          "file holding the bearer token (its first line), e.g. this node's token mounted "
          "from a Secret; instead of --token");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA file: TLS to the coordinator (env CLMAE_TLS_CA)");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate for mutual TLS (env CLMAE_TLS_CERT)");
ABSL_FLAG(std::string, tls_key, "", "PEM client key for mutual TLS (env CLMAE_TLS_KEY)");
ABSL_FLAG(std::string, tls_server_name, "",
          "name expected in the coordinator's certificate (env CLMAE_TLS_SERVER_NAME)");
ABSL_FLAG(std::string, worker_id, "", "stable worker id (default: the host name)");
ABSL_FLAG(std::string, advertise_address, "",
          "host other nodes' trainers reach this node's rank 0 at (default: the host name)");
ABSL_FLAG(std::string, gpus, "auto", "auto: offer the CUDA devices found; none: CPU slots only");
ABSL_FLAG(int, cpu_slots, 1, "CPU ranks run at once when no CUDA device is offered");
ABSL_FLAG(std::string, trainer, "",
          "clmae-train executable (default: next to this program, else on PATH)");
ABSL_FLAG(std::string, work_dir, "clmae-work",
          "folder for job specs and trainer logs (<work_dir>/<job>/attempt-<n>/rank-<r>.log)");
ABSL_FLAG(std::vector<std::string>, data_roots, {"/usr/share/datasets"},
          "comma-separated folders jobs may read data, eval data and init_from weights from "
          "(symlinks resolved); --work_dir is always allowed");
ABSL_FLAG(absl::Duration, cancel_grace, absl::Seconds(30),
          "SIGTERM -> SIGKILL for cancels without a grace and on agent shutdown");
ABSL_FLAG(absl::Duration, reconnect_backoff_min, absl::Milliseconds(500),
          "first delay before reconnecting to the coordinator");
ABSL_FLAG(absl::Duration, reconnect_backoff_max, absl::Seconds(30),
          "longest delay between reconnection attempts");
ABSL_FLAG(int, metrics_port, 9401,
          "serve Prometheus metrics (/metrics) on this port: -1 off, 0 a free port (printed as "
          "'metrics on :PORT')");
ABSL_FLAG(int, trainer_metrics_port_base, 9410,
          "each trainer serves its metrics on this + its device index (LOCAL_RANK); -1: off");

namespace {

std::string FlagOrEnv(const std::string& flag, const char* env, const std::string& fallback = "") {
  if (!flag.empty()) return flag;
  const char* value = std::getenv(env);
  return value != nullptr && *value != '\0' ? value : fallback;
}

std::string HostName() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

// clmae-train next to this executable, else the first on PATH; "" if none.
std::string DefaultTrainer() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path next_to = self.parent_path() / "clmae-train";
    if (access(next_to.c_str(), X_OK) == 0) return next_to.string();
  }
  const char* path = std::getenv("PATH");
  for (const auto& dir : absl::StrSplit(path != nullptr ? path : "", ':', absl::SkipEmpty())) {
    const std::string candidate = absl::StrCat(dir, "/clmae-train");
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "clmae-worker --coordinator HOST:PORT --token TOKEN [--gpus auto|none] [--cpu_slots N]\n"
      "The node agent: registers this node's GPUs (or CPU slots) with the coordinator and runs\n"
      "one clmae-train per assigned rank.");
  clmae::ParseCommandLineOrExit(argc, argv, "clmae-worker");
  clmae::WorkerAgentOptions options;
  options.coordinator.address =
      FlagOrEnv(absl::GetFlag(FLAGS_coordinator), "CLMAE_ADDRESS", "localhost:50051");
  options.coordinator.token = FlagOrEnv(absl::GetFlag(FLAGS_token), "CLMAE_TOKEN");
  if (const std::string path = absl::GetFlag(FLAGS_token_file); !path.empty()) {
    if (!absl::GetFlag(FLAGS_token).empty()) {
      std::fprintf(stderr, "clmae-worker: give --token or --token_file, not both\n");
      return clmae::kExitUsage;
    }
    absl::StatusOr<std::string> text = clmae::ReadFile(path);
    const std::string token = text.ok() ? std::string(absl::StripAsciiWhitespace(
                                              absl::string_view(*text).substr(0, text->find('\n'))))
                                        : std::string();
    if (token.empty()) {
      std::fprintf(stderr, "clmae-worker: --token_file %s: %s\n", path.c_str(),
                   text.ok() ? "the file is empty" : std::string(text.status().message()).c_str());
      return clmae::kExitUsage;
    }
    options.coordinator.token = token;
  }
  options.coordinator.tls_ca_file = FlagOrEnv(absl::GetFlag(FLAGS_tls_ca), "CLMAE_TLS_CA");
  options.coordinator.tls_cert_file = FlagOrEnv(absl::GetFlag(FLAGS_tls_cert), "CLMAE_TLS_CERT");
  options.coordinator.tls_key_file = FlagOrEnv(absl::GetFlag(FLAGS_tls_key), "CLMAE_TLS_KEY");
  options.coordinator.tls_server_name =
      FlagOrEnv(absl::GetFlag(FLAGS_tls_server_name), "CLMAE_TLS_SERVER_NAME");
  const std::string host = HostName();
  options.worker_id =
      absl::GetFlag(FLAGS_worker_id).empty() ? host : absl::GetFlag(FLAGS_worker_id);
  options.advertise_address = absl::GetFlag(FLAGS_advertise_address).empty()
                                  ? host
                                  : absl::GetFlag(FLAGS_advertise_address);
  const std::string gpus = absl::GetFlag(FLAGS_gpus);
  if (gpus != "auto" && gpus != "none") {
    std::fprintf(stderr, "clmae-worker: --gpus: '%s' is not auto or none\n", gpus.c_str());
    return clmae::kExitUsage;
  }
  options.discover_gpus = gpus == "auto";
  options.cpu_slots = absl::GetFlag(FLAGS_cpu_slots);
  options.trainer_path =
      absl::GetFlag(FLAGS_trainer).empty() ? DefaultTrainer() : absl::GetFlag(FLAGS_trainer);
  if (options.trainer_path.empty()) {
    std::fprintf(stderr,
                 "clmae-worker: no clmae-train next to this program or on PATH; pass --trainer\n");
    return clmae::kExitUsage;
  }
  options.work_dir = absl::GetFlag(FLAGS_work_dir);
  options.data_roots = absl::GetFlag(FLAGS_data_roots);
  options.data_roots.push_back(options.work_dir);
  options.cancel_grace = absl::GetFlag(FLAGS_cancel_grace);
  options.reconnect_backoff_min = absl::GetFlag(FLAGS_reconnect_backoff_min);
  options.reconnect_backoff_max = absl::GetFlag(FLAGS_reconnect_backoff_max);

  // Caught before any thread starts, so no signal ends the agent without
  // stopping its trainers.
  absl::StatusOr<std::unique_ptr<clmae::SignalCatcher>> signals =
      clmae::SignalCatcher::Install({SIGTERM, SIGINT});
  if (!signals.ok()) {
    std::fprintf(stderr, "clmae-worker: %s\n", signals.status().ToString().c_str());
    return clmae::kExitFailure;
  }
  // Metrics (docs/metrics.md). A port that cannot be bound costs the
  // metrics, not the node: the agent runs on without them.
  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = std::make_shared<clmae::AgentMetrics>(*registry, options.worker_id);
  std::unique_ptr<clmae::MetricsServer> metrics_server;
  options.trainer_metrics_port_base = absl::GetFlag(FLAGS_trainer_metrics_port_base);
  if (const int port = absl::GetFlag(FLAGS_metrics_port); port >= 0) {
    options.metrics = metrics.get();
    auto started = clmae::MetricsServer::Start(
        {.listen_address = clmae::MetricsListenAddress(port), .threads = 1}, {registry, metrics});
    if (started.ok()) {
      metrics_server = *std::move(started);
      clmae::AgentLog(absl::StrCat("metrics on :", metrics_server->port()));
    } else {
      clmae::AgentLog(absl::StrCat("warning: --metrics_port: ", started.status().message(),
                                   "; running without metrics"));
    }
  }
  absl::StatusOr<std::unique_ptr<clmae::WorkerAgent>> agent =
      clmae::WorkerAgent::Create(std::move(options));
  if (!agent.ok()) {
    std::fprintf(stderr, "clmae-worker: %s\n", agent.status().ToString().c_str());
    return absl::IsInvalidArgument(agent.status()) ? clmae::kExitUsage : clmae::kExitFailure;
  }
  for (;;) {
    pollfd pfd{(*signals)->fd(), POLLIN, 0};
    if (poll(&pfd, 1, -1) < 0 && errno != EINTR) break;
    std::vector<int> caught = (*signals)->TakePending();
    if (!caught.empty()) {
      clmae::AgentLog(absl::StrCat("caught signal ", caught.front(), "; shutting down"));
      break;
    }
  }
  (*agent)->Shutdown();
  metrics_server.reset();  // no scrape after this
  agent->reset();
  return clmae::kExitOk;
}
