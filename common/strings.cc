#include "common/strings.h"

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

}  // namespace txc
