#pragma once

// The coordinator's checkpoint store (docs/README.md, "Checkpoints"): the
// files rank 0 uploads, kept content-addressed under <dir>/blobs (BlobStore)
// with an SQLite index at <dir>/index.db (WAL, synchronous=FULL) that maps
// opaque ids to their metadata and blob digest.
//
// Crash safety: a blob reaches blobs/ whole (fsync, rename, fsync folder)
// before its record commits, and a blob is unlinked only after the
// transaction that dropped its last record has committed. A crash in between
// leaves at worst an unreferenced blob or a stale temp file, and Open sweeps
// both. No part of a request ever becomes a path: blob paths come only from
// the SHA-256 this store computed over the bytes it wrote.
//
// Verification and quarantine: a Reader hashes every byte of the blob and
// compares size and SHA-256 with the record before its last bytes go out. A
// checkpoint that fails is quarantined (every record of that blob is marked
// in the index, with the time and the reason): it is no longer listed, nor
// chosen as the latest or at a step, nor resumed from, and asking for it by
// id answers FAILED_PRECONDITION. Its record and blob stay for inspection
// until retention retires them; quarantined records never count as kept
// copies.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clmae/v1/checkpoint.pb.h"
#include "coordinator/blob_store.h"
#include "coordinator/s3_blob_backend.h"
#include "coordinator/sqlite_db.h"

namespace clmae {

struct CheckpointStoreOptions {
  // Holds index.db, and with the local backend blobs/ and tmp/ (created if
  // missing).
  std::string dir;
  // The bytes in S3-compatible object storage instead of dir/blobs: uploads
  // and downloads then go through presigned URLs (BeginPresignedUpload,
  // PresignDownload) and the streaming calls (BeginUpload, OpenReader)
  // answer FAILED_PRECONDITION. Unset: the local BlobStore.
  std::optional<S3BackendOptions> s3;
  int64_t max_checkpoint_bytes = int64_t{64} << 30;  // uploads larger than this are refused
  int64_t min_free_bytes = int64_t{256} << 20;  // refuse an upload that would leave less free space
  // Free space and chunk writes; nullptr = POSIX. Tests pass one that
  // simulates a full disk.
  std::shared_ptr<StorageIo> io = nullptr;
  absl::Duration busy_timeout = absl::Seconds(5);  // wait for another connection's lock
  // When a quarantine happens; nullptr = absl::Now.
  std::function<absl::Time()> clock = nullptr;
  // Receives one line per quarantined checkpoint; nullptr = a timestamped
  // line on stderr. Called with the store's lock held: it must not call the
  // store.
  std::function<void(absl::string_view)> log = nullptr;
};

// Which checkpoints of one job and kind survive a commit. The checkpoint
// just committed and every final one (metadata.final) are always kept.
// Quarantined checkpoints are not copies: they count toward neither
// keep_last nor keep_every, are never kept as final, and are retired once
// keep_last healthy ones are newer (at once when keep_last is 0).
struct RetentionPolicy {
  int keep_last = 3;   // newest K of the job+kind, by step (>= 0)
  int keep_every = 0;  // also keep steps that are multiples of this (0 = none, >= 0)
};

// INVALID_ARGUMENT naming the field: empty job_id, attempt < 1, kind
// UNSPECIFIED or unknown, step < 0, size_bytes < 0, sha256 neither empty nor
// 64 lowercase hex.
absl::Status ValidateCheckpointMetadata(const v1::CheckpointMetadata& metadata);

// True for the ids this store hands out: "ck-" and 20 lowercase base32
// characters (a-z, 2-7).
bool IsCheckpointId(absl::string_view id);

// Thread-safe: one index connection behind a mutex; commits serialise.
// Uploads and readers may be used on other threads than the store's, each by
// one thread at a time, and may outlive it (an upload is then only
// discarded: Commit takes uploads of its own store only).
class CheckpointStore {
 public:
  // The index schema version this build writes.
  static constexpr int kSchemaVersion = 3;

  // Creates the folders, opens/migrates the index, removes every temp file
  // left in tmp/ and every blob that no record references. INVALID_ARGUMENT
  // for an empty dir; UNAVAILABLE when the index cannot be opened;
  // FAILED_PRECONDITION when a newer build wrote the index.
  static absl::StatusOr<std::unique_ptr<CheckpointStore>> Open(
      const CheckpointStoreOptions& options);
  ~CheckpointStore();

