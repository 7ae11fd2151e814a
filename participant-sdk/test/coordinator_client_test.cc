// CoordinatorClient failover, timeouts and error mapping against hand-written
// in-test coordinators (real Thrift servers on loopback).
#include "txc/participant/coordinator_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "common/thrift_server.h"
#include "tests/harness/process.h"

namespace txc {
namespace participant {
namespace {

// A coordinator whose answers the test scripts.
class ScriptedCoordinator : public wire::CoordinatorNull {
 public:
  explicit ScriptedCoordinator(std::string name) : name_(std::move(name)) {}

  void beginTxn(wire::BeginResponse& out, const wire::BeginRequest& req) override {
    ++calls;
    Delay();
    last_idempotency_key = req.idempotency_key;
    out.gtid = name_ + "-g";
    out.context.gtid = out.gtid;
  }
  void enlist(const wire::EnlistRequest& req) override {
    ++calls;
    Delay();
    if (not_owner_to.size() > 0) {
      wire::NotOwner e;
      e.message = "not mine";
      e.owner_endpoint = not_owner_to;
      throw e;
    }
    if (req.gtid == "missing") {
      wire::NotFound e;
      e.message = "no such txn";
      e.gtid = req.gtid;
      throw e;
    }
    enlisted_at = name_;
  }
  void commit(wire::CommitResponse& out, const wire::CommitRequest& req) override {
    ++calls;
    Delay();
    if (req.gtid == "rolled-back") {
      wire::IllegalTransition e;
      e.message = "commit after rollback";
      e.gtid = req.gtid;
      e.current_state = wire::TxnState::ABORTED;
      throw e;
    }
    if (unavailable_left > 0) {
      --unavailable_left;
      wire::Unavailable e;
      e.message = "store down";
      e.retry_after_ms = 1;
      throw e;
    }
    out.gtid = req.gtid;
    out.state = wire::TxnState::COMMITTED;
    out.outcome = wire::Outcome::OUTCOME_COMMIT;
  }
  void rollback(wire::CommitResponse&, const std::string& gtid) override {
    ++calls;
    wire::InvalidArgument e;
    e.message = "bad gtid " + gtid;
    e.field = "gtid";
    throw e;
  }
  void status(wire::TxnStatus& out, const std::string& gtid) override {
    ++calls;
    Delay();
    out.gtid = gtid;
    out.owner = name_;
  }
  void submitSaga(wire::SubmitSagaResponse& out, const wire::SubmitSagaRequest& req) override {
    ++calls;
    Delay();
    out.gtid = req.gtid;
    out.state = wire::TxnState::RUNNING;
  }
  wire::Outcome::type queryOutcome(const std::string&, const std::string&) override {
    ++calls;
    Delay();
    return wire::Outcome::OUTCOME_PENDING;
  }
  void health(wire::HealthResponse& out) override {
    ++calls;
    Delay();
    out.node_id = name_;
    out.serving = true;
  }

  std::atomic<int> calls{0};
  std::atomic<int> delay_ms{0};
  std::atomic<int> unavailable_left{0};
  std::string not_owner_to;  // set before calls start
  std::string last_idempotency_key;
  std::string enlisted_at;

