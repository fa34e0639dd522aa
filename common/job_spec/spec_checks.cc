#include "common/job_spec/spec_checks.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/job_spec/yaml_scalar.h"

namespace clmae::spec_checks {

absl::Status Invalid(absl::string_view field, absl::string_view allowed, absl::string_view given) {
  return absl::InvalidArgumentError(absl::StrCat(field, " must be ", allowed, ", got ", given));
}

absl::Status IntInRange(absl::string_view field, int64_t value, int64_t lo, int64_t hi) {
  if (value >= lo && value <= hi) return absl::OkStatus();
  const std::string allowed = hi == std::numeric_limits<int64_t>::max()
                                  ? absl::StrCat("at least ", lo)
                                  : absl::StrCat("an integer in [", lo, ", ", hi, "]");
  return Invalid(field, allowed, absl::StrCat(value));
}

std::string Number(double value) { return FormatYamlDouble(value); }

absl::Status KnownEnum(absl::string_view field, const google::protobuf::EnumDescriptor& type,
                       int value) {
  if (type.FindValueByNumber(value) != nullptr) return absl::OkStatus();
  std::vector<std::string> names;
  for (int i = 0; i < type.value_count(); ++i) names.push_back(type.value(i)->name());
  return Invalid(field, absl::StrCat("one of ", absl::StrJoin(names, ", ")), absl::StrCat(value));
}

absl::Status NumberIn(absl::string_view field, double value, const Interval& in) {
  const bool above_lo = in.lo_open ? value > in.lo : value >= in.lo;
  const bool below_hi = in.hi_open ? value < in.hi : value <= in.hi;
  if (std::isfinite(value) && above_lo && below_hi) return absl::OkStatus();
  std::string allowed;
  if (std::isinf(in.lo) && std::isinf(in.hi)) {
    return Invalid(field, "a finite number", Number(value));
  }
  if (std::isinf(in.hi)) {
    allowed = absl::StrCat(in.lo_open ? "greater than " : "at least ", Number(in.lo));
  } else if (std::isinf(in.lo)) {
    allowed = absl::StrCat(in.hi_open ? "less than " : "at most ", Number(in.hi));
  } else {
    allowed = absl::StrCat("in ", in.lo_open ? "(" : "[", Number(in.lo), ", ", Number(in.hi),
                           in.hi_open ? ")" : "]");
  }
  return Invalid(field, absl::StrCat("a finite number ", allowed), Number(value));
}

absl::Status NonNegative(absl::string_view field, double value) {
  return NumberIn(field, value, {.lo = 0});
}

absl::Status Positive(absl::string_view field, double value) {
  return NumberIn(field, value, {.lo = 0, .lo_open = true});
}

}  // namespace clmae::spec_checks
