#include "services/auth.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace clmae {
namespace {

constexpr absl::string_view kBearer = "bearer ";
constexpr absl::string_view kDigestPrefix = "sha256:";

bool IsDigest(absl::string_view hex) {
  return hex.size() == 64 && std::all_of(hex.begin(), hex.end(), [](char c) {
           return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f');
         });
}

// Principal names: 1-64 of letters, digits and . _ @ -.
bool IsPrincipalName(absl::string_view name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '@' || c == '-';
  });
}

std::optional<Role> ParseRole(absl::string_view name) {
  if (name == "user") return Role::kUser;
  if (name == "operator") return Role::kOperator;
  if (name == "worker") return Role::kWorker;
  return std::nullopt;
}

bool Allows(Role role, Access access) {
  switch (access) {
    case Access::kClient:
      return role == Role::kUser || role == Role::kOperator;
    case Access::kOperator:
      return role == Role::kOperator;
    case Access::kWorker:
      return role == Role::kWorker;
    case Access::kTrainer:
      return role == Role::kWorker || role == Role::kTask;
  }
  return false;
}

absl::string_view AccessName(Access access) {
  switch (access) {
    case Access::kClient:
      return "a user or operator";
    case Access::kOperator:
      return "an operator";
    case Access::kWorker:
      return "a worker";
    case Access::kTrainer:
      return "a worker or task";
  }
  return "?";
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kUser:
      return "user";
    case Role::kOperator:
      return "operator";
    case Role::kWorker:
      return "worker";
    case Role::kTask:
      return "task";
  }
  return "?";
}

TokenEntry TokenEntry::ForToken(std::string principal, Role role, absl::string_view token,
                                bool fleet) {
  return TokenEntry{std::move(principal), role, Sha256Hex(token), fleet};
}

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
    if (fields.size() == 2 && (fields[0] == "client" || fields[0] == "worker")) {
      // The format before principals: a role and the token in clear.
      const bool client = fields[0] == "client";
      out.entries.push_back(TokenEntry::ForToken(
          std::string(fields[0]), client ? Role::kOperator : Role::kWorker, fields[1],
          /*fleet=*/!client));
      out.warnings.push_back(absl::StrCat(
          where,
          ": a token in clear (the older '<client|worker> <token>' form); it is read as the ",
          client ? "operator" : "fleet worker (any node)", " principal '", fields[0],
          "'. Replace the line by '<principal> <role> sha256:<digest>' (digest: printf %s TOKEN | "
          "sha256sum)"));
      continue;
    }
    if (fields.size() != 3) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: expected '<principal> <role> sha256:<hex digest of the token>' or "
          "'<principal> <role> cert' (role user, operator or worker), got %d field(s)",
          where, fields.size()));
    }
    if (!IsPrincipalName(fields[0])) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": principal '", fields[0],
                       "' must be 1-64 letters, digits, '.', '_', '@' or '-'"));
    }
    const std::optional<Role> role = ParseRole(fields[1]);
    if (!role.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": unknown role '", fields[1], "'; use user, operator or worker"));
    }
    if (fields[2] == "cert") {
      TokenEntry entry{std::string(fields[0]), *role};
      entry.certificate = true;
      out.entries.push_back(std::move(entry));
      continue;
    }
    if (!absl::StartsWith(fields[2], kDigestPrefix) ||
        !IsDigest(fields[2].substr(kDigestPrefix.size()))) {
      return absl::InvalidArgumentError(
          absl::StrCat(where,
                       ": the token must be given as sha256:<64 lowercase hex digits> "
                       "(printf %s TOKEN | sha256sum), never in clear"));
    }
    out.entries.push_back(TokenEntry{std::string(fields[0]), *role,
                                     std::string(fields[2].substr(kDigestPrefix.size()))});
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
    const TokenEntry& t = tokens[i];
    if (t.certificate ? !t.token_sha256.empty() : !IsDigest(t.token_sha256)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the token of principal '", t.principal, "' is not a SHA-256 digest"));
    }
    if (!IsPrincipalName(t.principal)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "principal '", t.principal, "' must be 1-64 letters, digits, '.', '_', '@' or '-'"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (!t.certificate && tokens[j].token_sha256 == t.token_sha256 &&
          (tokens[j].principal != t.principal || tokens[j].role != t.role ||
           tokens[j].fleet != t.fleet)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "one token is listed for both '", tokens[j].principal, "' (", RoleName(tokens[j].role),
            ") and '", t.principal, "' (", RoleName(t.role), "); give each its own token"));
      }
      if (tokens[j].principal == t.principal && tokens[j].role != t.role) {
        return absl::InvalidArgumentError(
            absl::StrCat("principal '", t.principal, "' is listed with two roles (",
                         RoleName(tokens[j].role), " and ", RoleName(t.role), "); give it one"));
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

absl::StatusOr<Principal> Authorizer::Authorize(const grpc::ServerContextBase& context,
                                                Access access) const {
  if (anonymous_) return Principal{"anonymous", Role::kOperator};
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it != metadata.end()) {
    return AuthorizeHeader(absl::string_view(it->second.data(), it->second.size()), access);
  }
  // No token: the client certificate, which the TLS layer verified against
  // --tls_client_ca, when its common name is a listed `cert` principal.
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth != nullptr && auth->IsPeerAuthenticated()) {
    for (const grpc::string_ref& name : auth->FindPropertyValues("x509_common_name")) {
      const absl::string_view cn(name.data(), name.size());
      for (const TokenEntry& entry : tokens_) {
        if (entry.certificate && entry.principal == cn) {
          return Admit(Principal{entry.principal, entry.role, entry.fleet}, access);
        }
      }
    }
  }
  return AuthorizeHeader("", access);
}

