// CoordinatorHandler over real Thrift (in-process ThriftServer on a free port)
// on a CoordinatorService over a real SQLite store.
#include "coordinator/rpc/coordinator_handler.h"

#include <glog/logging.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <thrift/protocol/TBinaryProtocol.h>

#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/async_thrift_server.h"
#include "common/backoff.h"
#include "common/thrift_server.h"
#include "common/thrift_util.h"
#include "coordinator/core/validation.h"
#include "coordinator/rpc/coordinator_async_handler.h"
#include "coordinator/service/coordinator_service.h"
#include "coordinator/store/txn_store.h"

namespace txc {
namespace {

// Fault injection: GetStatus throws for one gtid, as a bug in a driver might.
class ThrowingService : public CoordinatorService {
 public:
  using CoordinatorService::CoordinatorService;
  Result<TxnView> GetStatus(const std::string& gtid) override {
    if (gtid == "throw-me") throw std::runtime_error("injected failure");
    return CoordinatorService::GetStatus(gtid);
  }
};

// Every test runs against both front ends: the thread-per-connection server
// over the synchronous handler, and the event loop over the asynchronous
// face, which must answer exactly the same.
enum class Front { kThreadPerConnection, kEventLoop };

class CoordinatorHandlerTest : public ::testing::TestWithParam<Front> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/txc-handler-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto store = OpenStore(dir_ + "/coordinator.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    ASSERT_TRUE(store_->Migrate().ok());
    auto lease = store_->AcquireLease("node-h", "127.0.0.1:1", 60000, NowUnixMs());
    ASSERT_TRUE(lease.ok());
    log_ = std::make_unique<GroupCommitter>(store_.get(), GroupCommitOptions{});
    service_ = std::make_unique<ThrowingService>(store_.get(), log_.get(),
                                                 NodeInfo{"node-h", "127.0.0.1:1", lease->epoch});
    handler_ = std::make_shared<CoordinatorHandler>(service_.get());
    if (GetParam() == Front::kEventLoop) {
      async_handler_ = std::make_shared<CoordinatorAsyncHandler>(handler_.get());
      server_ = std::make_unique<AsyncThriftServer>(
          std::make_shared<wire::CoordinatorAsyncProcessor>(async_handler_),
          ThriftServerOptions{"127.0.0.1", 0});
    } else {
      server_ =
          std::make_unique<ThriftServer>(std::make_shared<wire::CoordinatorProcessor>(handler_),
                                         ThriftServerOptions{"127.0.0.1", 0});
    }
    ASSERT_TRUE(server_->Start().ok());
    auto conn = OpenConnection<wire::CoordinatorClient>(HostPort{"127.0.0.1", server_->port()},
                                                        ConnectOptions{});
    ASSERT_TRUE(conn.ok()) << conn.status();
    conn_ = std::move(conn).value();
  }

