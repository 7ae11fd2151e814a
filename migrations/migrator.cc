#include "migrations/migrator.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <regex>
#include <thread>

#include "common/backoff.h"
#include "migrations/embedded.h"

namespace txc {

namespace {

// One lock for every schema: they share schema_migrations.
constexpr int64_t kMigrationLockKey = 0x7478636d6967;  // "txcmig"
constexpr int64_t kSqliteLockWaitMs = 60000;

constexpr char kCreateMigrationsTable[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " schema TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " name TEXT NOT NULL,"
    " checksum TEXT NOT NULL,"
    " applied_ms BIGINT NOT NULL,"
    " PRIMARY KEY (schema, version))";

struct Applied {
  std::string name;
  std::string checksum;
};

// Checks the applied ones against `migrations` and returns those to apply.
Result<std::vector<const Migration*>> Plan(const std::string& schema,
                                           const std::vector<Migration>& migrations,
                                           const std::map<int, Applied>& applied) {
  std::vector<const Migration*> pending;
  for (const Migration& m : migrations) {
    auto it = applied.find(m.version);
    if (it == applied.end()) {
      pending.push_back(&m);
      continue;
    }
    if (it->second.checksum != m.checksum) {
      return Status::Internal("migration " + schema + "/" + m.file_name +
                              " was changed after it was applied (recorded as " + it->second.name +
                              " with checksum " + it->second.checksum + ", the file now has " +
                              m.checksum +
                              "): migrations are forward-only; restore the file and put the "
                              "change in a new migration");
    }
  }
  for (const auto& [version, a] : applied) {
    bool known = std::any_of(migrations.begin(), migrations.end(),
                             [v = version](const Migration& m) { return m.version == v; });
    if (!known) {
      LOG(WARNING) << "database has migration " << schema << "/" << a.name
                   << " that this binary does not know (a newer version applied it)";
    }
  }
  return pending;
}

// --- SQLite ------------------------------------------------------------------

std::string SqliteError(sqlite3* db) { return sqlite3_errmsg(db); }

Status SqliteExec(sqlite3* db, const std::string& sql, const std::string& what) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return Status::Internal(what + ": " + msg);
  }
  return Status::Ok();
}

Status SqliteBeginImmediate(sqlite3* db) {
  const int64_t deadline = MonotonicMs() + kSqliteLockWaitMs;
  BackoffPolicy policy{5, 200, 2.0};
  for (int attempt = 1;; ++attempt) {
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) return Status::Ok();
    if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) {
      return Status::Internal("BEGIN IMMEDIATE: " + SqliteError(db));
    }
    if (MonotonicMs() >= deadline) {
      return Status::Timeout("database stayed locked for " + std::to_string(kSqliteLockWaitMs) +
                             " ms while migrating");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(BackoffDelayMs(policy, attempt)));
  }
}

Result<std::map<int, Applied>> SqliteApplied(sqlite3* db, const std::string& schema) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db,
                         "SELECT version, name, checksum FROM schema_migrations WHERE schema = ?",
                         -1, &stmt, nullptr) != SQLITE_OK) {
    return Status::Internal("reading schema_migrations: " + SqliteError(db));
  }
  sqlite3_bind_text(stmt, 1, schema.data(), static_cast<int>(schema.size()), SQLITE_TRANSIENT);
  std::map<int, Applied> applied;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    Applied a;
    a.name = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 1));
    a.checksum = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 2));
    applied[sqlite3_column_int(stmt, 0)] = a;
  }
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE) return Status::Internal("reading schema_migrations: " + SqliteError(db));
  return applied;
}

Status SqliteRecord(sqlite3* db, const std::string& schema, const Migration& m) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db,
                         "INSERT INTO schema_migrations (schema, version, name, checksum, "
                         "applied_ms) VALUES (?, ?, ?, ?, ?)",
                         -1, &stmt, nullptr) != SQLITE_OK) {
    return Status::Internal("recording migration: " + SqliteError(db));
  }
  sqlite3_bind_text(stmt, 1, schema.data(), static_cast<int>(schema.size()), SQLITE_TRANSIENT);
  sqlite3_bind_int(stmt, 2, m.version);
  sqlite3_bind_text(stmt, 3, m.file_name.data(), static_cast<int>(m.file_name.size()),
                    SQLITE_TRANSIENT);
  sqlite3_bind_text(stmt, 4, m.checksum.data(), static_cast<int>(m.checksum.size()),
                    SQLITE_TRANSIENT);
  sqlite3_bind_int64(stmt, 5, NowUnixMs());
  int rc = sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE) {
    return Status::Internal("recording migration " + schema + "/" + m.file_name + ": " +
                            SqliteError(db));
  }
  return Status::Ok();
}

Status SqliteMigrateLocked(sqlite3* db, const std::string& schema,
                           const std::vector<Migration>& migrations) {
  TXC_RETURN_IF_ERROR(SqliteExec(db, kCreateMigrationsTable, "creating schema_migrations"));
  TXC_ASSIGN_OR_RETURN(auto applied, SqliteApplied(db, schema));
  TXC_ASSIGN_OR_RETURN(auto pending, Plan(schema, migrations, applied));
  for (const Migration* m : pending) {
    TXC_RETURN_IF_ERROR(SqliteExec(db, m->sql, "migration " + schema + "/" + m->file_name));
    TXC_RETURN_IF_ERROR(SqliteRecord(db, schema, *m));
    LOG(INFO) << "applied migration " << schema << "/" << m->file_name;
  }
  return Status::Ok();
}

}  // namespace

std::string MigrationChecksum(const std::string& sql) {
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : sql) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char buf[17];
  snprintf(buf, sizeof(buf), "%016" PRIx64, h);
  return buf;
}

