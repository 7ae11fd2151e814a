#include "common/auth_policy.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace txc {
namespace {

PeerIdentity Cert(const std::string& cn, std::vector<std::string> sans = {}) {
  PeerIdentity p;
  p.address = "10.0.0.9:40000";
  p.authenticated = true;
  p.common_name = cn;
  p.sans = std::move(sans);
  return p;
}

PeerIdentity Plain() {
  PeerIdentity p;
  p.address = "10.0.0.9:40000";
  return p;
}

AuthPolicy Policy(const std::string& text) {
  Result<AuthPolicy> p = AuthPolicy::Parse(text, "policy.conf");
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : AuthPolicy();
}

TEST(IdentityPatternTest, Globs) {
  EXPECT_TRUE(IdentityPatternMatches("orders", "orders"));
  EXPECT_TRUE(IdentityPatternMatches("orders", "ORDERS"));
  EXPECT_FALSE(IdentityPatternMatches("orders", "orders2"));
  EXPECT_FALSE(IdentityPatternMatches("orders", "order"));
  EXPECT_TRUE(IdentityPatternMatches("*", "anything"));
  EXPECT_TRUE(IdentityPatternMatches("*.svc.local", "a.b.svc.local"));
  EXPECT_FALSE(IdentityPatternMatches("*.svc.local", "svc.local"));
  EXPECT_TRUE(IdentityPatternMatches("client-*", "client-7"));
  EXPECT_TRUE(IdentityPatternMatches("a*b*c", "aXXbYYc"));
  EXPECT_FALSE(IdentityPatternMatches("a*b*c", "aXXbYY"));
  EXPECT_TRUE(IdentityPatternMatches("spiffe://txc/*", "spiffe://txc/coordinator"));
  EXPECT_FALSE(IdentityPatternMatches("", "x"));
}

TEST(AuthPolicyTest, RolesByCnAndSan) {
  AuthPolicy p = Policy(
      "# comment\n"
      "\n"
      "orders.svc.local = client, participant   # trailing comment\n"
      "ops = admin\n"
      "dash-* = reader\n"
      "spiffe://txc/coord?x=1 = participant\n");
  EXPECT_EQ(p.rules(), 4u);
  EXPECT_EQ(p.RolesOf(Cert("orders.svc.local")), roles::kClient | roles::kParticipant);
  EXPECT_EQ(p.RolesOf(Cert("other", {"orders.svc.local"})), roles::kClient | roles::kParticipant);
  EXPECT_EQ(p.RolesOf(Cert("ops")), roles::kAdmin);
  EXPECT_EQ(p.RolesOf(Cert("dash-eu")), roles::kReader);
  EXPECT_EQ(p.RolesOf(Cert("x", {"spiffe://txc/coord?x=1"})), roles::kParticipant);
  EXPECT_EQ(p.RolesOf(Cert("ops", {"dash-1"})), roles::kAdmin | roles::kReader);  // union
  EXPECT_EQ(p.RolesOf(Cert("stranger")), roles::kNone);
}

TEST(AuthPolicyTest, UnauthenticatedHoldsOnlyAnyone) {
  AuthPolicy strict = Policy("* = reader\n");
  EXPECT_EQ(strict.RolesOf(Plain()), roles::kNone);
  EXPECT_EQ(strict.RolesOf(Cert("whoever")), roles::kReader);
  // An unauthenticated peer's CN (none is verified) never counts.
  PeerIdentity forged = Plain();
  forged.common_name = "ops";
  EXPECT_EQ(Policy("ops = admin\n").RolesOf(forged), roles::kNone);

  AuthPolicy open = Policy("@anyone = reader\nops = admin\n");
  EXPECT_EQ(open.RolesOf(Plain()), roles::kReader);
  EXPECT_EQ(open.RolesOf(Cert("ops")), roles::kAdmin | roles::kReader);
}

TEST(AuthPolicyTest, EmptyPolicyGrantsNothing) {
  AuthPolicy p = Policy("# nobody\n");
  EXPECT_EQ(p.RolesOf(Cert("ops")), roles::kNone);
  EXPECT_EQ(p.RolesOf(Plain()), roles::kNone);
}

TEST(AuthPolicyTest, MalformedLinesNameTheLine) {
  struct Case {
    std::string text;
    std::string expect;
  };
  for (const Case& c : std::vector<Case>{
           {"ops = admin\nops admin\n", "policy.conf:2: expected"},
           {"\n\nops = admin, root\n", "policy.conf:3: unknown role 'root'"},
           {" = admin\n", "policy.conf:1: empty identity"},
           {"ops =\n", "policy.conf:1: no role"},
           {"ops = , \n", "policy.conf:1: no role"},
           {"@everyone = reader\n", "policy.conf:1: unknown special identity '@everyone'"},
           {"ops = Admin\n", "policy.conf:1: unknown role 'Admin'"},
       }) {
    Result<AuthPolicy> p = AuthPolicy::Parse(c.text, "policy.conf");
    ASSERT_FALSE(p.ok()) << c.text;
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(p.status().message().find(c.expect), std::string::npos)
        << p.status() << " expected " << c.expect;
  }
}

TEST(AuthPolicyTest, LoadFile) {
  const std::string path = ::testing::TempDir() + "/auth_policy_test.conf";
  {
    std::ofstream out(path);
    out << "ops = admin\nbroken line\n";
  }
  Result<AuthPolicy> p = AuthPolicy::LoadFile(path);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find(path + ":2:"), std::string::npos) << p.status();
  std::remove(path.c_str());
  Result<AuthPolicy> missing = AuthPolicy::LoadFile(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("cannot read"), std::string::npos);
}

TEST(AuthPolicyTest, IdentityMatchesAny) {
  EXPECT_TRUE(IdentityMatchesAny({"coordinator", "coord-*"}, Cert("x", {"coord-2"})));
  EXPECT_FALSE(IdentityMatchesAny({"coordinator"}, Cert("client")));
  PeerIdentity forged = Plain();
  forged.common_name = "coordinator";
  EXPECT_FALSE(IdentityMatchesAny({"coordinator"}, forged));
  EXPECT_FALSE(IdentityMatchesAny({"*"}, Plain()));
}

TEST(AuthPolicyTest, RoleSetNames) {
  EXPECT_EQ(RoleSetNames(roles::kNone), "none");
  EXPECT_EQ(RoleSetNames(roles::kClient | roles::kReader), "client,reader");
  EXPECT_EQ(RoleSetNames(roles::kAll), "client,participant,reader,admin");
}

}  // namespace
}  // namespace txc
