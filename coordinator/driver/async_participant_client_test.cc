// AsyncParticipantClient against real Thrift participant servers on loopback
// (framed binary, as every participant serves): a TThreadedServer with a test
// handler whose calls can be held at a gate, counted and made to fail.
#include "coordinator/driver/async_participant_client.h"

#include <gtest/gtest.h>
#include <thrift/server/TThreadedServer.h>
#include <thrift/transport/TServerSocket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/thrift_server.h"
#include "common/thrift_util.h"
#include "gen-cpp/Participant.h"
#include "tests/harness/process.h"
#include "tests/harness/test_certs.h"

namespace txc {
namespace {

using testing::WaitUntil;

constexpr int64_t kWaitMs = 10000;  // the longest any single wait in these tests may take

// What the handler saw of one call.
struct Seen {
  std::string method;
  wire::BranchRequest branch;  // prepare, commitOnePhase, commit, abort
  wire::StepRequest step;      // action, compensate
};

// A participant whose calls can be held: while the gate is closed, each call
// waits for a permit (or for the gate to open), at most kWaitMs.
class TestParticipant : public wire::ParticipantIf {
 public:
  ~TestParticipant() override { Open(); }

  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = false;
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void Permit(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    permits_ += n;
    cv_.notify_all();
  }

  std::atomic<bool> throw_unavailable{false};    // commitOnePhase, commit, abort
  std::atomic<bool> throw_runtime_error{false};  // every call: TApplicationException
  std::atomic<int> entered{0};
  std::atomic<int> finished{0};
  std::atomic<int> in_progress{0};
  std::atomic<int> max_in_progress{0};

  std::vector<Seen> seen() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  // Branch or step ids in the order the calls arrived.
  std::vector<std::string> arrival_order() const {
    std::vector<std::string> ids;
    for (const Seen& s : seen()) ids.push_back(s.branch.branch_id + s.step.step_id);
    return ids;
  }

  wire::Vote::type prepare(const wire::BranchRequest& req) override {
    Hold hold(this, Seen{"prepare", req, {}});
    if (req.payload == "read_only") return wire::Vote::VOTE_READ_ONLY;
    if (req.payload == "abort") return wire::Vote::VOTE_ABORT;
    return wire::Vote::VOTE_PREPARED;
  }
  wire::Outcome::type commitOnePhase(const wire::BranchRequest& req) override {
    Hold hold(this, Seen{"commitOnePhase", req, {}});
    MaybeUnavailable();
    if (req.payload == "pending") return wire::Outcome::OUTCOME_PENDING;
    if (req.payload == "abort") return wire::Outcome::OUTCOME_ABORT;
    return wire::Outcome::OUTCOME_COMMIT;
  }
  void commit(const wire::BranchRequest& req) override {
    Hold hold(this, Seen{"commit", req, {}});
    MaybeUnavailable();
  }
  void abort(const wire::BranchRequest& req) override {
    Hold hold(this, Seen{"abort", req, {}});
    MaybeUnavailable();
  }
  void action(wire::StepResult& result, const wire::StepRequest& req) override {
    Hold hold(this, Seen{"action", {}, req});
    result.outcome = req.payload == "fail"    ? wire::StepOutcome::FAILURE
                     : req.payload == "retry" ? wire::StepOutcome::RETRY_LATER
                                              : wire::StepOutcome::SUCCESS;
    result.message = req.payload == "big" ? std::string(4096, 'x') : "did " + req.name;
  }
  void compensate(wire::StepResult& result, const wire::StepRequest& req) override {
    Hold hold(this, Seen{"compensate", {}, req});
    result.outcome = wire::StepOutcome::SUCCESS;
    result.message = "undid " + req.name;
  }

 private:
  // Records the call, waits at the gate, counts the call finished on exit.
  class Hold {
   public:
    Hold(TestParticipant* p, Seen seen) : p_(p) {
      {
        std::lock_guard<std::mutex> lock(p_->mu_);
        p_->seen_.push_back(std::move(seen));
      }
      ++p_->entered;
      const int now = ++p_->in_progress;
      int max = p_->max_in_progress.load();
      while (now > max && !p_->max_in_progress.compare_exchange_weak(max, now)) {
      }
      std::unique_lock<std::mutex> lock(p_->mu_);
      p_->cv_.wait_for(lock, std::chrono::milliseconds(kWaitMs),
                       [&] { return p_->open_ || p_->permits_ > 0; });
      if (!p_->open_ && p_->permits_ > 0) --p_->permits_;
      lock.unlock();
      if (p_->throw_runtime_error) throw std::runtime_error("handler bug");
    }
    ~Hold() {
      --p_->in_progress;
      ++p_->finished;
    }

   private:
    TestParticipant* p_;
  };

  void MaybeUnavailable() {
    if (!throw_unavailable) return;
    wire::Unavailable u;
    u.message = "disk full";
    u.retry_after_ms = 0;
    throw u;
  }

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  bool open_ = true;
  int permits_ = 0;
  std::vector<Seen> seen_;
};

// Counts connections and signals readiness.
class ServerEvents : public apache::thrift::server::TServerEventHandler {
 public:
  explicit ServerEvents(std::shared_ptr<std::promise<void>> ready) : ready_(std::move(ready)) {}
  void preServe() override {
    if (ready_ != nullptr) ready_->set_value();
    ready_.reset();
  }
  void* createContext(std::shared_ptr<apache::thrift::protocol::TProtocol>,
                      std::shared_ptr<apache::thrift::protocol::TProtocol>) override {
    ++opened;
    return nullptr;
  }
  void deleteContext(void*, std::shared_ptr<apache::thrift::protocol::TProtocol>,
                     std::shared_ptr<apache::thrift::protocol::TProtocol>) override {
    ++closed;
  }
  std::atomic<int> opened{0};
  std::atomic<int> closed{0};

