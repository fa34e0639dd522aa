#pragma once

// Client-side channel setup shared by every process that calls the
// coordinator (clmaectl, the node agent, trainers, tests).
//
// Tokens travel as per-call metadata (AuthorizeCall), not as channel call
// credentials, so a plaintext loopback channel carries them too.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace clmae {

// The default bound on one message in either direction, client and server.
inline constexpr int kDefaultMaxMessageBytes = 64 << 20;

struct ClientOptions {
  std::string address = "localhost:50051";  // host:port (any gRPC target)
  std::string token;                        // bearer token; empty: none sent
  // PEM files. An empty CA means plaintext; a client certificate and key
  // (both or neither) turn on mutual TLS.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // Overrides the name checked against the server's certificate (e.g. when
  // connecting by IP to a server whose certificate names a host).
  std::string tls_server_name;
  int max_message_bytes = kDefaultMaxMessageBytes;
  // Upper bound of gRPC's own reconnect backoff (its default is 120 s): a
  // restarted coordinator is found again within about this long, inside
  // its recovery lease.
  int max_reconnect_backoff_ms = 2000;
};

// Builds a channel (it connects lazily). INVALID_ARGUMENT for an empty
// address or an incomplete TLS setup; NOT_FOUND / PERMISSION_DENIED naming
// the file when a certificate file cannot be read. Thread-safe.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeClientChannel(const ClientOptions& options);

// Adds `authorization: Bearer <token>` to `context` when options.token is
// non-empty. Call once per call, before starting it.
void AuthorizeCall(grpc::ClientContext& context, const ClientOptions& options);

}  // namespace clmae
