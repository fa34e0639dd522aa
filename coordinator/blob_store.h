#pragma once

// Content-addressed files for the checkpoint store: a blob lives at
// blobs/<first 2 hex>/<sha256>, where the SHA-256 is the one computed here
// while the bytes were written, so no part of a request ever becomes a path.
// New bytes go to a temp file in tmp/ first and reach blobs/ only by an
// atomic rename after fsync, so a blob on disk is always whole.

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/file_writeback.h"
#include "common/sha256.h"
#include "coordinator/checkpoint_backend.h"

namespace clmae {

// The two file-system calls whose failures matter to an upload: the free
// space, and the write of a chunk. The default is POSIX; tests substitute
// one that reports a full disk. Implementations must be thread-safe.
class StorageIo {
 public:
  virtual ~StorageIo() = default;
  // Bytes available to this process on the file system holding `path`
  // (statvfs: f_bavail * f_frsize). INTERNAL when it cannot be asked.
  virtual absl::StatusOr<int64_t> FreeBytes(const std::string& path);
  // Writes all of `bytes` to `fd`: 0 when done, else the errno of the
  // failing write(2) (ENOSPC, EDQUOT, EIO, ...).
  virtual int WriteAll(int fd, absl::string_view bytes);

  // The shared POSIX implementation.
  static std::shared_ptr<StorageIo> Posix();
};

// A file being written in tmp/, hashed as it goes, of a size declared up
// front. Not thread-safe. Its destructor removes the file unless
// BlobStore::Install took it, and gives back the space it reserved.
class TempBlob {
 public:
  ~TempBlob();
  TempBlob(const TempBlob&) = delete;
  TempBlob& operator=(const TempBlob&) = delete;

  // Appends and hashes `bytes`. INVALID_ARGUMENT past the declared size;
  // RESOURCE_EXHAUSTED when the disk is full (ENOSPC/EDQUOT); INTERNAL for
  // other write errors. After any of them the file is already removed and
  // every later call answers the same error.
  absl::Status Append(absl::string_view bytes);
  // Makes the failure sticky and removes the file now (a doomed upload).
  void Fail(absl::Status status);

  int64_t size() const { return size_; }
  int64_t declared_size() const { return declared_size_; }
  // The first error, or OK.
  const absl::Status& status() const { return status_; }
  // The SHA-256 of every byte appended; call once, when all were appended.
  std::string HexDigest() { return hash_.HexDigest(); }
  // fsyncs and closes the file (before Install, outside any lock).
  absl::Status Sync();

 private:
  friend class BlobStore;
  TempBlob(std::shared_ptr<StorageIo> io, std::shared_ptr<std::atomic<int64_t>> reserved,
           std::string path, int fd, int64_t declared_size)
      : io_(std::move(io)),
        reserved_(std::move(reserved)),
        path_(std::move(path)),
        fd_(fd),
        declared_size_(declared_size) {}
  void Remove();

  std::shared_ptr<StorageIo> io_;
  // The store's count of declared bytes not yet written; this file's share
  // is declared_size_ - size_.
  std::shared_ptr<std::atomic<int64_t>> reserved_;
  std::string path_;  // empty once removed or installed
  int fd_;            // -1 once closed
  const int64_t declared_size_;
  int64_t size_ = 0;
  Sha256 hash_;
  WritebackKicker writeback_;
  absl::Status status_;
};

// Streams [offset, size) of a blob from an open descriptor (the bytes stay
// readable after the blob is unlinked, POSIX) and verifies the whole blob on
// the way: every byte from 0 is hashed, the prefix [0, offset) by the first
// Read (a block at a time, not returned), and the Read that reaches `size`
// checks, before it returns its bytes, that the file holds exactly `size`
// bytes and that they hash to the blob's name. Memory stays at one block.
// Not thread-safe.
class BlobReader {
 public:
  ~BlobReader();
  BlobReader(const BlobReader&) = delete;
  BlobReader& operator=(const BlobReader&) = delete;
  // Up to `max_bytes` from the current position, never past `size`; empty
  // at the end. DATA_LOSS when the blob fails verification: the file ends
  // early, holds more than `size` bytes, or its bytes have another SHA-256
  // (the message says which); INTERNAL on read errors. Both are sticky:
  // every later Read answers the same.
  absl::StatusOr<std::string> Read(size_t max_bytes);

