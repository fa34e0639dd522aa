// `clmaectl submit`, and the call context every command uses.

#include <chrono>

#include "absl/random/random.h"
#include "absl/strings/str_format.h"
#include "common/job_spec/job_spec_validator.h"
#include "common/job_spec/job_spec_yaml.h"
#include "services/clmaectl/commands.h"
#include "services/clmaectl/job_format.h"
#include "services/clmaectl/message_output.h"
#include "services/status_mapping.h"

namespace clmae::ctl {

std::unique_ptr<grpc::ClientContext> NewCallContext(const GlobalOptions& global, bool streaming) {
  auto context = std::make_unique<grpc::ClientContext>();
  AuthorizeCall(*context, global.client);
  if (!streaming) {
    context->set_deadline(std::chrono::system_clock::now() +
                          absl::ToChronoMilliseconds(global.timeout));
  }
  return context;
}

std::string NewRequestId() {
  absl::BitGen gen;
  const uint64_t high = absl::Uniform<uint64_t>(gen);
  const uint64_t low = absl::Uniform<uint64_t>(gen);
  // Version 4 (random) and the RFC 4122 variant, so it reads as a UUID.
  const uint64_t time_high = ((high & 0xFFF) | 0x4000);
  const uint64_t clock_seq = (((low >> 48) & 0x3FFF) | 0x8000);
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", high >> 32, (high >> 16) & 0xFFFF, time_high,
                         clock_seq, low & 0xFFFFFFFFFFFFULL);
}

ExitCode RunSubmit(const SubmitOptions& options, const CommandEnv& env) {
  absl::StatusOr<v1::JobSpec> spec = LoadJobSpecFile(options.spec_file);
  absl::Status valid = spec.ok() ? ValidateJobSpecForService(*spec) : spec.status();
  if (!valid.ok()) {
    // Prefixed with the path when the file was read; the validator's
    // messages name the field.
    env.err << "error: " << (spec.ok() ? options.spec_file + ": " : "") << valid.message()
            << "\n(nothing was submitted; fix the spec and run submit again)\n";
    return kExitFailed;
  }

  v1::SubmitJobRequest request;
  *request.mutable_spec() = *std::move(spec);
  request.set_request_id(options.request_id.empty() ? NewRequestId() : options.request_id);
  const std::string retry_hint = absl::StrFormat(
      "to retry without creating a second job: clmaectl submit -f %s --request-id %s",
      options.spec_file, request.request_id());
  env.err << "submitting " << options.spec_file << " with request id " << request.request_id()
          << '\n';

  v1::Job job;
  std::unique_ptr<grpc::ClientContext> context = NewCallContext(env.global, false);
  absl::Status status = FromGrpcStatus(env.stub.SubmitJob(context.get(), request, &job));
  if (!status.ok()) {
    if (status.code() == absl::StatusCode::kAlreadyExists) {
      env.err << "error: request id " << request.request_id()
              << " was already used with a different spec: " << status.message()
              << " (omit --request-id to submit this spec as a new job)\n";
      return kExitFailed;
    }
    const bool retryable = status.code() == absl::StatusCode::kUnavailable ||
                           status.code() == absl::StatusCode::kDeadlineExceeded;
    return ReportRpcError(status, env.global, env.err, retryable ? retry_hint : "");
  }

  if (env.global.output != OutputFormat::kTable) {
    if (absl::Status printed = PrintMessage(job, env.global.output, env.out); !printed.ok()) {
      env.err << "error: " << printed.message() << '\n';
      return kExitFailed;
    }
    return kExitOk;
  }
  env.out << "job " << job.id() << " submitted (" << job.spec().name() << ", "
          << JobStateName(job.state()) << ")\n"
          << "follow it: clmaectl watch " << job.id() << '\n';
  return kExitOk;
}

}  // namespace clmae::ctl
