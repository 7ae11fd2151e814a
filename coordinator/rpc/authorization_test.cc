// CoordinatorHandler's one authorization boundary (roles from an AuthPolicy)
// and its participant allow-list, called as a given peer (ScopedPeerIdentity)
// on a CoordinatorService over a real SQLite store.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "common/auth_policy.h"
#include "common/backoff.h"
#include "common/endpoint_allow_list.h"
#include "common/peer_identity.h"
#include "coordinator/metrics/coordinator_metrics.h"
#include "coordinator/rpc/coordinator_handler.h"
#include "coordinator/service/coordinator_service.h"
#include "coordinator/store/txn_store.h"

namespace txc {
namespace {

PeerIdentity Cert(const std::string& cn) {
  PeerIdentity p;
  p.address = "10.1.2.3:45678";
  p.authenticated = true;
  p.common_name = cn;
  return p;
}

PeerIdentity Plaintext() {
  PeerIdentity p;
  p.address = "10.1.2.3:45679";
  return p;
}

constexpr char kPolicy[] =
    "# test policy\n"
    "reader-app = reader\n"
    "client-app = client\n"
    "participant-app = participant\n"
    "ops = admin\n";

class AuthorizationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/txc-authz-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto store = OpenStore(dir_ + "/coordinator.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    ASSERT_TRUE(store_->Migrate().ok());
    auto lease = store_->AcquireLease("node-a", "127.0.0.1:1", 60000, NowUnixMs());
    ASSERT_TRUE(lease.ok());
    log_ = std::make_unique<GroupCommitter>(store_.get(), GroupCommitOptions{});
    service_ = std::make_unique<CoordinatorService>(
        store_.get(), log_.get(), NodeInfo{"node-a", "127.0.0.1:1", lease->epoch});
    handler_ = std::make_unique<CoordinatorHandler>(service_.get());
  }

