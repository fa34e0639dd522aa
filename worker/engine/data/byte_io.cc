#include "worker/engine/data/byte_io.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/file_io.h"
#include "worker/engine/util/codecs_config.h"  // CLMAE_HAVE_*: 0 or 1, from CMake

#if CLMAE_HAVE_ZLIB
#include <zlib.h>
#endif

namespace clmae {
absl::StatusOr<std::string> ReadFileBytes(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFile(path);
  if (!bytes.ok() && !absl::IsNotFound(bytes.status())) {
    return absl::DataLossError(bytes.status().message());
  }
  return bytes;
}

bool LooksGzipped(absl::string_view bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f &&
         static_cast<unsigned char>(bytes[1]) == 0x8b;
}

#if CLMAE_HAVE_ZLIB

bool GzipAvailable() { return true; }

absl::StatusOr<std::string> GunzipBytes(absl::string_view gz, absl::string_view what) {
  z_stream zs{};
  // 16 + MAX_WBITS: expect a gzip header and trailer.
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
    return absl::ResourceExhaustedError("zlib inflateInit2 failed");
  }
  std::string out;
  // The trailer's ISIZE (size mod 2^32 of the last member) is a good first
  // guess, but only a guess: a corrupt or hostile file may claim 4 GiB (found
  // by fuzzing). Deflate expands at most 1032-fold, so no more is reserved
  // than the stream could produce.
  if (gz.size() >= 4) {
    const auto* t = reinterpret_cast<const unsigned char*>(gz.data() + gz.size() - 4);
    const size_t isize = static_cast<size_t>(t[0]) | static_cast<size_t>(t[1]) << 8 |
                         static_cast<size_t>(t[2]) << 16 | static_cast<size_t>(t[3]) << 24;
    constexpr size_t kMaxDeflateRatio = 1032;
    out.reserve(std::min(isize, kMaxDeflateRatio * gz.size()));
  }
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  zs.avail_in = static_cast<uInt>(gz.size());
  char buffer[1 << 16];
  int rc = Z_OK;
  while (true) {
    zs.next_out = reinterpret_cast<Bytef*>(buffer);
    zs.avail_out = sizeof(buffer);
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buffer, sizeof(buffer) - zs.avail_out);
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      inflateReset(&zs);  // another gzip member follows
      continue;
    }
    if (rc != Z_OK) break;
    if (zs.avail_in == 0 && zs.avail_out != 0) {
      rc = Z_BUF_ERROR;  // input ended inside a member
      break;
    }
  }
  const char* msg = zs.msg;
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) {
    return absl::DataLossError(absl::StrCat(what, ": corrupt or truncated gzip data (",
                                            msg != nullptr ? msg : "unexpected end", ")"));
  }
  return out;
}

absl::StatusOr<std::string> GzipBytes(absl::string_view bytes) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    return absl::ResourceExhaustedError("zlib deflateInit2 failed");
  }
  std::string out(deflateBound(&zs, bytes.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  zs.avail_in = static_cast<uInt>(bytes.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return absl::InternalError("zlib deflate failed");
  return out;
}

#else  // !CLMAE_HAVE_ZLIB

bool GzipAvailable() { return false; }

absl::StatusOr<std::string> GunzipBytes(absl::string_view, absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat(what,
                   " is gzip-compressed but the engine was built without zlib; "
                   "gunzip it or rebuild with zlib"));
}

absl::StatusOr<std::string> GzipBytes(absl::string_view) {
  return absl::FailedPreconditionError("the engine was built without zlib");
}

#endif  // CLMAE_HAVE_ZLIB

}  // namespace clmae