 private:
  std::shared_ptr<std::promise<void>> ready_;
};

// A framed binary TThreadedServer on a free loopback port.
class TestServer {
 public:
  TestServer() : handler(std::make_shared<TestParticipant>()) {
    auto config = MakeThriftConfig(kDefaultMaxMessageBytes);
    socket_ = std::make_shared<apache::thrift::transport::TServerSocket>("127.0.0.1", 0);
    server_ = std::make_shared<apache::thrift::server::TThreadedServer>(
        std::make_shared<wire::ParticipantProcessor>(handler), socket_,
        std::make_shared<ResettingFramedTransportFactory>(config), MakeProtocolFactory());
    auto ready = std::make_shared<std::promise<void>>();
    auto ready_future = ready->get_future();
    events_ = std::make_shared<ServerEvents>(ready);
    server_->setServerEventHandler(events_);
    thread_ = std::thread([this] { server_->serve(); });
    EXPECT_EQ(ready_future.wait_for(std::chrono::milliseconds(kWaitMs)), std::future_status::ready);
  }
  ~TestServer() {
    handler->Open();
    server_->stop();
    thread_.join();
  }
  int port() const { return socket_->getPort(); }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port()); }
  int opened() const { return events_->opened; }
  int closed() const { return events_->closed; }

  std::shared_ptr<TestParticipant> handler;

 private:
  std::shared_ptr<apache::thrift::transport::TServerSocket> socket_;
  std::shared_ptr<apache::thrift::server::TThreadedServer> server_;
  std::shared_ptr<ServerEvents> events_;
  std::thread thread_;
};

ParticipantCall MakeCall(const std::string& endpoint, const std::string& branch,
                         const std::string& payload = "") {
  ParticipantCall call;
  call.endpoint = endpoint;
  call.gtid = "gtid-" + branch;
  call.branch_id = branch;
  call.resource = "res-" + branch;
  call.name = "name-" + branch;
  call.payload = payload;
  call.attempt = 3;
  call.coordinators = {"c1:1", "c2:2"};
  call.deadline_ms = 1234567890123;
  call.timeout_ms = 5000;
  return call;
}

// Runs one call and waits (at most kWaitMs) for its callback.
template <typename R, typename Start>
R Sync(Start start) {
  auto promise = std::make_shared<std::promise<R>>();
  auto future = promise->get_future();
  start([promise](R r) { promise->set_value(std::move(r)); });
  if (future.wait_for(std::chrono::milliseconds(kWaitMs)) != std::future_status::ready) {
    return R(Status::Internal("test: no callback within the deadline"));
  }
  return future.get();
}

Result<BranchVote> PrepareSync(AsyncParticipantClient& client, ParticipantCall call) {
  return Sync<Result<BranchVote>>([&](auto done) { client.Prepare(std::move(call), done); });
}

// Counts each call's completions, to check "exactly once".
struct Completions {
  explicit Completions(int n) : counts(n) {
    for (auto& c : counts) c = 0;
  }
  std::vector<std::atomic<int>> counts;
  std::atomic<int> total{0};
  std::atomic<int> ok{0};
  std::mutex mu;
  std::vector<Status> statuses;  // guarded by mu
  void Done(int i, const Status& s) {
    {
      std::lock_guard<std::mutex> lock(mu);
      statuses.push_back(s);
    }
    if (s.ok()) ++ok;
    ++counts[i];
    ++total;
  }
};

TEST(AsyncParticipantClientTest, EachCallRoundTripsWithItsFields) {
  TestServer server;
  AsyncParticipantClient client({});
  const std::string ep = server.endpoint();

  Result<BranchVote> vote = PrepareSync(client, MakeCall(ep, "b1", "read_only"));
  ASSERT_TRUE(vote.ok()) << vote.status();
  EXPECT_EQ(*vote, BranchVote::kReadOnly);
  vote = PrepareSync(client, MakeCall(ep, "b1", "abort"));
  ASSERT_TRUE(vote.ok()) << vote.status();
  EXPECT_EQ(*vote, BranchVote::kAbort);

  Result<Outcome> outcome = Sync<Result<Outcome>>(
      [&](auto done) { client.CommitOnePhase(MakeCall(ep, "b2", "pending"), done); });
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(*outcome, Outcome::kPending);
  outcome = Sync<Result<Outcome>>(
      [&](auto done) { client.CommitOnePhase(MakeCall(ep, "b2", ""), done); });
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(*outcome, Outcome::kCommit);

  EXPECT_TRUE(Sync<Status>([&](auto done) { client.Commit(MakeCall(ep, "b3", "p3"), done); }).ok());
  EXPECT_TRUE(Sync<Status>([&](auto done) { client.Abort(MakeCall(ep, "b4", "p4"), done); }).ok());

  Result<StepAnswer> answer = Sync<Result<StepAnswer>>(
      [&](auto done) { client.Action(MakeCall(ep, "s5", "retry"), done); });
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->outcome, StepOutcome::kRetryLater);
  EXPECT_EQ(answer->message, "did name-s5");
  answer =
      Sync<Result<StepAnswer>>([&](auto done) { client.Action(MakeCall(ep, "s6", "fail"), done); });
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->outcome, StepOutcome::kFailure);
  answer = Sync<Result<StepAnswer>>(
      [&](auto done) { client.Compensate(MakeCall(ep, "s7", "p7"), done); });
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->outcome, StepOutcome::kSuccess);
  EXPECT_EQ(answer->message, "undid name-s7");

  const std::vector<Seen> seen = server.handler->seen();
  ASSERT_EQ(seen.size(), 9u);
  const std::vector<std::string> methods = {"prepare",        "prepare", "commitOnePhase",
                                            "commitOnePhase", "commit",  "abort",
                                            "action",         "action",  "compensate"};
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i].method, methods[i]) << i;
  // A branch call carries what ParticipantClient's ToWire sends.
  const wire::BranchRequest& commit = seen[4].branch;
  EXPECT_EQ(commit.gtid, "gtid-b3");
  EXPECT_EQ(commit.branch_id, "b3");
  EXPECT_EQ(commit.resource, "res-b3");
  EXPECT_EQ(commit.payload, "p3");
  EXPECT_EQ(commit.context.gtid, "gtid-b3");
  EXPECT_EQ(commit.context.coordinators, (std::vector<std::string>{"c1:1", "c2:2"}));
  EXPECT_EQ(commit.context.deadline_unix_ms, 1234567890123);
  ASSERT_TRUE(commit.context.__isset.branch_id);
  EXPECT_EQ(commit.context.branch_id, "b3");
  // A step call carries what the saga driver sends.
  const wire::StepRequest& comp = seen[8].step;
  EXPECT_EQ(comp.gtid, "gtid-s7");
  EXPECT_EQ(comp.step_id, "s7");
  EXPECT_EQ(comp.name, "name-s7");
  EXPECT_EQ(comp.payload, "p7");
  EXPECT_EQ(comp.attempt, 3);
  EXPECT_EQ(comp.context.gtid, "gtid-s7");
  EXPECT_EQ(comp.context.coordinators, (std::vector<std::string>{"c1:1", "c2:2"}));
  EXPECT_EQ(comp.context.deadline_unix_ms, 1234567890123);
  EXPECT_EQ(comp.context.branch_id, "s7");
  // Calls one after another share one connection.
  EXPECT_EQ(server.opened(), 1);
  EXPECT_EQ(client.PendingCalls(), 0u);
}