Result<std::vector<Migration>> EmbeddedMigrations(const std::string& schema,
                                                  const std::string& backend) {
  static const std::regex kName(R"(^(\d{4})_([A-Za-z0-9_]+?)(\.(postgresql|sqlite))?\.sql$)");
  std::vector<Migration> all;
  for (size_t i = 0; i < migrations_internal::kEmbeddedFileCount; ++i) {
    const auto& f = migrations_internal::kEmbeddedFiles[i];
    if (schema != f.schema) continue;
    std::cmatch match;
    if (!std::regex_match(f.file_name, match, kName)) {
      return Status::InvalidArgument("migration file " + schema + "/" + f.file_name +
                                     " is not named NNNN_description[.postgresql|.sqlite].sql");
    }
    Migration m;
    m.version = std::stoi(match[1].str());
    m.name = match[2].str();
    m.file_name = f.file_name;
    m.backend = match[4].matched ? match[4].str() : "";
    m.sql.assign(reinterpret_cast<const char*>(f.data), f.size);
    m.checksum = MigrationChecksum(m.sql);
    all.push_back(std::move(m));
  }
  std::sort(all.begin(), all.end(), [](const Migration& a, const Migration& b) {
    return a.version != b.version ? a.version < b.version : a.file_name < b.file_name;
  });
  if (backend.empty()) return all;

  // Per version: the backend's own variant, else the plain file.
  std::vector<Migration> chosen;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    const Migration* plain = nullptr;
    const Migration* own = nullptr;
    for (; j < all.size() && all[j].version == all[i].version; ++j) {
      const Migration* m = &all[j];
      const Migration** slot =
          m->backend.empty() ? &plain : (m->backend == backend ? &own : nullptr);
      if (slot == nullptr) continue;
      if (*slot != nullptr) {
        return Status::InvalidArgument("two migration files for " + schema + " version " +
                                       std::to_string(m->version) + ": " + (*slot)->file_name +
                                       " and " + m->file_name);
      }
      *slot = m;
    }
    if (own != nullptr) {
      chosen.push_back(*own);
    } else if (plain != nullptr) {
      chosen.push_back(*plain);
    } else {
      return Status::InvalidArgument("migration " + schema + " version " +
                                     std::to_string(all[i].version) + " has no file for " +
                                     backend);
    }
    i = j;
  }
  return chosen;
}

Status ApplyMigrationsSqlite(sqlite3* db, const std::string& schema,
                             const std::vector<Migration>& migrations) {
  TXC_RETURN_IF_ERROR(SqliteBeginImmediate(db));
  Status s = SqliteMigrateLocked(db, schema, migrations);
  if (!s.ok()) {
    SqliteExec(db, "ROLLBACK", "rollback").IgnoreError();
    return s;
  }
  // In rollback-journal mode COMMIT waits for readers to go; on a connection
  // without busy_timeout it reports SQLITE_BUSY and may simply be retried.
  const int64_t deadline = MonotonicMs() + kSqliteLockWaitMs;
  BackoffPolicy policy{2, 100, 2.0};
  for (int attempt = 1;; ++attempt) {
    int rc = sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) return Status::Ok();
    if (((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) || MonotonicMs() >= deadline) {
      Status failed =
          Status::Internal("committing migrations of " + schema + ": " + SqliteError(db));
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      return failed;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(BackoffDelayMs(policy, attempt)));
  }
}

Status MigrateSqlite(sqlite3* db, const std::string& schema) {
  TXC_ASSIGN_OR_RETURN(auto migrations, EmbeddedMigrations(schema, "sqlite"));
  return ApplyMigrationsSqlite(db, schema, migrations);
}

Status ApplyMigrationsPostgres(pqxx::connection& conn, const std::string& schema,
                               const std::vector<Migration>& migrations) {
  std::string current = "(setup)";
  try {
    pqxx::work tx(conn, "migrate");
    // Serialises concurrent migrators; released at commit or rollback.
    tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(kMigrationLockKey) + ")");
    tx.exec(kCreateMigrationsTable);
    std::map<int, Applied> applied;
    for (const auto& row : tx.exec_params(
             "SELECT version, name, checksum FROM schema_migrations WHERE schema = $1", schema)) {
      applied[row[0].as<int>()] = Applied{row[1].as<std::string>(), row[2].as<std::string>()};
    }
    TXC_ASSIGN_OR_RETURN(auto pending, Plan(schema, migrations, applied));
    for (const Migration* m : pending) {
      current = m->file_name;
      tx.exec(m->sql);
      tx.exec_params(
          "INSERT INTO schema_migrations (schema, version, name, checksum, applied_ms) "
          "VALUES ($1, $2, $3, $4, $5)",
          schema, m->version, m->file_name, m->checksum, NowUnixMs());
    }
    current = "(commit)";
    tx.commit();
    for (const Migration* m : pending) {
      LOG(INFO) << "applied migration " << schema << "/" << m->file_name;
    }
    return Status::Ok();
  } catch (const pqxx::broken_connection& e) {
    return Status::Unavailable(std::string("migrating ") + schema + ": " + e.what());
  } catch (const pqxx::in_doubt_error& e) {
    return Status::Indeterminate(std::string("migrating ") + schema + ": " + e.what());
  } catch (const std::exception& e) {
    return Status::Internal("migration " + schema + "/" + current + " failed: " + e.what());
  }
}

Status MigratePostgres(pqxx::connection& conn, const std::string& schema) {
  TXC_ASSIGN_OR_RETURN(auto migrations, EmbeddedMigrations(schema, "postgresql"));
  return ApplyMigrationsPostgres(conn, schema, migrations);
}

}  // namespace txc
