#include "coordinator/sqlite_db.h"

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace clmae {
namespace {

// A full disk or quota (SQLITE_FULL, or an I/O error whose errno says so)
// is RESOURCE_EXHAUSTED, so callers and clients can tell it from a bug; a
// busy database is UNAVAILABLE (retry); the rest INTERNAL.
absl::Status SqliteError(sqlite3* db, int code, absl::string_view what) {
  const std::string message =
      absl::StrCat("sqlite: ", what, ": ", db != nullptr ? sqlite3_errmsg(db) : "", " (",
                   sqlite3_errstr(code), ")");
  const int primary = code & 0xff;
  const int system_errno = db != nullptr ? sqlite3_system_errno(db) : 0;
  if (primary == SQLITE_FULL ||
      (primary == SQLITE_IOERR && (system_errno == ENOSPC || system_errno == EDQUOT))) {
    return absl::ResourceExhaustedError(absl::StrCat(message, "; the disk is full"));
  }
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) return absl::UnavailableError(message);
  return absl::InternalError(message);
}

}  // namespace

SqliteStatement::~SqliteStatement() { sqlite3_finalize(stmt_); }

SqliteStatement& SqliteStatement::Bind(int index, int64_t value) {
  const int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK) bind_error_ = rc;
  return *this;
}

SqliteStatement& SqliteStatement::Bind(int index, absl::string_view text) {
  const int rc =
      sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) bind_error_ = rc;
  return *this;
}

SqliteStatement& SqliteStatement::BindBlob(int index, absl::string_view bytes) {
  const int rc = sqlite3_bind_blob(stmt_, index, bytes.data(), static_cast<int>(bytes.size()),
                                   SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) bind_error_ = rc;
  return *this;
}

SqliteStatement& SqliteStatement::BindNull(int index) {
  const int rc = sqlite3_bind_null(stmt_, index);
  if (rc != SQLITE_OK) bind_error_ = rc;
  return *this;
}

absl::StatusOr<bool> SqliteStatement::Step() {
  if (bind_error_ != SQLITE_OK) {
    return SqliteError(db_, bind_error_, absl::StrCat("bind for ", sqlite3_sql(stmt_)));
  }
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(db_, rc, sqlite3_sql(stmt_));
}

absl::Status SqliteStatement::Run() {
  absl::StatusOr<bool> row = Step();
  Reset();
  return row.status();
}

void SqliteStatement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_error_ = SQLITE_OK;
}

int64_t SqliteStatement::ColumnInt(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string SqliteStatement::ColumnText(int column) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  return text == nullptr ? std::string() : std::string(text, sqlite3_column_bytes(stmt_, column));
}

std::string SqliteStatement::ColumnBlob(int column) const {
  const auto* bytes = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
  return bytes == nullptr ? std::string() : std::string(bytes, sqlite3_column_bytes(stmt_, column));
}

bool SqliteStatement::ColumnIsNull(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

absl::StatusOr<std::unique_ptr<SqliteDb>> SqliteDb::Open(const std::string& path,
                                                         absl::Duration busy_timeout) {
  sqlite3* raw = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    sqlite3_close(raw);
    return absl::UnavailableError(absl::StrCat("job store: cannot open '", path, "': ", message));
  }
  std::unique_ptr<SqliteDb> db(new SqliteDb(raw));
  sqlite3_busy_timeout(raw, static_cast<int>(absl::ToInt64Milliseconds(busy_timeout)));
  // journal_mode answers with the mode in force; anything but "wal" (e.g. on a
  // file system without shared memory) is refused rather than run unsafely.
  auto mode = db->Prepare("PRAGMA journal_mode=WAL");
  if (!mode.ok()) return mode.status();
  absl::StatusOr<bool> row = (*mode)->Step();
  if (!row.ok() || !*row || (*mode)->ColumnText(0) != "wal") {
    return absl::UnavailableError(
        absl::StrCat("job store: '", path, "' cannot use write-ahead logging"));
  }
  mode->reset();
  absl::Status status = db->Exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
  if (!status.ok()) return status;
  return db;
}

SqliteDb::~SqliteDb() { sqlite3_close_v2(db_); }

absl::Status SqliteDb::Exec(absl::string_view sql) {
  const std::string text(sql);
  char* error = nullptr;
  const int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &error);
  if (rc == SQLITE_OK) return absl::OkStatus();
  absl::Status status = absl::InternalError(
      absl::StrCat("sqlite: ", text, ": ", error != nullptr ? error : sqlite3_errstr(rc)));
  sqlite3_free(error);
  return status;
}

absl::StatusOr<std::unique_ptr<SqliteStatement>> SqliteDb::Prepare(absl::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db_, rc, absl::StrCat("prepare ", sql));
  return std::make_unique<SqliteStatement>(db_, stmt);
}

absl::Status SqliteDb::Begin() { return Exec("BEGIN IMMEDIATE"); }
absl::Status SqliteDb::Commit() { return Exec("COMMIT"); }
void SqliteDb::Rollback() { sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr); }

int64_t SqliteDb::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }
int SqliteDb::Changes() const { return sqlite3_changes(db_); }

absl::Status MigrateSchema(SqliteDb& db, absl::string_view what,
                           const std::vector<const char*>& migrations) {
  ASSIGN_OR_RETURN(auto version_stmt, db.Prepare("PRAGMA user_version"));
  ASSIGN_OR_RETURN(bool row, version_stmt->Step());
  const int64_t version = row ? version_stmt->ColumnInt(0) : 0;
  version_stmt.reset();
  const int64_t latest = static_cast<int64_t>(migrations.size());
  if (version > latest) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": schema version ", version,
        " was written by a newer clmae-coordinator; this one knows versions up to ", latest));
  }
  for (int64_t v = version; v < latest; ++v) {
    RETURN_IF_ERROR(db.Begin());
    SqliteTransaction txn(&db);
    RETURN_IF_ERROR(db.Exec(migrations[v]));
    RETURN_IF_ERROR(db.Exec(absl::StrCat("INSERT INTO schema_migrations VALUES (", v + 1, ", ",
                                         absl::ToUnixMicros(absl::Now()), ");",
                                         "PRAGMA user_version = ", v + 1, ";")));
    RETURN_IF_ERROR(txn.Commit());
  }
  return absl::OkStatus();
}

}  // namespace clmae
