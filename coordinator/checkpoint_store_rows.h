#pragma once

// Helpers shared by the files of CheckpointStore (checkpoint_store*.cc): the
// id format, the columns its queries read, and the errors they answer.
// Internal to the checkpoint store.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "clmae/v1/checkpoint.pb.h"
#include "coordinator/sqlite_db.h"

namespace clmae::checkpoint_rows {

inline constexpr absl::string_view kIdPrefix = "ck-";
inline constexpr int kIdRandomChars = 20;
inline constexpr absl::string_view kBase32 = "abcdefghijklmnopqrstuvwxyz234567";
// A record's blob in the backend: its object, else its SHA-256.
inline constexpr absl::string_view kBlob = "COALESCE(object_key, sha256)";
// What each query selecting checkpoints reads, in this order.
inline constexpr absl::string_view kColumns = "id, metadata, create_time_us";

// A request's string quoted for an error message: escaped, at most 32 bytes.
std::string Quote(absl::string_view text);

// INVALID_ARGUMENT unless `id` is one the store hands out.
absl::Status CheckId(absl::string_view id);

// NOT_FOUND: job `job_id` has no `what`.
absl::Status NotFound(const std::string& job_id, absl::string_view what);

// The record in the current row of a statement selecting kColumns.
absl::StatusOr<v1::Checkpoint> CheckpointOf(const SqliteStatement& row);

// FAILED_PRECONDITION naming the quarantine of checkpoint `id` when columns
// `first` and `first + 1` of `row` (quarantined_us, quarantine_reason) mark
// one; OK otherwise.
absl::Status NotQuarantined(const std::string& job_id, const std::string& id,
                            const SqliteStatement& row, int first);

// The condition on kind: any kind for UNSPECIFIED.
std::string KindIs(v1::CheckpointKind kind);

}  // namespace clmae::checkpoint_rows
