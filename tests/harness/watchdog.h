// Watchdog: cleanup that runs even when the test process dies without running
// destructors (SIGKILL, abort, timeout). A detached shell (own session, so a
// kill of the test's process group spares it) reads a pipe only this process
// writes; its script starts with `cat >/dev/null`, so it goes on when the
// pipe closes: when Stop() closes it, or when this process dies.
//
// Thread-safety: one thread at a time.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace txc {
namespace testing {

class Watchdog {
 public:
  Watchdog() = default;
  // Stop(20 s).
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Starts `/bin/sh -c "cat >/dev/null; <cleanup>"`; everything is prepared
  // before fork(). On failure LOG(WARNING)s naming `what` and runs without a
  // watchdog.
  void Start(const std::string& cleanup, const std::string& what);
  // Closes the pipe (the cleanup runs now) and reaps the shell, waiting at
  // most timeout_ms. No-op when not started or already stopped.
  void Stop(int64_t timeout_ms = 20000);

 private:
  pid_t pid_ = -1;
  int fd_ = -1;  // write end of the pipe the shell reads; closing it starts the cleanup
};

// `s` single-quoted for /bin/sh (for building a cleanup script).
std::string ShellQuote(const std::string& s);

}  // namespace testing
}  // namespace txc
