#include "services/server.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/impl/server_builder_option.h"
#include "grpcpp/impl/server_builder_plugin.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/support/channel_arguments.h"
#include "services/tls.h"

namespace clmae {
namespace {

// The names health answers for: the whole server and each service.
const char* const kHealthNames[] = {"", "clmae.v1.Coordinator", "clmae.v1.WorkerControl"};

void SetHealth(grpc::Server& server, bool serving) {
  grpc::HealthCheckServiceInterface* health = server.GetHealthCheckService();
  if (health == nullptr) return;
  for (const char* name : kHealthNames) health->SetServingStatus(name, serving);
}

// gRPC's reflection library registers its plugin with every ServerBuilder
// as soon as it is linked (a static initializer), so "off" has to be said:
// this option takes the plugin out of the builder's list. UpdatePlugins is
// the hook gRPC gives options for exactly that.
class WithoutReflection : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments* /*args*/) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    std::erase_if(*plugins, [](const std::unique_ptr<grpc::ServerBuilderPlugin>& plugin) {
      return plugin->name() == "proto_server_reflection";
    });
  }
};

}  // namespace

CoordinatorServer::CoordinatorServer(const ServerOptions& /*options*/,
                                     clmae::Coordinator* coordinator, Authorizer authorizer)
    : authorizer_(std::move(authorizer)),
      coordinator_service_(coordinator, &authorizer_),
      worker_control_service_(coordinator, &authorizer_) {}

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const ServerOptions& options, clmae::Coordinator* coordinator) {
  if (coordinator == nullptr) return absl::InvalidArgumentError("no coordinator to serve");
  if (options.listen_address.empty()) {
    return absl::InvalidArgumentError("--listen is empty; give host:port (e.g. 0.0.0.0:50051)");
  }
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max message bytes must be positive, got ", options.max_message_bytes));
  }
  ASSIGN_OR_RETURN(Authorizer authorizer,
                   Authorizer::Create(options.tokens, options.insecure_no_auth));
  // Trainers call with the credential issued with their assignment.
  authorizer.set_task_verifier([coordinator](absl::string_view token) -> absl::StatusOr<TaskScope> {
    ASSIGN_OR_RETURN(TaskKey task, coordinator->VerifyTaskToken(token));
    return TaskScope{std::move(task.job_id), task.attempt, task.rank};
  });
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                   MakeServerCredentials(options.tls));

  std::unique_ptr<CoordinatorServer> server(
      new CoordinatorServer(options, coordinator, std::move(authorizer)));
  grpc::EnableDefaultHealthCheckService(true);
  if (options.reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, credentials, &server->port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  // gRPC sets SO_REUSEPORT by default, which would let a second coordinator
  // share the port (and half the calls) with a running one.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (!options.reflection) builder.SetOption(std::make_unique<WithoutReflection>());
  builder.RegisterService(&server->coordinator_service_);
  builder.RegisterService(&server->worker_control_service_);
  if (options.interceptors) builder.experimental().SetInterceptorCreators(options.interceptors());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    if (server->server_ != nullptr) server->server_->Shutdown();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on '", options.listen_address,
                     "': the address is in use or not local; pick another with --listen"));
  }
  SetHealth(*server->server_, true);
  return server;
}

CoordinatorServer::~CoordinatorServer() { Shutdown(absl::Seconds(1)); }

void CoordinatorServer::Shutdown(absl::Duration deadline) {
  if (server_ == nullptr || shut_down_.exchange(true)) return;
  SetHealth(*server_, false);
  server_->Shutdown(absl::ToChronoTime(absl::Now() + deadline));
  server_->Wait();
}

std::shared_ptr<grpc::Channel> CoordinatorServer::InProcessChannel() {
  return server_->InProcessChannel(grpc::ChannelArguments());
}

}  // namespace clmae