  void TearDown() override {
    conn_.reset();
    server_.reset();
    // Before the last reference may go on a pool thread (a finished call's cob).
    if (async_handler_ != nullptr) async_handler_->Shutdown();
    async_handler_.reset();
    handler_.reset();
    service_.reset();
    log_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  wire::CoordinatorClient& client() { return *conn_->client; }

  std::string Begin(int64_t timeout_ms = 60000) {
    wire::BeginRequest req;
    req.__set_timeout_ms(timeout_ms);
    wire::BeginResponse resp;
    client().beginTxn(resp, req);
    return resp.gtid;
  }

  std::string dir_;
  std::unique_ptr<TxnStore> store_;
  std::unique_ptr<GroupCommitter> log_;
  std::unique_ptr<ThrowingService> service_;
  std::shared_ptr<CoordinatorHandler> handler_;
  std::shared_ptr<CoordinatorAsyncHandler> async_handler_;
  std::unique_ptr<RpcServer> server_;
  std::unique_ptr<ThriftConnection<wire::CoordinatorClient>> conn_;
};

TEST_P(CoordinatorHandlerTest, BeginStatusHealth) {
  wire::BeginRequest req;
  req.__set_timeout_ms(30000);
  wire::BranchSpec b;
  b.__set_branch_id("b1");
  b.__set_endpoint("127.0.0.1:9100");
  b.__set_resource("stock");
  b.__set_payload("p");
  req.__set_branches({b});
  wire::BeginResponse resp;
  client().beginTxn(resp, req);
  EXPECT_FALSE(resp.gtid.empty());
  EXPECT_EQ(resp.context.gtid, resp.gtid);
  EXPECT_EQ(resp.context.coordinators, std::vector<std::string>{"127.0.0.1:1"});
  EXPECT_GT(resp.context.deadline_unix_ms, NowUnixMs());

  wire::TxnStatus status;
  client().status(status, resp.gtid);
  EXPECT_EQ(status.gtid, resp.gtid);
  EXPECT_EQ(status.state, wire::TxnState::ACTIVE);
  EXPECT_EQ(status.kind, wire::TxnKind::TWO_PHASE);
  EXPECT_EQ(status.owner, "node-h");
  EXPECT_EQ(status.deadline_unix_ms, resp.context.deadline_unix_ms);
  ASSERT_EQ(status.branches.size(), 1u);
  EXPECT_EQ(status.branches[0].branch_id, "b1");
  EXPECT_EQ(status.branches[0].state, wire::BranchState::REGISTERED);
  EXPECT_EQ(status.branches[0].resource, "stock");

  wire::HealthResponse health;
  client().health(health);
  EXPECT_EQ(health.node_id, "node-h");
  EXPECT_EQ(health.store, "sqlite");
  EXPECT_TRUE(health.serving);
  EXPECT_EQ(health.version, CoordinatorHandler::kVersion);
}

TEST_P(CoordinatorHandlerTest, TypedErrors) {
  wire::BeginRequest req;
  req.__set_timeout_ms(-5);
  wire::BeginResponse resp;
  try {
    client().beginTxn(resp, req);
    FAIL() << "accepted a negative timeout";
  } catch (const wire::InvalidArgument& e) {
    EXPECT_EQ(e.field, "timeout_ms");
  }
  wire::TxnStatus status;
  try {
    client().status(status, "unknown-gtid");
    FAIL();
  } catch (const wire::NotFound& e) {
    EXPECT_EQ(e.gtid, "unknown-gtid");
  }
  EXPECT_THROW(client().status(status, std::string(kMaxIdBytes + 1, 'g')), wire::InvalidArgument);
  wire::EnlistRequest enlist;
  enlist.__set_gtid("unknown-gtid");
  enlist.branch.__set_branch_id("b");
  enlist.branch.__set_endpoint("host-without-port");
  try {
    client().enlist(enlist);
    FAIL();
  } catch (const wire::InvalidArgument& e) {
    EXPECT_EQ(e.field, "branch.endpoint");
  }
  enlist.branch.__set_endpoint("h:1");
  EXPECT_THROW(client().enlist(enlist), wire::NotFound);
  const std::string gtid = Begin();
  enlist.__set_gtid(gtid);
  EXPECT_THROW(client().enlist(enlist), wire::Unavailable);  // no 2PC driver in this test
  // A commit whose `wait` is not a CommitWait value. Written by hand: the
  // generated client would have to load the invalid enum (undefined behaviour).
  {
    apache::thrift::protocol::TBinaryProtocol out(conn_->transport);
    out.writeMessageBegin("commit", apache::thrift::protocol::T_CALL, 0);
    out.writeStructBegin("Coordinator_commit_args");
    out.writeFieldBegin("req", apache::thrift::protocol::T_STRUCT, 1);
    out.writeStructBegin("CommitRequest");
    out.writeFieldBegin("gtid", apache::thrift::protocol::T_STRING, 1);
    out.writeString(gtid);
    out.writeFieldEnd();
    out.writeFieldBegin("wait", apache::thrift::protocol::T_I32, 2);
    out.writeI32(9);
    out.writeFieldEnd();
    out.writeFieldStop();
    out.writeStructEnd();
    out.writeFieldEnd();
    out.writeFieldStop();
    out.writeStructEnd();
    out.writeMessageEnd();
    conn_->transport->writeEnd();
    conn_->transport->flush();
    wire::CommitResponse cr;
    try {
      client().recv_commit(cr);
      FAIL() << "accepted wait=9";
    } catch (const wire::InvalidArgument& e) {
      EXPECT_EQ(e.field, "wait");
    }
  }
  // queryOutcome has no NotFound: an unknown gtid is presumed aborted... once a
  // driver answers; without one it is Unavailable, never a wrong decision.
  EXPECT_THROW(client().queryOutcome("", "b"), wire::InvalidArgument);
  // The connection is still good after every refusal.
  client().status(status, gtid);
  EXPECT_EQ(status.state, wire::TxnState::ACTIVE);
}

// Collects every glog message of this process while it lives.
class LogCollector : public google::LogSink {
 public:
  LogCollector() { google::AddLogSink(this); }
  ~LogCollector() override { google::RemoveLogSink(this); }
  void send(google::LogSeverity, const char*, const char*, int, const struct ::tm*,
            const char* message, size_t message_len) override {
    std::lock_guard<std::mutex> lock(mu_);
    messages_.emplace_back(message, message_len);
  }
  std::vector<std::string> messages() {
    std::lock_guard<std::mutex> lock(mu_);
    return messages_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> messages_;
};

// A gtid is logged before it is validated: a newline in it must not start a
// forged log line, and a huge one must not flood the log.
TEST_P(CoordinatorHandlerTest, AnInvalidGtidCannotForgeOrFloodLogLines) {
  const int verbosity = FLAGS_v;
  FLAGS_v = 1;  // the InvalidArgument line is a VLOG(1)
  LogCollector logs;
  const std::string forged = "x\nE20261202 15:00:00.000000  9360 main.cc:1] FORGED";
  wire::TxnStatus status;
  EXPECT_THROW(client().status(status, forged), wire::InvalidArgument);
  EXPECT_THROW(client().status(status, std::string(1 << 20, 'g')), wire::InvalidArgument);
  wire::CommitResponse answer;
  EXPECT_THROW(client().rollback(answer, std::string("nul\0inside", 11)), wire::InvalidArgument);
  FLAGS_v = verbosity;
  bool saw_forged = false;
  for (const std::string& m : logs.messages()) {
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    EXPECT_EQ(m.find('\0'), std::string::npos) << m;
    EXPECT_LT(m.size(), 2048u) << m.substr(0, 200);
    saw_forged = saw_forged || m.find("x\\x0aE20261202") != std::string::npos;
  }
  EXPECT_TRUE(saw_forged) << "the escaped gtid is not in the log";
}

TEST_P(CoordinatorHandlerTest, SagaDefinitionIsValidatedAtTheEdge) {
  wire::SubmitSagaRequest req;
  wire::SubmitSagaResponse resp;
  EXPECT_THROW(client().submitSaga(resp, req), wire::InvalidArgument);  // no steps
  wire::SagaStep s;
  s.__set_step_id("s1");
  s.__set_endpoint("127.0.0.1:9");
  s.__set_action("reserve");
  s.__set_compensation("release");
  s.__set_depends_on({"ghost"});
  req.__set_steps({s});
  try {
    client().submitSaga(resp, req);
    FAIL();
  } catch (const wire::InvalidArgument& e) {
    EXPECT_EQ(e.field, "steps[0].depends_on");
  }
  // A dependency that is no valid id (invalid UTF-8, NUL, a megabyte) is refused
  // without being quoted: the answer must stay printable text for every client.
  for (const std::string& dep :
       {std::string("\xff\xfe"), std::string("a\0b", 3), std::string(1 << 20, 'd')}) {
    s.__set_depends_on({dep});
    req.__set_steps({s});
    try {
      client().submitSaga(resp, req);
      FAIL();
    } catch (const wire::InvalidArgument& e) {
      EXPECT_EQ(e.field, "steps[0].depends_on");
      EXPECT_LT(e.message.size(), 200u);
      for (unsigned char c : e.message) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << e.message;
    }
  }
  s.__set_depends_on({});
  req.__set_steps({s});
  EXPECT_THROW(client().submitSaga(resp, req), wire::Unavailable);  // no saga driver here
}

// The three rules the handler and the core once disagreed on (docs/saga.md,
// "The validation rules"): each violation is InvalidArgument naming the field
// and stores nothing; the same request with the rule kept passes validation
// (and then meets Unavailable: no saga driver in this fixture).
TEST_P(CoordinatorHandlerTest, SagaRulesArePinnedAtTheWire) {
  auto step = [](const std::string& id) {
    wire::SagaStep s;
    s.__set_step_id(id);
    s.__set_endpoint("127.0.0.1:9");
    s.__set_action("act");
    s.__set_compensation("undo");
    return s;
  };
  auto field_of = [&](const std::vector<wire::SagaStep>& steps) -> std::string {
    wire::SubmitSagaRequest req;
    req.__set_gtid("rule-saga");
    req.__set_steps(steps);
    wire::SubmitSagaResponse resp;
    try {
      client().submitSaga(resp, req);
    } catch (const wire::InvalidArgument& e) {
      return e.field;
    } catch (const wire::Unavailable&) {
      return "(accepted)";
    }
    return "(no error)";
  };
  const std::vector<wire::SagaStep> good = {step("a"), step("b")};
  EXPECT_EQ(field_of(good), "(accepted)");

  // A compensation is required.
  auto no_compensation = good;
  no_compensation[1].__set_compensation("");
  EXPECT_EQ(field_of(no_compensation), "steps[1].compensation");

  // Backoff of at least 1 ms.
  auto zero_backoff = good;
  wire::RetryPolicy policy;
  policy.__set_max_attempts(3);
  policy.__set_initial_backoff_ms(0);
  policy.__set_max_backoff_ms(100);
  zero_backoff[0].__set_retry_policy(policy);
  EXPECT_EQ(field_of(zero_backoff), "steps[0].retry_policy.initial_backoff_ms");
  policy.__set_initial_backoff_ms(1);
  zero_backoff[0].__set_retry_policy(policy);
  EXPECT_EQ(field_of(zero_backoff), "(accepted)");

  // Dependencies point to earlier steps only.
  auto forward = good;
  forward[0].__set_depends_on({"b"});
  forward[1].__set_concurrent(true);
  EXPECT_EQ(field_of(forward), "steps[0].depends_on");
  auto backward = good;
  backward[1].__set_depends_on({"a"});
  EXPECT_EQ(field_of(backward), "(accepted)");

  EXPECT_EQ(store_->GetTxn("rule-saga").status().code(), StatusCode::kNotFound);
}

TEST_P(CoordinatorHandlerTest, UnexpectedExceptionIsUnavailableAndConnectionSurvives) {
  wire::TxnStatus status;
  try {
    client().status(status, "throw-me");
    FAIL();
  } catch (const wire::Unavailable& e) {
    EXPECT_NE(e.message.find("internal error"), std::string::npos) << e.message;
  }
  const std::string gtid = Begin();
  client().status(status, gtid);
  EXPECT_EQ(status.gtid, gtid);
}

TEST_P(CoordinatorHandlerTest, AdminActionsAreTypedAuditedAndIllegalOnesChangeNothing) {
  const std::string gtid = Begin();  // ACTIVE 2PC
  wire::TxnStatus before;
  client().status(before, gtid);
  wire::AdminRequest req;
  req.__set_gtid(gtid);
  wire::TxnStatus out;
  try {
    client().retryNow(out, req);
    FAIL() << "retry of an ACTIVE transaction";
  } catch (const wire::IllegalTransition& e) {
    EXPECT_EQ(e.current_state, wire::TxnState::ACTIVE);
  }
  EXPECT_THROW(client().cancelSaga(out, req), wire::IllegalTransition);  // a 2PC transaction
  wire::ResolveRequest resolve;
  resolve.__set_gtid(gtid);
  resolve.__set_branch_id("nope");
  resolve.__set_resolved_state(wire::BranchState::BRANCH_COMMITTED);
  EXPECT_THROW(client().resolveBranch(out, resolve), wire::NotFound);
  resolve.__set_resolved_state(static_cast<wire::BranchState::type>(99));
  EXPECT_THROW(client().resolveBranch(out, resolve), wire::InvalidArgument);
  wire::RebindRequest rebind;
  rebind.__set_gtid(gtid);
  rebind.__set_from_endpoint("not an endpoint");
  rebind.__set_to_endpoint("127.0.0.1:2");
  wire::RebindResponse rebound;
  EXPECT_THROW(client().rebindEndpoint(rebound, rebind), wire::InvalidArgument);
  req.__set_reason(std::string(5000, 'r'));
  EXPECT_THROW(client().retryNow(out, req), wire::InvalidArgument);
  wire::AdminRequest unknown;
  unknown.__set_gtid("no-such-gtid");
  EXPECT_THROW(client().retryNow(out, unknown), wire::NotFound);
  wire::TxnStatus after;
  client().status(after, gtid);
  EXPECT_EQ(after, before);  // nothing changed, no audit record
  EXPECT_TRUE(after.audit.empty());

  wire::ListTxnsRequest list;
  list.__set_limit(0);
  wire::ListTxnsResponse listed;
  EXPECT_THROW(client().listTxns(listed, list), wire::InvalidArgument);
  list.__set_limit(10);
  list.__set_states({wire::TxnState::ACTIVE});
  client().listTxns(listed, list);
  ASSERT_EQ(listed.txns.size(), 1u);
  EXPECT_EQ(listed.txns[0].gtid, gtid);
  EXPECT_FALSE(listed.__isset.next_cursor);

  // A PARKED saga of this node: retry moves it on, audited with the caller.
  WriteBatch seed;
  TxnRecord saga;
  saga.gtid = "parked-1";
  saga.kind = TxnKind::kSaga;
  saga.state = TxnState::kParked;
  saga.owner = service_->node().node_id;
  saga.epoch = service_->node().epoch;
  saga.created_ms = NowUnixMs();
  saga.next_attempt_ms = NowUnixMs() + 3600000;
  seed.insert_txns.push_back(saga);
  ASSERT_TRUE(store_->Apply(seed).ok());
  req.__set_gtid("parked-1");
  req.__set_reason("fixed");
  client().retryNow(out, req);
  EXPECT_EQ(out.state, wire::TxnState::COMPENSATING);
  ASSERT_EQ(out.audit.size(), 1u);
  EXPECT_EQ(out.audit[0].action, "retry");
  EXPECT_EQ(out.audit[0].who.rfind("127.0.0.1:", 0), 0u) << out.audit[0].who;
  EXPECT_EQ(out.audit[0].reason, "fixed");
  EXPECT_EQ(out.audit[0].previous_state, "PARKED");
  EXPECT_EQ(out.audit[0].new_state, "COMPENSATING");
  // Cancel of a compensating saga: already so, nothing written.
  client().cancelSaga(out, req);
  EXPECT_EQ(out.audit.size(), 1u);
}

}  // namespace
INSTANTIATE_TEST_SUITE_P(Fronts, CoordinatorHandlerTest,
                         ::testing::Values(Front::kThreadPerConnection, Front::kEventLoop),
                         [](const ::testing::TestParamInfo<Front>& info) {
                           return info.param == Front::kEventLoop ? "EventLoop"
                                                                  : "ThreadPerConnection";
                         });

}  // namespace txc
