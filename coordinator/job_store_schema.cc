#include "coordinator/job_store_schema.h"

namespace clmae {

// Applied in order; migration i brings the schema from version i to i + 1.
// Append only: never edit a migration that has shipped.
const std::vector<const char*>& JobStoreMigrations() {
  static const std::vector<const char*> kMigrations = {
      // v1: jobs (the Job proto as a blob, with the columns that are queried),
      // their labels, the append-only event log and the migration record.
      R"sql(
CREATE TABLE schema_migrations (
  version INTEGER PRIMARY KEY,
  applied_at_us INTEGER NOT NULL
);
CREATE TABLE jobs (
  seq INTEGER PRIMARY KEY,          -- submission order; the paging key
  id TEXT NOT NULL UNIQUE,
  request_id TEXT UNIQUE,           -- NULL when the client gave none
  state INTEGER NOT NULL,
  priority INTEGER NOT NULL,
  submit_time_us INTEGER NOT NULL,
  job BLOB NOT NULL                 -- clmae.v1.Job, spec included
);
CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE TABLE job_labels (
  job_seq INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (job_seq, key)
);
CREATE INDEX job_labels_by_pair ON job_labels (key, value);
CREATE TABLE events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL,
  time_us INTEGER NOT NULL,
  from_state INTEGER NOT NULL,
  to_state INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  message TEXT NOT NULL
);
CREATE INDEX events_by_job ON events (job_id, seq);
)sql",
      // v2: the operators' drains, which outlast a coordinator restart.
      R"sql(
CREATE TABLE drained_workers (
  worker_id TEXT PRIMARY KEY,
  move_jobs INTEGER NOT NULL,       -- 0: a cordon (no new ranks only)
  time_us INTEGER NOT NULL
);
)sql",
      // v3: principals. Who submitted each job (a user lists and acts on
      // their own), and who caused each event. Earlier rows get ''.
      R"sql(
ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX jobs_by_owner ON jobs (owner, seq);
ALTER TABLE events ADD COLUMN principal TEXT NOT NULL DEFAULT '';
)sql",
  };
  return kMigrations;
}

}  // namespace clmae
