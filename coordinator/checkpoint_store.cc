#include "coordinator/checkpoint_store.h"

#include <cstdio>
#include <filesystem>
#include <random>
#include <set>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/proto_enums.h"
#include "common/status_macros.h"
#include "coordinator/checkpoint_store_rows.h"
#include "coordinator/proto_time.h"

namespace clmae {
namespace {

using checkpoint_rows::kBase32;
using checkpoint_rows::kBlob;
using checkpoint_rows::kIdPrefix;
using checkpoint_rows::kIdRandomChars;
using checkpoint_rows::Quote;

// Applied in order; migration i brings the schema from version i to i + 1.
// Append only: never edit a migration that has shipped.
constexpr const char* kMigrations[] = {
    // v1: one row per committed checkpoint (the metadata as a blob, with the
    // columns that are queried); a job+kind+step has at most one.
    R"sql(
CREATE TABLE schema_migrations (
  version INTEGER PRIMARY KEY,
  applied_at_us INTEGER NOT NULL
);
CREATE TABLE checkpoints (
  id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  kind INTEGER NOT NULL,
  step INTEGER NOT NULL,
  final INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  create_time_us INTEGER NOT NULL,
  metadata BLOB NOT NULL,           -- clmae.v1.CheckpointMetadata
  UNIQUE (job_id, kind, step)
);
CREATE INDEX checkpoints_by_sha256 ON checkpoints (sha256);
)sql",
    // v2: a checkpoint whose blob failed verification is quarantined: when
    // (microseconds since the epoch) and why; NULL for a healthy one.
    R"sql(
ALTER TABLE checkpoints ADD COLUMN quarantined_us INTEGER;
ALTER TABLE checkpoints ADD COLUMN quarantine_reason TEXT;
)sql",
    // v3: a checkpoint in object storage (the S3 backend) is an object of its
    // own, named here with the ETag it had when it was verified; NULL for
    // the local backend, whose blobs are named by their SHA-256.
    R"sql(
ALTER TABLE checkpoints ADD COLUMN object_key TEXT;
ALTER TABLE checkpoints ADD COLUMN object_etag TEXT;
CREATE INDEX checkpoints_by_object_key ON checkpoints (object_key);
)sql",
};
static_assert(std::size(kMigrations) == CheckpointStore::kSchemaVersion);

}  // namespace

absl::Status ValidateCheckpointMetadata(const v1::CheckpointMetadata& m) {
  const auto bad = [](absl::string_view field, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint metadata: ", field, " ", why));
  };
  if (m.job_id().empty()) return bad("job_id", "is empty");
  if (m.attempt() < 1) {
    return bad("attempt", absl::StrCat("is ", m.attempt(), "; attempts start at 1"));
  }
  if (m.kind() == v1::CHECKPOINT_KIND_UNSPECIFIED || !v1::CheckpointKind_IsValid(m.kind())) {
    return bad("kind", absl::StrCat("is ", m.kind(), "; give FULL, WEIGHTS, ENCODER or PREVIEW"));
  }
  if (m.step() < 0) return bad("step", absl::StrCat("is ", m.step(), "; must be >= 0"));
  if (m.size_bytes() < 0) {
    return bad("size_bytes", absl::StrCat("is ", m.size_bytes(), "; must be >= 0"));
  }
  // Empty: it comes at the end of the stream (Upload::SetSha256).
  if (!m.sha256().empty() && !IsSha256Hex(m.sha256())) {
    return bad("sha256",
               absl::StrCat(Quote(m.sha256()), " is not a SHA-256 as 64 lowercase hex digits"));
  }
  return absl::OkStatus();
}

bool IsCheckpointId(absl::string_view id) {
  if (id.size() != kIdPrefix.size() + kIdRandomChars || !absl::StartsWith(id, kIdPrefix)) {
    return false;
  }
  for (char c : id.substr(kIdPrefix.size())) {
    if (kBase32.find(c) == absl::string_view::npos) return false;
  }
  return true;
}

class CheckpointStore::UploadImpl : public CheckpointStore::Upload {
 public:
  UploadImpl(const CheckpointStore* owner, v1::CheckpointMetadata metadata,
             std::unique_ptr<TempBlob> temp)
      : owner_(owner), metadata_(std::move(metadata)), temp_(std::move(temp)) {}

  absl::Status Append(absl::string_view bytes) override { return temp_->Append(bytes); }
  int64_t received_bytes() const override { return temp_->size(); }
  const v1::CheckpointMetadata& metadata() const override { return metadata_; }
  absl::Status SetSha256(const std::string& hex) override {
    if (!metadata_.sha256().empty()) {
      return absl::InvalidArgumentError(
          "checkpoint upload: the SHA-256 was already given in the metadata");
    }
    if (!IsSha256Hex(hex)) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint upload: sha256 ", Quote(hex),
                                                     " is not 64 lowercase hex digits"));
    }
    metadata_.set_sha256(hex);
    return absl::OkStatus();
  }

  const CheckpointStore* owner() const { return owner_; }
  TempBlob& temp() { return *temp_; }

 private:
  const CheckpointStore* owner_;
  v1::CheckpointMetadata metadata_;
  std::unique_ptr<TempBlob> temp_;  // limited to metadata_.size_bytes()
};

