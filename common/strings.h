// Small string helpers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace txc {

// The non-empty items of a `sep`-separated list: "a,,b," -> {"a", "b"}.
std::vector<std::string> SplitList(const std::string& list, char sep = ',');

// The whole of `text` as a decimal integer ("-12", "7000"); kInvalidArgument
// for an empty string, other characters (" 1", "1x", "1.5") or overflow.
Result<int64_t> ParseInt64(const std::string& text);

// `text` (e.g. a gtid from a request, not validated yet) as it may go into a
// log line: bytes outside printable ASCII, and the backslash, as \xNN; past
// `max_bytes` of input cut, with the full size said ("...(1048576 bytes)").
// A caller can then neither forge log lines (a newline in an id) nor flood them.
std::string LogSafe(const std::string& text, size_t max_bytes = 160);

}  // namespace txc
