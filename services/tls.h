#pragma once

// Server-side transport credentials: plaintext, TLS from certificate files,
// or mutual TLS when a client CA is given.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"

namespace clmae {

struct ServerTlsOptions {
  std::string cert_file;  // PEM certificate chain; empty (with key_file) = plaintext
  std::string key_file;   // PEM private key
  // PEM CA bundle; when set, clients must present a certificate it signed.
  std::string client_ca_file;
};

// Credentials for grpc::ServerBuilder::AddListeningPort. INVALID_ARGUMENT
// when only one of cert/key is given or a client CA comes without them;
// the file errors of ReadPemFile (naming the file) otherwise.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options);

}  // namespace clmae