TEST(AsyncParticipantClientTest, HostNameEndpointIsResolved) {
  TestServer server;
  AsyncParticipantClient client({});
  Result<BranchVote> vote =
      PrepareSync(client, MakeCall("localhost:" + std::to_string(server.port()), "b"));
  ASSERT_TRUE(vote.ok()) << vote.status();
  EXPECT_EQ(*vote, BranchVote::kPrepared);
}

TEST(AsyncParticipantClientTest, ParticipantUnavailableIsUnavailableWithItsMessage) {
  TestServer server;
  AsyncParticipantClient client({});
  const std::string ep = server.endpoint();
  server.handler->throw_unavailable = true;
  Status commit = Sync<Status>([&](auto done) { client.Commit(MakeCall(ep, "b"), done); });
  EXPECT_EQ(commit.code(), StatusCode::kUnavailable) << commit;
  EXPECT_NE(commit.message().find("disk full"), std::string::npos) << commit;
  Result<Outcome> one_phase =
      Sync<Result<Outcome>>([&](auto done) { client.CommitOnePhase(MakeCall(ep, "b"), done); });
  EXPECT_EQ(one_phase.status().code(), StatusCode::kUnavailable) << one_phase.status();
  // A declared exception is a well-formed reply: the connection stays.
  EXPECT_EQ(server.opened(), 1);

  // A handler that throws something undeclared: TApplicationException.
  server.handler->throw_unavailable = false;
  server.handler->throw_runtime_error = true;
  Result<BranchVote> vote = PrepareSync(client, MakeCall(ep, "b"));
  EXPECT_EQ(vote.status().code(), StatusCode::kUnavailable) << vote.status();

  server.handler->throw_runtime_error = false;
  vote = PrepareSync(client, MakeCall(ep, "b", "read_only"));
  ASSERT_TRUE(vote.ok()) << vote.status();
  EXPECT_EQ(*vote, BranchVote::kReadOnly);
}

TEST(AsyncParticipantClientTest, TimeoutClosesTheConnectionAndTheNextCallWorks) {
  TestServer server;
  AsyncParticipantClient client({});
  const std::string ep = server.endpoint();
  ASSERT_TRUE(PrepareSync(client, MakeCall(ep, "warm")).ok());
  ASSERT_EQ(server.opened(), 1);

  server.handler->Close();
  ParticipantCall slow = MakeCall(ep, "slow", "abort");
  slow.timeout_ms = 100;
  Result<BranchVote> vote = PrepareSync(client, slow);
  EXPECT_EQ(vote.status().code(), StatusCode::kTimeout) << vote.status();

  // The late reply (VOTE_ABORT) goes to a connection the client closed: the
  // server sees it end once its handler returns.
  server.handler->Open();
  EXPECT_TRUE(WaitUntil([&] { return server.closed() == 1; }, kWaitMs));
  vote = PrepareSync(client, MakeCall(ep, "next", "read_only"));
  ASSERT_TRUE(vote.ok()) << vote.status();
  EXPECT_EQ(*vote, BranchVote::kReadOnly);
  EXPECT_EQ(server.opened(), 2);
}

TEST(AsyncParticipantClientTest, NothingListeningIsUnavailable) {
  AsyncParticipantClient client({});
  const std::string ep = "127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  Result<BranchVote> vote = PrepareSync(client, MakeCall(ep, "b"));
  EXPECT_EQ(vote.status().code(), StatusCode::kUnavailable) << vote.status();
  Status commit = Sync<Status>([&](auto done) { client.Commit(MakeCall(ep, "b"), done); });
  EXPECT_EQ(commit.code(), StatusCode::kUnavailable) << commit;
}

TEST(AsyncParticipantClientTest, MalformedEndpointIsInvalidArgument) {
  AsyncParticipantClient client({});
  Result<BranchVote> vote = PrepareSync(client, MakeCall("no-port", "b"));
  EXPECT_EQ(vote.status().code(), StatusCode::kInvalidArgument) << vote.status();
}

