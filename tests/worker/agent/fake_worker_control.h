#pragma once

// An in-process stand-in for the coordinator's WorkerControl service
// (sync gRPC API on 127.0.0.1): records what agents and trainers send,
// answers `register`, and lets a test send assignments and cancels.

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clmae/v1/worker_control.grpc.pb.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/server_context.h"

namespace clmae::agent_testing {

class FakeWorkerControl final : public v1::WorkerControl::Service {
 public:
  using Stream = grpc::ServerReaderWriter<v1::CoordinatorMessage, v1::AgentMessage>;

  // What Registered tells agents.
  absl::Duration heartbeat_interval = absl::Milliseconds(100);
  absl::Duration lease = absl::Seconds(2);

  grpc::Status Attach(grpc::ServerContext* context, Stream* stream) override {
    {
      absl::MutexLock lock(&mu_);
      ++streams_;
      stream_ = stream;
      context_ = context;
      tokens_.push_back(Authorization(*context));
    }
    v1::AgentMessage in;
    while (stream->Read(&in)) {
      if (in.has_register_()) {
        v1::CoordinatorMessage reply;
        auto* r = reply.mutable_registered();
        r->mutable_heartbeat_interval()->set_nanos(
            static_cast<int>(absl::ToInt64Nanoseconds(heartbeat_interval)));
        r->mutable_lease()->set_seconds(absl::ToInt64Seconds(lease));
        absl::MutexLock lock(&mu_);
        stream->Write(reply);
        registered_ = stream;
      }
      absl::MutexLock lock(&mu_);
      if (in.has_heartbeat()) {
        ++heartbeats_;
      } else {
        messages_.push_back(in);
      }
    }
    absl::MutexLock lock(&mu_);
    if (stream_ == stream) {
      stream_ = nullptr;
      context_ = nullptr;
    }
    if (registered_ == stream) registered_ = nullptr;
    ++ended_streams_;
    return grpc::Status::OK;
  }

  grpc::Status ReportProgress(grpc::ServerContext* context,
                              const v1::ReportProgressRequest* request,
                              v1::ReportProgressResponse*) override {
    absl::MutexLock lock(&mu_);
    ++progress_calls_;
    mu_.Await(absl::Condition(
        +[](bool* hold) { return !*hold; }, &hold_progress_));
    progress_.push_back(*request);
    tokens_.push_back(Authorization(*context));
    return progress_answer_;
  }

  // One UploadCheckpoint call as the service saw it.
  struct Upload {
    v1::CheckpointMetadata metadata;
    std::string bytes;
    std::vector<size_t> chunk_sizes;
    bool metadata_first = false;
  };

  // Reads the whole upload, then answers the next queued failure if any,
  // else `upload_answer`, else OK with the checkpoint "ck-<n>" (the metadata
  // echoed back). Only uploads answered OK are recorded in uploads().
  grpc::Status UploadCheckpoint(grpc::ServerContext* context,
                                grpc::ServerReader<v1::UploadCheckpointRequest>* reader,
                                v1::UploadCheckpointResponse* response) override {
    Upload upload;
    v1::UploadCheckpointRequest request;
    bool first = true;
    while (reader->Read(&request)) {
      if (request.has_metadata()) {
        upload.metadata = request.metadata();
        upload.metadata_first = first;
      } else if (request.part_case() == v1::UploadCheckpointRequest::kSha256) {
        upload.metadata.set_sha256(request.sha256());  // sent after the bytes
      } else {
        upload.bytes += request.data();
        upload.chunk_sizes.push_back(request.data().size());
      }
      first = false;
    }
    absl::MutexLock lock(&mu_);
    ++upload_calls_;
    tokens_.push_back(Authorization(*context));
    mu_.Await(absl::Condition(
        +[](bool* hold) { return !*hold; }, &hold_uploads_));
    if (!upload_failures_.empty()) {
      grpc::Status failure = upload_failures_.front();
      upload_failures_.erase(upload_failures_.begin());
      return failure;
    }
    if (!upload_answer_.ok()) return upload_answer_;
    uploads_.push_back(upload);
    v1::Checkpoint* checkpoint = response->mutable_checkpoint();
    checkpoint->set_id(absl::StrCat("ck-", uploads_.size()));
    *checkpoint->mutable_metadata() = upload.metadata;
    return grpc::Status::OK;
  }

