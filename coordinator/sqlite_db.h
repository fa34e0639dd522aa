#pragma once

// A thin RAII layer over the SQLite C API: a connection and prepared
// statements that answer with absl::Status. Only what the job store needs.

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace clmae {

// A prepared statement. Owned by its creator; not thread-safe. Bind indices
// are 1-based (SQLite's); column indices 0-based.
class SqliteStatement {
 public:
  SqliteStatement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~SqliteStatement();
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  SqliteStatement& Bind(int index, int64_t value);
  SqliteStatement& Bind(int index, absl::string_view text);
  SqliteStatement& BindBlob(int index, absl::string_view bytes);
  SqliteStatement& BindNull(int index);

  // Runs to the next row: true with a row, false when done. A failure
  // (including an earlier Bind failure) is INTERNAL with SQLite's message.
  absl::StatusOr<bool> Step();
  // Runs a statement that returns no rows, then resets it.
  absl::Status Run();
  // Resets for re-execution and clears the bindings.
  void Reset();

  int64_t ColumnInt(int column) const;
  std::string ColumnText(int column) const;
  std::string ColumnBlob(int column) const;
  bool ColumnIsNull(int column) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int bind_error_ = SQLITE_OK;
};

// One connection. Not thread-safe: the owner serialises calls.
class SqliteDb {
 public:
  // Opens (creating when missing) the database at `path` with WAL,
  // synchronous=FULL (a commit is on disk when Commit() returns), foreign
  // keys on and `busy_timeout` to wait for another connection's lock.
  // UNAVAILABLE when the file cannot be opened or the journal mode set.
  static absl::StatusOr<std::unique_ptr<SqliteDb>> Open(const std::string& path,
                                                        absl::Duration busy_timeout);
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  // Runs one or more statements with no results (schema, pragmas).
  absl::Status Exec(absl::string_view sql);
  // INTERNAL names the statement when it does not compile.
  absl::StatusOr<std::unique_ptr<SqliteStatement>> Prepare(absl::string_view sql);

  // BEGIN IMMEDIATE (takes the write lock now, so a busy database fails here
  // and not halfway), COMMIT, ROLLBACK.
  absl::Status Begin();
  absl::Status Commit();
  void Rollback();

  int64_t LastInsertRowId() const;
  int Changes() const;

 private:
  explicit SqliteDb(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

// Brings the schema of `db` from its `PRAGMA user_version` up to
// `migrations.size()`: migration i (0-based) takes version i to i + 1, each in
// its own transaction with a row in `schema_migrations` (which the first
// migration creates). FAILED_PRECONDITION, naming `what`, when the database
// was written by a newer build (its version is past the list).
absl::Status MigrateSchema(SqliteDb& db, absl::string_view what,
                           const std::vector<const char*>& migrations);

// Rolls back an open transaction unless Commit() was called on it.
class SqliteTransaction {
 public:
  // Begin() must have succeeded on `db`.
  explicit SqliteTransaction(SqliteDb* db) : db_(db) {}
  ~SqliteTransaction() {
    if (!done_) db_->Rollback();
  }
  absl::Status Commit() {
    done_ = true;
    return db_->Commit();
  }

 private:
  SqliteDb* db_;
  bool done_ = false;
};

}  // namespace clmae
