// CoordinatorAsyncHandler on a real CoordinatorService (SQLite), called as the
// generated asynchronous processor calls it: answers through cob / exn_cob.
// A scripted service holds or redirects the asynchronous answers to reach the
// deadline, the exactly-once rule and the fallbacks.
#include "coordinator/rpc/coordinator_async_handler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/backoff.h"
#include "common/peer_identity.h"
#include "coordinator/service/coordinator_service.h"
#include "coordinator/store/txn_store.h"

namespace txc {
namespace {

using apache::thrift::TDelayedException;

// The answer of one call: its response, or the wire exception's type and text.
template <typename Response>
class Answer {
 public:
  std::function<void(const Response&)> Cob() {
    return [this](const Response& r) { Set(r, "", ""); };
  }
  CoordinatorAsyncHandler::ExnCob Exn() {
    return [this](TDelayedException* e) {
      try {
        e->throw_it();
      } catch (const wire::Unavailable& u) {
        Set(std::nullopt, "Unavailable", u.message);
      } catch (const wire::NotFound& n) {
        Set(std::nullopt, "NotFound", n.message);
      } catch (const wire::InvalidArgument& i) {
        Set(std::nullopt, "InvalidArgument", i.message);
      } catch (const std::exception& x) {
        Set(std::nullopt, "other", x.what());
      }
    };
  }
  // Waits up to 10 s for the answer.
  bool Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [this] { return answers_ > 0; });
  }
  int answers() {
    std::lock_guard<std::mutex> lock(mu_);
    return answers_;
  }
  std::optional<Response> response;
  std::string error_type, error_message;

 private:
  void Set(std::optional<Response> r, std::string type, std::string message) {
    std::lock_guard<std::mutex> lock(mu_);
    if (answers_++ == 0) {
      response = std::move(r);
      error_type = std::move(type);
      error_message = std::move(message);
    }
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  int answers_ = 0;
};

// The real service, with the asynchronous answers under the test's control.
class ScriptedService : public CoordinatorService {
 public:
  using CoordinatorService::CoordinatorService;
  using Done = std::function<void(Result<TxnRecord>)>;

  bool hold_begins = false;
  // Set: CommitAsync takes every commit and gives `done` this answer on another thread.
  std::optional<Status> commit_async_answer;
  bool hold_commits = false;

  bool BeginAsync(const BeginOptions& options, Done done) override {
    if (!hold_begins) return CoordinatorService::BeginAsync(options, std::move(done));
    std::lock_guard<std::mutex> lock(mu_);
    held_.push_back(std::move(done));
    return true;
  }
  bool CommitAsync(const std::string&, Done done) override {
    if (hold_commits) {
      std::lock_guard<std::mutex> lock(mu_);
      held_.push_back(std::move(done));
      return true;
    }
    if (!commit_async_answer.has_value()) return false;
    std::thread([done = std::move(done), s = *commit_async_answer] { done(s); }).detach();
    return true;
  }
  Result<TxnRecord> Commit(const std::string& gtid, CommitWait, int64_t) override {
    std::lock_guard<std::mutex> lock(mu_);
    commit_callers_.push_back(CurrentPeerIdentity().address);
    return Status::NotFound("no transaction " + gtid + " (scripted full commit)");
  }
  // Answers every held call with `answer`.
  void Release(const Result<TxnRecord>& answer) {
    std::vector<Done> held;
    {
      std::lock_guard<std::mutex> lock(mu_);
      held.swap(held_);
    }
    for (auto& done : held) done(answer);
  }
  std::vector<std::string> CommitCallers() {
    std::lock_guard<std::mutex> lock(mu_);
    return commit_callers_;
  }

 private:
  std::mutex mu_;
  std::vector<Done> held_;
  std::vector<std::string> commit_callers_;
};

class CoordinatorAsyncHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/txc-async-handler-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto store = OpenStore(dir_ + "/coordinator.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    ASSERT_TRUE(store_->Migrate().ok());
    auto lease = store_->AcquireLease("node-a", "127.0.0.1:1", 60000, NowUnixMs());
    ASSERT_TRUE(lease.ok());
    log_ = std::make_unique<GroupCommitter>(store_.get(), GroupCommitOptions{});
    service_ = std::make_unique<ScriptedService>(store_.get(), log_.get(),
                                                 NodeInfo{"node-a", "127.0.0.1:1", lease->epoch});
    handler_ = std::make_unique<CoordinatorHandler>(service_.get());
    CoordinatorAsyncHandlerOptions options;
    options.begin_answer_timeout_ms = 200;
    options.deadline_scan_ms = 20;
    async_ = std::make_unique<CoordinatorAsyncHandler>(handler_.get(), options);
  }
  void TearDown() override {
    async_->Shutdown();
    async_.reset();
    handler_.reset();
    service_.reset();
    log_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string dir_;
  std::unique_ptr<TxnStore> store_;
  std::unique_ptr<GroupCommitter> log_;
  std::unique_ptr<ScriptedService> service_;
  std::unique_ptr<CoordinatorHandler> handler_;
  std::unique_ptr<CoordinatorAsyncHandler> async_;
};

TEST_F(CoordinatorAsyncHandlerTest, ABeginIsAnsweredOnceDurableByTheCommittersThread) {
  Answer<wire::BeginResponse> answer;
  wire::BeginRequest req;
  req.__set_timeout_ms(60000);
  async_->beginTxn(answer.Cob(), answer.Exn(), req);
  ASSERT_TRUE(answer.Wait());
  ASSERT_TRUE(answer.response.has_value()) << answer.error_type << ": " << answer.error_message;
  auto stored = store_->GetTxn(answer.response->gtid);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->state, TxnState::kActive);
  EXPECT_EQ(async_->PendingHotCalls(), 0u);
}

