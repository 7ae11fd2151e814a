#include <algorithm>
#include <memory>
#include <string>

#include "coordinator/store/postgres_store.h"
#include "coordinator/store/sqlite_store.h"
#include "coordinator/store/store_location.h"
#include "coordinator/store/txn_store.h"

namespace txc {

Result<std::unique_ptr<TxnStore>> OpenStore(const std::string& location,
                                            const StoreOpenOptions& options) {
  TXC_ASSIGN_OR_RETURN(StoreLocation where, ParseStoreLocation(location));
  if (where.is_postgres()) {
    PostgresStoreOptions pg_options;
    int64_t timeout_ms = options.call_timeout_ms;
    if (timeout_ms <= 0 && options.lease_ttl_ms > 0) timeout_ms = options.lease_ttl_ms / 2;
    if (timeout_ms > 0) {
      pg_options.call_timeout_ms = std::max<int64_t>(timeout_ms, 50);
      pg_options.session_timeout_ms = pg_options.call_timeout_ms;
    }
    TXC_ASSIGN_OR_RETURN(auto pg, PostgresStore::Open(where.target, pg_options));
    return std::unique_ptr<TxnStore>(std::move(pg));
  }
  TXC_ASSIGN_OR_RETURN(auto lite, SqliteStore::Open(where.target));
  return std::unique_ptr<TxnStore>(std::move(lite));
}

}  // namespace txc
