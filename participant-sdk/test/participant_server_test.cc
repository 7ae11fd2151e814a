// ParticipantServer over real Thrift: hooks called, results and errors mapped.
#include "txc/participant/participant_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>

#include "common/peer_identity.h"
#include "gen-cpp/Participant.h"
#include "migrations/migrator.h"
#include "tests/harness/process.h"

namespace txc {
namespace participant {
namespace {

// Hooks whose behaviour a test selects through the payload.
class ScriptedParticipant : public Participant {
 public:
  Vote Prepare(const BranchContext& ctx) override {
    ++prepares;
    last_branch = ctx;
    if (ctx.payload == "throw") throw std::runtime_error("disk on fire");
    if (ctx.payload == "read-only") return Vote::kReadOnly;
    if (ctx.payload == "no") return Vote::kAbort;
    return Vote::kPrepared;
  }
  void Commit(const BranchContext& ctx) override {
    ++commits;
    if (ctx.payload == "throw-commit") throw std::runtime_error("db down");
  }
  void Abort(const BranchContext& ctx) override {
    ++aborts;
    if (ctx.payload == "throw-abort") throw std::runtime_error("db down");
  }
  StepResult Action(const StepContext& ctx) override {
    ++actions;
    last_step = ctx;
    if (ctx.payload == "throw") throw std::runtime_error("flaky");
    if (ctx.payload == "fail") return StepResult::Failure("out of stock");
    if (SqliteDbOf(ctx) != nullptr) {
      sqlite3_exec(SqliteDbOf(ctx), "INSERT INTO reservations VALUES (1)", nullptr, nullptr,
                   nullptr);
    }
    return StepResult::Success("reserved");
  }
  StepResult Compensate(const StepContext& ctx) override {
    ++compensations;
    if (SqliteDbOf(ctx) != nullptr) {
      sqlite3_exec(SqliteDbOf(ctx), "DELETE FROM reservations", nullptr, nullptr, nullptr);
    }
    return StepResult::Success("released");
  }

  std::atomic<int> prepares{0}, commits{0}, aborts{0}, actions{0}, compensations{0};
  BranchContext last_branch;
  StepContext last_step;
};

// A saga-only service: overrides nothing of 2PC.
class SagaOnly : public Participant {
 public:
  StepResult Action(const StepContext&) override { return StepResult::Success(); }
  StepResult Compensate(const StepContext&) override { return StepResult::Success(); }
};

ParticipantServerOptions LoopbackOptions() {
  ParticipantServerOptions o;
  o.host = "127.0.0.1";
  o.run_recovery = false;
  return o;
}

class ParticipantServerTest : public ::testing::Test {
 protected:
  void StartWith(std::shared_ptr<Participant> p, ParticipantServerOptions o = LoopbackOptions()) {
    server_ = std::make_unique<ParticipantServer>(std::move(p), std::move(o));
    ASSERT_TRUE(server_->Start().ok());
  }
  template <typename Fn>
  Status Call(Fn fn) {
    return pool_.Call(server_->endpoint(), [&](wire::ParticipantClient& c) { fn(c); });
  }
  static wire::BranchRequest Branch(const std::string& payload) {
    wire::BranchRequest r;
    r.gtid = "g1";
    r.branch_id = "b1";
    r.resource = "accounts";
    r.payload = payload;
    r.context.gtid = "g1";
    r.context.deadline_unix_ms = 42;
    return r;
  }
  static wire::StepRequest Step(const std::string& gtid, const std::string& payload = "") {
    wire::StepRequest r;
    r.gtid = gtid;
    r.step_id = "s1";
    r.name = "reserve";
    r.payload = payload;
    r.attempt = 2;
    r.context.gtid = gtid;
    return r;
  }

  ClientPool<wire::ParticipantClient> pool_{ConnectOptions{500, 2000}};
  std::unique_ptr<ParticipantServer> server_;
};

TEST_F(ParticipantServerTest, PrepareVotesAndConvertsContext) {
  auto p = std::make_shared<ScriptedParticipant>();
  StartWith(p);
  wire::Vote::type vote{};
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { vote = c.prepare(Branch("yes")); }).ok());
  EXPECT_EQ(vote, wire::Vote::VOTE_PREPARED);
  EXPECT_EQ(p->last_branch.gtid, "g1");
  EXPECT_EQ(p->last_branch.branch_id, "b1");
  EXPECT_EQ(p->last_branch.resource, "accounts");
  EXPECT_EQ(p->last_branch.deadline_unix_ms, 42);
  ASSERT_TRUE(
      Call([&](wire::ParticipantClient& c) { vote = c.prepare(Branch("read-only")); }).ok());
  EXPECT_EQ(vote, wire::Vote::VOTE_READ_ONLY);
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { vote = c.prepare(Branch("no")); }).ok());
  EXPECT_EQ(vote, wire::Vote::VOTE_ABORT);
  // A throwing prepare is a vote to abort, and the server keeps serving.
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { vote = c.prepare(Branch("throw")); }).ok());
  EXPECT_EQ(vote, wire::Vote::VOTE_ABORT);
  EXPECT_EQ(p->prepares.load(), 4);
}