TEST(AsyncParticipantClientTest, AtMostMaxCallsPerEndpointAreSent) {
  TestServer server;
  AsyncParticipantClientOptions options;
  options.max_calls_per_endpoint = 2;
  AsyncParticipantClient client(options);
  server.handler->Close();
  Completions done(3);
  for (int i = 0; i < 3; ++i) {
    client.Prepare(MakeCall(server.endpoint(), "b" + std::to_string(i)),
                   [&done, i](Result<BranchVote> r) { done.Done(i, r.status()); });
  }
  ASSERT_TRUE(WaitUntil([&] { return server.handler->in_progress == 2; }, kWaitMs));
  // Two at the participant, the third queued in the client.
  EXPECT_EQ(server.handler->entered, 2);
  EXPECT_EQ(client.PendingCalls(), 3u);
  EXPECT_EQ(done.total, 0);

  server.handler->Permit(1);  // one finishes: the third goes out
  ASSERT_TRUE(WaitUntil([&] { return server.handler->entered == 3; }, kWaitMs));
  EXPECT_TRUE(WaitUntil([&] { return done.total == 1; }, kWaitMs));
  server.handler->Open();
  ASSERT_TRUE(WaitUntil([&] { return done.total == 3; }, kWaitMs));
  EXPECT_EQ(done.ok, 3);
  EXPECT_EQ(server.handler->max_in_progress, 2);
  EXPECT_EQ(client.PendingCalls(), 0u);
}

TEST(AsyncParticipantClientTest, CallNoLongerWantedIsCancelledAndNeverSent) {
  TestServer server;
  AsyncParticipantClientOptions options;
  options.max_calls_per_endpoint = 1;
  AsyncParticipantClient client(options);
  const std::string ep = server.endpoint();

  // On an idle endpoint: asked at once.
  ParticipantCall unwanted = MakeCall(ep, "unwanted-now");
  unwanted.still_wanted = [] { return false; };
  EXPECT_EQ(PrepareSync(client, unwanted).status().code(), StatusCode::kCancelled);

  // Queued behind a held call: asked when its turn comes, not at submission.
  server.handler->Close();
  Completions done(3);
  client.Prepare(MakeCall(ep, "blocker"),
                 [&done](Result<BranchVote> r) { done.Done(0, r.status()); });
  ASSERT_TRUE(WaitUntil([&] { return server.handler->entered == 1; }, kWaitMs));
  auto wanted = std::make_shared<std::atomic<bool>>(true);
  auto asked = std::make_shared<std::atomic<int>>(0);
  ParticipantCall queued = MakeCall(ep, "withdrawn");
  queued.still_wanted = [wanted, asked] {
    ++*asked;
    return wanted->load();
  };
  Status queued_status;
  client.Prepare(queued, [&done, &queued_status](Result<BranchVote> r) {
    queued_status = r.status();
    done.Done(1, r.status());
  });
  client.Prepare(MakeCall(ep, "after"),
                 [&done](Result<BranchVote> r) { done.Done(2, r.status()); });
  EXPECT_EQ(*asked, 0);
  *wanted = false;  // e.g. the decision was taken meanwhile
  server.handler->Open();
  ASSERT_TRUE(WaitUntil([&] { return done.total == 3; }, kWaitMs));
  EXPECT_EQ(queued_status.code(), StatusCode::kCancelled) << queued_status;
  EXPECT_EQ(*asked, 1);
  EXPECT_EQ(done.ok, 2);
  EXPECT_EQ(server.handler->arrival_order(), (std::vector<std::string>{"blocker", "after"}));
}

TEST(AsyncParticipantClientTest, ThrowingCallbackOrStillWantedDoesNotStallTheQueue) {
  TestServer server;
  AsyncParticipantClientOptions options;
  options.max_calls_per_endpoint = 1;
  AsyncParticipantClient client(options);
  const std::string ep = server.endpoint();
  server.handler->Close();
  std::atomic<int> threw{0};
  client.Prepare(MakeCall(ep, "throws"), [&threw](Result<BranchVote>) {
    ++threw;
    throw std::runtime_error("a buggy callback");
  });
  ASSERT_TRUE(WaitUntil([&] { return server.handler->entered == 1; }, kWaitMs));
  ParticipantCall queued = MakeCall(ep, "queued", "read_only");
  queued.still_wanted = []() -> bool { throw std::runtime_error("a buggy still_wanted"); };
  auto promise = std::make_shared<std::promise<Result<BranchVote>>>();
  auto future = promise->get_future();
  client.Prepare(queued, [promise](Result<BranchVote> r) { promise->set_value(std::move(r)); });
  server.handler->Open();
  ASSERT_EQ(future.wait_for(std::chrono::milliseconds(kWaitMs)), std::future_status::ready);
  Result<BranchVote> vote = future.get();
  ASSERT_TRUE(vote.ok()) << vote.status();  // a throwing still_wanted counts as "wanted"
  EXPECT_EQ(*vote, BranchVote::kReadOnly);
  EXPECT_EQ(threw, 1);
}

