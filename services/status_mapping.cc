#include "services/status_mapping.h"

#include <string>

#include "common/text.h"

namespace clmae {
namespace {

// Both enums list the canonical codes 0..16 with the same values.
constexpr int kLastCanonicalCode = 16;  // UNAUTHENTICATED

// The longest status message sent: gRPC carries it in a trailer, and one
// past the peer's metadata limit (8 KiB by default) fails the whole call
// ("metadata too large") instead of delivering the code. Messages echo
// input only clipped (common/text.h); this is the safety net.
constexpr size_t kMaxMessageBytes = 2048;

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(status.code());
  const grpc::StatusCode grpc_code = code > 0 && code <= kLastCanonicalCode
                                         ? static_cast<grpc::StatusCode>(code)
                                         : grpc::StatusCode::UNKNOWN;
  return grpc::Status(grpc_code, Clip(status.message(), kMaxMessageBytes));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const int code = static_cast<int>(status.error_code());
  const absl::StatusCode absl_code = code > 0 && code <= kLastCanonicalCode
                                         ? static_cast<absl::StatusCode>(code)
                                         : absl::StatusCode::kUnknown;
  return absl::Status(absl_code, status.error_message());
}

}  // namespace clmae