TEST_F(ParticipantServerTest, PhaseTwoFailuresAreUnavailable) {
  auto p = std::make_shared<ScriptedParticipant>();
  StartWith(p);
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { c.commit(Branch("ok")); }).ok());
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { c.abort(Branch("ok")); }).ok());
  bool unavailable = false;
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) {
                try {
                  c.commit(Branch("throw-commit"));
                } catch (const wire::Unavailable& e) {
                  unavailable = e.message.find("db down") != std::string::npos;
                }
              }).ok());
  EXPECT_TRUE(unavailable);
  unavailable = false;
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) {
                try {
                  c.abort(Branch("throw-abort"));
                } catch (const wire::Unavailable&) {
                  unavailable = true;
                }
              }).ok());
  EXPECT_TRUE(unavailable);
  EXPECT_EQ(p->commits.load(), 2);
  EXPECT_EQ(p->aborts.load(), 2);
}

TEST_F(ParticipantServerTest, DefaultOnePhaseIsPrepareThenCommit) {
  auto p = std::make_shared<ScriptedParticipant>();
  StartWith(p);
  wire::Outcome::type outcome{};
  ASSERT_TRUE(
      Call([&](wire::ParticipantClient& c) { outcome = c.commitOnePhase(Branch("yes")); }).ok());
  EXPECT_EQ(outcome, wire::Outcome::OUTCOME_COMMIT);
  EXPECT_EQ(p->prepares.load(), 1);
  EXPECT_EQ(p->commits.load(), 1);
  ASSERT_TRUE(
      Call([&](wire::ParticipantClient& c) { outcome = c.commitOnePhase(Branch("no")); }).ok());
  EXPECT_EQ(outcome, wire::Outcome::OUTCOME_ABORT);
  EXPECT_EQ(p->commits.load(), 1);
  bool unavailable = false;
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) {
                try {
                  c.commitOnePhase(Branch("throw-commit"));
                } catch (const wire::Unavailable&) {
                  unavailable = true;
                }
              }).ok());
  EXPECT_TRUE(unavailable);
}

TEST_F(ParticipantServerTest, StepOutcomesAndExceptions) {
  auto p = std::make_shared<ScriptedParticipant>();
  StartWith(p);
  wire::StepResult r;
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { c.action(r, Step("g1")); }).ok());
  EXPECT_EQ(r.outcome, wire::StepOutcome::SUCCESS);
  EXPECT_EQ(r.message, "reserved");
  EXPECT_EQ(p->last_step.attempt, 2);
  EXPECT_EQ(p->last_step.name, "reserve");
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { c.action(r, Step("g2", "fail")); }).ok());
  EXPECT_EQ(r.outcome, wire::StepOutcome::FAILURE);
  EXPECT_EQ(r.message, "out of stock");
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { c.action(r, Step("g3", "throw")); }).ok());
  EXPECT_EQ(r.outcome, wire::StepOutcome::RETRY_LATER);
  EXPECT_NE(r.message.find("flaky"), std::string::npos);
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { c.compensate(r, Step("g1")); }).ok());
  EXPECT_EQ(r.outcome, wire::StepOutcome::SUCCESS);
}

TEST_F(ParticipantServerTest, UnimplementedHooksRefuseWithTypedAnswers) {
  StartWith(std::make_shared<SagaOnly>());
  wire::Vote::type vote{};
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { vote = c.prepare(Branch("yes")); }).ok());
  EXPECT_EQ(vote, wire::Vote::VOTE_ABORT);
  wire::Outcome::type outcome{};
  ASSERT_TRUE(
      Call([&](wire::ParticipantClient& c) { outcome = c.commitOnePhase(Branch("yes")); }).ok());
  EXPECT_EQ(outcome, wire::Outcome::OUTCOME_ABORT);
  bool unavailable = false;
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) {
                try {
                  c.commit(Branch("yes"));
                } catch (const wire::Unavailable& e) {
                  unavailable = e.message.find("not supported") != std::string::npos;
                }
              }).ok());
  EXPECT_TRUE(unavailable);
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { c.abort(Branch("yes")); }).ok());

  // And a 2PC-only service refuses saga calls.
  server_->Stop();
  StartWith(std::make_shared<Participant>());
  wire::StepResult r;
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { c.action(r, Step("g")); }).ok());
  EXPECT_EQ(r.outcome, wire::StepOutcome::FAILURE);
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { c.compensate(r, Step("g")); }).ok());
  EXPECT_EQ(r.outcome, wire::StepOutcome::RETRY_LATER);
}

