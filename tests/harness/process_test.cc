#include "tests/harness/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

namespace txc {
namespace testing {
namespace {

TEST(ProcessTest, RunsWithEnvAndCapturesOutput) {
  TempDir dir;
  ChildProcess::Options o;
  o.argv = {"sh", "-c", "echo out=$TXC_HARNESS_VAR; echo err >&2; exit 3"};
  o.env = {{"TXC_HARNESS_VAR", "hello"}};
  o.log_path = dir.Child("log");
  auto child = ChildProcess::Start(o);
  ASSERT_TRUE(child.ok()) << child.status();
  auto exit = (*child)->Wait(10000);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 3);
  EXPECT_FALSE(exit->signaled());
  std::string log = ReadFileOrEmpty(dir.Child("log"));
  EXPECT_NE(log.find("out=hello"), std::string::npos) << log;
  EXPECT_NE(log.find("err"), std::string::npos) << log;
}

TEST(ProcessTest, SeparateStdout) {
  TempDir dir;
  ChildProcess::Options o;
  o.argv = {"sh", "-c", "echo to-stdout; echo to-stderr >&2"};
  o.log_path = dir.Child("log");
  o.stdout_path = dir.Child("out");
  ASSERT_TRUE(RunCommand(o, 10000).ok());
  EXPECT_EQ(ReadFileOrEmpty(dir.Child("out")), "to-stdout\n");
  EXPECT_EQ(ReadFileOrEmpty(dir.Child("log")), "to-stderr\n");
}

TEST(ProcessTest, KillAndWaitReportsSignal) {
  ChildProcess::Options o;
  o.argv = {"sleep", "30"};
  auto child = ChildProcess::Start(o);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_TRUE((*child)->IsRunning());
  auto early = (*child)->Wait(20);
  EXPECT_EQ(early.status().code(), StatusCode::kTimeout);
  ASSERT_TRUE((*child)->Kill(SIGKILL).ok());
  auto exit = (*child)->Wait(10000);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->signal, SIGKILL);
  EXPECT_FALSE((*child)->IsRunning());
}

TEST(ProcessTest, MissingBinaryIsAnError) {
  ChildProcess::Options o;
  o.argv = {"/nonexistent/txc-binary"};
  EXPECT_FALSE(ChildProcess::Start(o).ok());
}

TEST(ProcessTest, RunCommandTimesOut) {
  ChildProcess::Options o;
  o.argv = {"sleep", "30"};
  EXPECT_EQ(RunCommand(o, 50).code(), StatusCode::kTimeout);
}

TEST(ProcessTest, PortsAndWaits) {
  int port = FreeLoopbackPort();
  EXPECT_GT(port, 0);
  EXPECT_EQ(WaitForPort(port, 30).code(), StatusCode::kTimeout);
  int calls = 0;
  EXPECT_TRUE(WaitUntil([&] { return ++calls == 3; }, 5000));
  EXPECT_FALSE(WaitUntil([] { return false; }, 20));
}

TEST(TempDirTest, RemovedByDestructor) {
  std::string path;
  {
    TempDir dir("txc-tempdir-test-");
    path = dir.path();
    ChildProcess::Options o;
    o.argv = {"sh", "-c", "mkdir -p " + path + "/a/b && touch " + path + "/a/b/f"};
    ASSERT_TRUE(RunCommand(o, 5000).ok());
  }
  struct stat st;
  EXPECT_NE(stat(path.c_str(), &st), 0);
}

}  // namespace
}  // namespace testing
}  // namespace txc