  // One upload in progress, writing to a temp file in tmp/. Not thread-safe
  // (one stream owns it). Destroying it without Commit removes the temp
  // file: nothing half-written stays.
  class Upload {
   public:
    virtual ~Upload() = default;
    // Appends bytes. INVALID_ARGUMENT past the declared size; RESOURCE_EXHAUSTED
    // when the disk is full (ENOSPC/EDQUOT: the temp file is removed at once);
    // INTERNAL for other write errors. After any error the upload is dead:
    // the temp file is gone and every later Append or Commit fails the same.
    virtual absl::Status Append(absl::string_view bytes) = 0;
    virtual int64_t received_bytes() const = 0;
    virtual const v1::CheckpointMetadata& metadata() const = 0;
    // The SHA-256 sent after the bytes, when the metadata left it empty.
    // INVALID_ARGUMENT when it is malformed or was already given.
    virtual absl::Status SetSha256(const std::string& hex) = 0;
  };

  // Validates the metadata (INVALID_ARGUMENT naming the field: empty job_id,
  // attempt < 1, kind UNSPECIFIED or unknown, step < 0, size_bytes < 0,
  // sha256 neither empty (sent last) nor 64 lowercase hex) and the space: RESOURCE_EXHAUSTED when
  // size_bytes > max_checkpoint_bytes or when the free space, less what
  // uploads in progress still declare, minus size_bytes would drop below
  // min_free_bytes.
  absl::StatusOr<std::unique_ptr<Upload>> BeginUpload(const v1::CheckpointMetadata& metadata);

  // Verifies the size (INVALID_ARGUMENT "received N of M bytes") and the
  // SHA-256 (INVALID_ARGUMENT with both digests), makes the blob durable in
  // blobs/ (an identical blob is reused) and records it with a new id and
  // create_time = now in one durable transaction, replacing any record of
  // the same job, kind and step. In the same transaction applies `policy` to
  // that job+kind; blobs left without a record are unlinked after it has
  // committed. On any error nothing is recorded and the temp file is gone.
  // INVALID_ARGUMENT for a negative policy field or an upload from another
  // store. Thread-safe (commits serialise).
  absl::StatusOr<v1::Checkpoint> Commit(std::unique_ptr<Upload> upload,
                                        const RetentionPolicy& policy, absl::Time now);

  // Committed checkpoints of a job (kind UNSPECIFIED = all), by step then
  // kind, oldest first, without the quarantined ones. Empty for an unknown
  // job.
  absl::StatusOr<std::vector<v1::Checkpoint>> List(const std::string& job_id,
                                                   v1::CheckpointKind kind) const;
  // INVALID_ARGUMENT when !IsCheckpointId(id) (the message quotes at most a
  // short, escaped prefix of it); NOT_FOUND when the job has no such record;
  // FAILED_PRECONDITION, naming the quarantine and its reason, when the
  // checkpoint is quarantined.
  absl::StatusOr<v1::Checkpoint> Get(const std::string& job_id, const std::string& id) const;
  // The newest (highest step) of the kind (UNSPECIFIED = any kind; then the
  // highest kind at that step) that is not quarantined; NOT_FOUND when none.
  absl::StatusOr<v1::Checkpoint> Latest(const std::string& job_id, v1::CheckpointKind kind) const;
  // The one at exactly `step` (UNSPECIFIED = any kind, the lowest) that is
  // not quarantined; NOT_FOUND when none.
  absl::StatusOr<v1::Checkpoint> AtStep(const std::string& job_id, int64_t step,
                                        v1::CheckpointKind kind) const;

  // Reads a committed checkpoint's blob from an offset, verifying all of it
  // (BlobReader: the bytes before the offset are hashed, not returned). The
  // open file stays readable even if retention deletes the record meanwhile
  // (POSIX unlink).
  class Reader {
   public:
    virtual ~Reader() = default;
    // Up to max_bytes; empty at the end. INTERNAL on read errors. DATA_LOSS
    // ("checkpoint ck-... failed verification on the coordinator: ...; it
    // has been quarantined") instead of the last bytes when the blob's size
    // or SHA-256 differ from the record: the checkpoint is quarantined
    // (Quarantine) before the error is returned. Errors are sticky.
    virtual absl::StatusOr<std::string> Read(size_t max_bytes) = 0;
  };
  // The blob is found through the index record of (job, id), never through
  // the digest in `checkpoint`. INVALID_ARGUMENT for a bad id or when
  // offset < 0 or > size; NOT_FOUND when the record is gone (retention);
  // FAILED_PRECONDITION when it is quarantined; DATA_LOSS when the record is
  // there but its blob is not, and the checkpoint is then quarantined.
  absl::StatusOr<std::unique_ptr<Reader>> OpenReader(const v1::Checkpoint& checkpoint,
                                                     int64_t offset) const;

