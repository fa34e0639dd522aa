#pragma once

// SHA-256 of checkpoint bytes, as lowercase hex: what the trainer sends, the
// coordinator verifies and stores, and every downloader checks. OpenSSL's
// libcrypto does the hashing (it uses the CPU's SHA extensions where there
// are any).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clmae {

// Incremental hashing. Not thread-safe; movable, not copyable.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t size);
  void Update(absl::string_view bytes) { Update(bytes.data(), bytes.size()); }
  // The digest of everything given so far, as 64 lowercase hex digits. The
  // object is reset afterwards.
  std::string HexDigest();

 private:
  struct Context;
  std::unique_ptr<Context> context_;
};

// The digest of `bytes`.
std::string Sha256Hex(absl::string_view bytes);

// The digest of the file's first `limit` bytes (all of it when limit < 0),
// read in 1 MiB blocks. NOT_FOUND for a missing file, DATA_LOSS when it is
// shorter than `limit`, INTERNAL for a read error.
absl::StatusOr<std::string> Sha256File(const std::string& path, int64_t limit = -1);

// True for 64 lowercase hex digits.
bool IsSha256Hex(absl::string_view text);

// HMAC-SHA256 of `message` under `key`, as 64 lowercase hex digits.
std::string HmacSha256Hex(absl::string_view key, absl::string_view message);

// Whether two strings are equal, in time that depends only on their lengths.
bool ConstantTimeEqual(absl::string_view a, absl::string_view b);

// `n` bytes from the operating system's cryptographic random source
// (OpenSSL's RAND_bytes); INTERNAL when it fails.
absl::StatusOr<std::string> SecureRandomBytes(size_t n);

}  // namespace clmae
