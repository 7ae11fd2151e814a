#include "common/crash_point.h"

#include <glog/logging.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <set>

#include "common/strings.h"

namespace txc {
namespace {

std::mutex g_mu;
std::set<std::string>* g_armed = nullptr;  // guarded by g_mu; leaked on purpose
std::atomic<bool> g_any_armed{false};
std::once_flag g_env_once;
std::set<std::string>* g_pause_armed = nullptr;  // guarded by g_mu; leaked on purpose
std::atomic<bool> g_any_pause_armed{false};

void ArmPausesLocked(const std::string& names) {
  if (g_pause_armed == nullptr) g_pause_armed = new std::set<std::string>();
  g_pause_armed->clear();
  for (const std::string& name : SplitList(names)) g_pause_armed->insert(name);
  g_any_pause_armed.store(!g_pause_armed->empty(), std::memory_order_relaxed);
}

void ArmLocked(const std::string& names) {
  if (g_armed == nullptr) g_armed = new std::set<std::string>();
  g_armed->clear();
  for (const std::string& name : SplitList(names)) g_armed->insert(name);
  g_any_armed.store(!g_armed->empty(), std::memory_order_relaxed);
}

void ReadEnvironmentOnce() {
  std::call_once(g_env_once, [] {
    const char* env = std::getenv("TXC_CRASH_POINTS");
    if (env != nullptr && *env != '\0') {
      std::lock_guard<std::mutex> lock(g_mu);
      ArmLocked(env);
    }
    const char* pauses = std::getenv("TXC_PAUSE_POINTS");
    if (pauses != nullptr && *pauses != '\0') {
      std::lock_guard<std::mutex> lock(g_mu);
      ArmPausesLocked(pauses);
    }
  });
}

// Reads the environment before main() so that AnyCrashPointArmed() is one load.
[[maybe_unused]] const bool g_env_read = (ReadEnvironmentOnce(), true);

}  // namespace

void ArmCrashPoints(const std::string& names) {
  ReadEnvironmentOnce();
  std::lock_guard<std::mutex> lock(g_mu);
  ArmLocked(names);
}

bool AnyCrashPointArmed() { return g_any_armed.load(std::memory_order_relaxed); }

void MaybeCrash(const char* name) {
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_armed == nullptr || g_armed->count(name) == 0) return;
  }
  LOG(ERROR) << "crash point '" << name << "' reached: exiting with code " << kCrashExitCode;
  google::FlushLogFiles(google::GLOG_INFO);
  _exit(kCrashExitCode);
}

void ArmPausePoints(const std::string& names) {
  ReadEnvironmentOnce();
  std::lock_guard<std::mutex> lock(g_mu);
  ArmPausesLocked(names);
}

bool AnyPausePointArmed() { return g_any_pause_armed.load(std::memory_order_relaxed); }

void MaybePause(const char* name) {
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_pause_armed == nullptr || g_pause_armed->erase(name) == 0) return;
    g_any_pause_armed.store(!g_pause_armed->empty(), std::memory_order_relaxed);
  }
  LOG(ERROR) << "pause point '" << name << "' reached: stopping this process (SIGSTOP)";
  google::FlushLogFiles(google::GLOG_INFO);
  raise(SIGSTOP);
  LOG(ERROR) << "pause point '" << name << "': resumed";
}

}  // namespace txc
