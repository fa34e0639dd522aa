#pragma once

// The coordinator's gRPC server: the Coordinator and WorkerControl services,
// the standard health service (wired to readiness) and server reflection,
// on one listening port with optional TLS.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/coordinator.h"
#include "grpcpp/channel.h"
#include "grpcpp/server.h"
#include "grpcpp/support/server_interceptor.h"
#include "services/auth.h"
#include "services/coordinator_service.h"
#include "services/grpc_client.h"
#include "services/tls.h"
#include "services/worker_control_service.h"

namespace clmae {

struct ServerOptions {
  // host:port; port 0 picks a free port (see CoordinatorServer::port()).
  std::string listen_address = "0.0.0.0:50051";
  ServerTlsOptions tls;
  std::vector<TokenEntry> tokens;
  // With no tokens, accept every call (local development). Without tokens
  // and without this, Start fails.
  bool insecure_no_auth = false;
  int max_message_bytes = kDefaultMaxMessageBytes;
  // Serve gRPC server reflection (what grpcurl lists services with). It
  // answers without a token, so it is off unless asked for. gRPC registers
  // it for every server the process builds afterwards.
  bool reflection = false;
  // Makes the server interceptors (e.g. CoordinatorMetrics' RPC timer);
  // called once by Start. Unset: none.
  std::function<
      std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>()>
      interceptors;
};

// Owns the grpc::Server and the service adapters. Thread-safe.
class CoordinatorServer {
 public:
  // Builds and starts the server over `coordinator` (open and ready; not
  // owned; must outlive this object). Health reports SERVING for "",
  // "clmae.v1.Coordinator" and "clmae.v1.WorkerControl" once this returns.
  // FAILED_PRECONDITION without tokens and without insecure_no_auth;
  // INVALID_ARGUMENT for bad options; UNAVAILABLE when the address cannot
  // be bound.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(const ServerOptions& options,
                                                                  clmae::Coordinator* coordinator);
  // Shuts down (if not yet) with a short deadline.
  ~CoordinatorServer();

  // The bound port (the chosen one when the address asked for port 0).
  int port() const { return port_; }

  // Health NOT_SERVING, then stops accepting calls and ends the ones in
  // progress (open streams are cancelled at `deadline`), then waits for
  // every handler to finish. Idempotent.
  void Shutdown(absl::Duration deadline);

  // A channel to this server that bypasses the network (and TLS), for tests
  // and tools in the same process.
  std::shared_ptr<grpc::Channel> InProcessChannel();

 private:
  CoordinatorServer(const ServerOptions& options, clmae::Coordinator* coordinator,
                    Authorizer authorizer);

  const Authorizer authorizer_;
  CoordinatorService coordinator_service_;
  WorkerControlService worker_control_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::atomic<bool> shut_down_{false};
};

}  // namespace clmae