TEST(AsyncParticipantClientTest, FinishingCallsAlternateWithQueuedPrepares) {
  TestServer server;
  AsyncParticipantClientOptions options;
  options.max_calls_per_endpoint = 1;
  AsyncParticipantClient client(options);
  const std::string ep = server.endpoint();
  server.handler->Close();
  constexpr int kPrepares = 10;
  Completions done(kPrepares + 2);
  client.Prepare(MakeCall(ep, "blocker"),
                 [&done](Result<BranchVote> r) { done.Done(0, r.status()); });
  ASSERT_TRUE(WaitUntil([&] { return server.handler->entered == 1; }, kWaitMs));
  for (int i = 0; i < kPrepares; ++i) {
    client.Prepare(MakeCall(ep, "p" + std::to_string(i)),
                   [&done, i](Result<BranchVote> r) { done.Done(1 + i, r.status()); });
  }
  client.Commit(MakeCall(ep, "commit"), [&done](Status s) { done.Done(kPrepares + 1, s); });
  server.handler->Open();
  ASSERT_TRUE(WaitUntil([&] { return done.total == kPrepares + 2; }, kWaitMs));
  EXPECT_EQ(done.ok, kPrepares + 2);

  const std::vector<std::string> order = server.handler->arrival_order();
  ASSERT_EQ(order.size(), static_cast<size_t>(kPrepares + 2));
  size_t commit_at = 0;
  while (commit_at < order.size() && order[commit_at] != "commit") ++commit_at;
  // Served alternately: the commit goes out right after the held call, not
  // behind the ten prepares queued ahead of it.
  EXPECT_LE(commit_at, 2u) << "commit was call #" << commit_at;
  // Prepares keep their order.
  std::vector<std::string> prepares;
  for (const std::string& id : order) {
    if (id[0] == 'p') prepares.push_back(id);
  }
  for (int i = 0; i < kPrepares; ++i) EXPECT_EQ(prepares[i], "p" + std::to_string(i));
}

TEST(AsyncParticipantClientTest, SlowEndpointDoesNotDelayAnother) {
  TestServer slow;
  TestServer fast;
  AsyncParticipantClientOptions options;
  options.io_threads = 1;
  options.max_calls_per_endpoint = 2;
  AsyncParticipantClient client(options);
  slow.handler->Close();
  Completions slow_done(3);
  for (int i = 0; i < 3; ++i) {
    client.Prepare(MakeCall(slow.endpoint(), "s" + std::to_string(i)),
                   [&slow_done, i](Result<BranchVote> r) { slow_done.Done(i, r.status()); });
  }
  ASSERT_TRUE(WaitUntil([&] { return slow.handler->in_progress == 2; }, kWaitMs));
  for (int i = 0; i < 5; ++i) {
    Result<BranchVote> vote = PrepareSync(client, MakeCall(fast.endpoint(), "f", "read_only"));
    ASSERT_TRUE(vote.ok()) << vote.status();
    EXPECT_EQ(*vote, BranchVote::kReadOnly);
  }
  Result<StepAnswer> answer = Sync<Result<StepAnswer>>(
      [&](auto done) { client.Action(MakeCall(fast.endpoint(), "a"), done); });
  EXPECT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(slow_done.total, 0);  // still held
  slow.handler->Open();
  ASSERT_TRUE(WaitUntil([&] { return slow_done.total == 3; }, kWaitMs));
  EXPECT_EQ(slow_done.ok, 3);
}

// Submits `n` prepares from the client's only I/O thread (inside After), so
// that every one of them is ready before any is written.
void PrepareTogether(AsyncParticipantClient& client, const std::string& endpoint, int n,
                     Completions* done, int timeout_ms = 5000) {
  std::promise<void> submitted;
  client.After(0, [&] {
    for (int i = 0; i < n; ++i) {
      ParticipantCall call = MakeCall(endpoint, "t" + std::to_string(i));
      call.timeout_ms = timeout_ms;
      client.Prepare(std::move(call),
                     [done, i](Result<BranchVote> r) { done->Done(i, r.status()); });
    }
    submitted.set_value();
  });
  ASSERT_EQ(submitted.get_future().wait_for(std::chrono::milliseconds(kWaitMs)),
            std::future_status::ready);
}

// Warms an endpoint's reply latency up (8 answered calls, one at a time).
void WarmUp(AsyncParticipantClient& client, const std::string& endpoint) {
  for (int i = 0; i < 8; ++i) {
    Result<BranchVote> vote = PrepareSync(client, MakeCall(endpoint, "w" + std::to_string(i)));
    ASSERT_TRUE(vote.ok()) << vote.status();
  }
}

// Calls that become ready together for a participant that answers fast go
// out as one batch on one connection (stock Thrift server: plain pipelining),
// answered in order, at most max_batch_calls per batch.
TEST(AsyncParticipantClientTest, CallsReadyTogetherForAFastParticipantShareAConnection) {
  TestServer server;
  AsyncParticipantClientOptions options;
  options.io_threads = 1;
  options.max_batch_calls = 4;
  options.batch_below_us = 60'000'000;  // every participant counts as fast here
  AsyncParticipantClient client(options);
  WarmUp(client, server.endpoint());
  EXPECT_EQ(server.opened(), 1);
  Completions done(10);
  PrepareTogether(client, server.endpoint(), 10, &done);
  ASSERT_TRUE(WaitUntil([&] { return done.total == 10; }, kWaitMs));
  EXPECT_EQ(done.ok, 10);
  // The idle connection took the first four, two new ones four and two.
  EXPECT_EQ(server.opened(), 3);
  std::vector<std::string> order = server.handler->arrival_order();
  ASSERT_EQ(order.size(), 18u);
  // Each batch is served in order on its connection (t0-t3, t4-t7, t8-t9);
  // the three connections' server threads may interleave.
  auto position = [&](int i) {
    return std::find(order.begin(), order.end(), "t" + std::to_string(i)) - order.begin();
  };
  for (int i : {0, 1, 2, 4, 5, 6, 8}) EXPECT_LT(position(i), position(i + 1)) << i;
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(done.counts[i], 1) << i;
  EXPECT_EQ(client.PendingCalls(), 0u);
}

