// AuthPolicy: which roles a caller holds, from a policy file
// (coordinator --auth_policy FILE; format in docs/security.md).
//
//   # identity = role[, role ...]
//   orders.svc.local      = client, participant
//   txcctl-ops            = admin
//   dashboard-*           = reader
//   *                     = reader        # any verified certificate
//   @anyone               = reader        # also callers without one (plaintext, no client cert)
//
// An identity is matched against every name of the caller's verified client
// certificate (PeerIdentity::Names(): the subject CN and each SAN). `*` in a
// pattern matches any run of characters (dots too); matching ignores ASCII
// case. A caller holds the union of the roles of every line that matches it.
// `@anyone` grants roles to every caller, authenticated or not; it is the only
// way to give a caller without a verified certificate any role.
//
// Roles: client, participant, reader, admin (what each may call is decided by
// the server that uses the policy; see coordinator/rpc/coordinator_handler.h).
//
// Thread-safety: immutable after Parse(); any thread may call RolesOf().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/peer_identity.h"
#include "common/status.h"

namespace txc {

// A set of roles, one bit each.
using RoleSet = uint32_t;
namespace roles {
constexpr RoleSet kNone = 0;
constexpr RoleSet kClient = 1;
constexpr RoleSet kParticipant = 2;
constexpr RoleSet kReader = 4;
constexpr RoleSet kAdmin = 8;
constexpr RoleSet kAll = kClient | kParticipant | kReader | kAdmin;
}  // namespace roles

// "client,reader"; "none" for the empty set.
std::string RoleSetNames(RoleSet roles);

// True when `name` matches `pattern` ('*' = any run of characters, ASCII case
// ignored).
bool IdentityPatternMatches(const std::string& pattern, const std::string& name);

// True when `peer` is authenticated and one of its names matches one of
// `patterns`.
bool IdentityMatchesAny(const std::vector<std::string>& patterns, const PeerIdentity& peer);

class AuthPolicy {
 public:
  static constexpr char kAnyone[] = "@anyone";

  // Parses a policy file's text. `source` names it in errors:
  // kInvalidArgument "<source>:<line>: <why>" for the first bad line.
  static Result<AuthPolicy> Parse(const std::string& text, const std::string& source);
  // Reads and parses `path`; kInvalidArgument when it cannot be read.
  static Result<AuthPolicy> LoadFile(const std::string& path);

  // The roles `peer` holds.
  RoleSet RolesOf(const PeerIdentity& peer) const;

  size_t rules() const { return rules_.size(); }

 private:
  struct Rule {
    std::string pattern;
    RoleSet roles = roles::kNone;
  };
  std::vector<Rule> rules_;
  RoleSet anyone_ = roles::kNone;  // roles of @anyone
};

}  // namespace txc
