#include "common/auth_policy.h"

#include <cctype>
#include <fstream>
#include <sstream>
#include <utility>

#include "common/strings.h"

namespace txc {
namespace {

std::string Trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

char Fold(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

struct RoleName {
  const char* name;
  RoleSet role;
};
constexpr RoleName kRoleNames[] = {{"client", roles::kClient},
                                   {"participant", roles::kParticipant},
                                   {"reader", roles::kReader},
                                   {"admin", roles::kAdmin}};

}  // namespace

constexpr char AuthPolicy::kAnyone[];

std::string RoleSetNames(RoleSet set) {
  std::string out;
  for (const RoleName& r : kRoleNames) {
    if ((set & r.role) == 0) continue;
    if (!out.empty()) out += ",";
    out += r.name;
  }
  return out.empty() ? "none" : out;
}

bool IdentityPatternMatches(const std::string& pattern, const std::string& name) {
  // Iterative glob with one backtrack point (the last '*'): linear in practice.
  size_t p = 0, n = 0, star = std::string::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (p < pattern.size() && Fold(pattern[p]) == Fold(name[n])) {
      ++p;
      ++n;
    } else if (star != std::string::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool IdentityMatchesAny(const std::vector<std::string>& patterns, const PeerIdentity& peer) {
  if (!peer.authenticated) return false;
  for (const std::string& name : peer.Names()) {
    if (name.empty()) continue;
    for (const std::string& pattern : patterns) {
      if (IdentityPatternMatches(pattern, name)) return true;
    }
  }
  return false;
}

Result<AuthPolicy> AuthPolicy::Parse(const std::string& text, const std::string& source) {
  AuthPolicy policy;
  std::istringstream in(text);
  std::string raw;
  int line_no = 0;
  while (std::getline(in, raw)) {
    ++line_no;
    auto bad = [&](const std::string& why) {
      return Status::InvalidArgument(source + ":" + std::to_string(line_no) + ": " + why);
    };
    std::string line = raw;
    const auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    line = Trim(line);
    if (line.empty()) continue;
    // The last '=': identities (URI SANs) may contain one, role lists never do.
    const auto eq = line.rfind('=');
    if (eq == std::string::npos) return bad("expected 'identity = role[, role ...]'");
    const std::string identity = Trim(line.substr(0, eq));
    if (identity.empty()) return bad("empty identity before '='");
    if (identity[0] == '@' && identity != kAnyone) {
      return bad("unknown special identity '" + identity + "' (only " + kAnyone + ")");
    }
    RoleSet set = roles::kNone;
    for (const std::string& item : SplitList(line.substr(eq + 1), ',')) {
      const std::string role = Trim(item);
      if (role.empty()) continue;
      bool known = false;
      for (const RoleName& r : kRoleNames) {
        if (role == r.name) {
          set |= r.role;
          known = true;
        }
      }
      if (!known) {
        return bad("unknown role '" + role + "' (roles: client, participant, reader, admin)");
      }
    }
    if (set == roles::kNone) return bad("no role for '" + identity + "'");
    if (identity == kAnyone) {
      policy.anyone_ |= set;
    } else {
      policy.rules_.push_back(Rule{identity, set});
    }
  }
  return policy;
}

Result<AuthPolicy> AuthPolicy::LoadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::InvalidArgument("cannot read the policy file '" + path + "'");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::InvalidArgument("cannot read the policy file '" + path + "'");
  return Parse(text.str(), path);
}

RoleSet AuthPolicy::RolesOf(const PeerIdentity& peer) const {
  RoleSet held = anyone_;
  if (!peer.authenticated) return held;
  const std::vector<std::string> names = peer.Names();
  for (const Rule& rule : rules_) {
    if ((held | rule.roles) == held) continue;  // adds nothing
    for (const std::string& name : names) {
      if (!name.empty() && IdentityPatternMatches(rule.pattern, name)) {
        held |= rule.roles;
        break;
      }
    }
  }
  return held;
}

}  // namespace txc