// A participant whose replies are slow gets one call per connection: its
// calls are served side by side, not one after another.
TEST(AsyncParticipantClientTest, SlowParticipantGetsOneCallPerConnection) {
  TestServer server;
  AsyncParticipantClientOptions options;
  options.io_threads = 1;
  options.batch_below_us = 50'000;
  AsyncParticipantClient client(options);
  // Eight answers that each took at least 150 ms.
  server.handler->Close();
  Completions slow(8);
  PrepareTogether(client, server.endpoint(), 8, &slow);
  ASSERT_TRUE(WaitUntil([&] { return server.handler->in_progress == 8; }, kWaitMs));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  server.handler->Open();
  ASSERT_TRUE(WaitUntil([&] { return slow.total == 8; }, kWaitMs));
  EXPECT_EQ(slow.ok, 8);
  server.handler->Close();
  server.handler->max_in_progress = 0;
  Completions done(4);
  PrepareTogether(client, server.endpoint(), 4, &done);
  EXPECT_TRUE(WaitUntil([&] { return server.handler->in_progress == 4; }, kWaitMs));
  server.handler->Open();
  ASSERT_TRUE(WaitUntil([&] { return done.total == 4; }, kWaitMs));
  EXPECT_EQ(done.ok, 4);
  EXPECT_EQ(server.handler->max_in_progress, 4);
}

// A batch's timer ends every unanswered call of the batch (kTimeout) and the
// connection; the next call works on a new one.
TEST(AsyncParticipantClientTest, BatchTimeoutEndsEveryUnansweredCallAndTheNextCallWorks) {
  TestServer server;
  AsyncParticipantClientOptions options;
  options.io_threads = 1;
  options.batch_below_us = 60'000'000;
  AsyncParticipantClient client(options);
  WarmUp(client, server.endpoint());
  server.handler->Close();
  server.handler->Permit(1);  // the first call of the batch is answered
  Completions done(3);
  PrepareTogether(client, server.endpoint(), 3, &done, 300);
  ASSERT_TRUE(WaitUntil([&] { return done.total == 3; }, kWaitMs));
  EXPECT_EQ(done.ok, 1);
  int timeouts = 0;
  {
    std::lock_guard<std::mutex> lock(done.mu);
    for (const Status& s : done.statuses) {
      if (s.code() == StatusCode::kTimeout) {
        ++timeouts;
        EXPECT_NE(s.message().find("prepare to participant"), std::string::npos) << s;
      }
    }
  }
  EXPECT_EQ(timeouts, 2);
  EXPECT_EQ(done.counts[0], 1);
  server.handler->Open();
  Result<BranchVote> vote = PrepareSync(client, MakeCall(server.endpoint(), "after"));
  EXPECT_TRUE(vote.ok()) << vote.status();
  EXPECT_EQ(client.PendingCalls(), 0u);
}

TEST(AsyncParticipantClientTest, TwoThousandConcurrentCallsOnOneIoThreadAllComplete) {
  TestServer server;
  AsyncParticipantClientOptions options;
  options.io_threads = 1;
  AsyncParticipantClient client(options);
  constexpr int kCalls = 2000;
  Completions done(kCalls);
  std::atomic<int> wrong_vote{0};
  for (int i = 0; i < kCalls; ++i) {
    const bool read_only = i % 2 == 0;
    client.Prepare(
        MakeCall(server.endpoint(), "b" + std::to_string(i), read_only ? "read_only" : ""),
        [&done, &wrong_vote, i, read_only](Result<BranchVote> r) {
          if (r.ok() && *r != (read_only ? BranchVote::kReadOnly : BranchVote::kPrepared)) {
            ++wrong_vote;
          }
          done.Done(i, r.status());
        });
  }
  ASSERT_TRUE(WaitUntil([&] { return done.total == kCalls; }, 60000));
  EXPECT_EQ(done.ok, kCalls);
  EXPECT_EQ(wrong_vote, 0);
  for (int i = 0; i < kCalls; ++i) EXPECT_EQ(done.counts[i], 1) << i;
  EXPECT_LE(server.handler->max_in_progress,
            AsyncParticipantClientOptions{}.max_calls_per_endpoint);
  EXPECT_EQ(client.PendingCalls(), 0u);
}

TEST(AsyncParticipantClientTest, ManySubmittersOnSeveralIoThreadsCompleteEachCallOnce) {
  TestServer server_a;
  TestServer server_b;
  AsyncParticipantClientOptions options;
  options.io_threads = 4;
  options.max_calls_per_endpoint = 8;
  options.max_idle_per_endpoint = 4;  // connections are also closed and reopened
  AsyncParticipantClient client(options);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  Completions done(kThreads * kPerThread);
  std::atomic<int> cancelled{0};
  std::vector<std::thread> submitters;
  for (int t = 0; t < kThreads; ++t) {
    submitters.emplace_back([&, t] {
      for (int k = 0; k < kPerThread; ++k) {
        const int i = t * kPerThread + k;
        ParticipantCall call =
            MakeCall(i % 2 ? server_a.endpoint() : server_b.endpoint(), "b" + std::to_string(i));
        if (i % 7 == 0) call.still_wanted = [] { return false; };
        auto status_done = [&done, &cancelled, i](const Status& s) {
          if (s.code() == StatusCode::kCancelled) ++cancelled;
          done.Done(i, s);
        };
        switch (i % 6) {
          case 0:
            client.Prepare(call, [status_done](Result<BranchVote> r) { status_done(r.status()); });
            break;
          case 1:
            client.CommitOnePhase(call,
                                  [status_done](Result<Outcome> r) { status_done(r.status()); });
            break;
          case 2: client.Commit(call, status_done); break;
          case 3: client.Abort(call, status_done); break;
          case 4:
            client.Action(call, [status_done](Result<StepAnswer> r) { status_done(r.status()); });
            break;
          default:
            client.Compensate(call,
                              [status_done](Result<StepAnswer> r) { status_done(r.status()); });
            break;
        }
      }
    });
  }
  for (auto& t : submitters) t.join();
  ASSERT_TRUE(WaitUntil([&] { return done.total == kThreads * kPerThread; }, 60000));
  int expected_cancelled = 0;
  for (int i = 0; i < kThreads * kPerThread; ++i) {
    EXPECT_EQ(done.counts[i], 1) << i;
    if (i % 7 == 0) ++expected_cancelled;
  }
  EXPECT_EQ(cancelled, expected_cancelled);
  EXPECT_EQ(done.ok, kThreads * kPerThread - expected_cancelled);
  EXPECT_EQ(server_a.handler->entered + server_b.handler->entered,
            kThreads * kPerThread - expected_cancelled);
  EXPECT_LE(server_a.handler->max_in_progress, 8);
  EXPECT_EQ(client.PendingCalls(), 0u);
}

