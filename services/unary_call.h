#pragma once

// The shape of every unary handler of the edge: authorize, run the domain
// call, map its status, finish.

#include <utility>

#include "absl/status/status.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "services/auth.h"
#include "services/blocking_call_pool.h"
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

// RunUnary, but `body` runs on `pool` (after authorization, on the calling
// thread): for a body that waits for a durable commit. `body` is moved
// there, so it must hold copies or pointers, not references to the
// handler's locals; the request and response stay valid until Finish.
template <typename Body>
grpc::ServerUnaryReactor* RunUnaryOn(BlockingCallPool& pool, grpc::CallbackServerContext* context,
                                     const Authorizer& authorizer, Access access, Body body) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<Principal> principal = authorizer.Authorize(*context, access);
  if (!principal.ok()) {
    reactor->Finish(ToGrpcStatus(principal.status()));
    return reactor;
  }
  pool.Schedule([reactor, p = *std::move(principal), body = std::move(body)]() mutable {
    reactor->Finish(ToGrpcStatus(body(p)));
  });
  return reactor;
}

}  // namespace clmae
