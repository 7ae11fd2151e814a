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

}  // namespace txc
