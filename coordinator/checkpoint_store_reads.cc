// CheckpointStore: finding records, reading their bytes (verified as they
// are read) and quarantining those that fail.

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/proto_enums.h"
#include "common/status_macros.h"
#include "coordinator/checkpoint_store.h"
#include "coordinator/checkpoint_store_rows.h"

namespace clmae {

using checkpoint_rows::CheckId;
using checkpoint_rows::CheckpointOf;
using checkpoint_rows::kBlob;
using checkpoint_rows::kColumns;
using checkpoint_rows::KindIs;
using checkpoint_rows::NotFound;
using checkpoint_rows::NotQuarantined;

absl::Status CheckpointStore::QuarantinedLoss(Anchor& anchor, const std::string& job_id,
                                              const std::string& id, absl::string_view reason,
                                              absl::string_view context) {
  absl::Status quarantined = absl::FailedPreconditionError("the store has closed");
  {
    absl::MutexLock lock(&anchor.mu);
    if (anchor.store != nullptr) quarantined = anchor.store->Quarantine(job_id, id, reason);
  }
  return absl::DataLossError(absl::StrCat(
      context, reason,
      quarantined.ok() ? "; it has been quarantined"
                       : absl::StrCat("; quarantining it failed: ", quarantined.ToString())));
}

class CheckpointStore::ReaderImpl : public CheckpointStore::Reader {
 public:
  ReaderImpl(std::unique_ptr<BlobReader> blob, std::shared_ptr<Anchor> anchor, std::string job_id,
             std::string id)
      : blob_(std::move(blob)),
        anchor_(std::move(anchor)),
        job_id_(std::move(job_id)),
        id_(std::move(id)) {}

  absl::StatusOr<std::string> Read(size_t max_bytes) override {
    if (!failure_.ok()) return failure_;
    absl::StatusOr<std::string> chunk = blob_->Read(max_bytes);
    if (chunk.ok() || !absl::IsDataLoss(chunk.status())) return chunk;
    // The blob failed verification (BlobReader answers DATA_LOSS for nothing else).
    failure_ = QuarantinedLoss(
        *anchor_, job_id_, id_, chunk.status().message(),
        absl::StrCat("checkpoint ", id_, " failed verification on the coordinator: "));
    return failure_;
  }

 private:
  std::unique_ptr<BlobReader> blob_;
  const std::shared_ptr<Anchor> anchor_;
  const std::string job_id_;
  const std::string id_;
  absl::Status failure_;
};

absl::StatusOr<std::vector<v1::Checkpoint>> CheckpointStore::ReadCheckpoints(
    SqliteStatement& stmt) const {
  std::vector<v1::Checkpoint> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) break;
    ASSIGN_OR_RETURN(out.emplace_back(), CheckpointOf(stmt));
  }
  return out;
}

absl::StatusOr<std::vector<v1::Checkpoint>> CheckpointStore::Select(
    const std::string& job_id, absl::string_view where, const std::vector<int64_t>& ints,
    absl::string_view order) const {
  ASSIGN_OR_RETURN(auto stmt, db_->Prepare(absl::StrCat("SELECT ", kColumns,
                                                        " FROM checkpoints WHERE job_id = ? AND "
                                                        "quarantined_us IS NULL AND ",
                                                        where, " ORDER BY ", order)));
  stmt->Bind(1, job_id);
  for (size_t i = 0; i < ints.size(); ++i) stmt->Bind(static_cast<int>(i) + 2, ints[i]);
  return ReadCheckpoints(*stmt);
}

absl::StatusOr<std::vector<v1::Checkpoint>> CheckpointStore::List(const std::string& job_id,
                                                                  v1::CheckpointKind kind) const {
  absl::MutexLock lock(&mu_);
  return Select(job_id, KindIs(kind), {}, "step, kind");
}

absl::StatusOr<v1::Checkpoint> CheckpointStore::Get(const std::string& job_id,
                                                    const std::string& id) const {
  RETURN_IF_ERROR(CheckId(id));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto stmt,
                   db_->Prepare(absl::StrCat("SELECT ", kColumns,
                                             ", quarantined_us, quarantine_reason FROM checkpoints "
                                             "WHERE job_id = ? AND id = ?")));
  stmt->Bind(1, job_id).Bind(2, id);
  ASSIGN_OR_RETURN(bool row, stmt->Step());
  if (!row) return NotFound(job_id, absl::StrCat("checkpoint ", id));
  RETURN_IF_ERROR(NotQuarantined(job_id, id, *stmt, 3));
  return CheckpointOf(*stmt);
}

absl::StatusOr<v1::Checkpoint> CheckpointStore::Latest(const std::string& job_id,
                                                       v1::CheckpointKind kind) const {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> found,
                   Select(job_id, KindIs(kind), {}, "step DESC, kind DESC LIMIT 1"));
  if (found.empty()) {
    return NotFound(job_id, absl::StrCat(v1::CheckpointKind_Name(kind), " checkpoint"));
  }
  return std::move(found.front());
}

absl::StatusOr<v1::Checkpoint> CheckpointStore::AtStep(const std::string& job_id, int64_t step,
                                                       v1::CheckpointKind kind) const {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      std::vector<v1::Checkpoint> found,
      Select(job_id, absl::StrCat(KindIs(kind), " AND step = ?"), {step}, "kind LIMIT 1"));
  if (found.empty()) {
    return NotFound(job_id,
                    absl::StrCat(v1::CheckpointKind_Name(kind), " checkpoint at step ", step));
  }
  return std::move(found.front());
}

