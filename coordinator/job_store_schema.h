#pragma once

// The job store's schema as an ordered list of migrations: entry i brings a
// database from schema version i to i + 1 (PRAGMA user_version). Append
// only; never edit a migration that has shipped.

#include <vector>

namespace clmae {

// JobStore::kSchemaVersion entries.
const std::vector<const char*>& JobStoreMigrations();

}  // namespace clmae
