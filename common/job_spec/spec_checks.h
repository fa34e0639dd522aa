#pragma once

// Range checks whose errors read the same everywhere in job-spec validation:
// "<field> must be <what is allowed>, got <value>", INVALID_ARGUMENT, with
// numbers written the way YAML spells them. Thread-safe (pure functions).

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"

namespace clmae::spec_checks {

// "<field> must be <allowed>, got <given>".
absl::Status Invalid(absl::string_view field, absl::string_view allowed, absl::string_view given);

// An integer in [lo, hi]; with hi at the type's maximum the message reads
// "at least lo".
absl::Status IntInRange(absl::string_view field, int64_t value, int64_t lo,
                        int64_t hi = std::numeric_limits<int64_t>::max());

// A finite number in the interval from lo to hi, each end open or closed;
// NaN and infinities always fail.
struct Interval {
  double lo = -std::numeric_limits<double>::infinity();
  bool lo_open = false;
  double hi = std::numeric_limits<double>::infinity();
  bool hi_open = false;
};
absl::Status NumberIn(absl::string_view field, double value, const Interval& interval);

// Shorthands for the common intervals.
absl::Status NonNegative(absl::string_view field, double value);  // [0, inf)
absl::Status Positive(absl::string_view field, double value);     // (0, inf)

// An enum field holding a number its type defines (proto3 enums are open,
// so binary input can carry any number).
absl::Status KnownEnum(absl::string_view field, const google::protobuf::EnumDescriptor& type,
                       int value);

// The value as YAML writes it ("0.75", ".inf", "1.0").
std::string Number(double value);

// `value` when the optional field is set, else `fallback`.
template <typename T>
T Or(bool has, T value, T fallback) {
  return has ? value : fallback;
}

}  // namespace clmae::spec_checks
