#include "common/endpoint_allow_list.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <utility>

#include "common/strings.h"
#include "common/thrift_util.h"

namespace txc {
namespace {

std::string Trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A name's canonical form: lower case, one trailing dot dropped.
std::string CanonicalName(const std::string& host) {
  std::string name = Lower(host);
  if (name.size() > 1 && name.back() == '.') name.pop_back();
  return name;
}

// Letters, digits, '-' and '_' in non-empty dot-separated labels that do not
// start or end with '-'.
bool IsHostName(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  for (const std::string& label : SplitList(name, '.')) {
    if (label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    }
  }
  return name.front() != '.' && name.back() != '.' && name.find("..") == std::string::npos;
}

// An IP literal: family 4 (addr[0..3]) or 6; 0 when `host` is not one. An
// IPv4-mapped IPv6 address is returned as IPv4.
int ParseIp(const std::string& host, std::array<uint8_t, 16>* addr) {
  addr->fill(0);
  if (inet_pton(AF_INET, host.c_str(), addr->data()) == 1) return 4;
  in6_addr v6{};
  if (host.find(':') != std::string::npos && inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(v6.s6_addr, kMapped, sizeof(kMapped)) == 0) {
      std::memcpy(addr->data(), v6.s6_addr + 12, 4);
      return 4;
    }
    std::memcpy(addr->data(), v6.s6_addr, 16);
    return 6;
  }
  return 0;
}

bool PrefixMatches(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b, int bits) {
  const int whole = bits / 8;
  if (std::memcmp(a.data(), b.data(), static_cast<size_t>(whole)) != 0) return false;
  const int rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[static_cast<size_t>(whole)] & mask) == (b[static_cast<size_t>(whole)] & mask);
}

Status Bad(const std::string& pattern, const std::string& why) {
  return Status::InvalidArgument("participant_allow: bad pattern '" + pattern + "': " + why);
}

// "1-65535" text -> [min, max].
Status ParsePorts(const std::string& pattern, const std::string& text, int* min, int* max) {
  if (text.empty() || text == "*") {
    *min = 1;
    *max = 65535;
    return Status::Ok();
  }
  const auto dash = text.find('-');
  auto one = [&](const std::string& t, int* out) -> Status {
    Result<int64_t> v = ParseInt64(t);
    if (!v.ok() || *v < 1 || *v > 65535) return Bad(pattern, "port '" + t + "' is not 1..65535");
    *out = static_cast<int>(*v);
    return Status::Ok();
  };
  if (dash == std::string::npos) {
    TXC_RETURN_IF_ERROR(one(text, min));
    *max = *min;
    return Status::Ok();
  }
  TXC_RETURN_IF_ERROR(one(text.substr(0, dash), min));
  TXC_RETURN_IF_ERROR(one(text.substr(dash + 1), max));
  if (*min > *max) return Bad(pattern, "port range '" + text + "' is empty");
  return Status::Ok();
}

}  // namespace

