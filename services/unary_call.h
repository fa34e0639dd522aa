#pragma once

// The shape of every unary handler of the edge: authorize, run the domain
// call, map its status, finish.

#include "absl/status/status.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "services/auth.h"
#include "services/status_mapping.h"

namespace clmae {

// Finishes the call with `body(principal)`'s status after the caller was
// authorized for `access` (or with the authorization error, without running
// `body`).
template <typename Body>
grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* context,
                                   const Authorizer& authorizer, Access access, Body&& body) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<Principal> principal = authorizer.Authorize(*context, access);
  const absl::Status status = principal.ok() ? body(*principal) : principal.status();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace clmae
