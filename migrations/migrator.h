// Versioned schema migrations, embedded into the binary at build time.
//
// Files: migrations/<schema>/NNNN_description.sql, applied in version order.
// When one SQL text cannot serve both backends a version may instead have
// NNNN_description.postgresql.sql and NNNN_description.sqlite.sql; a backend
// uses its own variant, else the plain file. Forward-only: an applied file is
// never edited (its checksum is recorded and checked on every start).
//
// Applied migrations are recorded in the table
//   schema_migrations (schema, version, name, checksum, applied_ms)
// which the migrator creates itself (shared by every schema in a database).
//
//   sqlite3* db = ...;  // or pqxx::connection
//   TXC_RETURN_IF_ERROR(MigrateSqlite(db, "participant"));
//
// Several processes may migrate the same database at once: each migration is
// applied exactly once (PostgreSQL: pg_advisory_xact_lock; SQLite: BEGIN
// IMMEDIATE). All pending migrations of one call are applied in one
// transaction: all or none.
//
// Thread-safety: the functions are thread-safe for distinct connections.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "common/status.h"

namespace txc {

struct Migration {
  int version = 0;        // NNNN
  std::string name;       // "init" (without version, variant and .sql)
  std::string file_name;  // "0001_init.sql" or "0001_init.postgresql.sql"
  std::string backend;    // "" (both), "postgresql" or "sqlite"
  std::string sql;
  std::string checksum;  // of `sql`, hex
};

// Checksum recorded for a migration text (64-bit FNV-1a, 16 hex digits).
std::string MigrationChecksum(const std::string& sql);

// The migrations embedded for `schema` ("coordinator", "participant", ...),
// in version order. backend "postgresql" or "sqlite": the one file per version
// that backend applies; empty: every file. kInvalidArgument for a badly named
// file or two files for one version and backend; empty list for an unknown
// schema.
Result<std::vector<Migration>> EmbeddedMigrations(const std::string& schema,
                                                  const std::string& backend = "");

// Applies the embedded migrations of `schema` not yet applied and verifies the
// checksums of those already applied. Errors: kInternal naming the file when an
// applied migration changed ("migration coordinator/0001_init.sql was changed
// after it was applied ...") or a migration's SQL fails; kUnavailable when the
// database cannot be reached; kTimeout when SQLite stays locked.
Status MigrateSqlite(sqlite3* db, const std::string& schema);
Status MigratePostgres(pqxx::connection& conn, const std::string& schema);

// The same with an explicit list (tests; tools).
Status ApplyMigrationsSqlite(sqlite3* db, const std::string& schema,
                             const std::vector<Migration>& migrations);
Status ApplyMigrationsPostgres(pqxx::connection& conn, const std::string& schema,
                               const std::vector<Migration>& migrations);

}  // namespace txc