TEST_F(ParticipantServerTest, BarrierStoreWrapsActionAndCompensate) {
  testing::TempDir dir;
  const std::string path = dir.Child("svc.db");
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_TRUE(MigrateSqlite(db, "participant").ok());
    ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE reservations (id INTEGER)", nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  auto p = std::make_shared<ScriptedParticipant>();
  auto options = LoopbackOptions();
  options.barrier = std::make_shared<SqliteBarrierStore>(path);
  StartWith(p, options);
  wire::StepResult r;
  // Duplicate action: the hook runs once.
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { c.action(r, Step("d1")); }).ok());
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { c.action(r, Step("d1")); }).ok());
  EXPECT_EQ(r.outcome, wire::StepOutcome::SUCCESS);
  EXPECT_EQ(r.message, "reserved");
  EXPECT_EQ(p->actions.load(), 1);
  // Compensation before its action: recorded no-op; the late action is refused.
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { c.compensate(r, Step("n1")); }).ok());
  EXPECT_EQ(r.outcome, wire::StepOutcome::SUCCESS);
  EXPECT_EQ(p->compensations.load(), 0);
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { c.action(r, Step("n1")); }).ok());
  EXPECT_EQ(r.outcome, wire::StepOutcome::FAILURE);
  EXPECT_EQ(p->actions.load(), 1);
  // A throwing hook under the barrier: retry later, nothing recorded.
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { c.action(r, Step("t1", "throw")); }).ok());
  EXPECT_EQ(r.outcome, wire::StepOutcome::RETRY_LATER);
  ASSERT_TRUE(Call([&](wire::ParticipantClient& c) { c.action(r, Step("t1")); }).ok());
  EXPECT_EQ(r.outcome, wire::StepOutcome::SUCCESS);
  EXPECT_EQ(p->actions.load(), 3);
}

TEST_F(ParticipantServerTest, AllowedCoordinatorsRefuseOtherCallersBeforeAnyHook) {
  auto hooks = std::make_shared<ScriptedParticipant>();
  ParticipantServerOptions o = LoopbackOptions();
  o.allowed_coordinator_identities = {"coordinator", "coord-*.svc"};
  StartWith(hooks, o);
  // Over plaintext Thrift nobody is authenticated: every method is refused,
  // no hook runs, and the coordinators named in the context are not taken.
  wire::BranchRequest b = Branch("");
  b.context.coordinators = {"10.6.6.6:7400"};
  wire::StepRequest st = Step("g2");
  st.context.coordinators = {"10.6.6.6:7400"};
  auto expect_denied = [&](const char* method, auto call) {
    try {
      call();
      ADD_FAILURE() << method << " was served";
    } catch (const wire::PermissionDenied& e) {
      EXPECT_EQ(e.method, method);
      const PeerIdentity& caller = CurrentPeerIdentity();  // the test's, as the handler's
      if (caller.authenticated) {
        EXPECT_EQ(e.identity, caller.common_name);
      } else {
        EXPECT_EQ(e.identity, "");
        EXPECT_NE(e.message.find("no verified client certificate"), std::string::npos) << e.message;
      }
    }
  };
  std::unique_ptr<ThriftConnection<wire::ParticipantClient>> conn;
  {
    auto opened = OpenConnection<wire::ParticipantClient>(HostPort{"127.0.0.1", server_->port()},
                                                          ConnectOptions{500, 2000});
    ASSERT_TRUE(opened.ok()) << opened.status();
    conn = std::move(opened).value();
  }
  wire::ParticipantClient& c = *conn->client;
  wire::StepResult r;
  expect_denied("prepare", [&] { c.prepare(b); });
  expect_denied("commitOnePhase", [&] { c.commitOnePhase(b); });
  expect_denied("commit", [&] { c.commit(b); });
  expect_denied("abort", [&] { c.abort(b); });
  expect_denied("action", [&] { c.action(r, st); });
  expect_denied("compensate", [&] { c.compensate(r, st); });
  EXPECT_EQ(
      hooks->prepares + hooks->commits + hooks->aborts + hooks->actions + hooks->compensations, 0);
  EXPECT_EQ(server_->coordinator_client(), nullptr);

  // In-process as a verified peer: a certificate of another service is
  // refused; one whose SAN matches an allowed pattern reaches the hooks.
  std::shared_ptr<wire::ParticipantIf> handler = server_->HandlerForTests();
  PeerIdentity other;
  other.address = "10.0.0.5:5000";
  other.authenticated = true;
  other.common_name = "orders-client";
  {
    ScopedPeerIdentity as(other);
    expect_denied("prepare", [&] { handler->prepare(b); });
    expect_denied("action", [&] { handler->action(r, st); });
  }
  EXPECT_EQ(hooks->prepares + hooks->actions, 0);
  PeerIdentity coordinator = other;
  coordinator.common_name = "txc";
  coordinator.sans = {"coord-2.svc"};
  {
    ScopedPeerIdentity as(coordinator);
    EXPECT_EQ(handler->prepare(b), wire::Vote::VOTE_PREPARED);
    handler->action(r, st);
    EXPECT_EQ(r.outcome, wire::StepOutcome::SUCCESS);
  }
  EXPECT_EQ(hooks->prepares, 1);
  EXPECT_EQ(hooks->actions, 1);
}

TEST_F(ParticipantServerTest, BusyPortFailsStart) {
  StartWith(std::make_shared<SagaOnly>());
  auto o = LoopbackOptions();
  o.port = server_->port();
  ParticipantServer second(std::make_shared<SagaOnly>(), o);
  EXPECT_EQ(second.Start().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace participant
}  // namespace txc