 private:
  void Delay() {
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
  }
  std::string name_;
};

struct Replica {
  explicit Replica(const std::string& name)
      : handler(std::make_shared<ScriptedCoordinator>(name)),
        server(std::make_shared<wire::CoordinatorProcessor>(handler),
               ThriftServerOptions{"127.0.0.1", 0}) {
    EXPECT_TRUE(server.Start().ok());
  }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(server.port()); }
  std::shared_ptr<ScriptedCoordinator> handler;
  ThriftServer server;
};

std::string DeadEndpoint() { return "127.0.0.1:" + std::to_string(testing::FreeLoopbackPort()); }

CoordinatorClientOptions FastOptions(std::vector<std::string> endpoints) {
  CoordinatorClientOptions o;
  o.endpoints = std::move(endpoints);
  o.connect_timeout_ms = 200;
  o.rpc_timeout_ms = 150;
  o.backoff = BackoffPolicy{5, 20, 2.0};
  o.call_deadline_ms = 3000;
  return o;
}

TEST(CoordinatorClientTest, RejectsBadEndpoints) {
  EXPECT_EQ(CoordinatorClient::Create(FastOptions({})).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CoordinatorClient::Create(FastOptions({"nohostport"})).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(CoordinatorClientTest, FailsOverFromDeadFirstEndpointAndRemembersLiveOne) {
  Replica alive("b");
  auto client = CoordinatorClient::Create(FastOptions({DeadEndpoint(), alive.endpoint()}));
  ASSERT_TRUE(client.ok());
  auto h = (*client)->Health();
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->node_id, "b");
  // Begin is not naturally idempotent: the client adds a key so it may retry.
  auto begun = (*client)->Begin(wire::BeginRequest());
  ASSERT_TRUE(begun.ok()) << begun.status();
  EXPECT_EQ(begun->gtid, "b-g");
  EXPECT_FALSE(alive.handler->last_idempotency_key.empty());
  EXPECT_EQ(alive.handler->calls.load(), 2);
}

TEST(CoordinatorClientTest, AllReplicasDownIsUnavailableAfterBoundedAttempts) {
  auto options = FastOptions({DeadEndpoint(), DeadEndpoint()});
  options.max_attempts = 4;
  auto client = CoordinatorClient::Create(options);
  ASSERT_TRUE(client.ok());
  auto outcome = (*client)->QueryOutcome("g", "b");
  EXPECT_EQ(outcome.status().code(), StatusCode::kUnavailable) << outcome.status();
}

TEST(CoordinatorClientTest, TimeoutFailsOverForRetrySafeCalls) {
  Replica slow("slow"), fast("fast");
  slow.handler->delay_ms = 300;
  auto client = CoordinatorClient::Create(FastOptions({slow.endpoint(), fast.endpoint()}));
  ASSERT_TRUE(client.ok());
  auto st = (*client)->GetStatus("g1");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->owner, "fast");
}

TEST(CoordinatorClientTest, TimeoutOfNonRetrySafeCallIsReturned) {
  Replica slow("slow"), fast("fast");
  slow.handler->delay_ms = 300;
  auto client = CoordinatorClient::Create(FastOptions({slow.endpoint(), fast.endpoint()}));
  ASSERT_TRUE(client.ok());
  wire::SubmitSagaRequest req;  // no gtid: a resend could start a second saga
  auto r = (*client)->SubmitSaga(req);
  EXPECT_EQ(r.status().code(), StatusCode::kTimeout) << r.status();
  EXPECT_EQ(fast.handler->calls.load(), 0);
  // With a gtid it is retry-safe and goes to the next replica.
  req.__set_gtid("saga-1");
  auto r2 = (*client)->SubmitSaga(req);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(fast.handler->calls.load(), 1);
}

TEST(CoordinatorClientTest, CommitWaitingForCompletionGetsItsWaitAsTimeout) {
  Replica a("a");
  a.handler->delay_ms = 300;  // longer than rpc_timeout_ms (150)
  auto options = FastOptions({a.endpoint()});
  options.max_attempts = 1;
  auto client = CoordinatorClient::Create(options);
  ASSERT_TRUE(client.ok());
  wire::CommitRequest commit;
  commit.gtid = "g";
  commit.wait = wire::CommitWait::WAIT_COMPLETION;
  commit.wait_timeout_ms = 500;
  auto r = (*client)->Commit(commit);
  ASSERT_TRUE(r.ok()) << r.status();
  // The raised timeout was for that call only.
  commit.wait = wire::CommitWait::WAIT_DECISION;
  EXPECT_EQ((*client)->Commit(commit).status().code(), StatusCode::kTimeout);
}

TEST(CoordinatorClientTest, TypedErrorsAreFinal) {
  Replica a("a"), b("b");
  auto client = CoordinatorClient::Create(FastOptions({a.endpoint(), b.endpoint()}));
  ASSERT_TRUE(client.ok());
  wire::EnlistRequest enlist;
  enlist.gtid = "missing";
  EXPECT_EQ((*client)->Enlist(enlist).code(), StatusCode::kNotFound);
  wire::CommitRequest commit;
  commit.gtid = "rolled-back";
  EXPECT_EQ((*client)->Commit(commit).status().code(), StatusCode::kIllegalTransition);
  EXPECT_EQ((*client)->Rollback("x").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(a.handler->calls.load() + b.handler->calls.load(), 3);  // none retried
}

TEST(CoordinatorClientTest, UnavailableIsRetriedWithBackoff) {
  Replica a("a");
  a.handler->unavailable_left = 2;
  auto client = CoordinatorClient::Create(FastOptions({a.endpoint()}));
  ASSERT_TRUE(client.ok());
  wire::CommitRequest commit;
  commit.gtid = "g";
  auto r = (*client)->Commit(commit);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome, wire::Outcome::OUTCOME_COMMIT);
  EXPECT_EQ(a.handler->calls.load(), 3);
}

TEST(CoordinatorClientTest, NotOwnerIsRetriedAtTheOwner) {
  Replica owner("owner");
  Replica other("other");
  other.handler->not_owner_to = owner.endpoint();
  auto client = CoordinatorClient::Create(FastOptions({other.endpoint()}));
  ASSERT_TRUE(client.ok());
  wire::EnlistRequest enlist;
  enlist.gtid = "g";
  Status s = (*client)->Enlist(enlist);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(owner.handler->enlisted_at, "owner");
  EXPECT_EQ(other.handler->calls.load(), 1);
}

TEST(CoordinatorClientTest, NotOwnerEverywhereEndsAsNotOwner) {
  Replica a("a");
  a.handler->not_owner_to = a.endpoint();  // names itself: nowhere else to go
  auto options = FastOptions({a.endpoint()});
  options.max_attempts = 3;
  auto client = CoordinatorClient::Create(options);
  ASSERT_TRUE(client.ok());
  wire::EnlistRequest enlist;
  enlist.gtid = "g";
  EXPECT_EQ((*client)->Enlist(enlist).code(), StatusCode::kNotOwner);
  EXPECT_EQ(a.handler->calls.load(), 3);
}

TEST(CoordinatorClientTest, RestartedReplicaIsReachedAgain) {
  // A pooled connection to a replica that went away is discarded, not reused.
  auto handler = std::make_shared<ScriptedCoordinator>("r");
  auto first = std::make_unique<ThriftServer>(std::make_shared<wire::CoordinatorProcessor>(handler),
                                              ThriftServerOptions{"127.0.0.1", 0});
  ASSERT_TRUE(first->Start().ok());
  const int port = first->port();
  auto client = CoordinatorClient::Create(FastOptions({"127.0.0.1:" + std::to_string(port)}));
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE((*client)->Health().ok());
  first->Stop();
  first = std::make_unique<ThriftServer>(std::make_shared<wire::CoordinatorProcessor>(handler),
                                         ThriftServerOptions{"127.0.0.1", port});
  ASSERT_TRUE(first->Start().ok());
  auto h = (*client)->Health();
  ASSERT_TRUE(h.ok()) << h.status();
}

}  // namespace
}  // namespace participant
}  // namespace txc