absl::StatusOr<std::unique_ptr<CheckpointStore::Reader>> CheckpointStore::OpenReader(
    const v1::Checkpoint& checkpoint, int64_t offset) const {
  RETURN_IF_ERROR(CheckId(checkpoint.id()));
  const std::string& job_id = checkpoint.metadata().job_id();
  absl::StatusOr<std::unique_ptr<BlobReader>> blob = OpenBlob(checkpoint, offset);
  if (absl::IsDataLoss(blob.status())) {
    // Recorded but its file is gone (or cannot be what was recorded): as
    // unusable as a corrupt one, and the next attempt must resume from
    // another.
    return QuarantinedLoss(*anchor_, job_id, checkpoint.id(), blob.status().message());
  }
  if (!blob.ok()) return blob.status();
  return std::unique_ptr<Reader>(
      new ReaderImpl(std::move(*blob), anchor_, job_id, checkpoint.id()));
}

absl::StatusOr<std::unique_ptr<BlobReader>> CheckpointStore::OpenBlob(
    const v1::Checkpoint& checkpoint, int64_t offset) const {
  const std::string& job_id = checkpoint.metadata().job_id();
  if (blobs_ == nullptr) {
    return absl::FailedPreconditionError(
        "this coordinator keeps checkpoints in object storage: download through a presigned URL "
        "(a client that sets accept_url), not through the coordinator");
  }
  // Under the lock, a commit cannot unlink the blob between the lookup and
  // the open; once open, the file outlives any later unlink.
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto stmt,
                   db_->Prepare("SELECT sha256, size_bytes, quarantined_us, quarantine_reason "
                                "FROM checkpoints WHERE job_id = ? AND id = ?"));
  stmt->Bind(1, job_id).Bind(2, checkpoint.id());
  ASSIGN_OR_RETURN(bool row, stmt->Step());
  if (!row) return NotFound(job_id, absl::StrCat("checkpoint ", checkpoint.id(), " any more"));
  RETURN_IF_ERROR(NotQuarantined(job_id, checkpoint.id(), *stmt, 2));
  const std::string digest = stmt->ColumnText(0);
  const int64_t size = stmt->ColumnInt(1);
  if (offset < 0 || offset > size) {
    return absl::InvalidArgumentError(absl::StrCat("offset ", offset, " is outside checkpoint ",
                                                   checkpoint.id(), " of ", size, " bytes"));
  }
  absl::StatusOr<std::unique_ptr<BlobReader>> blob = blobs_->OpenReader(digest, offset, size);
  if (absl::IsNotFound(blob.status())) {
    return absl::DataLossError(
        absl::StrCat("checkpoint ", checkpoint.id(),
                     " is recorded but its file is missing: ", blob.status().message()));
  }
  return blob;
}

absl::Status CheckpointStore::Quarantine(const std::string& job_id, const std::string& id,
                                         absl::string_view reason) {
  RETURN_IF_ERROR(CheckId(id));
  const absl::Time now = options_.clock ? options_.clock() : absl::Now();
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto find, db_->Prepare(absl::StrCat("SELECT ", kBlob,
                                                        " FROM checkpoints WHERE job_id = ? AND "
                                                        "id = ?")));
  find->Bind(1, job_id).Bind(2, id);
  ASSIGN_OR_RETURN(bool row, find->Step());
  if (!row) return NotFound(job_id, absl::StrCat("checkpoint ", id));
  const std::string digest = find->ColumnText(0);
  find.reset();
  std::vector<std::string> lines;
  RETURN_IF_ERROR(db_->Begin());
  SqliteTransaction txn(db_.get());
  RETURN_IF_ERROR(QuarantineInTransaction(id, digest, reason, now, lines));
  RETURN_IF_ERROR(txn.Commit());
  quarantined_total_ += static_cast<int64_t>(lines.size());
  for (const std::string& line : lines) Log(line);
  return absl::OkStatus();
}

absl::Status CheckpointStore::QuarantineInTransaction(const std::string& id,
                                                      const std::string& digest,
                                                      absl::string_view reason, absl::Time now,
                                                      std::vector<std::string>& lines) {
  // Every record of the blob: they all read the same bytes.
  ASSIGN_OR_RETURN(auto healthy, db_->Prepare(absl::StrCat(
                                     "SELECT id, job_id, step, kind FROM checkpoints WHERE ", kBlob,
                                     " = ? AND quarantined_us IS NULL ORDER BY id = ? "
                                     "DESC, job_id, step")));
  healthy->Bind(1, digest).Bind(2, id);
  struct Marked {
    std::string id, job_id;
    int64_t step;
    v1::CheckpointKind kind;
  };
  std::vector<Marked> marked;
  while (true) {
    ASSIGN_OR_RETURN(bool row, healthy->Step());
    if (!row) break;
    marked.push_back({healthy->ColumnText(0), healthy->ColumnText(1), healthy->ColumnInt(2),
                      static_cast<v1::CheckpointKind>(healthy->ColumnInt(3))});
  }
  healthy.reset();
  ASSIGN_OR_RETURN(auto mark, db_->Prepare("UPDATE checkpoints SET quarantined_us = ?, "
                                           "quarantine_reason = ? WHERE id = ?"));
  for (const Marked& m : marked) {
    const std::string why = m.id == id
                                ? std::string(reason)
                                : absl::StrCat(reason, " (the same file as checkpoint ", id, ")");
    mark->Bind(1, absl::ToUnixMicros(now)).Bind(2, why).Bind(3, m.id);
    RETURN_IF_ERROR(mark->Run());
    lines.push_back(absl::StrCat("checkpoint ", m.id, " of job ", m.job_id, " (step ", m.step, ", ",
                                 CheckpointKindName(m.kind), ") quarantined: ", why));
  }
  return absl::OkStatus();
}

}  // namespace clmae
