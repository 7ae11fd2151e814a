// Test harness: child processes, ports, temporary directories, waits.
//
//   txc::testing::ChildProcess::Options o;
//   o.argv = {binary, "--port=1234"};
//   o.env = {{"TXC_CRASH_POINTS", "2pc.after_decision_logged"}};
//   o.log_path = dir.path() + "/coordinator.log";
//   auto child = txc::testing::ChildProcess::Start(o);
//   ASSERT_TRUE(child.ok()) << child.status();
//   ASSERT_TRUE(txc::testing::WaitForPort(1234, 10000).ok());
//   (*child)->Kill(SIGKILL);
//   auto exit = (*child)->Wait(5000);   // ExitStatus{signal = 9}
//
// Every wait here has a timeout. Thread-safety: a ChildProcess is used by one
// thread at a time; the free functions may be called from any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace txc {
namespace testing {

// A directory under $TMPDIR (default /tmp) removed with everything in it by the
// destructor (also when a test fails), unless the environment variable
// TXC_KEEP_TEST_DIRS=1 is set (then its path is logged).
class TempDir {
 public:
  // Creates "<tmp>/<prefix>XXXXXX". LOG(FATAL)s if the directory cannot be made.
  explicit TempDir(const std::string& prefix = "txc-test-");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name
  std::string Child(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// How a child ended.
struct ExitStatus {
  int exit_code = -1;  // the exit code when it exited normally, else -1
  int signal = 0;      // the signal that killed it, else 0
  bool signaled() const { return signal != 0; }
  bool exited_ok() const { return signal == 0 && exit_code == 0; }
  std::string ToString() const;
};

class ChildProcess {
 public:
  struct Options {
    std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
    // Added to (or replacing in) this process's environment.
    std::vector<std::pair<std::string, std::string>> env;
    // stdout and stderr both go here (appended); empty: /dev/null.
    std::string log_path;
    // When set, stdout alone goes here (truncated) and stderr to log_path.
    std::string stdout_path;
    std::string cwd;  // empty: inherit
    // The child gets SIGKILL when the *thread* that started it exits
    // (PR_SET_PDEATHSIG), so a crashed test leaves nothing behind. Start
    // long-lived children from the test's main thread, or turn this off.
    bool kill_with_parent = true;
  };

  // Forks and execs. Fails (kInternal) when the binary cannot be found or
  // the log file cannot be opened; an exec failure shows as exit code 127
  // with the reason in the log.
  static Result<std::unique_ptr<ChildProcess>> Start(const Options& options);

  // SIGKILLs the child if it is still running, and reaps it.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  const Options& options() const { return options_; }

  // Sends `signal` (no effect once the child has been reaped).
  Status Kill(int signal);
  // Waits up to timeout_ms for the child to end; kTimeout if it is still running.
  Result<ExitStatus> Wait(int64_t timeout_ms);
  // Whether the child has not ended yet (reaps it if it has).
  bool IsRunning();
  // Last `max_bytes` of the log file (for failure messages).
  std::string LogTail(size_t max_bytes = 4000) const;

 private:
  ChildProcess(Options options, pid_t pid) : options_(std::move(options)), pid_(pid) {}
  bool TryReap(bool block);

  const Options options_;
  pid_t pid_;
  bool reaped_ = false;
  ExitStatus exit_;
};

// Runs argv to completion (at most timeout_ms; then SIGKILL and kTimeout).
// kInternal with the log tail when it does not exit 0.
Status RunCommand(const ChildProcess::Options& options, int64_t timeout_ms);

// A TCP port on 127.0.0.1 that was free a moment ago, reserved for this test
// process (no parallel test process gets it; see process.cc).
int FreeLoopbackPort();

// Waits until something accepts TCP connections on 127.0.0.1:port.
Status WaitForPort(int port, int64_t timeout_ms);

// A TCP connection to 127.0.0.1:`port` from the source address `source` (any
// 127.x address is local on Linux): lets one test be several peers. The
// connected descriptor (the caller closes it), or -1.
int ConnectFromSource(const std::string& source, int port);

// Polls `predicate` (every few ms, backing off to 50 ms) until it returns true
// (then true) or timeout_ms passed (then false).
bool WaitUntil(const std::function<bool()>& predicate, int64_t timeout_ms);

// The whole content of a file ("" when missing).
std::string ReadFileOrEmpty(const std::string& path);

// The directory holding the running test binary (/proc/self/exe), to find
// helper executables built next to it.
std::string SelfExeDir();

}  // namespace testing
}  // namespace txc
