// SIGKILL durability: a child process writes through a GroupCommitter and
// prints every acknowledged gtid; the test kills it mid-stream (and, on
// PostgreSQL, crashes the server too with pg_ctl stop -m immediate), reopens
// the store and checks that every acknowledged record is there.
#include <gtest/gtest.h>
#include <signal.h>

#include <sstream>
#include <string>
#include <vector>

#include "coordinator/store/txn_store.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"

namespace txc {
namespace testing {
namespace {

std::vector<std::string> CompleteLines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (true) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) break;  // a torn last line was not acknowledged in full
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

class CrashDurabilityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CrashDurabilityTest, EveryAcknowledgedWriteSurvivesSigkill) {
  TempDir dir("txc-crash-");
  std::unique_ptr<PgCluster> pg;
  std::string location;
  if (GetParam() == "sqlite") {
    location = dir.Child("txc.db");
  } else {
    auto started = PgCluster::Start({});  // our own: the test crashes it
    ASSERT_TRUE(started.ok()) << started.status();
    pg = std::move(started).value();
    ASSERT_TRUE(pg->CreateDatabase("crash").ok());
    location = pg->ConnectionString("crash");
  }
  {
    auto store = OpenStore(location);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Migrate().ok());
  }

  ChildProcess::Options o;
  o.argv = {SelfExeDir() + "/store_write_child", location, "ack", "16", "1000000"};
  o.stdout_path = dir.Child("acks.txt");
  o.log_path = dir.Child("child.log");
  auto child = ChildProcess::Start(o);
  ASSERT_TRUE(child.ok()) << child.status();
  const size_t kAcksBeforeKill = 1500;
  bool enough = WaitUntil(
      [&] { return CompleteLines(ReadFileOrEmpty(o.stdout_path)).size() >= kAcksBeforeKill; },
      60000);
  ASSERT_TRUE(enough) << "child log:\n" << (*child)->LogTail();
  ASSERT_TRUE((*child)->Kill(SIGKILL).ok());
  auto exit = (*child)->Wait(10000);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->signal, SIGKILL)
      << "the child ended before the kill: " << exit->ToString() << "\n"
      << (*child)->LogTail();
  if (pg != nullptr) {
    ASSERT_TRUE(pg->Stop("immediate").ok());  // a server crash: only fsync-ed commits survive
    ASSERT_TRUE(pg->Restart().ok());
  }

  const std::vector<std::string> acked = CompleteLines(ReadFileOrEmpty(o.stdout_path));
  ASSERT_GE(acked.size(), kAcksBeforeKill);
  auto store = OpenStore(location);
  ASSERT_TRUE(store.ok()) << store.status();
  size_t missing = 0;
  for (const std::string& gtid : acked) {
    auto t = (*store)->GetTxn(gtid);
    if (!t.ok()) {
      if (++missing <= 5) ADD_FAILURE() << "acknowledged " << gtid << " lost: " << t.status();
      continue;
    }
    EXPECT_EQ(t->payload, std::string("\0ack\0", 5) + gtid);
    auto branches = (*store)->GetBranches(gtid);
    ASSERT_TRUE(branches.ok());
    EXPECT_EQ(branches->size(), 2u) << gtid;
  }
  EXPECT_EQ(missing, 0u) << "of " << acked.size() << " acknowledged";
  // Nothing half-written: every stored transaction has both its branches.
  auto stored = (*store)->ListDue({TxnState::kActive}, "crash-child", 1, 1, 10000000);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_GE(stored->size(), acked.size());
  for (const TxnRecord& t : *stored) {
    auto branches = (*store)->GetBranches(t.gtid);
    ASSERT_TRUE(branches.ok());
    ASSERT_EQ(branches->size(), 2u) << t.gtid;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, CrashDurabilityTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace testing
}  // namespace txc
