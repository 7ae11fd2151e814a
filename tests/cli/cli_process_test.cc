// Every binary we ship answers --help (exit 0), takes `--flag value` as well as
// `--flag=value`, and refuses an unknown flag or a bad value with one clear
// line and exit code 2 (common/cli.h) -- instead of an uncaught std::stoi
// exception (order_service --port 7000 used to abort) or silently ignoring it.
// Only ServicesTakeFlagSpaceValue serves anything; its services get the
// suite's transport (suite_tls.h: mutual TLS under TXC_TEST_TLS=1).
#include <gtest/gtest.h>
#include <signal.h>

#include <string>
#include <vector>

#include "tests/harness/process.h"
#include "tests/harness/suite_tls.h"

namespace txc {
namespace {

using testing::ChildProcess;

constexpr int64_t kWaitMs = 20000;

struct Binary {
  const char* name;
  const char* path;
  std::vector<std::string> required;  // flags that make the command line complete
};

const std::vector<Binary>& Binaries() {
  static const std::vector<Binary> binaries = {
      {"order_service", TXC_ORDER_SERVICE_BIN, {"--db=/nonexistent/x.db"}},
      {"payment_service", TXC_PAYMENT_SERVICE_BIN, {"--db=/nonexistent/x.db"}},
      {"inventory_service", TXC_INVENTORY_SERVICE_BIN, {"--db=/nonexistent/x.db"}},
      {"order_client", TXC_ORDER_CLIENT_BIN, {"--order=h:1", "--payment=h:2", "--inventory=h:3"}},
      {"bank", TXC_BANK_BIN, {"--db=host=/nonexistent"}},
      {"transfer",
       TXC_TRANSFER_BIN,
       {"--coordinators=h:1", "--bank_a=h:2", "--bank_b=h:3", "--bank_a_db=x", "--bank_b_db=y"}},
      {"rpc_context_inventory", TXC_RPC_CONTEXT_INVENTORY_BIN, {}},
      {"rpc_context_client", TXC_RPC_CONTEXT_CLIENT_BIN, {}},
  };
  return binaries;
}

struct Outcome {
  testing::ExitStatus exit;
  std::string out, err;
};

Outcome RunToEnd(std::vector<std::string> argv, const testing::TempDir& dir) {
  ChildProcess::Options o;
  o.argv = std::move(argv);
  o.stdout_path = dir.Child("stdout");
  o.log_path = dir.Child("stderr");
  auto child = ChildProcess::Start(o);
  EXPECT_TRUE(child.ok()) << child.status();
  Outcome r;
  if (!child.ok()) return r;
  auto exit = (*child)->Wait(kWaitMs);
  EXPECT_TRUE(exit.ok()) << o.argv[0] << ": " << exit.status();
  if (exit.ok()) r.exit = *exit;
  r.out = testing::ReadFileOrEmpty(o.stdout_path);
  r.err = testing::ReadFileOrEmpty(o.log_path);
  std::remove(o.log_path.c_str());  // log_path is appended to
  return r;
}

TEST(CliProcessTest, HelpPrintsUsageAndExitsZero) {
  testing::TempDir dir("txc-cli-");
  for (const Binary& b : Binaries()) {
    for (const char* help : {"--help", "-h"}) {
      Outcome r = RunToEnd({b.path, help}, dir);
      EXPECT_EQ(r.exit.exit_code, 0) << b.name << " " << help << ": " << r.exit.ToString() << "\n"
                                     << r.err;
      EXPECT_NE(r.out.find("Usage: "), std::string::npos) << b.name << ":\n" << r.out;
      EXPECT_NE(r.out.find("--help"), std::string::npos) << b.name << ":\n" << r.out;
    }
  }
}

TEST(CliProcessTest, UnknownFlagsAndBadValuesExitTwoWithOneClearLine) {
  testing::TempDir dir("txc-cli-");
  for (const Binary& b : Binaries()) {
    std::vector<std::string> argv = {b.path};
    argv.insert(argv.end(), b.required.begin(), b.required.end());
    argv.push_back("--no_such_flag=1");
    Outcome r = RunToEnd(argv, dir);
    EXPECT_EQ(r.exit.exit_code, 2) << b.name << ": " << r.exit.ToString() << "\n" << r.err;
    EXPECT_NE(r.err.find(std::string(b.name) + ": unrecognised option '--no_such_flag=1'"),
              std::string::npos)
        << b.name << ":\n"
        << r.err;
    EXPECT_NE(r.err.find("--help"), std::string::npos) << b.name << ":\n" << r.err;

    argv = {b.path, "stray-argument"};
    argv.insert(argv.end(), b.required.begin(), b.required.end());
    r = RunToEnd(argv, dir);
    EXPECT_EQ(r.exit.exit_code, 2) << b.name << " with a stray argument: " << r.exit.ToString();
  }
  // Servers: a port that is not a number, or out of range.
  for (const Binary& b : Binaries()) {
    const std::string name = b.name;
    if (name == "order_client" || name == "transfer" || name == "rpc_context_client") continue;
    for (const std::vector<std::string>& bad :
         {std::vector<std::string>{"--port", "7000x"}, std::vector<std::string>{"--port=abc"},
          std::vector<std::string>{"--port=70000"}, std::vector<std::string>{"--port"}}) {
      std::vector<std::string> argv = {b.path};
      argv.insert(argv.end(), b.required.begin(), b.required.end());
      argv.insert(argv.end(), bad.begin(), bad.end());
      Outcome r = RunToEnd(argv, dir);
      EXPECT_EQ(r.exit.exit_code, 2) << name << " " << bad[0] << ": " << r.exit.ToString() << "\n"
                                     << r.err;
      EXPECT_NE(r.err.find("--port"), std::string::npos) << name << ":\n" << r.err;
    }
  }
}

// `--port 7000` (a space, not '=') used to abort the saga services with an
// uncaught std::invalid_argument; both forms now serve on the port given.
TEST(CliProcessTest, ServicesTakeFlagSpaceValue) {
  testing::TempDir dir("txc-cli-");
  for (const Binary& b : Binaries()) {
    const std::string name = b.name;
    if (name != "order_service" && name != "payment_service" && name != "inventory_service") {
      continue;
    }
    for (bool spaced : {true, false}) {
      const int port = testing::FreeLoopbackPort();
      const std::string db = dir.Child(name + (spaced ? "-spaced.db" : "-equals.db"));
      std::vector<std::string> argv =
          spaced ? std::vector<std::string>{b.path, "--port", std::to_string(port), "--db", db}
                 : std::vector<std::string>{b.path, "--port=" + std::to_string(port), "--db=" + db};
      testing::SuiteTls::Get().AppendServiceFlags(&argv);
      ChildProcess::Options o;
      o.argv = argv;
      o.log_path = dir.Child(name + ".log");
      auto child = ChildProcess::Start(o);
      ASSERT_TRUE(child.ok()) << child.status();
      EXPECT_TRUE(testing::WaitUntil(
          [&] { return !(*child)->IsRunning() || testing::WaitForPort(port, 100).ok(); }, kWaitMs));
      ASSERT_TRUE((*child)->IsRunning()) << name << " died:\n" << (*child)->LogTail();
      ASSERT_TRUE(testing::WaitForPort(port, 100).ok());
      ASSERT_TRUE((*child)->Kill(SIGTERM).ok());
      auto exit = (*child)->Wait(kWaitMs);
      ASSERT_TRUE(exit.ok()) << exit.status();
      EXPECT_TRUE(exit->exited_ok()) << name << ": " << exit->ToString();
    }
  }
}

}  // namespace
}  // namespace txc