Result<EndpointAllowList::Entry> EndpointAllowList::ParseOne(const std::string& pattern) {
  Entry entry;
  std::string host;
  std::string ports;
  bool bracketed = false;
  if (!pattern.empty() && pattern.front() == '[') {
    const auto close = pattern.find(']');
    if (close == std::string::npos) return Bad(pattern, "'[' without ']'");
    host = pattern.substr(1, close - 1);
    const std::string rest = pattern.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return Bad(pattern, "expected ':port' after ']'");
      ports = rest.substr(1);
      if (ports.empty()) return Bad(pattern, "empty port after ':'");
    }
    bracketed = true;
  } else if (std::count(pattern.begin(), pattern.end(), ':') >= 2) {
    host = pattern;  // a bare IPv6 address or range: no port part
  } else {
    const auto colon = pattern.find(':');
    host = pattern.substr(0, colon);
    if (colon != std::string::npos) {
      ports = pattern.substr(colon + 1);
      if (ports.empty()) return Bad(pattern, "empty port after ':'");
    }
  }
  TXC_RETURN_IF_ERROR(ParsePorts(pattern, ports, &entry.port_min, &entry.port_max));

  if (!bracketed && (host.empty() || host == "*")) {
    if (host.empty() && ports.empty()) return Bad(pattern, "empty");
    entry.kind = HostKind::kAny;
    return entry;
  }
  const auto slash = host.find('/');
  const std::string address = host.substr(0, slash);
  const int family = ParseIp(address, &entry.addr);
  if (family != 0) {
    if (bracketed && address.find(':') == std::string::npos) {
      return Bad(pattern, "brackets are for IPv6 addresses");
    }
    if (family == 4 && address.find(':') != std::string::npos) {
      return Bad(pattern, "write an IPv4-mapped address as IPv4");
    }
    entry.kind = family == 4 ? HostKind::kIpv4 : HostKind::kIpv6;
    const int max_bits = family == 4 ? 32 : 128;
    entry.prefix_bits = max_bits;
    if (slash != std::string::npos) {
      Result<int64_t> bits = ParseInt64(host.substr(slash + 1));
      if (!bits.ok() || *bits < 0 || *bits > max_bits) {
        return Bad(pattern, "prefix length must be 0.." + std::to_string(max_bits));
      }
      entry.prefix_bits = static_cast<int>(*bits);
      // The bits past the prefix must be zero: "10.1.2.3/8" is most likely a typo.
      std::array<uint8_t, 16> masked{};
      for (int i = 0; i < entry.prefix_bits; ++i) {
        const auto byte = static_cast<size_t>(i / 8);
        masked[byte] = static_cast<uint8_t>(masked[byte] | (entry.addr[byte] & (0x80 >> (i % 8))));
      }
      if (masked != entry.addr) {
        return Bad(pattern, "address has bits set past the /" + std::to_string(entry.prefix_bits) +
                                " prefix");
      }
    }
    return entry;
  }
  if (bracketed || slash != std::string::npos || host.find(':') != std::string::npos) {
    return Bad(pattern, "'" + host + "' is not an IP address or range");
  }
  if (host.size() > 2 && host[0] == '*' && host[1] == '.') {
    const std::string suffix = CanonicalName(host.substr(2));
    if (!IsHostName(suffix)) return Bad(pattern, "'" + suffix + "' is not a host name");
    entry.kind = HostKind::kSuffix;
    entry.name = "." + suffix;
    return entry;
  }
  if (host.find('*') != std::string::npos) {
    return Bad(pattern, "'*' is allowed only alone or as a leading '*.' label");
  }
  const std::string name = CanonicalName(host);
  if (!IsHostName(name)) return Bad(pattern, "'" + host + "' is not a host name");
  if (name.find_first_not_of("0123456789.") == std::string::npos) {
    return Bad(pattern, "'" + host + "' is neither a host name nor an IPv4 address");
  }
  entry.kind = HostKind::kName;
  entry.name = name;
  return entry;
}

Result<EndpointAllowList> EndpointAllowList::Parse(const std::vector<std::string>& patterns) {
  EndpointAllowList list;
  for (const std::string& item : patterns) {
    for (const std::string& raw : SplitList(item, ',')) {
      const std::string pattern = Trim(raw);
      if (pattern.empty()) continue;
      TXC_ASSIGN_OR_RETURN(Entry entry, ParseOne(pattern));
      list.entries_.push_back(std::move(entry));
      list.patterns_.push_back(pattern);
    }
  }
  return list;
}

bool EndpointAllowList::Allows(const std::string& host, int port) const {
  if (entries_.empty()) return true;
  std::array<uint8_t, 16> addr{};
  const int family = ParseIp(host, &addr);
  const std::string name = family == 0 ? CanonicalName(host) : "";
  for (const Entry& e : entries_) {
    if (port < e.port_min || port > e.port_max) continue;
    switch (e.kind) {
      case HostKind::kAny: return true;
      case HostKind::kSuffix:
        if (family == 0 && name.size() > e.name.size() &&
            name.compare(name.size() - e.name.size(), e.name.size(), e.name) == 0) {
          return true;
        }
        break;
      case HostKind::kName:
        if (family == 0 && name == e.name) return true;
        break;
      case HostKind::kIpv4:
        if (family == 4 && PrefixMatches(addr, e.addr, e.prefix_bits)) return true;
        break;
      case HostKind::kIpv6:
        if (family == 6 && PrefixMatches(addr, e.addr, e.prefix_bits)) return true;
        break;
    }
  }
  return false;
}

Status EndpointAllowList::Check(const std::string& field, const std::string& endpoint) const {
  if (entries_.empty()) return Status::Ok();
  Result<HostPort> hp = ParseEndpoint(endpoint);
  if (!hp.ok()) return Status::InvalidArgument(field + ": " + hp.status().message());
  if (Allows(hp->host, hp->port)) return Status::Ok();
  return Status::InvalidArgument(field + ": participant endpoint '" + endpoint +
                                 "' is not on the participant allow-list (--participant_allow)");
}

bool IsLoopbackHost(const std::string& host) {
  std::string h = host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (CanonicalName(h) == "localhost") return true;
  std::array<uint8_t, 16> addr{};
  switch (ParseIp(h, &addr)) {
    case 4: return addr[0] == 127;
    case 6: {
      static const std::array<uint8_t, 16> kLoopback6 = {0, 0, 0, 0, 0, 0, 0, 0,
                                                         0, 0, 0, 0, 0, 0, 0, 1};
      return addr == kLoopback6;
    }
    default: return false;
  }
}

}  // namespace txc
