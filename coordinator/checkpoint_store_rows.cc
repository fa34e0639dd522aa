#include "coordinator/checkpoint_store_rows.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "coordinator/checkpoint_store.h"
#include "coordinator/proto_time.h"

namespace clmae::checkpoint_rows {

std::string Quote(absl::string_view text) {
  constexpr size_t kMax = 32;
  return absl::StrCat("\"", absl::CHexEscape(text.substr(0, kMax)), "\"",
                      text.size() > kMax ? "..." : "");
}

absl::Status CheckId(absl::string_view id) {
  if (IsCheckpointId(id)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("checkpoint id ", Quote(id), " is not one this store hands out (\"ck-\" and ",
                   kIdRandomChars, " characters a-z, 2-7); take ids from ListCheckpoints"));
}

absl::Status NotFound(const std::string& job_id, absl::string_view what) {
  return absl::NotFoundError(absl::StrCat("job ", Quote(job_id), " has no ", what));
}

absl::StatusOr<v1::Checkpoint> CheckpointOf(const SqliteStatement& row) {
  v1::Checkpoint checkpoint;
  checkpoint.set_id(row.ColumnText(0));
  if (!checkpoint.mutable_metadata()->ParseFromString(row.ColumnBlob(1))) {
    return absl::DataLossError(
        absl::StrCat("checkpoint index: unreadable metadata of ", checkpoint.id()));
  }
  *checkpoint.mutable_create_time() = ToProtoTime(absl::FromUnixMicros(row.ColumnInt(2)));
  return checkpoint;
}

absl::Status NotQuarantined(const std::string& job_id, const std::string& id,
                            const SqliteStatement& row, int first) {
  if (row.ColumnIsNull(first)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "checkpoint ", id, " of job ", Quote(job_id), " was quarantined at ",
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMicros(row.ColumnInt(first)),
                       absl::UTCTimeZone()),
      " (", row.ColumnText(first + 1), "); it is not offered any more"));
}

std::string KindIs(v1::CheckpointKind kind) {
  return kind == v1::CHECKPOINT_KIND_UNSPECIFIED ? "1" : absl::StrCat("kind = ", int64_t{kind});
}

}  // namespace clmae::checkpoint_rows
