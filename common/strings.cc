#include "common/strings.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace txc {

std::vector<std::string> SplitList(const std::string& list, char sep) {
  std::vector<std::string> out;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

Result<int64_t> ParseInt64(const std::string& text) {
  if (text.empty()) return Status::InvalidArgument("not a number: ''");
  const unsigned char first = static_cast<unsigned char>(text[0]);
  if (!(std::isdigit(first) || ((first == '-' || first == '+') && text.size() > 1))) {
    return Status::InvalidArgument("not a number: '" + text + "'");
  }
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (*end != '\0') return Status::InvalidArgument("not a number: '" + text + "'");
  if (errno == ERANGE) return Status::InvalidArgument("out of range: '" + text + "'");
  return static_cast<int64_t>(v);
}

}  // namespace txc
