#pragma once

// Bearer-token authorization for the coordinator's RPCs (docs/README.md,
// "Security"). A token carries one role: `client` (the Coordinator service:
// submit, watch, cancel...) or `worker` (the WorkerControl service: agents
// and trainers). Health needs no token; reflection neither, which is why it
// is off unless --reflection turns it on.
//
// Each handler calls Authorizer::Authorize first, before touching its
// request; tokens arrive as per-call metadata `authorization: Bearer <t>`.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/server_context.h"

namespace clmae {

enum class Role { kClient, kWorker };

// "client" / "worker".
absl::string_view RoleName(Role role);

struct TokenEntry {
  Role role = Role::kClient;
  std::string token;
};

struct TokenFile {
  std::vector<TokenEntry> entries;
  // Things worth telling the operator that do not stop the server (e.g. the
  // file is readable by everyone).
  std::vector<std::string> warnings;
};

// Parses "<role> <token>" lines; blank lines and lines starting with '#'
// (after spaces) are skipped. INVALID_ARGUMENT names the line (1-based) for
// an unknown role, a missing token or extra fields; `source` names the text
// in messages (a file path).
absl::StatusOr<TokenFile> ParseTokens(absl::string_view text, absl::string_view source);

// Reads and parses the file at `path`. NOT_FOUND / PERMISSION_DENIED name
// the file when it cannot be read; a file readable by others than its owner's
// group gets a warning.
absl::StatusOr<TokenFile> LoadTokensFile(const std::string& path);

// Checks the bearer token of incoming calls against a fixed table.
// Immutable after Create; thread-safe.
class Authorizer {
 public:
  // INVALID_ARGUMENT for an empty token or one token listed under both roles.
  // An empty table is refused unless `allow_anonymous` (every call is then
  // allowed; for local development only): FAILED_PRECONDITION saying to
  // give tokens or --insecure_no_auth.
  static absl::StatusOr<Authorizer> Create(std::vector<TokenEntry> tokens, bool allow_anonymous);

  // OK when the call carries a token with `required`'s role.
  // UNAUTHENTICATED for no token, a malformed header or an unknown token;
  // PERMISSION_DENIED for a known token of the other role. Tokens are
  // compared in time independent of where they differ.
  absl::Status Authorize(const grpc::ServerContextBase& context, Role required) const;

  // The same check on the raw `authorization` header value ("" = absent).
  absl::Status AuthorizeHeader(absl::string_view header, Role required) const;

  bool anonymous() const { return anonymous_; }

 private:
  Authorizer(std::vector<TokenEntry> tokens, bool anonymous)
      : tokens_(std::move(tokens)), anonymous_(anonymous) {}

  std::vector<TokenEntry> tokens_;
  bool anonymous_ = false;
};

}  // namespace clmae