  // Serves the checkpoints added with AddCheckpoint(): the record, then the
  // bytes from the requested offset in chunks of `fetch_chunk_bytes`.
  // NOT_FOUND for another job or id. FailFetches and DamageFetches change
  // the answer.
  grpc::Status FetchCheckpoint(
      grpc::ServerContext* context, const v1::FetchCheckpointRequest* request,
      grpc::ServerWriter<v1::DownloadCheckpointResponse>* writer) override {
    v1::Checkpoint checkpoint;
    std::string bytes;
    grpc::Status end = grpc::Status::OK;
    {
      absl::MutexLock lock(&mu_);
      fetches_.push_back(*request);
      tokens_.push_back(Authorization(*context));
      mu_.Await(absl::Condition(
          +[](bool* hold) { return !*hold; }, &hold_fetches_));
      auto it = checkpoints_.find(request->id());
      if (it == checkpoints_.end() || it->second.first.metadata().job_id() != request->job_id()) {
        return grpc::Status(
            grpc::StatusCode::NOT_FOUND,
            absl::StrCat("no checkpoint ", request->id(), " in job ", request->job_id()));
      }
      checkpoint = it->second.first;
      bytes = it->second.second;
      if (auto failure = fetch_failures_.find(request->id()); failure != fetch_failures_.end()) {
        end = failure->second.first;
        if (failure->second.second < 0) return end;
        bytes.resize(std::min(bytes.size(), static_cast<size_t>(failure->second.second)));
      } else if (damaged_fetches_ > 0 && !bytes.empty()) {
        --damaged_fetches_;
        bytes[bytes.size() / 2] ^= 0x01;
      }
    }
    v1::DownloadCheckpointResponse out;
    *out.mutable_checkpoint() = checkpoint;
    if (!writer->Write(out)) return grpc::Status::CANCELLED;
    for (size_t at = static_cast<size_t>(std::max<int64_t>(request->offset(), 0));
         at < bytes.size(); at += fetch_chunk_bytes) {
      out.set_data(bytes.substr(at, fetch_chunk_bytes));
      if (!writer->Write(out)) return grpc::Status::CANCELLED;
    }
    return end;
  }

  size_t fetch_chunk_bytes = 1 << 16;

  // A checkpoint FetchCheckpoint serves: `record` as the first message
  // (its metadata's job_id decides which job it belongs to), then `bytes`.
  void AddCheckpoint(const v1::Checkpoint& record, std::string bytes) {
    absl::MutexLock lock(&mu_);
    checkpoints_[record.id()] = {record, std::move(bytes)};
  }
  // Fetches of `id` end with `status` after the record and the first `sent`
  // bytes (sent < 0: at once, without the record), as the coordinator ends
  // one whose file failed verification (DATA_LOSS) or refuses a quarantined
  // one (FAILED_PRECONDITION).
  void FailFetches(const std::string& id, grpc::Status status, int64_t sent) {
    absl::MutexLock lock(&mu_);
    fetch_failures_[id] = {std::move(status), sent};
  }
  // The next `count` fetches send every byte, one of them changed, and end
  // OK: damage on the way that only the agent can notice.
  void DamageFetches(int count) {
    absl::MutexLock lock(&mu_);
    damaged_fetches_ = count;
  }
  // While held, FetchCheckpoint calls wait before they answer.
  void HoldFetches(bool hold) {
    absl::MutexLock lock(&mu_);
    hold_fetches_ = hold;
  }
  // The FetchCheckpoint requests received, including held ones.
  std::vector<v1::FetchCheckpointRequest> fetches() {
    absl::MutexLock lock(&mu_);
    return fetches_;
  }

  // The next `count` uploads are answered `status` (after being read whole).
  void FailUploads(int count, grpc::Status status) {
    absl::MutexLock lock(&mu_);
    for (int i = 0; i < count; ++i) upload_failures_.push_back(status);
  }
  // Every upload is answered this from now on (OK: as described above).
  void set_upload_answer(grpc::Status status) {
    absl::MutexLock lock(&mu_);
    upload_answer_ = std::move(status);
  }
  // While held, UploadCheckpoint calls wait before they answer.
  void HoldUploads(bool hold) {
    absl::MutexLock lock(&mu_);
    hold_uploads_ = hold;
  }
  // UploadCheckpoint calls received (each try), including held ones.
  int upload_calls() {
    absl::MutexLock lock(&mu_);
    return upload_calls_;
  }
  // The uploads answered OK, in order.
  std::vector<Upload> uploads() {
    absl::MutexLock lock(&mu_);
    return uploads_;
  }

