#include "services/grpc_client.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "services/pem_file.h"

namespace clmae {

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeClientChannel(const ClientOptions& options) {
  if (options.address.empty()) {
    return absl::InvalidArgumentError("the coordinator address is empty; give host:port");
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "a TLS client certificate needs its key and the other way round; give both or neither");
  }
  if (options.tls_ca_file.empty() && !options.tls_cert_file.empty()) {
    return absl::InvalidArgumentError(
        "a TLS client certificate was given without a CA file: give the CA that signed the "
        "server's certificate (an empty CA means plaintext)");
  }
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_message_bytes must be positive, got ", options.max_message_bytes));
  }

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  const int backoff = std::max(options.max_reconnect_backoff_ms, 100);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::min(backoff, 500));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, std::min(backoff, 500));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, backoff);

  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls_ca_file.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(options.tls_ca_file, "TLS CA file"));
    if (!options.tls_cert_file.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                       ReadPemFile(options.tls_cert_file, "TLS client certificate"));
      ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPemFile(options.tls_key_file, "TLS client key"));
    }
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
  }
  return grpc::CreateCustomChannel(options.address, credentials, args);
}

void AuthorizeCall(grpc::ClientContext& context, const ClientOptions& options) {
  if (options.token.empty()) return;
  context.AddMetadata("authorization", absl::StrCat("Bearer ", options.token));
}

}  // namespace clmae