absl::StatusOr<Principal> Authorizer::Admit(Principal principal, Access access) {
  if (!Allows(principal.role, access)) {
    return absl::PermissionDeniedError(
        absl::StrCat("principal '", principal.name, "' (", RoleName(principal.role),
                     ") cannot call this; it needs ", AccessName(access), " token"));
  }
  return principal;
}

absl::StatusOr<Principal> Authorizer::AuthorizeHeader(absl::string_view header,
                                                      Access access) const {
  if (anonymous_) return Principal{"anonymous", Role::kOperator};
  if (header.empty()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "no bearer token: this call needs ", AccessName(access),
        " token in the 'authorization: Bearer <token>' metadata (or, under mutual TLS, a client "
        "certificate listed as a 'cert' principal)"));
  }
  if (header.size() <= kBearer.size() ||
      !absl::EqualsIgnoreCase(header.substr(0, kBearer.size()), kBearer)) {
    return absl::UnauthenticatedError(
        "malformed authorization metadata; expected 'Bearer <token>'");
  }
  const std::string digest = Sha256Hex(absl::StripAsciiWhitespace(header.substr(kBearer.size())));
  // Every entry is compared, so the time taken does not tell which matched.
  const TokenEntry* match = nullptr;
  for (const TokenEntry& entry : tokens_) {
    if (!entry.certificate && ConstantTimeEqual(digest, entry.token_sha256) && match == nullptr) {
      match = &entry;
    }
  }
  if (match == nullptr) {
    if (task_verifier_ == nullptr) return absl::UnauthenticatedError("unknown bearer token");
    ASSIGN_OR_RETURN(TaskScope scope,
                     task_verifier_(absl::StripAsciiWhitespace(header.substr(kBearer.size()))));
    Principal task{absl::StrCat("task:", scope.job_id, "/", scope.attempt, "/", scope.rank),
                   Role::kTask};
    task.task = std::move(scope);
    if (!Allows(Role::kTask, access)) {
      return absl::PermissionDeniedError(absl::StrCat(
          "the task credential of rank ", task.task.rank, " of job ", task.task.job_id, " attempt ",
          task.task.attempt,
          " may only report progress and upload checkpoints for that rank; this call needs ",
          AccessName(access), " token"));
    }
    return task;
  }
  return Admit(Principal{match->principal, match->role, match->fleet}, access);
}

absl::Status CheckJobAccess(const Principal& principal, absl::string_view job_id,
                            absl::string_view owner) {
  if (principal.is_operator() || (principal.role == Role::kUser && owner == principal.name)) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "job ", job_id, " is not yours: principal '", principal.name, "' (", RoleName(principal.role),
      ") may act only on the jobs it submitted; an operator may act on every job"));
}

absl::Status CheckTaskScope(const Principal& principal, absl::string_view job_id, int attempt,
                            int rank) {
  if (principal.role != Role::kTask) return absl::OkStatus();
  const TaskScope& t = principal.task;
  if (t.job_id == job_id && t.attempt == attempt && t.rank == rank) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "the task credential of rank ", t.rank, " of job ", t.job_id, " attempt ", t.attempt,
      " cannot act for rank ", rank, " of job ", job_id, " attempt ", attempt));
}

}  // namespace clmae