TEST_F(CoordinatorAsyncHandlerTest, AnInvalidBeginIsRefusedAtOnceAndWritesNothing) {
  Answer<wire::BeginResponse> answer;
  wire::BeginRequest req;
  req.__set_timeout_ms(-5);
  async_->beginTxn(answer.Cob(), answer.Exn(), req);
  ASSERT_TRUE(answer.Wait());
  EXPECT_EQ(answer.error_type, "InvalidArgument") << answer.error_message;
  EXPECT_EQ(log_->GetStats().batches, 0);
}

// A store call that hangs: the deadline answers "outcome unknown", and the
// late answer that follows is dropped (one answer per call).
TEST_F(CoordinatorAsyncHandlerTest, AHeldBeginIsAnsweredAtItsDeadlineAndOnlyOnce) {
  service_->hold_begins = true;
  Answer<wire::BeginResponse> answer;
  wire::BeginRequest req;
  req.__set_timeout_ms(60000);
  async_->beginTxn(answer.Cob(), answer.Exn(), req);
  ASSERT_TRUE(answer.Wait());
  EXPECT_EQ(answer.error_type, "Unavailable");
  EXPECT_NE(answer.error_message.find("outcome is unknown"), std::string::npos)
      << answer.error_message;
  TxnRecord late;
  late.gtid = "late";
  service_->Release(late);
  EXPECT_EQ(answer.answers(), 1);
  EXPECT_EQ(async_->PendingHotCalls(), 0u);
}

TEST_F(CoordinatorAsyncHandlerTest, AHeldCommitIsAnsweredAtItsWaitTimeout) {
  service_->hold_commits = true;
  Answer<wire::CommitResponse> answer;
  wire::CommitRequest req;
  req.gtid = "node-a-0123";
  req.wait_timeout_ms = 100;
  const int64_t start = MonotonicMs();
  async_->commit(answer.Cob(), answer.Exn(), req);
  ASSERT_TRUE(answer.Wait());
  EXPECT_GE(MonotonicMs() - start, 100);
  EXPECT_EQ(answer.error_type, "Unavailable");
  EXPECT_NE(answer.error_message.find("still deciding"), std::string::npos) << answer.error_message;
  service_->Release(Status::Conflict("late"));  // dropped: no second answer, no fallback
  EXPECT_EQ(answer.answers(), 1);
  EXPECT_TRUE(service_->CommitCallers().empty());
}

// The record moved on under the hot path: the full commit answers, on the
// pool, with the caller's identity current (it authorizes again).
TEST_F(CoordinatorAsyncHandlerTest, ACommitThatConflictsIsServedByTheFullCommitAsTheCaller) {
  service_->commit_async_answer = Status::Conflict("moved on");
  PeerIdentity caller;
  caller.address = "10.9.8.7:6543";
  SetCurrentPeerIdentity(caller);
  Answer<wire::CommitResponse> answer;
  wire::CommitRequest req;
  req.gtid = "node-a-0456";
  async_->commit(answer.Cob(), answer.Exn(), req);
  SetCurrentPeerIdentity(PeerIdentity{});
  ASSERT_TRUE(answer.Wait());
  EXPECT_EQ(answer.error_type, "NotFound") << answer.error_message;
  EXPECT_NE(answer.error_message.find("scripted full commit"), std::string::npos);
  EXPECT_EQ(service_->CommitCallers(), std::vector<std::string>{"10.9.8.7:6543"});
}

// A commit that waits for completion never takes the hot path.
TEST_F(CoordinatorAsyncHandlerTest, ACommitWaitingForCompletionRunsOnThePool) {
  service_->hold_commits = true;  // would hold it, were it taken
  Answer<wire::CommitResponse> answer;
  wire::CommitRequest req;
  req.gtid = "node-a-0789";
  req.wait = wire::CommitWait::WAIT_COMPLETION;
  async_->commit(answer.Cob(), answer.Exn(), req);
  ASSERT_TRUE(answer.Wait());
  EXPECT_EQ(answer.error_type, "NotFound") << answer.error_message;
  EXPECT_EQ(service_->CommitCallers().size(), 1u);
}

// Calls off the hot path see the caller's identity on the pool thread and
// several can wait at once (the pool grows).
TEST_F(CoordinatorAsyncHandlerTest, PoolCallsRunAsTheirCallerAndConcurrently) {
  const int kCalls = 12;  // more than the pool starts with
  std::vector<std::unique_ptr<Answer<wire::CommitResponse>>> answers;
  for (int i = 0; i < kCalls; ++i) {
    PeerIdentity caller;
    caller.address = "10.0.0." + std::to_string(i) + ":1";
    SetCurrentPeerIdentity(caller);
    answers.push_back(std::make_unique<Answer<wire::CommitResponse>>());
    wire::CommitRequest req;
    req.gtid = "node-a-1" + std::to_string(i);
    req.wait = wire::CommitWait::WAIT_COMPLETION;
    async_->commit(answers.back()->Cob(), answers.back()->Exn(), req);
  }
  SetCurrentPeerIdentity(PeerIdentity{});
  for (auto& a : answers) ASSERT_TRUE(a->Wait());
  std::vector<std::string> callers = service_->CommitCallers();
  std::sort(callers.begin(), callers.end());
  std::vector<std::string> expected;
  for (int i = 0; i < kCalls; ++i) expected.push_back("10.0.0." + std::to_string(i) + ":1");
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(callers, expected);
}

}  // namespace
}  // namespace txc