  void TearDown() override {
    handler_.reset();
    service_.reset();
    log_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void UsePolicy(const std::string& text) {
    Result<AuthPolicy> policy = AuthPolicy::Parse(text, "test.policy");
    ASSERT_TRUE(policy.ok()) << policy.status();
    handler_->SetAuthPolicy(std::make_shared<const AuthPolicy>(std::move(policy).value()));
  }

  // A transaction begun by an admin, with one branch enlisted.
  std::string BeginAsAdmin() {
    ScopedPeerIdentity as(Cert("ops"));
    wire::BeginRequest req;
    wire::BranchSpec b;
    b.__set_branch_id("b1");
    b.__set_endpoint("127.0.0.1:9100");
    req.__set_branches({b});
    wire::BeginResponse resp;
    handler_->beginTxn(resp, req);
    return resp.gtid;
  }

  wire::TxnStatus StatusAsAdmin(const std::string& gtid) {
    ScopedPeerIdentity as(Cert("ops"));
    wire::TxnStatus out;
    handler_->status(out, gtid);
    return out;
  }

  int CountTxns() {
    ScopedPeerIdentity as(Cert("ops"));
    wire::ListTxnsRequest req;
    wire::ListTxnsResponse out;
    handler_->listTxns(out, req);
    return static_cast<int>(out.txns.size());
  }

  // Every Coordinator method, called with harmless arguments on `gtid`. A
  // method's own errors (NotFound, IllegalTransition, InvalidArgument,
  // Unavailable: no driver here) count as "let through"; only PermissionDenied
  // counts as refused.
  std::map<std::string, std::function<void()>> Calls(const std::string& gtid) {
    std::map<std::string, std::function<void()>> calls;
    calls["beginTxn"] = [this] {
      wire::BeginResponse r;
      handler_->beginTxn(r, wire::BeginRequest());
    };
    calls["enlist"] = [this, gtid] {
      wire::EnlistRequest req;
      req.__set_gtid(gtid);
      req.branch.__set_branch_id("b2");
      req.branch.__set_endpoint("127.0.0.1:9101");
      handler_->enlist(req);
    };
    calls["commit"] = [this] {
      wire::CommitRequest req;
      req.__set_gtid("no-such-txn");
      wire::CommitResponse r;
      handler_->commit(r, req);
    };
    calls["rollback"] = [this] {
      wire::CommitResponse r;
      handler_->rollback(r, "no-such-txn");
    };
    calls["status"] = [this, gtid] {
      wire::TxnStatus r;
      handler_->status(r, gtid);
    };
    calls["submitSaga"] = [this] {
      wire::SubmitSagaResponse r;
      handler_->submitSaga(r, wire::SubmitSagaRequest());
    };
    calls["queryOutcome"] = [this, gtid] { handler_->queryOutcome(gtid, "b1"); };
    calls["health"] = [this] {
      wire::HealthResponse r;
      handler_->health(r);
    };
    calls["listTxns"] = [this] {
      wire::ListTxnsResponse r;
      handler_->listTxns(r, wire::ListTxnsRequest());
    };
    calls["retryNow"] = [this] {
      wire::AdminRequest req;
      req.__set_gtid("no-such-txn");
      wire::TxnStatus r;
      handler_->retryNow(r, req);
    };
    calls["cancelSaga"] = [this] {
      wire::AdminRequest req;
      req.__set_gtid("no-such-txn");
      wire::TxnStatus r;
      handler_->cancelSaga(r, req);
    };
    calls["resolveBranch"] = [this] {
      wire::ResolveRequest req;
      req.__set_gtid("no-such-txn");
      req.__set_branch_id("b1");
      req.__set_resolved_state(wire::BranchState::BRANCH_ABORTED);
      wire::TxnStatus r;
      handler_->resolveBranch(r, req);
    };
    calls["rebindEndpoint"] = [this] {
      wire::RebindRequest req;
      req.__set_gtid("no-such-txn");
      req.__set_from_endpoint("127.0.0.1:9100");
      req.__set_to_endpoint("127.0.0.1:9102");
      wire::RebindResponse r;
      handler_->rebindEndpoint(r, req);
    };
    return calls;
  }

  // The methods `peer` is refused, of all of them.
  std::set<std::string> Refused(const PeerIdentity& peer, const std::string& gtid) {
    std::set<std::string> refused;
    ScopedPeerIdentity as(peer);
    for (auto& [method, call] : Calls(gtid)) {
      try {
        call();
      } catch (const wire::PermissionDenied& e) {
        refused.insert(method);
        EXPECT_EQ(e.method, method);
        EXPECT_EQ(e.peer_address, peer.address);
        EXPECT_EQ(e.identity, peer.authenticated ? peer.common_name : "");
        EXPECT_NE(e.message.find(peer.Describe()), std::string::npos) << e.message;
      } catch (const apache::thrift::TException&) {
        // The method ran and refused for its own reasons.
      }
    }
    return refused;
  }

  static std::set<std::string> AllMethods() {
    return {"beginTxn",   "enlist",        "commit",        "rollback", "status",
            "submitSaga", "queryOutcome",  "health",        "listTxns", "retryNow",
            "cancelSaga", "resolveBranch", "rebindEndpoint"};
  }
  static std::set<std::string> AllBut(const std::set<std::string>& allowed) {
    std::set<std::string> out;
    for (const std::string& m : AllMethods()) {
      if (allowed.count(m) == 0) out.insert(m);
    }
    return out;
  }

  std::string dir_;
  std::unique_ptr<TxnStore> store_;
  std::unique_ptr<GroupCommitter> log_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<CoordinatorHandler> handler_;
};

TEST_F(AuthorizationTest, EveryMethodHasRoles) {
  for (const std::string& m : AllMethods()) {
    EXPECT_NE(CoordinatorHandler::MethodRoles(m) & roles::kAdmin, 0u) << m;
  }
  EXPECT_EQ(CoordinatorHandler::MethodRoles("noSuchMethod"), roles::kNone);
}

TEST_F(AuthorizationTest, WithoutPolicyEveryoneMayCallEverything) {
  const std::string gtid = BeginAsAdmin();
  EXPECT_EQ(Refused(Plaintext(), gtid), std::set<std::string>{});
  EXPECT_EQ(Refused(Cert("stranger"), gtid), std::set<std::string>{});
}

TEST_F(AuthorizationTest, RolesDecideWhatEachCallerMayCall) {
  UsePolicy(kPolicy);
  const std::string gtid = BeginAsAdmin();
  EXPECT_EQ(Refused(Cert("reader-app"), gtid), AllBut({"status", "listTxns", "health"}));
  EXPECT_EQ(Refused(Cert("client-app"), gtid),
            AllBut({"beginTxn", "enlist", "commit", "rollback", "submitSaga", "status", "health"}));
  EXPECT_EQ(Refused(Cert("participant-app"), gtid), AllBut({"queryOutcome", "health"}));
  EXPECT_EQ(Refused(Cert("ops"), gtid), std::set<std::string>{});
  EXPECT_EQ(Refused(Cert("stranger"), gtid), AllMethods());
  // Without a verified certificate nobody holds a role, whatever it claims.
  EXPECT_EQ(Refused(Plaintext(), gtid), AllMethods());
  PeerIdentity forged = Plaintext();
  forged.common_name = "ops";
  EXPECT_EQ(Refused(forged, gtid), AllMethods());
}

TEST_F(AuthorizationTest, RefusedCallChangesNothing) {
  UsePolicy(kPolicy);
  const std::string gtid = BeginAsAdmin();
  {
    ScopedPeerIdentity as(Cert("reader-app"));
    wire::CommitRequest req;
    req.__set_gtid(gtid);
    wire::CommitResponse r;
    EXPECT_THROW(handler_->commit(r, req), wire::PermissionDenied);
    EXPECT_THROW(handler_->rollback(r, gtid), wire::PermissionDenied);
    wire::EnlistRequest enlist;
    enlist.__set_gtid(gtid);
    enlist.branch.__set_branch_id("b9");
    enlist.branch.__set_endpoint("127.0.0.1:9109");
    EXPECT_THROW(handler_->enlist(enlist), wire::PermissionDenied);
    wire::BeginResponse begun;
    EXPECT_THROW(handler_->beginTxn(begun, wire::BeginRequest()), wire::PermissionDenied);
  }
  const wire::TxnStatus after = StatusAsAdmin(gtid);
  EXPECT_EQ(after.state, wire::TxnState::ACTIVE);
  ASSERT_EQ(after.branches.size(), 1u);
  EXPECT_EQ(CountTxns(), 1);
}

TEST_F(AuthorizationTest, RefusalsAreCounted) {
  UsePolicy(kPolicy);
  const std::string gtid = BeginAsAdmin();
  Refused(Cert("reader-app"), gtid);
  const std::string metrics = DefaultMetricsRegistry().Render();
  EXPECT_NE(metrics.find("txc_refused_calls_total{method=\"commit\",reason=\"permission_denied\"}"),
            std::string::npos)
      << metrics;
}

TEST_F(AuthorizationTest, AnyoneGrantsUnauthenticatedCallersExplicitly) {
  UsePolicy(std::string(kPolicy) + "@anyone = reader\n");
  const std::string gtid = BeginAsAdmin();
  EXPECT_EQ(Refused(Plaintext(), gtid), AllBut({"status", "listTxns", "health"}));
  EXPECT_EQ(Refused(Cert("client-app"), gtid),
            AllBut({"beginTxn", "enlist", "commit", "rollback", "submitSaga", "status", "health",
                    "listTxns"}));
}

TEST_F(AuthorizationTest, PolicyCanBeReplacedAndRemoved) {
  UsePolicy(kPolicy);
  const std::string gtid = BeginAsAdmin();
  EXPECT_EQ(Refused(Cert("reader-app"), gtid).count("commit"), 1u);
  UsePolicy("reader-app = client\n");
  EXPECT_EQ(Refused(Cert("reader-app"), gtid).count("commit"), 0u);
  handler_->SetAuthPolicy(nullptr);
  EXPECT_EQ(Refused(Plaintext(), gtid), std::set<std::string>{});
}

// --- participant allow-list -------------------------------------------------

class AllowListTest : public AuthorizationTest {
 protected:
  void SetUp() override {
    AuthorizationTest::SetUp();
    Result<EndpointAllowList> allow = EndpointAllowList::Parse({"127.0.0.1:9100-9199", "*.ok"});
    ASSERT_TRUE(allow.ok()) << allow.status();
    handler_->SetParticipantAllowList(*allow);
  }
};

TEST_F(AllowListTest, EnlistOutsideIsRefusedAndNothingStored) {
  const std::string gtid = BeginAsAdmin();
  wire::EnlistRequest req;
  req.__set_gtid(gtid);
  req.branch.__set_branch_id("b2");
  req.branch.__set_endpoint("169.254.169.254:80");
  try {
    handler_->enlist(req);
    FAIL() << "enlist outside the allow-list accepted";
  } catch (const wire::InvalidArgument& e) {
    EXPECT_EQ(e.field, "branch.endpoint");
    EXPECT_NE(e.message.find("'169.254.169.254:80'"), std::string::npos) << e.message;
  }
  EXPECT_EQ(StatusAsAdmin(gtid).branches.size(), 1u);
  // Inside the list the request reaches the service (which has no 2PC driver
  // here to enlist with: Unavailable, not InvalidArgument).
  req.branch.__set_endpoint("p1.ok:7000");
  EXPECT_THROW(handler_->enlist(req), wire::Unavailable);
}

TEST_F(AllowListTest, BeginWithBranchesOutsideIsRefusedAndNothingStored) {
  wire::BeginRequest req;
  wire::BranchSpec inside, outside;
  inside.__set_branch_id("b1");
  inside.__set_endpoint("127.0.0.1:9100");
  outside.__set_branch_id("b2");
  outside.__set_endpoint("127.0.0.1:22");
  req.__set_branches({inside, outside});
  wire::BeginResponse resp;
  try {
    handler_->beginTxn(resp, req);
    FAIL() << "begin outside the allow-list accepted";
  } catch (const wire::InvalidArgument& e) {
    EXPECT_EQ(e.field, "branches[1].endpoint");
    EXPECT_NE(e.message.find("'127.0.0.1:22'"), std::string::npos) << e.message;
  }
  EXPECT_EQ(CountTxns(), 0);
  req.__set_branches({inside});
  handler_->beginTxn(resp, req);
  EXPECT_EQ(CountTxns(), 1);
}

TEST_F(AllowListTest, SagaStepOutsideIsRefusedAndNothingStored) {
  wire::SubmitSagaRequest req;
  req.__set_gtid("saga-1");
  wire::SagaStep s1, s2;
  s1.__set_step_id("s1");
  s1.__set_endpoint("a.ok:7000");
  s1.__set_action("do");
  s1.__set_compensation("undo");
  s2 = s1;
  s2.__set_step_id("s2");
  s2.__set_endpoint("evil.example:7000");
  req.__set_steps({s1, s2});
  wire::SubmitSagaResponse resp;
  try {
    handler_->submitSaga(resp, req);
    FAIL() << "saga outside the allow-list accepted";
  } catch (const wire::InvalidArgument& e) {
    EXPECT_EQ(e.field, "steps[1].endpoint");
    EXPECT_NE(e.message.find("'evil.example:7000'"), std::string::npos) << e.message;
  }
  EXPECT_EQ(CountTxns(), 0);
}

TEST_F(AllowListTest, RebindTargetOutsideIsRefused) {
  const std::string gtid = BeginAsAdmin();
  ScopedPeerIdentity as(Cert("ops"));
  wire::RebindRequest req;
  req.__set_gtid(gtid);
  req.__set_from_endpoint("127.0.0.1:9100");
  req.__set_to_endpoint("10.9.9.9:9100");
  wire::RebindResponse resp;
  try {
    handler_->rebindEndpoint(resp, req);
    FAIL() << "rebind outside the allow-list accepted";
  } catch (const wire::InvalidArgument& e) {
    EXPECT_EQ(e.field, "to_endpoint");
  }
  EXPECT_EQ(StatusAsAdmin(gtid).branches.at(0).endpoint, "127.0.0.1:9100");
  req.__set_to_endpoint("127.0.0.1:9101");
  handler_->rebindEndpoint(resp, req);
  EXPECT_EQ(resp.branches, 1);
  EXPECT_EQ(StatusAsAdmin(gtid).branches.at(0).endpoint, "127.0.0.1:9101");
}

}  // namespace
}  // namespace txc