  // Quarantines checkpoint `id` of `job_id` with `reason`, and with it every
  // other record of the same blob (the same bytes): each is marked at
  // options.clock(), drops out of List/Latest/AtStep, answers Get and
  // OpenReader with FAILED_PRECONDITION, and is logged as one line
  // "checkpoint <id> of job <job> (step N, kind) quarantined: <reason>".
  // Records quarantined before keep their first time and reason and are not
  // counted again. INVALID_ARGUMENT for a bad id; NOT_FOUND when the job has
  // no such record. Thread-safe.
  absl::Status Quarantine(const std::string& job_id, const std::string& id,
                          absl::string_view reason);

  // --- The S3 backend (checkpoint_store_presigned.cc) ------------------------
  // True when the bytes live in object storage and move by presigned URLs.
  bool presigned() const { return objects_ != nullptr; }

  // An upload in progress through presigned URLs: its id (the id the
  // checkpoint will have), a PUT URL per part, and when they expire.
  struct PresignedUpload {
    std::string upload_id;
    std::vector<PresignedPart> parts;
    absl::Time expire_time;
  };
  // Validates the metadata as BeginUpload does, and the space limit
  // (max_checkpoint_bytes); the SHA-256 must be given here (INVALID_ARGUMENT
  // otherwise): it is stored with the object. Starts a multipart upload to
  // a fresh key. FAILED_PRECONDITION with the local backend; the store's
  // errors otherwise. Thread-safe.
  absl::StatusOr<PresignedUpload> BeginPresignedUpload(const v1::CheckpointMetadata& metadata);
  // The metadata a presigned upload of `job_id` was begun with; ABORTED
  // for an unknown (or already committed or aborted) upload id: begin again.
  absl::StatusOr<v1::CheckpointMetadata> PresignedUploadMetadata(const std::string& job_id,
                                                                 const std::string& upload_id);
  // Completes and verifies the upload (S3BlobBackend::FinishUpload: size,
  // the declared SHA-256 on the object, the ETag of the parts' MD5s the
  // uploader computed, one per part in order) and records it like Commit,
  // under `policy`. ABORTED when the object fails a check: nothing is
  // recorded, the object is deleted, and the upload is gone (ABORTED again
  // if retried: begin a new one). UNAVAILABLE when the store cannot be
  // reached; the same commit may then be retried. INVALID_ARGUMENT for a
  // wrong number or form of part digests (the upload stays).
  absl::StatusOr<v1::Checkpoint> CommitPresignedUpload(const std::string& job_id,
                                                       const std::string& upload_id,
                                                       const std::vector<std::string>& part_md5s,
                                                       const RetentionPolicy& policy,
                                                       absl::Time now);
  // Gives up an upload: aborts it and frees its parts. ABORTED when unknown.
  absl::Status AbortPresignedUpload(const std::string& job_id, const std::string& upload_id);

  // A presigned GET of a committed checkpoint, after checking that its
  // object still has the recorded size and ETag. Errors as OpenReader's:
  // NOT_FOUND when the record is gone, FAILED_PRECONDITION when quarantined
  // (or with the local backend), DATA_LOSS when the object is missing or
  // was changed, and the checkpoint is then quarantined. The downloader
  // verifies the bytes' SHA-256 against the record.
  struct PresignedDownload {
    std::string url;
    absl::Time expire_time;
  };
  absl::StatusOr<PresignedDownload> PresignDownload(const v1::Checkpoint& checkpoint) const;

  // Deletes objects without a record and abandoned multipart uploads that
  // are older than the backend's grace period. The coordinator runs it
  // periodically; Open runs it once. OK and nothing to do with the local
  // backend (Open sweeps it). Thread-safe.
  absl::Status SweepObjects();

