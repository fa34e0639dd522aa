#include "coordinator/blob_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_io.h"

namespace clmae {
namespace {

namespace fs = std::filesystem;

// The block a reader hashes a prefix it does not send in.
constexpr int64_t kHashBlockBytes = int64_t{1} << 20;

absl::Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoStatus(errno, "mkdir", path);
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, "stat", path);
  if (!S_ISDIR(st.st_mode)) return absl::InternalError(absl::StrCat(path, " is not a folder"));
  return absl::OkStatus();
}

absl::Status NotADigest() {
  return absl::InternalError("blob store: a blob name must be 64 lowercase hex digits");
}

}  // namespace

absl::StatusOr<int64_t> StorageIo::FreeBytes(const std::string& path) {
  struct statvfs st;
  if (statvfs(path.c_str(), &st) != 0) return ErrnoStatus(errno, "statvfs", path);
  return static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize);
}

int StorageIo::WriteAll(int fd, absl::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return 0;
}

std::shared_ptr<StorageIo> StorageIo::Posix() {
  static const std::shared_ptr<StorageIo> kPosix = std::make_shared<StorageIo>();
  return kPosix;
}

TempBlob::~TempBlob() {
  Remove();
  *reserved_ -= declared_size_ - std::min(size_, declared_size_);
}

void TempBlob::Remove() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  if (!path_.empty()) unlink(path_.c_str());
  path_.clear();
}

void TempBlob::Fail(absl::Status status) {
  if (status_.ok()) status_ = std::move(status);
  Remove();
}

absl::Status TempBlob::Append(absl::string_view bytes) {
  if (!status_.ok()) return status_;
  if (fd_ < 0) return absl::FailedPreconditionError("temp blob: already closed");
  if (static_cast<int64_t>(bytes.size()) > declared_size_ - size_) {
    Fail(absl::InvalidArgumentError(
        absl::StrCat("checkpoint upload: more bytes than the declared size_bytes ", declared_size_,
                     " (", size_ + static_cast<int64_t>(bytes.size()), " received)")));
    return status_;
  }
  const int error = io_->WriteAll(fd_, bytes);
  if (error == ENOSPC || error == EDQUOT) {
    Fail(absl::ResourceExhaustedError(absl::StrCat("checkpoint store: the disk is full (",
                                                   std::strerror(error), ") after ", size_,
                                                   " bytes; the partial upload was removed")));
    return status_;
  }
  if (error != 0) {
    Fail(absl::InternalError(
        absl::StrCat("checkpoint store: write to a temp file: ", std::strerror(error))));
    return status_;
  }
  hash_.Update(bytes);
  size_ += static_cast<int64_t>(bytes.size());
  writeback_.Written(fd_, size_);
  *reserved_ -= static_cast<int64_t>(bytes.size());  // now on disk: free space shows it
  return absl::OkStatus();
}

absl::Status TempBlob::Sync() {
  if (!status_.ok()) return status_;
  if (fd_ < 0) return absl::FailedPreconditionError("temp blob: already closed");
  if (fsync(fd_) != 0) {
    Fail(ErrnoStatus(errno, "fsync", path_));
    return status_;
  }
  const int rc = close(fd_);
  fd_ = -1;
  if (rc != 0) {
    Fail(ErrnoStatus(errno, "close", path_));
    return status_;
  }
  return absl::OkStatus();
}

BlobReader::~BlobReader() { close(fd_); }

absl::Status BlobReader::ReadAt(std::string& out, int64_t at) const {
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = pread(fd_, out.data() + got, out.size() - got, at + got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("checkpoint read: ", std::strerror(errno)));
    }
    if (n == 0) {
      return absl::DataLossError(
          absl::StrCat("the file ends at byte ", at + static_cast<int64_t>(got), " of ", end_));
    }
    got += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status BlobReader::HashPrefix() {
  std::string block;
  while (hashed_ < position_) {
    block.resize(static_cast<size_t>(std::min(position_ - hashed_, kHashBlockBytes)));
    if (absl::Status read = ReadAt(block, hashed_); !read.ok()) return read;
    hash_.Update(block);
    hashed_ += static_cast<int64_t>(block.size());
  }
  return absl::OkStatus();
}