  // ReportProgress answers this from now on (OK at first).
  void set_progress_answer(grpc::Status status) {
    absl::MutexLock lock(&mu_);
    progress_answer_ = std::move(status);
  }
  // While held, ReportProgress calls wait (as a stuck coordinator would).
  void HoldProgress(bool hold) {
    absl::MutexLock lock(&mu_);
    hold_progress_ = hold;
  }
  // ReportProgress calls received, including those still held.
  int progress_calls() {
    absl::MutexLock lock(&mu_);
    return progress_calls_;
  }

  // Sends to the current Attach stream once it has been answered
  // `registered` (as the coordinator does); false when there is none.
  bool Send(const v1::CoordinatorMessage& message) {
    absl::MutexLock lock(&mu_);
    return stream_ != nullptr && registered_ == stream_ && stream_->Write(message);
  }

  // Ends the current stream from the server side.
  void DropStream() {
    absl::MutexLock lock(&mu_);
    if (context_ != nullptr) context_->TryCancel();
  }

  std::vector<v1::AgentMessage> messages() {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  std::vector<v1::ReportProgressRequest> progress() {
    absl::MutexLock lock(&mu_);
    return progress_;
  }
  std::vector<std::string> tokens() {
    absl::MutexLock lock(&mu_);
    return tokens_;
  }
  int heartbeats() {
    absl::MutexLock lock(&mu_);
    return heartbeats_;
  }
  int streams() {
    absl::MutexLock lock(&mu_);
    return streams_;
  }
  int ended_streams() {
    absl::MutexLock lock(&mu_);
    return ended_streams_;
  }
  // A stream is open and its `register` was answered.
  bool attached() {
    absl::MutexLock lock(&mu_);
    return stream_ != nullptr && registered_ == stream_;
  }

 private:
  static std::string Authorization(const grpc::ServerContext& context) {
    auto it = context.client_metadata().find("authorization");
    return it == context.client_metadata().end()
               ? ""
               : std::string(it->second.data(), it->second.size());
  }

  absl::Mutex mu_;
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  grpc::ServerContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  Stream* registered_ ABSL_GUARDED_BY(mu_) = nullptr;  // answered `registered`
  std::vector<v1::AgentMessage> messages_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ReportProgressRequest> progress_ ABSL_GUARDED_BY(mu_);
  grpc::Status progress_answer_ ABSL_GUARDED_BY(mu_) = grpc::Status::OK;
  bool hold_progress_ ABSL_GUARDED_BY(mu_) = false;
  int progress_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Upload> uploads_ ABSL_GUARDED_BY(mu_);
  std::vector<grpc::Status> upload_failures_ ABSL_GUARDED_BY(mu_);
  grpc::Status upload_answer_ ABSL_GUARDED_BY(mu_) = grpc::Status::OK;
  bool hold_uploads_ ABSL_GUARDED_BY(mu_) = false;
  int upload_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::pair<v1::Checkpoint, std::string>> checkpoints_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::FetchCheckpointRequest> fetches_ ABSL_GUARDED_BY(mu_);
  bool hold_fetches_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::pair<grpc::Status, int64_t>> fetch_failures_ ABSL_GUARDED_BY(mu_);
  int damaged_fetches_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> tokens_ ABSL_GUARDED_BY(mu_);
  int heartbeats_ ABSL_GUARDED_BY(mu_) = 0;
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
  int ended_streams_ ABSL_GUARDED_BY(mu_) = 0;
};

// A server for one FakeWorkerControl on 127.0.0.1 (port 0 picks one).
class FakeServer {
 public:
  FakeServer(FakeWorkerControl* service, int port = 0) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat("127.0.0.1:", port), grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(service);
    server_ = builder.BuildAndStart();
  }
  ~FakeServer() { Stop(); }

  // Ends every call (open streams are cancelled) and closes the port.
  void Stop() {
    if (server_ == nullptr) return;
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Milliseconds(100)));
    server_->Wait();
    server_.reset();
  }

  bool ok() const { return server_ != nullptr && port_ > 0; }
  int port() const { return port_; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace clmae::agent_testing
