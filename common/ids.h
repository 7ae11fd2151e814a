// The one id generator: transaction ids (gtids) of both protocols and the
// SDK's idempotency keys are "<prefix>-<32 hex digits>": 48 bits of Unix time
// in milliseconds, then 80 random bits from the kernel's CSPRNG (getrandom),
// so ids from any process, thread or forked child do not collide (80 bits per
// millisecond and prefix) and cannot be guessed. The time first makes ids of
// one coordinator sort roughly by creation, so the store's B-tree indexes
// keyed by gtid take new rows at their right edge: a group commit dirties a
// few pages instead of one random leaf per row (measured: the SQLite writer
// wrote ~75 pages per commit with random ids). Nothing reads the time back;
// ids stay opaque.
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

// 48 bits of Unix milliseconds then 80 random bits, as 32 lowercase hex digits.
std::string TimeOrderedHex128();

// prefix + "-" + TimeOrderedHex128(). `prefix` is used as given (pass IdPrefix()
// of anything not known to be safe).
std::string NewId(const std::string& prefix);

}  // namespace txc
