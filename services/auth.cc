#include "services/auth.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace clmae {
namespace {

constexpr absl::string_view kBearer = "bearer ";

// Equal contents and lengths; the time taken depends only on the lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (b.empty()) return false;
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) {
    const unsigned char x = a.empty() ? 0 : static_cast<unsigned char>(a[i % a.size()]);
    diff |= x ^ static_cast<unsigned char>(b[i]);
  }
  return diff == 0;
}

}  // namespace

absl::string_view RoleName(Role role) { return role == Role::kClient ? "client" : "worker"; }

absl::StatusOr<TokenFile> ParseTokens(absl::string_view text, absl::string_view source) {
  TokenFile out;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    const std::string where = absl::StrCat(source, ":", line_number);
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: expected '<role> <token>' (role client or worker), got %d field(s)",
                          where, fields.size()));
    }
    TokenEntry entry;
    if (fields[0] == "client") {
      entry.role = Role::kClient;
    } else if (fields[0] == "worker") {
      entry.role = Role::kWorker;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": unknown role '", fields[0], "'; use client or worker"));
    }
    entry.token = std::string(fields[1]);
    out.entries.push_back(std::move(entry));
  }
  return out;
}

absl::StatusOr<TokenFile> LoadTokensFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string why =
        absl::StrCat("--tokens_file: cannot read '", path, "': ", std::strerror(err));
    return err == EACCES ? absl::PermissionDeniedError(why) : absl::NotFoundError(why);
  }
  std::ostringstream text;
  text << in.rdbuf();
  absl::StatusOr<TokenFile> file = ParseTokens(text.str(), path);
  if (!file.ok()) return file.status();
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0) {
    file->warnings.push_back(
        absl::StrCat("tokens file '", path, "' is readable by every user; run chmod o-r on it"));
  }
  return file;
}

absl::StatusOr<Authorizer> Authorizer::Create(std::vector<TokenEntry> tokens,
                                              bool allow_anonymous) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("an empty ", RoleName(tokens[i].role), " token was given"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (tokens[j].token == tokens[i].token && tokens[j].role != tokens[i].role) {
        return absl::InvalidArgumentError(
            "one token is listed both as a client and as a worker token; give each role its "
            "own token");
      }
    }
  }
  if (tokens.empty() && !allow_anonymous) {
    return absl::FailedPreconditionError(
        "no auth tokens configured: give --tokens_file (or CLMAE_CLIENT_TOKEN and "
        "CLMAE_WORKER_TOKEN), or pass --insecure_no_auth to accept every call without a "
        "token");
  }
  const bool anonymous = tokens.empty();
  return Authorizer(std::move(tokens), anonymous);
}

absl::Status Authorizer::Authorize(const grpc::ServerContextBase& context, Role required) const {
  if (anonymous_) return absl::OkStatus();
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return AuthorizeHeader("", required);
  return AuthorizeHeader(absl::string_view(it->second.data(), it->second.size()), required);
}

absl::Status Authorizer::AuthorizeHeader(absl::string_view header, Role required) const {
  if (anonymous_) return absl::OkStatus();
  if (header.empty()) {
    return absl::UnauthenticatedError(
        absl::StrCat("no bearer token: this call needs a ", RoleName(required),
                     " token in the 'authorization: Bearer <token>' metadata"));
  }
  if (header.size() <= kBearer.size() ||
      !absl::EqualsIgnoreCase(header.substr(0, kBearer.size()), kBearer)) {
    return absl::UnauthenticatedError(
        "malformed authorization metadata; expected 'Bearer <token>'");
  }
  const absl::string_view token = absl::StripAsciiWhitespace(header.substr(kBearer.size()));
  // Every entry is compared, so the time taken does not tell which matched.
  const TokenEntry* match = nullptr;
  for (const TokenEntry& entry : tokens_) {
    if (ConstantTimeEquals(token, entry.token) && match == nullptr) match = &entry;
  }
  if (match == nullptr) return absl::UnauthenticatedError("unknown bearer token");
  if (match->role != required) {
    return absl::PermissionDeniedError(absl::StrCat("a ", RoleName(match->role),
                                                    " token cannot call this; it needs a ",
                                                    RoleName(required), " token"));
  }
  return absl::OkStatus();
}

}  // namespace clmae
