#pragma once

// Names and classes of the contract's enums, one definition for every
// process: the coordinator's messages and metric labels, clmaectl's tables
// and flags, the trainer's upload log. Pure functions; thread-safe.

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "clmae/v1/checkpoint.pb.h"
#include "clmae/v1/job.pb.h"

namespace clmae {

// "RUNNING" for JOB_STATE_RUNNING (the name without the enum's prefix);
// "UNKNOWN(9)" for a value this build does not know (a newer peer).
std::string JobStateName(v1::JobState state);

// "running": the metric label and the spelling users type.
std::string JobStateLabel(v1::JobState state);

// Reads "running", "RUNNING" or "JOB_STATE_RUNNING"; nullopt otherwise
// (UNSPECIFIED included).
std::optional<v1::JobState> ParseJobStateName(absl::string_view name);

// Every state a user can name, lower case, in lifecycle order.
std::vector<std::string> JobStateNames();

// SUCCEEDED, FAILED and CANCELLED: nothing leaves them.
bool IsTerminal(v1::JobState state);

// SCHEDULED and RUNNING: the current attempt holds a placement on workers.
bool IsPlaced(v1::JobState state);

// "full" for CHECKPOINT_KIND_FULL; "unknown(9)" for a value this build does
// not know.
std::string CheckpointKindName(v1::CheckpointKind kind);

// Reads "full", "FULL" or "CHECKPOINT_KIND_FULL" (likewise weights, encoder,
// preview); nullopt otherwise (UNSPECIFIED included).
std::optional<v1::CheckpointKind> ParseCheckpointKind(absl::string_view name);

// The kinds a user can name: full, weights, encoder, preview.
std::vector<std::string> CheckpointKindNames();

}  // namespace clmae
