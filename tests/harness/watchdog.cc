#include "tests/harness/watchdog.h"

#include <errno.h>
#include <fcntl.h>
#include <glog/logging.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "common/backoff.h"

namespace txc {
namespace testing {

Watchdog::~Watchdog() { Stop(); }

void Watchdog::Start(const std::string& cleanup, const std::string& what) {
  std::string script = "cat >/dev/null; " + cleanup;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    LOG(WARNING) << "no watchdog for " << what << ": pipe: " << strerror(errno);
    return;
  }
  std::string sh = "/bin/sh", dash_c = "-c";
  char* argv[] = {sh.data(), dash_c.data(), script.data(), nullptr};
  pid_t pid = fork();
  if (pid < 0) {
    LOG(WARNING) << "no watchdog for " << what << ": fork: " << strerror(errno);
    close(fds[0]);
    close(fds[1]);
    return;
  }
  if (pid == 0) {
    setsid();  // survives a kill of the test's process group
    dup2(fds[0], STDIN_FILENO);
    int null_fd = open("/dev/null", O_WRONLY);
    if (null_fd >= 0) {
      dup2(null_fd, STDOUT_FILENO);
      dup2(null_fd, STDERR_FILENO);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv("/bin/sh", argv);
    _exit(127);
  }
  close(fds[0]);
  pid_ = pid;
  fd_ = fds[1];
}

void Watchdog::Stop(int64_t timeout_ms) {
  if (fd_ < 0) return;
  close(fd_);
  fd_ = -1;
  const int64_t deadline = MonotonicMs() + timeout_ms;
  while (pid_ > 0) {
    pid_t r = waitpid(pid_, nullptr, WNOHANG);
    if (r != 0 || MonotonicMs() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

}  // namespace testing
}  // namespace txc