absl::StatusOr<std::unique_ptr<CheckpointStore>> CheckpointStore::Open(
    const CheckpointStoreOptions& options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("checkpoint store: dir is empty");
  std::unique_ptr<BlobStore> blobs;
  std::unique_ptr<S3BlobBackend> objects;
  if (options.s3.has_value()) {
    // The index still lives in dir (a small file); only it is created there.
    if (std::error_code error; !std::filesystem::create_directories(options.dir, error) && error) {
      return absl::InternalError(
          absl::StrCat("checkpoint store: cannot create ", options.dir, ": ", error.message()));
    }
    ASSIGN_OR_RETURN(objects, S3BlobBackend::Open(*options.s3));
  } else {
    ASSIGN_OR_RETURN(blobs, BlobStore::Open(options.dir, options.io));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db,
                   SqliteDb::Open(options.dir + "/index.db", options.busy_timeout));
  std::unique_ptr<CheckpointStore> store(
      new CheckpointStore(options, std::move(db), std::move(blobs), std::move(objects)));
  absl::MutexLock lock(&store->mu_);
  RETURN_IF_ERROR(store->Migrate());
  RETURN_IF_ERROR(store->SweepOrphans());
  return store;
}

CheckpointStore::~CheckpointStore() {
  {
    // After this, no reader reaches the store; one quarantining now is done.
    absl::MutexLock lock(&anchor_->mu);
    anchor_->store = nullptr;
  }
  absl::MutexLock lock(&mu_);
  db_.reset();
}

absl::Status CheckpointStore::Migrate() {
  static const std::vector<const char*> kList(std::begin(kMigrations), std::end(kMigrations));
  return MigrateSchema(*db_, "checkpoint index", kList);
}

absl::StatusOr<std::set<std::string>> CheckpointStore::ReferencedBlobs() const {
  ASSIGN_OR_RETURN(auto stmt,
                   db_->Prepare(absl::StrCat("SELECT DISTINCT ", kBlob, " FROM checkpoints")));
  std::set<std::string> referenced;
  while (true) {
    ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) break;
    referenced.insert(stmt->ColumnText(0));
  }
  return referenced;
}

absl::Status CheckpointStore::SweepOrphans() {
  ASSIGN_OR_RETURN(std::set<std::string> referenced, ReferencedBlobs());
  return backend_->Sweep(referenced);
}

std::string CheckpointStore::NewId() {
  // 100 random bits: unique without a lookup, and unguessable.
  std::random_device device;
  std::string id(kIdPrefix);
  for (int i = 0; i < kIdRandomChars; ++i) id.push_back(kBase32[device() % kBase32.size()]);
  return id;
}

absl::StatusOr<std::unique_ptr<CheckpointStore::Upload>> CheckpointStore::BeginUpload(
    const v1::CheckpointMetadata& metadata) {
  if (blobs_ == nullptr) {
    return absl::FailedPreconditionError(
        "this coordinator keeps checkpoints in object storage: upload through presigned URLs "
        "(WorkerControl.BeginCheckpointUpload), not through the coordinator");
  }
  RETURN_IF_ERROR(ValidateCheckpointMetadata(metadata));
  const int64_t size = metadata.size_bytes();
  if (size > options_.max_checkpoint_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("checkpoint of ", size, " bytes is larger than this coordinator's limit of ",
                     options_.max_checkpoint_bytes, " bytes (max_checkpoint_bytes)"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<TempBlob> temp, blobs_->NewTemp(size, options_.min_free_bytes));
  return std::make_unique<UploadImpl>(this, metadata, std::move(temp));
}

absl::StatusOr<v1::Checkpoint> CheckpointStore::Commit(std::unique_ptr<Upload> upload,
                                                       const RetentionPolicy& policy,
                                                       absl::Time now) {
  auto* impl = dynamic_cast<UploadImpl*>(upload.get());
  if (impl == nullptr || impl->owner() != this) {
    return absl::InvalidArgumentError("checkpoint commit: the upload was not begun by this store");
  }
  if (policy.keep_last < 0 || policy.keep_every < 0) {
    return absl::InvalidArgumentError(absl::StrCat("retention: keep_last (", policy.keep_last,
                                                   ") and keep_every (", policy.keep_every,
                                                   ") must be >= 0"));
  }
  TempBlob& temp = impl->temp();
  const v1::CheckpointMetadata& metadata = impl->metadata();
  RETURN_IF_ERROR(temp.status());
  if (temp.size() != metadata.size_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint upload: received ", temp.size(),
                                                   " of ", metadata.size_bytes(),
                                                   " bytes; the stream ended early"));
  }
  if (metadata.sha256().empty()) {
    return absl::InvalidArgumentError(
        "checkpoint upload: the stream ended without the SHA-256 of its bytes");
  }
  const std::string digest = temp.HexDigest();
  if (digest != metadata.sha256()) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint upload: the bytes received have SHA-256 ", digest,
                     ", the metadata declared ", metadata.sha256()));
  }
  RETURN_IF_ERROR(temp.Sync());  // outside the lock: commits of others go on meanwhile

  v1::Checkpoint checkpoint;
  checkpoint.set_id(NewId());
  *checkpoint.mutable_metadata() = metadata;
  *checkpoint.mutable_create_time() = ToProtoTime(now);
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(blobs_->Install(temp, digest));
  std::vector<std::string> candidates;
  absl::Status status = db_->Begin();
  if (status.ok()) {
    SqliteTransaction txn(db_.get());
    status = RecordInTransaction(checkpoint, policy, candidates);
    if (status.ok()) status = txn.Commit();
  }
  if (!status.ok()) {
    RemoveUnreferenced({digest});
    return status;
  }
  RemoveUnreferenced(candidates);
  return checkpoint;
}

