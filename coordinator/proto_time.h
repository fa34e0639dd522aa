#pragma once

// absl::Time / absl::Duration <-> google.protobuf.Timestamp / Duration.

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace clmae {

// Microsecond precision (what the store keeps), clamped to the proto range.
google::protobuf::Timestamp ToProtoTime(absl::Time time);
absl::Time FromProtoTime(const google::protobuf::Timestamp& time);
google::protobuf::Duration ToProtoDuration(absl::Duration duration);

}  // namespace clmae
