// Small string helpers.
#pragma once

#include <string>
#include <vector>

namespace txc {

// The non-empty items of a `sep`-separated list: "a,,b," -> {"a", "b"}.
std::vector<std::string> SplitList(const std::string& list, char sep = ',');

}  // namespace txc