absl::Status BlobReader::Verify() {
  struct stat st;
  if (fstat(fd_, &st) != 0) return ErrnoStatus(errno, "fstat", absl::StrCat("blob ", sha256_));
  if (st.st_size != end_) {
    return absl::DataLossError(
        absl::StrCat("the file holds ", st.st_size, " bytes, the record says ", end_));
  }
  const std::string digest = hash_.HexDigest();
  if (digest != sha256_) {
    return absl::DataLossError(
        absl::StrCat("its bytes have SHA-256 ", digest, ", the record says ", sha256_));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> BlobReader::Read(size_t max_bytes) {
  if (!failure_.ok()) return failure_;
  absl::Status status = HashPrefix();
  std::string out(static_cast<size_t>(std::min<int64_t>(end_ - position_, max_bytes)), '\0');
  if (status.ok()) status = ReadAt(out, position_);
  if (status.ok()) {
    hash_.Update(out);
    position_ += static_cast<int64_t>(out.size());
    hashed_ = position_;
    if (position_ == end_ && !verified_) {
      status = Verify();
      verified_ = true;
    }
  }
  if (!status.ok()) {
    failure_ = status;
    return failure_;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<BlobStore>> BlobStore::Open(const std::string& dir,
                                                           std::shared_ptr<StorageIo> io) {
  if (dir.empty()) return absl::InvalidArgumentError("blob store: dir is empty");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir ", dir, ": ", ec.message()));
  std::unique_ptr<BlobStore> store(
      new BlobStore(dir, io != nullptr ? std::move(io) : StorageIo::Posix()));
  if (absl::Status s = MakeDir(dir + "/blobs"); !s.ok()) return s;
  if (absl::Status s = MakeDir(dir + "/tmp"); !s.ok()) return s;
  return store;
}

std::string BlobStore::BlobPath(const std::string& sha256) const {
  return absl::StrCat(dir_, "/blobs/", sha256.substr(0, 2), "/", sha256);
}

absl::StatusOr<std::unique_ptr<TempBlob>> BlobStore::NewTemp(int64_t declared_size,
                                                             int64_t min_free_bytes) const {
  absl::StatusOr<int64_t> free = io_->FreeBytes(dir_);
  if (!free.ok()) return free.status();
  const int64_t reserved = reserved_->fetch_add(declared_size);
  if (*free - reserved - declared_size < min_free_bytes) {
    *reserved_ -= declared_size;
    return absl::ResourceExhaustedError(absl::StrCat(
        "not enough disk space for a checkpoint of ", declared_size, " bytes: ", *free,
        " bytes free in ", dir_, " (", reserved, " of them promised to uploads in progress), and ",
        min_free_bytes, " must stay free (min_free_bytes)"));
  }
  std::string path = dir_ + "/tmp/upload-XXXXXX";
  const int fd = mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) {
    *reserved_ -= declared_size;
    return ErrnoStatus(errno, "mkostemp", path);
  }
  return std::unique_ptr<TempBlob>(
      new TempBlob(io_, reserved_, std::move(path), fd, declared_size));
}

bool BlobStore::Contains(const std::string& sha256) const {
  struct stat st;
  return IsSha256Hex(sha256) && stat(BlobPath(sha256).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::Status BlobStore::Install(TempBlob& temp, const std::string& sha256) {
  if (!IsSha256Hex(sha256)) return NotADigest();
  if (!temp.status().ok()) return temp.status();
  if (temp.fd_ >= 0 || temp.path_.empty()) {
    return absl::FailedPreconditionError("blob store: install needs a synced temp file");
  }
  const std::string prefix_dir = absl::StrCat(dir_, "/blobs/", sha256.substr(0, 2));
  struct stat st;
  if (stat(prefix_dir.c_str(), &st) != 0) {
    if (absl::Status s = MakeDir(prefix_dir); !s.ok()) return s;
    if (absl::Status s = SyncDirectory(dir_ + "/blobs"); !s.ok()) return s;
  }
  const std::string path = BlobPath(sha256);
  // Replaced rather than reused: the bytes on disk may no longer be the ones
  // their name promises, the temp file's were hashed just now.
  const int64_t replaced = stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) ? st.st_size : 0;
  if (rename(temp.path_.c_str(), path.c_str()) != 0) return ErrnoStatus(errno, "rename to", path);
  temp.path_.clear();
  stored_bytes_ += temp.size() - replaced;
  return SyncDirectory(prefix_dir);
}

absl::Status BlobStore::Remove(const std::string& sha256) {
  if (!IsSha256Hex(sha256)) return NotADigest();
  const std::string path = BlobPath(sha256);
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return absl::OkStatus();
  if (unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, "unlink", path);
  }
  stored_bytes_ -= st.st_size;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BlobReader>> BlobStore::OpenReader(const std::string& sha256,
                                                                  int64_t offset,
                                                                  int64_t size) const {
  if (!IsSha256Hex(sha256)) return NotADigest();
  const int fd = open(BlobPath(sha256).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("blob store: no blob ", sha256, " on disk"));
    }
    return ErrnoStatus(errno, "open", BlobPath(sha256));
  }
  return std::unique_ptr<BlobReader>(new BlobReader(fd, sha256, offset, size));
}

absl::Status BlobStore::Sweep(const std::set<std::string>& referenced) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_ + "/tmp", ec)) {
    fs::remove_all(entry.path(), ec);
    if (ec)
      return absl::InternalError(
          absl::StrCat("remove ", entry.path().string(), ": ", ec.message()));
  }
  if (ec) return absl::InternalError(absl::StrCat("list ", dir_, "/tmp: ", ec.message()));
  int64_t total = 0;
  for (const auto& prefix : fs::directory_iterator(dir_ + "/blobs", ec)) {
    if (!prefix.is_directory(ec)) {
      fs::remove(prefix.path(), ec);  // nothing but prefix folders belongs here
      continue;
    }
    const std::string name = prefix.path().filename().string();
    for (const auto& entry : fs::directory_iterator(prefix.path(), ec)) {
      const std::string blob = entry.path().filename().string();
      const bool keep = entry.is_regular_file(ec) && IsSha256Hex(blob) &&
                        blob.compare(0, 2, name) == 0 && referenced.contains(blob);
      if (keep) {
        total += static_cast<int64_t>(entry.file_size(ec));
      } else {
        fs::remove_all(entry.path(), ec);
      }
      if (ec) {
        return absl::InternalError(
            absl::StrCat("sweep ", entry.path().string(), ": ", ec.message()));
      }
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("sweep ", dir_, "/blobs: ", ec.message()));
  stored_bytes_ = total;
  return absl::OkStatus();
}

}  // namespace clmae
