#include <algorithm>
#include <memory>
#include <string>

#include "coordinator/store/postgres_store.h"
#include "coordinator/store/sqlite_store.h"
#include "coordinator/store/txn_store.h"

namespace txc {

namespace {

bool LooksLikePostgres(const std::string& location) {
  if (location.rfind("postgresql://", 0) == 0 || location.rfind("postgres://", 0) == 0) {
    return true;
  }
  // libpq key=value: "host=... dbname=...". A file path has no '=' before a
  // space-separated second key, so look for one of the usual keys.
  for (const char* key : {"host=", "hostaddr=", "dbname=", "port=", "user=", "service="}) {
    if (location.rfind(key, 0) == 0 || location.find(std::string(" ") + key) != std::string::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace

Result<std::unique_ptr<TxnStore>> OpenStore(const std::string& location,
                                            const StoreOpenOptions& options) {
  if (location.empty()) return Status::InvalidArgument("empty store location");
  if (LooksLikePostgres(location)) {
    PostgresStoreOptions pg_options;
    int64_t timeout_ms = options.call_timeout_ms;
    if (timeout_ms <= 0 && options.lease_ttl_ms > 0) timeout_ms = options.lease_ttl_ms / 2;
    if (timeout_ms > 0) {
      pg_options.call_timeout_ms = std::max<int64_t>(timeout_ms, 50);
      pg_options.session_timeout_ms = pg_options.call_timeout_ms;
    }
    TXC_ASSIGN_OR_RETURN(auto pg, PostgresStore::Open(location, pg_options));
    return std::unique_ptr<TxnStore>(std::move(pg));
  }
  std::string path = location;
  if (path.rfind("sqlite://", 0) == 0) path = path.substr(9);
  TXC_ASSIGN_OR_RETURN(auto lite, SqliteStore::Open(path));
  return std::unique_ptr<TxnStore>(std::move(lite));
}

}  // namespace txc
