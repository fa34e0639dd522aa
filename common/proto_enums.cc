#include "common/proto_enums.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace clmae {
namespace {

constexpr absl::string_view kStatePrefix = "JOB_STATE_";
constexpr absl::string_view kKindPrefix = "CHECKPOINT_KIND_";

}  // namespace

std::string JobStateName(v1::JobState state) {
  if (!v1::JobState_IsValid(state)) return absl::StrCat("UNKNOWN(", static_cast<int>(state), ")");
  absl::string_view name = v1::JobState_Name(state);
  absl::ConsumePrefix(&name, kStatePrefix);
  return std::string(name);
}

std::string JobStateLabel(v1::JobState state) { return absl::AsciiStrToLower(JobStateName(state)); }

std::optional<v1::JobState> ParseJobStateName(absl::string_view name) {
  std::string upper = absl::AsciiStrToUpper(name);
  if (!absl::StartsWith(upper, kStatePrefix)) upper = absl::StrCat(kStatePrefix, upper);
  v1::JobState state;
  if (!v1::JobState_Parse(upper, &state) || state == v1::JOB_STATE_UNSPECIFIED) {
    return std::nullopt;
  }
  return state;
}

std::vector<std::string> JobStateNames() {
  std::vector<std::string> names;
  for (int value = v1::JobState_MIN; value <= v1::JobState_MAX; ++value) {
    if (value == v1::JOB_STATE_UNSPECIFIED || !v1::JobState_IsValid(value)) continue;
    names.push_back(JobStateLabel(static_cast<v1::JobState>(value)));
  }
  return names;
}

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

bool IsPlaced(v1::JobState state) {
  return state == v1::JOB_STATE_SCHEDULED || state == v1::JOB_STATE_RUNNING;
}

std::string CheckpointKindName(v1::CheckpointKind kind) {
  if (!v1::CheckpointKind_IsValid(kind)) {
    return absl::StrCat("unknown(", static_cast<int>(kind), ")");
  }
  absl::string_view name = v1::CheckpointKind_Name(kind);
  absl::ConsumePrefix(&name, kKindPrefix);
  return absl::AsciiStrToLower(name);
}

std::optional<v1::CheckpointKind> ParseCheckpointKind(absl::string_view name) {
  std::string upper = absl::AsciiStrToUpper(name);
  if (!absl::StartsWith(upper, kKindPrefix)) upper = absl::StrCat(kKindPrefix, upper);
  v1::CheckpointKind kind;
  if (!v1::CheckpointKind_Parse(upper, &kind) || kind == v1::CHECKPOINT_KIND_UNSPECIFIED) {
    return std::nullopt;
  }
  return kind;
}

std::vector<std::string> CheckpointKindNames() {
  std::vector<std::string> names;
  for (int value = v1::CheckpointKind_MIN; value <= v1::CheckpointKind_MAX; ++value) {
    if (value == v1::CHECKPOINT_KIND_UNSPECIFIED || !v1::CheckpointKind_IsValid(value)) continue;
    names.push_back(CheckpointKindName(static_cast<v1::CheckpointKind>(value)));
  }
  return names;
}

}  // namespace clmae