TEST(AsyncParticipantClientTest, LargeRequestsAndRepliesRoundTrip) {
  TestServer server;
  AsyncParticipantClient client({});
  const std::string ep = server.endpoint();
  for (int i = 0; i < 3; ++i) {
    // A reply longer than one read (4 KiB), then a short one on the same connection.
    Result<StepAnswer> answer =
        Sync<Result<StepAnswer>>([&](auto done) { client.Action(MakeCall(ep, "s", "big"), done); });
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(answer->message, std::string(4096, 'x'));
    answer = Sync<Result<StepAnswer>>([&](auto done) { client.Action(MakeCall(ep, "t"), done); });
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(answer->message, "did name-t");
  }
  const std::string payload(1 << 20, 'p');
  Status commit =
      Sync<Status>([&](auto done) { client.Commit(MakeCall(ep, "big", payload), done); });
  ASSERT_TRUE(commit.ok()) << commit;
  const std::vector<Seen> seen = server.handler->seen();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().branch.payload, payload);
  EXPECT_EQ(server.opened(), 1);
}

TEST(AsyncParticipantClientTest, ReplyLargerThanMaxMessageBytesIsAnError) {
  TestServer server;
  AsyncParticipantClientOptions options;
  options.max_message_bytes = 1024;
  AsyncParticipantClient client(options);
  const std::string ep = server.endpoint();
  Result<StepAnswer> answer =
      Sync<Result<StepAnswer>>([&](auto done) { client.Action(MakeCall(ep, "s", "big"), done); });
  EXPECT_EQ(answer.status().code(), StatusCode::kUnavailable) << answer.status();
  EXPECT_NE(answer.status().message().find("limit 1024"), std::string::npos) << answer.status();
  // The rest of that reply is never read as the next one: a new connection.
  answer = Sync<Result<StepAnswer>>([&](auto done) { client.Action(MakeCall(ep, "s2"), done); });
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->message, "did name-s2");
  EXPECT_EQ(server.opened(), 2);
}

TEST(AsyncParticipantClientTest, AfterRunsTheFunctionOnce) {
  AsyncParticipantClient client({});
  std::atomic<int> runs{0};
  client.After(5, [&runs] { ++runs; });
  client.After(0, [&runs] { ++runs; });
  EXPECT_TRUE(WaitUntil([&] { return runs == 2; }, kWaitMs));
}

TEST(AsyncParticipantClientTest, DestructorCompletesQueuedAndOutstandingCalls) {
  TestServer server;
  AsyncParticipantClientOptions options;
  options.max_calls_per_endpoint = 1;
  auto client = std::make_unique<AsyncParticipantClient>(options);
  server.handler->Close();
  constexpr int kCalls = 4;
  auto done = std::make_shared<Completions>(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    ParticipantCall call = MakeCall(server.endpoint(), "b" + std::to_string(i));
    if (i == 0) {
      client->Prepare(call, [done, i](Result<BranchVote> r) { done->Done(i, r.status()); });
    } else if (i == 1) {
      client->Commit(call, [done, i](Status s) { done->Done(i, s); });
    } else {
      client->Action(call, [done, i](Result<StepAnswer> r) { done->Done(i, r.status()); });
    }
  }
  ASSERT_TRUE(WaitUntil([&] { return server.handler->entered == 1; }, kWaitMs));
  auto after_ran = std::make_shared<std::atomic<bool>>(false);
  client->After(60000, [after_ran] { *after_ran = true; });
  EXPECT_EQ(client->PendingCalls(), static_cast<size_t>(kCalls));

  client.reset();
  EXPECT_EQ(done->total, kCalls);
  {
    std::lock_guard<std::mutex> lock(done->mu);
    for (const Status& s : done->statuses) {
      EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
      EXPECT_NE(s.message().find("shutting down"), std::string::npos) << s;
    }
  }
  // The held call's reply arrives after the client is gone: nothing more runs.
  server.handler->Open();
  ASSERT_TRUE(WaitUntil([&] { return server.closed() == 1; }, kWaitMs));
  for (int i = 0; i < kCalls; ++i) EXPECT_EQ(done->counts[i], 1) << i;
  EXPECT_FALSE(*after_ran);
}

// ---- TLS ----------------------------------------------------------------------

// A participant ThriftServer with mutual TLS, certificates from a throwaway CA.
class TlsParticipant {
 public:
  explicit TlsParticipant(const TlsOptions& tls) : handler(std::make_shared<TestParticipant>()) {
    ThriftServerOptions o{"127.0.0.1", 0};
    o.tls = tls;
    server_ =
        std::make_unique<ThriftServer>(std::make_shared<wire::ParticipantProcessor>(handler), o);
    Status started = server_->Start();
    EXPECT_TRUE(started.ok()) << started;
  }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  std::shared_ptr<TestParticipant> handler;

 private:
  std::unique_ptr<ThriftServer> server_;
};

class AsyncParticipantClientTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = testing::TestCa::Create("async-client-ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(ca).value();
    auto server = ca_->IssueLoopbackServer("participant");
    auto coordinator = ca_->Issue("coordinator", "coordinator");
    ASSERT_TRUE(server.ok() && coordinator.ok());
    server_ = *server;
    coordinator_ = *coordinator;
  }
  AsyncParticipantClientOptions ClientOptions(const TlsOptions& tls) {
    AsyncParticipantClientOptions o;
    o.tls = tls;
    return o;
  }
  std::unique_ptr<testing::TestCa> ca_;
  testing::TestCa::Issued server_, coordinator_;
};

TEST_F(AsyncParticipantClientTlsTest, CallsGoOverMutualTlsAndReuseTheConnection) {
  TlsParticipant participant(ca_->Options(server_));
  AsyncParticipantClient client(ClientOptions(ca_->Options(coordinator_)));
  for (int i = 0; i < 3; ++i) {
    Result<BranchVote> vote = PrepareSync(client, MakeCall(participant.endpoint(), "b1"));
    ASSERT_TRUE(vote.ok()) << vote.status();
    EXPECT_EQ(*vote, BranchVote::kPrepared);
  }
  Result<StepAnswer> answer = Sync<Result<StepAnswer>>(
      [&](auto done) { client.Action(MakeCall(participant.endpoint(), "s1"), done); });
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->message, "did name-s1");
  EXPECT_TRUE(client.ReloadTls().ok());
  EXPECT_TRUE(PrepareSync(client, MakeCall(participant.endpoint(), "b2")).ok());
}

TEST_F(AsyncParticipantClientTlsTest, ParticipantFromAnotherCaIsRefusedInTheHandshake) {
  TlsParticipant participant(ca_->Options(server_));
  auto other = testing::TestCa::Create("other-ca");
  ASSERT_TRUE(other.ok());
  TlsOptions tls = ca_->Options(coordinator_);
  tls.ca_file = (*other)->ca_file();
  AsyncParticipantClient client(ClientOptions(tls));
  Result<BranchVote> vote = PrepareSync(client, MakeCall(participant.endpoint(), "b1"));
  ASSERT_FALSE(vote.ok());
  EXPECT_EQ(vote.status().code(), StatusCode::kUnavailable) << vote.status();
  EXPECT_NE(vote.status().message().find("TLS handshake with participant"), std::string::npos)
      << vote.status();
  EXPECT_EQ(participant.handler->entered.load(), 0);
}

TEST_F(AsyncParticipantClientTlsTest, ParticipantCertificateMustNameTheEndpointHost) {
  auto elsewhere = ca_->Issue("elsewhere", "db", {"DNS:db.example.org"});
  ASSERT_TRUE(elsewhere.ok());
  TlsParticipant participant(ca_->Options(*elsewhere));
  AsyncParticipantClient client(ClientOptions(ca_->Options(coordinator_)));
  Result<BranchVote> vote = PrepareSync(client, MakeCall(participant.endpoint(), "b1"));
  ASSERT_FALSE(vote.ok());
  EXPECT_NE(vote.status().message().find("does not name '127.0.0.1'"), std::string::npos)
      << vote.status();
}

TEST_F(AsyncParticipantClientTlsTest, PlaintextParticipantFailsFast) {
  TlsParticipant participant(TlsOptions{});  // plaintext
  AsyncParticipantClient client(ClientOptions(ca_->Options(coordinator_)));
  ParticipantCall call = MakeCall(participant.endpoint(), "b1");
  call.timeout_ms = 30000;
  Result<BranchVote> vote = PrepareSync(client, call);
  ASSERT_FALSE(vote.ok());
  EXPECT_EQ(vote.status().code(), StatusCode::kUnavailable) << vote.status();
  EXPECT_NE(vote.status().message().find("TLS handshake with participant"), std::string::npos)
      << vote.status();
}

// --participant_tls_crl: a revoked participant certificate is refused in the
// handshake; ReloadTls reads a new CRL for new connections.
TEST_F(AsyncParticipantClientTlsTest, RevokedParticipantIsRefusedAfterReload) {
  TlsParticipant participant(ca_->Options(server_));
  TlsOptions tls = ca_->Options(coordinator_);
  tls.crl_file = ca_->dir() + "/crl.pem";
  ASSERT_TRUE(ca_->WriteCrl(tls.crl_file).ok());  // nothing revoked yet
  AsyncParticipantClientOptions options = ClientOptions(tls);
  options.max_idle_per_endpoint = 0;  // every call opens a connection (and runs a handshake)
  AsyncParticipantClient client(options);
  Result<BranchVote> vote = PrepareSync(client, MakeCall(participant.endpoint(), "b1"));
  ASSERT_TRUE(vote.ok()) << vote.status();
  ASSERT_TRUE(ca_->Revoke(server_).ok());
  ASSERT_TRUE(ca_->WriteCrl(tls.crl_file).ok());
  ASSERT_TRUE(client.ReloadTls().ok());
  vote = PrepareSync(client, MakeCall(participant.endpoint(), "b2"));
  ASSERT_FALSE(vote.ok());
  EXPECT_NE(vote.status().message().find("certificate revoked"), std::string::npos)
      << vote.status();
  EXPECT_EQ(participant.handler->entered.load(), 1);
}

TEST_F(AsyncParticipantClientTlsTest, UnloadableFilesFailEveryCallNamingThem) {
  TlsOptions tls = ca_->Options(coordinator_);
  tls.cert_file = "/nonexistent/coordinator.pem";
  AsyncParticipantClient client(ClientOptions(tls));
  Result<BranchVote> vote = PrepareSync(client, MakeCall("127.0.0.1:1", "b1"));
  ASSERT_FALSE(vote.ok());
  EXPECT_NE(vote.status().message().find("/nonexistent/coordinator.pem"), std::string::npos)
      << vote.status();
  EXPECT_FALSE(client.ReloadTls().ok());
}

}  // namespace
}  // namespace txc
