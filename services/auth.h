#pragma once

// Who calls the coordinator, and what they may do (docs/security.md). A
// bearer token maps to a named principal with one role:
//   user      the Coordinator service on their own jobs: submit, get, watch,
//             cancel, list, checkpoints and downloads;
//   operator  what a user may, on every job, plus listing and draining
//             workers;
//   worker    the WorkerControl service as one node (a fleet credential:
//             any node);
//   task      issued by the coordinator to one trainer: report and upload
//             for its rank only, while it runs.
// Health needs no token; reflection neither, which is why it is off unless
// --reflection turns it on.
//
// Each handler calls Authorizer::Authorize first, before touching its
// request; tokens arrive as per-call metadata `authorization: Bearer <t>`.
// The coordinator keeps only SHA-256 digests of the tokens.

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/server_context.h"

namespace clmae {

// kTask is never listed in a tokens file: it is the role of the credential
// the coordinator issues to one trainer with its assignment (TaskScope).
enum class Role { kUser, kOperator, kWorker, kTask };

// "user" / "operator" / "worker" / "task".
absl::string_view RoleName(Role role);

// Who a call comes from.
// One rank of one attempt of a job: what a task credential may act for.
struct TaskScope {
  std::string job_id;
  int attempt = 0;
  int rank = 0;
};

// A worker principal is one node: its name is the worker id it may register
// as, and it may report, upload and fetch only for the ranks placed on that
// node. A `fleet` worker credential (the environment shortcut, the older
// `worker TOKEN` lines) may act as any node.
struct Principal {
  std::string name;
  Role role = Role::kUser;
  bool fleet = false;
  TaskScope task;  // role kTask: the rank it was issued for
  bool is_operator() const { return role == Role::kOperator; }
  // The worker id this principal is confined to, when it is one node's.
  bool bound_to_node() const { return role == Role::kWorker && !fleet; }
};

// What a call needs.
enum class Access {
  kClient,    // a user or an operator (the Coordinator service)
  kOperator,  // an operator (workers: list, drain)
  kWorker,    // a worker: an agent (attach, fetch checkpoints)
  kTrainer,   // a worker or a task credential: a trainer (report, upload)
};

// Checks a task credential: its scope when the token is one the coordinator
// issued for a task that is still running; UNAUTHENTICATED for a token that
// is not one; FAILED_PRECONDITION once its task has ended (the trainer
// should stop).
using TaskTokenVerifier = std::function<absl::StatusOr<TaskScope>(absl::string_view token)>;

struct TokenEntry {
  std::string principal;
  Role role = Role::kUser;
  std::string token_sha256;  // 64 lowercase hex digits; empty for a certificate
  bool fleet = false;        // a worker credential of every node (Principal)
  // The principal authenticates with a client certificate under mutual TLS
  // whose subject common name is the principal's name, instead of a token.
  bool certificate = false;

  // An entry for a token given in clear (the environment shortcut, tests).
  static TokenEntry ForToken(std::string principal, Role role, absl::string_view token,
                             bool fleet = false);
};

struct TokenFile {
  std::vector<TokenEntry> entries;
  // Things worth telling the operator that do not stop the server (e.g. the
  // file is readable by everyone).
  std::vector<std::string> warnings;
};

// Parses "<principal> <role> sha256:<64 hex digits>" lines, the digest being
// SHA-256 of the token (`printf %s TOKEN | sha256sum`), and
// "<principal> <role> cert" lines for a principal that presents a client
// certificate (mutual TLS) with that common name; blank lines and
// lines starting with '#' (after spaces) are skipped. The older
// "<client|worker> <token>" lines are still read, with a warning to replace
// them: `client` becomes the operator principal "client", `worker` the fleet
// worker principal "worker" (any node). INVALID_ARGUMENT names the line (1-based) for an
// unknown role, a malformed digest, a bad principal name or a wrong field
// count; `source` names the text in messages (a file path).
absl::StatusOr<TokenFile> ParseTokens(absl::string_view text, absl::string_view source);

// Reads and parses the file at `path`. NOT_FOUND / PERMISSION_DENIED name
// the file when it cannot be read; a file readable by others than its owner's
// group gets a warning.
absl::StatusOr<TokenFile> LoadTokensFile(const std::string& path);

// Checks the bearer token of incoming calls against a fixed table.
// Immutable after Create; thread-safe.
class Authorizer {
 public:
  // INVALID_ARGUMENT for a malformed digest, one token listed twice with
  // different principals or roles, or one principal with two roles. An empty
  // table is refused unless `allow_anonymous` (every call is then allowed,
  // as the operator principal "anonymous"; for local development only):
  // FAILED_PRECONDITION saying to give tokens or --insecure_no_auth.
  static absl::StatusOr<Authorizer> Create(std::vector<TokenEntry> tokens, bool allow_anonymous);

  // The principal of the call's token when its role has `access`. A call
  // without a token is the principal of its verified client certificate
  // when that certificate's common name is listed as a `cert` principal.
  // UNAUTHENTICATED for no token (and no listed certificate), a malformed
  // header or an unknown token;
  // PERMISSION_DENIED, naming the principal and the role needed, for a
  // known token without the access. Digests are compared in time
  // independent of where they differ.
  absl::StatusOr<Principal> Authorize(const grpc::ServerContextBase& context, Access access) const;

  // The same check on the raw `authorization` header value ("" = absent).
  absl::StatusOr<Principal> AuthorizeHeader(absl::string_view header, Access access) const;

  bool anonymous() const { return anonymous_; }

  // Tokens that are not in the table are then checked as task credentials.
  // Set before the authorizer is shared.
  void set_task_verifier(TaskTokenVerifier verifier) { task_verifier_ = std::move(verifier); }

 private:
  Authorizer(std::vector<TokenEntry> tokens, bool anonymous)
      : tokens_(std::move(tokens)), anonymous_(anonymous) {}

  // `principal` when its role has `access`; PERMISSION_DENIED otherwise.
  static absl::StatusOr<Principal> Admit(Principal principal, Access access);

  std::vector<TokenEntry> tokens_;
  bool anonymous_ = false;
  TaskTokenVerifier task_verifier_;
};

// Whether a task credential may act for this rank: OK for any other
// principal and for the task's own (job, attempt, rank); PERMISSION_DENIED
// naming both otherwise.
absl::Status CheckTaskScope(const Principal& principal, absl::string_view job_id, int attempt,
                            int rank);

// Whether `principal` may act on a job owned by `owner`: an operator on
// every job, a user on their own. PERMISSION_DENIED names the job and the
// rule otherwise (not the owner).
absl::Status CheckJobAccess(const Principal& principal, absl::string_view job_id,
                            absl::string_view owner);

}  // namespace clmae
