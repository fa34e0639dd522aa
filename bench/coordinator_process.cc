#include "bench/coordinator_process.h"

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "bench/sim_agent_fleet.h"
#include "grpc/grpc.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/channel_arguments.h"

namespace clmae::bench {
namespace {

std::string PortFile(const std::string& data_dir) { return data_dir + "/port"; }

double SecondsSince(int64_t start_ns) { return static_cast<double>(NowNs() - start_ns) * 1e-9; }

}  // namespace

bool HealthServing(const std::shared_ptr<grpc::Channel>& channel, absl::Duration deadline) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::microseconds(absl::ToInt64Microseconds(deadline)));
  grpc::ByteBuffer request;  // HealthCheckRequest{service: ""}: no bytes
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  grpc::ByteBuffer response;
  grpc::Status status;
  absl::Notification done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  if (!status.ok()) return false;
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return false;
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse.status (field 1, varint) = SERVING (1).
  return bytes == std::string("\x08\x01", 2);
}

std::string FileTail(const std::string& path, size_t bytes) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

absl::StatusOr<std::unique_ptr<CoordinatorProcess>> CoordinatorProcess::Start(
    const CoordinatorProcessOptions& options, absl::Duration timeout) {
  const std::string port_file = PortFile(options.data_dir);
  std::error_code ignored;
  std::filesystem::remove(port_file, ignored);
  SpawnOptions spawn;
  spawn.argv = {options.binary, "--listen=127.0.0.1:0",
                absl::StrCat("--data_dir=", options.data_dir),
                absl::StrCat("--port_file=", port_file)};
  spawn.argv.insert(spawn.argv.end(), options.extra_flags.begin(), options.extra_flags.end());
  spawn.env = {{"CLMAE_CLIENT_TOKEN", options.client_token},
               {"CLMAE_WORKER_TOKEN", options.worker_token}};
  spawn.output = LogFileOutput{options.log_path};
  const int64_t start = NowNs();
  absl::StatusOr<std::unique_ptr<Subprocess>> child = Subprocess::Spawn(spawn);
  if (!child.ok()) return child.status();
  std::unique_ptr<CoordinatorProcess> process(new CoordinatorProcess(*std::move(child)));
  process->ready_.exec_ns = start;
  const int64_t limit = start + absl::ToInt64Nanoseconds(timeout);
  // The coordinator writes the port file atomically once it serves.
  for (;;) {
    std::ifstream in(port_file);
    std::string line;
    if (in && std::getline(in, line) &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &process->port_)) {
      break;
    }
    if (std::optional<ExitStatus> exited = process->child_->TryWait()) {
      return absl::UnavailableError(absl::StrCat("clmae-coordinator exited (code ",
                                                 exited->ShellCode(), ") before serving:\n",
                                                 FileTail(options.log_path, 2000)));
    }
    if (NowNs() > limit) {
      return absl::DeadlineExceededError(
          absl::StrCat("clmae-coordinator wrote no port file in ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Microseconds(500));
  }
  process->ready_.port_file = SecondsSince(start);
  std::shared_ptr<grpc::Channel> channel = process->NewChannel();
  while (!HealthServing(channel, absl::Seconds(1))) {
    if (NowNs() > limit) {
      return absl::DeadlineExceededError(
          absl::StrCat("clmae-coordinator not SERVING within ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Microseconds(500));
  }
  process->ready_.health = SecondsSince(start);
  return process;
}

std::string CoordinatorProcess::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::shared_ptr<grpc::Channel> CoordinatorProcess::NewChannel() const {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(address(), grpc::InsecureChannelCredentials(), args);
}

absl::StatusOr<MemoryFigures> CoordinatorProcess::Memory() const {
  std::ifstream in(absl::StrCat("/proc/", child_->pid(), "/status"));
  if (!in) return absl::NotFoundError(absl::StrCat("no /proc/", child_->pid(), "/status"));
  MemoryFigures figures;
  std::string line;
  while (std::getline(in, line)) {
    for (auto [key, out] : {std::pair{"VmRSS:", &figures.rss_kib}, {"VmHWM:", &figures.hwm_kib}}) {
      absl::string_view rest = line;
      if (absl::ConsumePrefix(&rest, key)) {
        rest = absl::StripAsciiWhitespace(rest);
        absl::ConsumeSuffix(&rest, "kB");
        absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), out);
      }
    }
  }
  return figures;
}

void CoordinatorProcess::Kill() {
  child_->Signal(SIGKILL).IgnoreError();
  child_->Wait(absl::Seconds(30));
}

std::string CoordinatorProcess::Terminate() {
  const ExitStatus status = child_->Terminate(absl::Seconds(20));
  return status.exited ? absl::StrCat("exit code ", status.code)
                       : absl::StrCat("signal ", status.signal);
}

}  // namespace clmae::bench