  // Bytes of blobs on disk (for metrics and tests; 0 for object storage).
  int64_t stored_bytes() const;
  // Checkpoints quarantined by this store since it was opened (for a
  // counter metric).
  int64_t quarantined_total() const { return quarantined_total_.load(); }

 private:
  class UploadImpl;
  class ReaderImpl;
  // Lets readers, which may outlive the store, quarantine through it while
  // it exists.
  struct Anchor {
    absl::Mutex mu;
    CheckpointStore* store ABSL_GUARDED_BY(mu) = nullptr;
  };

  CheckpointStore(CheckpointStoreOptions options, std::unique_ptr<SqliteDb> db,
                  std::unique_ptr<BlobStore> blobs, std::unique_ptr<S3BlobBackend> objects)
      : options_(std::move(options)),
        db_(std::move(db)),
        blobs_(std::move(blobs)),
        objects_(std::move(objects)),
        backend_(blobs_ != nullptr ? static_cast<CheckpointBackend*>(blobs_.get())
                                   : objects_.get()) {
    absl::MutexLock lock(&anchor_->mu);
    anchor_->store = this;
  }
  // Quarantines checkpoint `id` of `job_id` with `reason` through `anchor`
  // (a store that has closed is left alone) and returns DATA_LOSS:
  // `context` + `reason`, and whether the quarantine took.
  static absl::Status QuarantinedLoss(Anchor& anchor, const std::string& job_id,
                                      const std::string& id, absl::string_view reason,
                                      absl::string_view context = "");
  // The blob of the record of `checkpoint`, open at `offset` (OpenReader's
  // errors, without the quarantine).
  absl::StatusOr<std::unique_ptr<BlobReader>> OpenBlob(const v1::Checkpoint& checkpoint,
                                                       int64_t offset) const;
  absl::Status Migrate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SweepOrphans() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The rows of a bound statement selecting kColumns (id, metadata,
  // create_time_us).
  absl::StatusOr<std::vector<v1::Checkpoint>> ReadCheckpoints(SqliteStatement& stmt) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The checkpoints of `job_id` matching `where` (SQL after "job_id = ? AND",
  // with `ints` bound in order), sorted by `order`.
  absl::StatusOr<std::vector<v1::Checkpoint>> Select(const std::string& job_id,
                                                     absl::string_view where,
                                                     const std::vector<int64_t>& ints,
                                                     absl::string_view order) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Inserts the record, replaces its job+kind+step and applies `policy`;
  // appends to `candidates` the digests that may have lost their last record.
  absl::Status RecordInTransaction(const v1::Checkpoint& checkpoint, const RetentionPolicy& policy,
                                   std::vector<std::string>& candidates)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Deletes each blob of `blobs` that no record references any more.
  void RemoveUnreferenced(const std::vector<std::string>& blobs) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The blob names every record references.
  absl::StatusOr<std::set<std::string>> ReferencedBlobs() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records a verified object (id = checkpoint.id()) under `policy`.
  absl::StatusOr<v1::Checkpoint> RecordObject(v1::Checkpoint checkpoint, const std::string& key,
                                              const std::string& etag,
                                              const RetentionPolicy& policy);
  // Marks the records of `digest` that are not quarantined yet (`id` with
  // `reason`, the others with a note that they share its file) at `now`;
  // appends a log line for each to `lines`.
  absl::Status QuarantineInTransaction(const std::string& id, const std::string& digest,
                                       absl::string_view reason, absl::Time now,
                                       std::vector<std::string>& lines)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Log(absl::string_view line) const;
  std::string NewId();

  const CheckpointStoreOptions options_;
  mutable absl::Mutex mu_;
  std::unique_ptr<SqliteDb> db_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<BlobStore> blobs_;  // local backend (else null); Install/Remove only under mu_
  std::unique_ptr<S3BlobBackend> objects_;  // S3 backend (else null)
  CheckpointBackend* const backend_;        // whichever of the two is set
  // Presigned uploads begun and not yet committed or aborted, by upload id.
  struct PendingUpload {
    v1::CheckpointMetadata metadata;
    std::string key;
    std::string s3_upload_id;
    int parts = 0;
  };
  absl::Mutex pending_mu_;
  std::map<std::string, PendingUpload> pending_ ABSL_GUARDED_BY(pending_mu_);
  const std::shared_ptr<Anchor> anchor_ = std::make_shared<Anchor>();
  std::atomic<int64_t> quarantined_total_{0};
};

}  // namespace clmae
