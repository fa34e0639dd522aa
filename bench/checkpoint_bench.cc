// clmae-bench-checkpoint: checkpoint upload and download throughput over
// loopback against a plain local copy of the same bytes, in one run, for both
// ways of keeping checkpoints: grpc (the bytes stream through the
// coordinator to its disk) and s3 (presigned URLs, straight between this
// process and a SeaweedFS started here; the coordinator only signs and
// checks).
//
// Starts a real clmae-coordinator per path (child process, data folder on
// the same file system as the source file), attaches a fake agent that runs
// a one-rank job so uploads are accepted, then for each size:
//   copy      read the file and write a new one in 1 MiB blocks, fsync it
//             (what the store must at least do: the bytes land once, durably)
//   upload    UploadCheckpointFile (hash pass + stream; the coordinator
//             writes, hashes, fsyncs and renames, then records)
//   download  DownloadCheckpointToFile (the coordinator reads; the client
//             writes, fsyncs, verifies the SHA-256, renames)
// and prints MB/s, the ratios to the copy, the coordinator's CPU seconds
// during the upload and the download, its peak RSS over the two (VmHWM,
// reset before each size) and this process's peak RSS (flat memory = no
// growth with the size).
//
//   clmae-bench-checkpoint [--sizes_mb=256,2048] [--backends=grpc,s3] [--dir=/tmp]

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/coordinator_process.h"
#include "clmae/v1/coordinator.grpc.pb.h"
#include "clmae/v1/worker_control.grpc.pb.h"
#include "common/sha256.h"
#include "services/checkpoint_download.h"
#include "services/checkpoint_upload.h"
#include "services/grpc_client.h"
#include "tests/testing/seaweedfs.h"

ABSL_FLAG(std::string, sizes_mb, "256,2048", "checkpoint sizes to time, in MiB");
ABSL_FLAG(std::string, backends, "grpc,s3",
          "checkpoint paths to time: grpc (the coordinator's own disk) and s3 (a SeaweedFS "
          "started here, with the venv's weed or $CLMAE_WEED)");
ABSL_FLAG(std::string, dir, "/tmp", "folder for the files and the coordinator's data");
ABSL_FLAG(std::string, coordinator_binary, CLMAE_COORDINATOR_BINARY, "clmae-coordinator to start");

namespace clmae::bench {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int64_t MaxRssKib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

int Fail(const std::string& what, const std::string& log = "") {
  std::fprintf(stderr, "clmae-bench-checkpoint: %s\n", what.c_str());
  if (!log.empty()) std::fprintf(stderr, "%s\n", FileTail(log, 4000).c_str());
  return 1;
}

// Random bytes (incompressible; the disk sees the full size).
absl::Status WriteRandomFile(const std::string& path, int64_t bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return absl::InternalError(absl::StrCat("cannot create ", path));
  std::mt19937_64 rng(42);
  std::vector<uint64_t> block((1 << 20) / sizeof(uint64_t));
  for (int64_t left = bytes; left > 0; left -= 1 << 20) {
    for (auto& v : block) v = rng();
    std::fwrite(block.data(), 1, std::min<int64_t>(left, 1 << 20), f);
  }
  const bool ok = std::fflush(f) == 0 && fsync(fileno(f)) == 0;
  std::fclose(f);
  return ok ? absl::OkStatus() : absl::InternalError(absl::StrCat("cannot write ", path));
}

// The baseline: a plain read/write copy in 1 MiB blocks, then fsync.
absl::Status CopyFile(const std::string& from, const std::string& to) {
  const int in = open(from.c_str(), O_RDONLY | O_CLOEXEC);
  const int out = open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (in < 0 || out < 0) return absl::InternalError("cannot open the copy's files");
  std::vector<char> block(1 << 20);
  bool ok = true;
  while (true) {
    const ssize_t n = read(in, block.data(), block.size());
    if (n <= 0) {
      ok = n == 0;
      break;
    }
    if (write(out, block.data(), n) != n) {
      ok = false;
      break;
    }
  }
  ok = ok && fsync(out) == 0;
  close(in);
  close(out);
  return ok ? absl::OkStatus() : absl::InternalError("copy failed");
}

// A fake agent that registers one CPU slot and reports its rank running, so
// the job's attempt accepts uploads.
struct RunningJob {
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::CoordinatorMessage>> stream;
  v1::TaskAssignment task;
};

absl::StatusOr<RunningJob> StartJob(const std::shared_ptr<grpc::Channel>& channel,
                                    const ClientOptions& worker, const ClientOptions& client) {
  RunningJob job;
  auto worker_stub = v1::WorkerControl::NewStub(channel);
  job.context = std::make_unique<grpc::ClientContext>();
  AuthorizeCall(*job.context, worker);
  job.stream = worker_stub->Attach(job.context.get());
  v1::AgentMessage hello;
  hello.mutable_register_()->set_worker_id("bench-agent");
  hello.mutable_register_()->set_address("127.0.0.1");
  hello.mutable_register_()->set_cpu_slots(1);
  v1::CoordinatorMessage reply;
  if (!job.stream->Write(hello) || !job.stream->Read(&reply) || !reply.has_registered()) {
    return absl::UnavailableError("the fake agent could not register");
  }
  v1::SubmitJobRequest submit;
  submit.mutable_spec()->set_name("checkpoint-bench");
  submit.mutable_spec()->mutable_data()->set_kind(v1::DataSpec::SYNTHETIC);
  submit.mutable_spec()->mutable_train()->set_device("cpu");
  submit.mutable_spec()->mutable_output()->set_keep_checkpoints(1);
  v1::Job created;
  grpc::ClientContext submit_context;
  AuthorizeCall(submit_context, client);
  grpc::Status submitted =
      v1::Coordinator::NewStub(channel)->SubmitJob(&submit_context, submit, &created);
  if (!submitted.ok()) return absl::InternalError("submit: " + submitted.error_message());
  while (job.stream->Read(&reply)) {
    if (reply.has_assign()) break;
  }
  if (!reply.has_assign()) return absl::UnavailableError("no assignment for the bench job");
  job.task = reply.assign().task();
  v1::AgentMessage running;
  v1::TaskStatus* status = running.mutable_task_status();
  status->set_job_id(job.task.job_id());
  status->set_attempt(job.task.attempt());
  status->set_rank(0);
  status->set_state(v1::TaskStatus::RUNNING);
  if (!job.stream->Write(running)) return absl::UnavailableError("the agent stream broke");
  return job;
}

// CPU seconds (user + system) the process has used so far, from
// /proc/<pid>/stat; -1 when it cannot be read.
double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::vector<std::string> fields = absl::StrSplit(text.substr(close + 2), ' ');
  // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name.
  int64_t user = 0, system = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &user) ||
      !absl::SimpleAtoi(fields[12], &system)) {
    return -1;
  }
  return static_cast<double>(user + system) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Resets the process's peak RSS (VmHWM) to its current RSS, so that the
