#include "coordinator/store/store_location.h"

#include <libpq-fe.h>

namespace txc {
namespace {

bool StartsWith(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// Whether libpq itself reads `location` as a key=value connection string
// (every keyword known to it). Parsing only: nothing connects.
bool IsLibpqKeyValue(const std::string& location) {
  if (location.find('=') == std::string::npos) return false;
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(location.c_str(), &error);
  if (error != nullptr) PQfreemem(error);
  if (options == nullptr) return false;
  PQconninfoFree(options);
  return true;
}

}  // namespace

Result<StoreLocation> ParseStoreLocation(const std::string& location) {
  if (location.empty()) return Status::InvalidArgument("store: empty location");
  StoreLocation out;
  if (StartsWith(location, "postgresql://") || StartsWith(location, "postgres://") ||
      (!StartsWith(location, "sqlite://") && IsLibpqKeyValue(location))) {
    out.backend = StoreBackend::kPostgres;
    out.target = location;
    return out;
  }
  out.backend = StoreBackend::kSqlite;
  out.target = StartsWith(location, "sqlite://") ? location.substr(9) : location;
  if (out.target.empty()) return Status::InvalidArgument("store: empty SQLite path in sqlite://");
  return out;
}

}  // namespace txc
