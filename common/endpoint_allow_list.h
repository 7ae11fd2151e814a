// EndpointAllowList: which participant endpoints ("host:port") the
// coordinator may be told to call (--participant_allow). Pure: no name
// resolution, no I/O.
//
// A pattern is a host part and an optional port part, "HOST[:PORTS]":
//
//   HOST   *                 any host
//          *.svc.local       any name ending in ".svc.local" (at least one label before it)
//          orders.svc.local  exactly this name
//          10.0.0.7          exactly this IPv4 address
//          10.0.0.0/8        an IPv4 CIDR range
//          [fd00::1]         an IPv6 address; [fd00::/8] an IPv6 CIDR range. Without a
//                            port part the brackets may be left out ("fd00::/8").
//   PORTS  7000              one port
//          7000-7099         a range, both ends included
//          *                 any port (also when the port part is left out)
//
// ":7000" alone (or "*:7000") allows port 7000 on any host.
//
// Names match case-insensitively, a trailing dot ignored. Names are not
// resolved: a CIDR range matches only endpoints written as IP literals
// (inet_pton forms; "127.1" is a name, not 127.0.0.1), and a name pattern only
// endpoints written as names. An IPv4-mapped IPv6 endpoint (::ffff:10.0.0.7)
// is checked as its IPv4 address.
//
// An empty list allows everything (the single-machine default; unsafe once the
// coordinator is reachable by others: it connects wherever a caller says).
//
// Thread-safety: immutable after Parse(); any thread may call Check().
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace txc {

class EndpointAllowList {
 public:
  EndpointAllowList() = default;  // empty: allows everything

  // Parses the patterns (each item of each string may itself be a
  // comma-separated list; blanks around items are ignored). kInvalidArgument
  // naming the first bad pattern and why.
  static Result<EndpointAllowList> Parse(const std::vector<std::string>& patterns);

  bool empty() const { return entries_.empty(); }
  // The patterns as given, for logs.
  const std::vector<std::string>& patterns() const { return patterns_; }

  // True when `host` (a name or an IP literal, IPv6 without brackets) and
  // `port` match at least one pattern, or the list is empty.
  bool Allows(const std::string& host, int port) const;

  // OK when `endpoint` ("host:port", "[v6]:port") is allowed; otherwise
  // kInvalidArgument "<field>: participant endpoint '<endpoint>' is not on the
  // participant allow-list (--participant_allow)" (a malformed endpoint is
  // refused with ParseEndpoint's reason, also prefixed by field).
  Status Check(const std::string& field, const std::string& endpoint) const;

 private:
  enum class HostKind { kAny, kSuffix, kName, kIpv4, kIpv6 };
  struct Entry {
    HostKind kind = HostKind::kAny;
    std::string name;                // kSuffix: ".svc.local"; kName: the name (lower case)
    std::array<uint8_t, 16> addr{};  // kIpv4 (first 4 bytes) / kIpv6
    int prefix_bits = 0;             // kIpv4 / kIpv6
    int port_min = 1;
    int port_max = 65535;
  };
  static Result<Entry> ParseOne(const std::string& pattern);

  std::vector<Entry> entries_;
  std::vector<std::string> patterns_;
};

// True when `host` (a listen address) is a loopback address: 127.0.0.0/8,
// ::1 ([::1]) or the name "localhost". Wildcards (0.0.0.0, ::, empty) and
// every other name are not (a name may resolve anywhere).
bool IsLoopbackHost(const std::string& host);

}  // namespace txc