 private:
  friend class BlobStore;
  BlobReader(int fd, std::string sha256, int64_t position, int64_t end)
      : fd_(fd), sha256_(std::move(sha256)), position_(position), end_(end) {}
  // Reads exactly out.size() bytes at `at`. DATA_LOSS at an early end of file.
  absl::Status ReadAt(std::string& out, int64_t at) const;
  // Hashes [hashed_, position_): the prefix a reader that starts at an
  // offset does not send.
  absl::Status HashPrefix();
  // Compares the file's size and the digest of all its bytes with the record.
  absl::Status Verify();

  int fd_;
  const std::string sha256_;  // what the bytes must hash to (the blob's name)
  int64_t position_;
  const int64_t end_;
  int64_t hashed_ = 0;  // bytes [0, hashed_) went into hash_
  Sha256 hash_;
  bool verified_ = false;
  absl::Status failure_;  // the first error; sticky
};

// The blobs/ and tmp/ folders under one directory. Install and Remove must be
// serialised by the caller (the checkpoint store's commit lock); NewTemp,
// OpenReader and stored_bytes are thread-safe. The default CheckpointBackend:
// a blob's name is its SHA-256.
class BlobStore final : public CheckpointBackend {
 public:
  // Creates `dir`, `dir`/blobs and `dir`/tmp when missing. INTERNAL when a
  // folder cannot be created.
  static absl::StatusOr<std::unique_ptr<BlobStore>> Open(const std::string& dir,
                                                         std::shared_ptr<StorageIo> io);

  // A new, empty temp file in tmp/ for `declared_size` bytes, reserved at
  // once so that concurrent uploads see each other's. RESOURCE_EXHAUSTED when
  // the free space, less the bytes reserved and not yet written, minus
  // `declared_size` would drop below `min_free_bytes`; INTERNAL when the
  // file cannot be created.
  absl::StatusOr<std::unique_ptr<TempBlob>> NewTemp(int64_t declared_size,
                                                    int64_t min_free_bytes) const;

  // Moves a synced temp file whose bytes hash to `sha256` into blobs/ and
  // fsyncs the folders. An existing blob of that digest is replaced: the new
  // bytes were just verified, the old ones may have rotted on disk (a blob
  // that failed verification is quarantined, and a fresh upload of the same
  // bytes repairs it). Readers of the old file keep reading it. Afterwards
  // `temp` holds nothing to remove.
  absl::Status Install(TempBlob& temp, const std::string& sha256);

  // Unlinks the blob (absent is fine). Readers keep their open files.
  absl::Status Remove(const std::string& sha256) override;

  // Opens the blob to read [offset, size), verifying it against its name
  // and `size` (BlobReader). NOT_FOUND when it is missing.
  absl::StatusOr<std::unique_ptr<BlobReader>> OpenReader(const std::string& sha256, int64_t offset,
                                                         int64_t size) const;

  // Removes every file in tmp/ and every file under blobs/ that is not the
  // blob of a digest in `referenced`, then recounts stored_bytes(). Only
  // while no upload is in progress (at Open).
  absl::Status Sweep(const std::set<std::string>& referenced) override;

  // True when the blob is on disk.
  bool Contains(const std::string& sha256) const;

  // Bytes of blobs on disk.
  int64_t stored_bytes() const override { return stored_bytes_.load(); }

  const std::string& dir() const { return dir_; }

 private:
  BlobStore(std::string dir, std::shared_ptr<StorageIo> io)
      : dir_(std::move(dir)), io_(std::move(io)) {}
  std::string BlobPath(const std::string& sha256) const;

  const std::string dir_;
  const std::shared_ptr<StorageIo> io_;
  // Shared with the temp files, which may outlive the store.
  const std::shared_ptr<std::atomic<int64_t>> reserved_ = std::make_shared<std::atomic<int64_t>>(0);
  std::atomic<int64_t> stored_bytes_{0};
};

}  // namespace clmae
