// clmae-bench-checkpoint: checkpoint upload and download throughput over
// loopback against a plain local copy of the same bytes, in one run.
//
// Starts a real clmae-coordinator (child process, data folder on the same
// file system as the source file), attaches a fake agent that runs a
// one-rank job so uploads are accepted, then for each size:
//   copy      read the file and write a new one in 1 MiB blocks, fsync it
//             (what the store must at least do: the bytes land once, durably)
//   upload    UploadCheckpointFile (hash pass + stream; the coordinator
//             writes, hashes, fsyncs and renames, then records)
//   download  DownloadCheckpointToFile (the coordinator reads; the client
//             writes, fsyncs, verifies the SHA-256, renames)
// and prints MB/s, the ratios to the copy, the coordinator's peak RSS and
// this process's peak RSS after each size (flat memory = no growth with the
// size).
//
//   clmae-bench-checkpoint [--sizes_mb=256,1024] [--dir=/tmp]

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
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

ABSL_FLAG(std::string, sizes_mb, "256,1024", "checkpoint sizes to time, in MiB");
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

int Run() {
  std::vector<int64_t> sizes;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_sizes_mb), ',')) {
    int64_t mb = 0;
    if (!absl::SimpleAtoi(part, &mb) || mb < 1) return Fail("--sizes_mb: bad size");
    sizes.push_back(mb);
  }
  std::string dir = absl::StrCat(absl::GetFlag(FLAGS_dir), "/clmae-ckpt-bench-XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) return Fail("mkdtemp failed");

  CoordinatorProcessOptions process;
  process.binary = absl::GetFlag(FLAGS_coordinator_binary);
  process.data_dir = dir + "/coordinator";
  process.log_path = dir + "/coordinator.log";
  process.client_token = "bench-client-token";
  process.worker_token = "bench-worker-token";
  // No heartbeats from the fake agent: a lease longer than the run.
  process.extra_flags = {"--metrics_listen=", "--lease=24h", "--heartbeat_interval=1h"};
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

  std::printf("clmae-bench-checkpoint: coordinator pid %d on %s, files in %s\n",
              (*coordinator)->pid(), (*coordinator)->address().c_str(), dir.c_str());
  std::printf("%8s %10s %10s %7s %10s %7s %14s %14s\n", "MiB", "copy MB/s", "upload", "ratio",
              "download", "ratio", "coord peak MiB", "client peak MiB");
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
    t0 = Now();
    auto uploaded = UploadCheckpointFile(*worker_stub, worker, metadata, source, UploadOptions{});
    const double upload_s = Now() - t0;
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
      return client_stub->DownloadCheckpoint(context, request);
    };
    t0 = Now();
    auto got = DownloadCheckpointToFile(open, downloaded, options);
    const double download_s = Now() - t0;
    if (!got.ok()) return Fail("download: " + got.status().ToString(), process.log_path);
    if (got->metadata().sha256() != uploaded->metadata().sha256()) return Fail("digest differs");

    auto memory = (*coordinator)->Memory();
    const double mbs = static_cast<double>(bytes) / 1e6;
    std::printf("%8lld %10.0f %10.0f %7.2f %10.0f %7.2f %14.1f %14.1f\n",
                static_cast<long long>(mb), mbs / copy_s, mbs / upload_s, copy_s / upload_s,
                mbs / download_s, copy_s / download_s,
                memory.ok() ? memory->hwm_kib / 1024.0 : -1.0, MaxRssKib() / 1024.0);
    std::fflush(stdout);
    for (const auto& p : {source, copy, downloaded}) std::filesystem::remove(p);
  }
  std::printf("ratios are upload or download rate / copy rate (goal: >= 0.5)\n");
  job->context->TryCancel();
  (*coordinator)->Terminate();
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace clmae::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return clmae::bench::Run();
}