absl::Status CheckpointStore::RecordInTransaction(const v1::Checkpoint& checkpoint,
                                                  const RetentionPolicy& policy,
                                                  std::vector<std::string>& candidates) {
  const v1::CheckpointMetadata& m = checkpoint.metadata();
  // Every blob of the series may lose its last record (replaced or retired).
  ASSIGN_OR_RETURN(auto series, db_->Prepare(absl::StrCat("SELECT DISTINCT ", kBlob,
                                                          " FROM checkpoints "
                                                          "WHERE job_id = ? AND kind = ?")));
  series->Bind(1, m.job_id()).Bind(2, int64_t{m.kind()});
  while (true) {
    ASSIGN_OR_RETURN(bool row, series->Step());
    if (!row) break;
    candidates.push_back(series->ColumnText(0));
  }
  series.reset();
  ASSIGN_OR_RETURN(auto insert,
                   db_->Prepare("INSERT OR REPLACE INTO checkpoints (id, job_id, kind, step, "
                                "final, sha256, size_bytes, create_time_us, "
                                "metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  insert->Bind(1, checkpoint.id())
      .Bind(2, m.job_id())
      .Bind(3, int64_t{m.kind()})
      .Bind(4, m.step())
      .Bind(5, int64_t{m.final() ? 1 : 0})
      .Bind(6, m.sha256())
      .Bind(7, m.size_bytes())
      .Bind(8, absl::ToUnixMicros(FromProtoTime(checkpoint.create_time())))
      .BindBlob(9, m.SerializeAsString());
  RETURN_IF_ERROR(insert->Run());

  ASSIGN_OR_RETURN(auto all, db_->Prepare("SELECT id, step, final, quarantined_us FROM checkpoints "
                                          "WHERE job_id = ? AND kind = ? ORDER BY step DESC"));
  all->Bind(1, m.job_id()).Bind(2, int64_t{m.kind()});
  std::vector<std::string> doomed;
  // Quarantined records are no copies: they take no place among the newest
  // K and stay only while fewer than K healthy ones are newer.
  int newer_healthy = 0;
  while (true) {
    ASSIGN_OR_RETURN(bool row, all->Step());
    if (!row) break;
    const int64_t step = all->ColumnInt(1);
    const bool in_window = newer_healthy < policy.keep_last;
    bool keep = in_window;
    if (all->ColumnIsNull(3)) {
      keep = in_window || (policy.keep_every > 0 && step % policy.keep_every == 0) ||
             all->ColumnInt(2) != 0 || all->ColumnText(0) == checkpoint.id();
      ++newer_healthy;
    }
    if (!keep) doomed.push_back(all->ColumnText(0));
  }
  all.reset();
  ASSIGN_OR_RETURN(auto remove, db_->Prepare("DELETE FROM checkpoints WHERE id = ?"));
  for (const std::string& id : doomed) {
    remove->Bind(1, id);
    RETURN_IF_ERROR(remove->Run());
  }
  return absl::OkStatus();
}

void CheckpointStore::RemoveUnreferenced(const std::vector<std::string>& blobs) {
  absl::StatusOr<std::unique_ptr<SqliteStatement>> used =
      db_->Prepare(absl::StrCat("SELECT 1 FROM checkpoints WHERE ", kBlob, " = ? LIMIT 1"));
  if (!used.ok()) return;  // the next sweep removes what is left
  for (const std::string& blob : std::set<std::string>(blobs.begin(), blobs.end())) {
    (*used)->Bind(1, blob);
    absl::StatusOr<bool> row = (*used)->Step();
    (*used)->Reset();
    if (row.ok() && !*row) backend_->Remove(blob).IgnoreError();
  }
}

void CheckpointStore::Log(absl::string_view line) const {
  if (options_.log) {
    options_.log(line);
    return;
  }
  const std::string text =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
                   " clmae-coordinator: ", line, "\n");
  std::fputs(text.c_str(), stderr);
}

int64_t CheckpointStore::stored_bytes() const { return backend_->stored_bytes(); }

}  // namespace clmae
