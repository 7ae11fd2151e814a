// The one id generator: transaction ids (gtids) of both protocols and the
// SDK's idempotency keys are "<prefix>-<128 random bits in hex>", drawn from
// the kernel's CSPRNG (getrandom), so ids from any process, thread or forked
// child do not collide.
#pragma once

#include <cstddef>
#include <string>

namespace txc {

// The longest IdPrefix: prefix + '-' + 32 hex digits stays well inside the
// 128-byte id limit.
constexpr size_t kMaxIdPrefixBytes = 48;

// 128 random bits as 32 lowercase hex digits.
std::string RandomHex128();

// `name` (e.g. a node id) with everything but [A-Za-z0-9._-] replaced by '_',
// cut to kMaxIdPrefixBytes; "txc" when empty.
std::string IdPrefix(const std::string& name);

// prefix + "-" + RandomHex128(). `prefix` is used as given (pass IdPrefix()
// of anything not known to be safe).
std::string NewId(const std::string& prefix);

}  // namespace txc