// peak read after a transfer is that transfer's.
void ResetPeakRss(pid_t pid) { std::ofstream(absl::StrCat("/proc/", pid, "/clear_refs")) << "5"; }

// One way of storing checkpoints: the coordinator's extra flags.
struct Backend {
  std::string name;
  std::vector<std::string> flags;
};

// Times every size through one coordinator started with `backend`'s flags;
// prints a row per size.
int RunBackend(const Backend& backend, const std::string& dir, const std::vector<int64_t>& sizes) {
  CoordinatorProcessOptions process;
  process.binary = absl::GetFlag(FLAGS_coordinator_binary);
  process.data_dir = absl::StrCat(dir, "/coordinator-", backend.name);
  process.log_path = absl::StrCat(dir, "/coordinator-", backend.name, ".log");
  process.client_token = "bench-client-token";
  process.worker_token = "bench-worker-token";
  // No heartbeats from the fake agent: a lease longer than the run.
  process.extra_flags = {"--metrics_listen=", "--lease=24h", "--heartbeat_interval=1h"};
  for (const std::string& flag : backend.flags) process.extra_flags.push_back(flag);
  auto coordinator = CoordinatorProcess::Start(process, absl::Seconds(60));
  if (!coordinator.ok()) return Fail(coordinator.status().ToString(), process.log_path);
  auto channel = (*coordinator)->NewChannel();
  ClientOptions worker;
  worker.token = process.worker_token;
  ClientOptions client;
  client.token = process.client_token;
  auto job = StartJob(channel, worker, client);
  if (!job.ok()) return Fail(job.status().ToString(), process.log_path);
  auto worker_stub = v1::WorkerControl::NewStub(channel);
  auto client_stub = v1::Coordinator::NewStub(channel);
  const pid_t pid = (*coordinator)->pid();

  int64_t step = 0;
  for (int64_t mb : sizes) {
    const int64_t bytes = mb << 20;
    const std::string source = absl::StrCat(dir, "/source-", mb);
    const std::string copy = absl::StrCat(dir, "/copy-", mb);
    const std::string downloaded = absl::StrCat(dir, "/downloaded-", mb);
    if (absl::Status s = WriteRandomFile(source, bytes); !s.ok()) return Fail(s.ToString());

    double t0 = Now();
    if (absl::Status s = CopyFile(source, copy); !s.ok()) return Fail(s.ToString());
    const double copy_s = Now() - t0;

    v1::CheckpointMetadata metadata;
    metadata.set_job_id(job->task.job_id());
    metadata.set_attempt(job->task.attempt());
    metadata.set_kind(v1::CHECKPOINT_KIND_FULL);
    metadata.set_step(++step);
    ResetPeakRss(pid);
    const double cpu0 = CpuSeconds(pid);
    t0 = Now();
    auto uploaded = UploadCheckpointFile(*worker_stub, worker, metadata, source, UploadOptions{});
    const double upload_s = Now() - t0;
    const double cpu1 = CpuSeconds(pid);
    if (!uploaded.ok()) return Fail("upload: " + uploaded.status().ToString(), process.log_path);

    DownloadOptions options;
    options.resume = false;
    options.prepare_context = [&](grpc::ClientContext& context) { AuthorizeCall(context, client); };
    const std::string id = uploaded->id();
    const std::string job_id = job->task.job_id();
    OpenDownloadStream open = [&](grpc::ClientContext* context, int64_t offset) {
      v1::DownloadCheckpointRequest request;
      request.set_job_id(job_id);
      request.set_id(id);
      request.set_offset(offset);
      request.set_accept_url(true);
      return client_stub->DownloadCheckpoint(context, request);
    };
    t0 = Now();
    auto got = DownloadCheckpointToFile(open, downloaded, options);
    const double download_s = Now() - t0;
    const double cpu2 = CpuSeconds(pid);
    if (!got.ok()) return Fail("download: " + got.status().ToString(), process.log_path);
    if (got->metadata().sha256() != uploaded->metadata().sha256()) return Fail("digest differs");

    auto memory = (*coordinator)->Memory();
    const double mbs = static_cast<double>(bytes) / 1e6;
    std::printf("%-6s %6lld %9.0f %9.0f %6.2f %9.0f %6.2f %9.2f %9.2f %9.1f %9.1f\n",
                backend.name.c_str(), static_cast<long long>(mb), mbs / copy_s, mbs / upload_s,
                copy_s / upload_s, mbs / download_s, copy_s / download_s, cpu1 - cpu0, cpu2 - cpu1,
                memory.ok() ? memory->hwm_kib / 1024.0 : -1.0, MaxRssKib() / 1024.0);
    std::fflush(stdout);
    for (const auto& p : {source, copy, downloaded}) std::filesystem::remove(p);
  }
  job->context->TryCancel();
  (*coordinator)->Terminate();
  return 0;
}

