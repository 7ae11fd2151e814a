#include "common/strings.h"

#include <algorithm>
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

std::string LogSafe(const std::string& text, size_t max_bytes) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  const size_t shown = std::min(text.size(), max_bytes);
  out.reserve(shown + 16);
  for (size_t i = 0; i < shown; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  if (shown < text.size()) out += "...(" + std::to_string(text.size()) + " bytes)";
  return out;
}

}  // namespace txc
