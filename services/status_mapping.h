#pragma once

// The one mapper pair between the project's error type (absl::Status) and
// gRPC's (docs/conventions.md, "Errors"). The canonical codes are the same in
// both (absl::StatusCode mirrors grpc::StatusCode value for value); the
// message travels unchanged. An out-of-range code becomes UNKNOWN.

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace clmae {

// Code and message preserved; OK maps to grpc::Status::OK.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Code and message preserved; an OK grpc::Status maps to absl::OkStatus().
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace clmae
