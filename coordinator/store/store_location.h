// Where the coordinator's store lives, parsed once: every user (OpenStore,
// the server's data-dir lock and its description) asks ParseStoreLocation and
// no one looks at the string itself.
//
// Rules, in order:
//   "postgresql://..." / "postgres://..."  PostgreSQL (a libpq URI)
//   "sqlite://PATH"                        SQLite file PATH (forces SQLite)
//   a string libpq parses as key=value     PostgreSQL ("host=db dbname=txc"):
//     every word is keyword=value with a keyword libpq knows
//   anything else                          SQLite file path, '=' and all
//                                          ("/data/run=3/coordinator.db")
// A file whose name is a valid libpq conninfo (e.g. "dbname=x") must be
// written "sqlite://dbname=x".
#pragma once

#include <string>

#include "common/status.h"

namespace txc {

enum class StoreBackend { kSqlite, kPostgres };

struct StoreLocation {
  StoreBackend backend = StoreBackend::kSqlite;
  // PostgreSQL: the connection string as given. SQLite: the file path
  // ("sqlite://" removed).
  std::string target;

  bool is_postgres() const { return backend == StoreBackend::kPostgres; }
};

// kInvalidArgument for an empty location or an empty "sqlite://" path.
Result<StoreLocation> ParseStoreLocation(const std::string& location);

}  // namespace txc