int Run() {
  std::vector<int64_t> sizes;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_sizes_mb), ',')) {
    int64_t mb = 0;
    if (!absl::SimpleAtoi(part, &mb) || mb < 1) return Fail("--sizes_mb: bad size");
    sizes.push_back(mb);
  }
  std::vector<std::string> wanted = absl::StrSplit(absl::GetFlag(FLAGS_backends), ',');
  for (const std::string& name : wanted) {
    if (name != "grpc" && name != "s3") {
      return Fail(absl::StrCat("--backends: \"", name, "\" is neither grpc nor s3"));
    }
  }
  std::string dir = absl::StrCat(absl::GetFlag(FLAGS_dir), "/clmae-ckpt-bench-XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) return Fail("mkdtemp failed");

  std::printf(
      "clmae-bench-checkpoint: files in %s; coordinator CPU seconds and peak RSS are "
      "measured per transfer\n",
      dir.c_str());
  std::printf("%-6s %6s %9s %9s %6s %9s %6s %9s %9s %9s %9s\n", "path", "MiB", "copy MB/s",
              "up MB/s", "ratio", "down MB/s", "ratio", "coord CPU", "coord CPU", "coord",
              "client");
  std::printf("%-6s %6s %9s %9s %6s %9s %6s %9s %9s %9s %9s\n", "", "", "", "", "", "", "", "up s",
              "down s", "peak MiB", "peak MiB");
  std::unique_ptr<testing::SeaweedFs> store;
  for (const std::string& name : wanted) {
    Backend backend{name, {}};
    if (name == "s3") {
      store = std::make_unique<testing::SeaweedFs>();
      if (!store->ok()) return Fail(absl::StrCat("SeaweedFS: ", store->error()));
      const S3Config config = store->config();
      const std::string credentials = dir + "/s3-credentials";
      std::ofstream(credentials) << "aws_access_key_id = " << config.access_key_id
                                 << "\naws_secret_access_key = " << config.secret_access_key
                                 << "\n";
      backend.flags = {"--checkpoint_backend=s3", "--s3_endpoint=" + config.endpoint,
                       "--s3_bucket=" + config.bucket, "--s3_credentials_file=" + credentials,
                       "--s3_create_bucket"};
    }
    if (int code = RunBackend(backend, dir, sizes); code != 0) return code;
    store.reset();
  }
  std::printf(
      "ratios are upload or download rate / copy rate; grpc: the bytes stream through "
      "the coordinator to its disk; s3: presigned URLs, straight to SeaweedFS\n");
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace clmae::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return clmae::bench::Run();
}
