#include "coordinator/store/store_location.h"

#include <gtest/gtest.h>

namespace txc {
namespace {

StoreLocation Parse(const std::string& location) {
  Result<StoreLocation> r = ParseStoreLocation(location);
  EXPECT_TRUE(r.ok()) << location << ": " << r.status();
  return r.ok() ? *r : StoreLocation{};
}

void ExpectPostgres(const std::string& location) {
  StoreLocation l = Parse(location);
  EXPECT_TRUE(l.is_postgres()) << location;
  EXPECT_EQ(l.target, location);
}

void ExpectSqlite(const std::string& location, const std::string& path) {
  StoreLocation l = Parse(location);
  EXPECT_EQ(l.backend, StoreBackend::kSqlite) << location;
  EXPECT_EQ(l.target, path) << location;
}

TEST(StoreLocationTest, PostgresUris) {
  ExpectPostgres("postgresql://txc@db1:5432,db2:5432/txc?target_session_attrs=read-write");
  ExpectPostgres("postgres://localhost/txc");
  ExpectPostgres("postgresql://");  // libpq's defaults (PGHOST, ...)
  ExpectPostgres("postgres://");
}

TEST(StoreLocationTest, LibpqKeyValueStrings) {
  ExpectPostgres("host=/tmp/pg port=5433 dbname=txc");
  ExpectPostgres("dbname=txc");
  ExpectPostgres("  host=db1,db2  dbname=txc target_session_attrs=read-write ");
  ExpectPostgres("host = db1 dbname = txc");  // libpq allows spaces around '='
  ExpectPostgres("host=db password='a b=c' dbname=txc");
  ExpectPostgres("service=txc");
}

TEST(StoreLocationTest, SqlitePaths) {
  ExpectSqlite("coordinator.db", "coordinator.db");
  ExpectSqlite("/var/lib/txc/coordinator.db", "/var/lib/txc/coordinator.db");
  // '=' in a path is not a connection string: libpq knows no keyword "/data/run".
  ExpectSqlite("/data/run=3/coordinator.db", "/data/run=3/coordinator.db");
  ExpectSqlite("./a=b.db", "./a=b.db");
  ExpectSqlite("/data/x=1 y=2.db", "/data/x=1 y=2.db");
  ExpectSqlite("/data/host=db/coordinator.db", "/data/host=db/coordinator.db");
  // Not a URI scheme libpq knows: a (strange) relative path.
  ExpectSqlite("postgresql:/db", "postgresql:/db");
  ExpectSqlite("POSTGRESQL://db/txc", "POSTGRESQL://db/txc");
}

TEST(StoreLocationTest, SqliteSchemeForcesSqlite) {
  ExpectSqlite("sqlite:///var/lib/txc/coordinator.db", "/var/lib/txc/coordinator.db");
  ExpectSqlite("sqlite://dbname=x", "dbname=x");  // a file named like a conninfo
  ExpectSqlite("sqlite://relative.db", "relative.db");
}

TEST(StoreLocationTest, EmptyIsRefused) {
  EXPECT_EQ(ParseStoreLocation("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseStoreLocation("sqlite://").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace txc
