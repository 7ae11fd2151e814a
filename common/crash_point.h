// Named crash points for fault-injection tests.
//
//   TXC_CRASH_POINT("2pc.after_decision_logged");
//
// Off by default and nearly free when off (one relaxed atomic load). Armed by
// the environment variable TXC_CRASH_POINTS (comma-separated names) read at
// first use, or by ArmCrashPoints() (the coordinator's --crash_points flag).
// An armed point logs one line and terminates the process immediately with
// kCrashExitCode, skipping destructors and buffered I/O: like SIGKILL, but
// recognisable by tests.
//
// Pause points (TXC_PAUSE_POINT) are armed the same way by TXC_PAUSE_POINTS or
// ArmPausePoints(). An armed pause point logs one line, disarms itself (it
// fires once) and stops the whole process with raise(SIGSTOP), as an
// operator's SIGSTOP or a VM freeze would at that exact place; the test
// resumes it with SIGCONT.
#pragma once

#include <string>

namespace txc {

constexpr int kCrashExitCode = 86;

// Replaces the armed set with the comma-separated names in `names`.
void ArmCrashPoints(const std::string& names);

bool AnyCrashPointArmed();
void MaybeCrash(const char* name);

// Replaces the armed pause points with the comma-separated names in `names`.
void ArmPausePoints(const std::string& names);
bool AnyPausePointArmed();
void MaybePause(const char* name);

}  // namespace txc

#define TXC_CRASH_POINT(name)                                 \
  do {                                                        \
    if (::txc::AnyCrashPointArmed()) ::txc::MaybeCrash(name); \
  } while (0)

#define TXC_PAUSE_POINT(name)                                 \
  do {                                                        \
    if (::txc::AnyPausePointArmed()) ::txc::MaybePause(name); \
  } while (0)
