#include "tests/harness/process.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glog/logging.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "common/backoff.h"

extern char** environ;

namespace txc {
namespace testing {

namespace {

std::string TmpRoot() {
  const char* t = getenv("TMPDIR");
  return (t != nullptr && *t != '\0') ? t : "/tmp";
}

// Resolves argv[0] through PATH when it has no '/'. Empty when not found.
std::string ResolveBinary(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = getenv("PATH");
  std::stringstream ss(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

}  // namespace

// --- TempDir ----------------------------------------------------------------

TempDir::TempDir(const std::string& prefix) {
  std::string tmpl = TmpRoot() + "/" + prefix + "XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  CHECK(mkdtemp(buf.data()) != nullptr) << "mkdtemp " << tmpl << ": " << strerror(errno);
  path_ = buf.data();
}

TempDir::~TempDir() {
  const char* keep = getenv("TXC_KEEP_TEST_DIRS");
  if (keep != nullptr && std::string(keep) == "1") {
    LOG(INFO) << "keeping test directory " << path_;
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  if (ec) LOG(WARNING) << "could not remove " << path_ << ": " << ec.message();
}

// --- ExitStatus ---------------------------------------------------------------

std::string ExitStatus::ToString() const {
  if (signal != 0) return "killed by signal " + std::to_string(signal);
  return "exit code " + std::to_string(exit_code);
}

// --- ChildProcess -------------------------------------------------------------

Result<std::unique_ptr<ChildProcess>> ChildProcess::Start(const Options& options) {
  if (options.argv.empty()) return Status::InvalidArgument("ChildProcess: empty argv");
  const std::string binary = ResolveBinary(options.argv[0]);
  if (binary.empty()) {
    return Status::Internal("ChildProcess: executable not found: " + options.argv[0]);
  }

  // Everything the child needs is prepared before fork(): between fork and
  // exec only async-signal-safe calls are allowed (the parent has threads).
  std::vector<std::string> args = options.argv;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::map<std::string, std::string> env_map;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    if (eq == std::string::npos) continue;
    env_map[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : options.env) env_map[k] = v;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : env_map) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  const std::string log = options.log_path.empty() ? "/dev/null" : options.log_path;
  int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return Status::Internal("ChildProcess: open " + log + ": " + strerror(errno));
  int out_fd = log_fd;
  if (!options.stdout_path.empty()) {
    out_fd = open(options.stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_fd < 0) {
      close(log_fd);
      return Status::Internal("ChildProcess: open " + options.stdout_path + ": " + strerror(errno));
    }
  }
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = getpid();

  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(log_fd);
    if (out_fd != log_fd) close(out_fd);
    if (null_fd >= 0) close(null_fd);
    return Status::Internal(std::string("ChildProcess: fork: ") + strerror(err));
  }
  if (pid == 0) {
    // Child.
    if (options.kill_with_parent) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent already died
    }
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    dup2(out_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    // Signals blocked or ignored by the test runner must not leak into the child.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    if (!options.cwd.empty() && chdir(options.cwd.c_str()) != 0) {
      const char msg[] = "ChildProcess: chdir failed\n";
      ssize_t ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);
      (void)ignored;
      _exit(127);
    }
    execve(binary.c_str(), argv.data(), envp.data());
    const char msg[] = "ChildProcess: execve failed\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)ignored;
    _exit(127);
  }
  close(log_fd);
  if (out_fd != log_fd) close(out_fd);
  if (null_fd >= 0) close(null_fd);
  VLOG(1) << "started child pid " << pid << ": " << options.argv[0];
  return std::unique_ptr<ChildProcess>(new ChildProcess(options, pid));
}

ChildProcess::~ChildProcess() {
  if (!reaped_ && !TryReap(false)) {
    kill(pid_, SIGKILL);
    TryReap(true);
  }
}

bool ChildProcess::TryReap(bool block) {
  if (reaped_) return true;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  reaped_ = true;
  if (r < 0) {  // not our child any more (should not happen): treat as gone
    exit_.exit_code = -1;
    return true;
  }
  if (WIFEXITED(status)) {
    exit_.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    exit_.signal = WTERMSIG(status);
  }
  return true;
}

Status ChildProcess::Kill(int signal) {
  if (reaped_) return Status::Ok();
  if (kill(pid_, signal) != 0 && errno != ESRCH) {
    return Status::Internal("kill " + std::to_string(pid_) + ": " + strerror(errno));
  }
  return Status::Ok();
}

Result<ExitStatus> ChildProcess::Wait(int64_t timeout_ms) {
  const int64_t deadline = MonotonicMs() + timeout_ms;
  int64_t sleep_ms = 1;
  while (!TryReap(false)) {
    if (MonotonicMs() >= deadline) {
      return Status::Timeout("child " + std::to_string(pid_) + " (" + options_.argv[0] +
                             ") still running after " + std::to_string(timeout_ms) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    sleep_ms = std::min<int64_t>(sleep_ms * 2, 20);
  }
  return exit_;
}

bool ChildProcess::IsRunning() { return !TryReap(false); }

std::string ChildProcess::LogTail(size_t max_bytes) const {
  std::string all = ReadFileOrEmpty(options_.log_path);
  if (all.size() > max_bytes) all = all.substr(all.size() - max_bytes);
  return all;
}

Status RunCommand(const ChildProcess::Options& options, int64_t timeout_ms) {
  TXC_ASSIGN_OR_RETURN(auto child, ChildProcess::Start(options));
  auto exit = child->Wait(timeout_ms);
  std::string what;
  for (const auto& a : options.argv) what += (what.empty() ? "" : " ") + a;
  if (!exit.ok()) {
    child->Kill(SIGKILL).IgnoreError();
    return Status::Timeout(what + ": " + exit.status().message() + "\n" + child->LogTail());
  }
  if (!exit->exited_ok()) {
    return Status::Internal(what + ": " + exit->ToString() + "\n" + child->LogTail());
  }
  return Status::Ok();
}

// --- ports and waits ----------------------------------------------------------

namespace {

// Binds 127.0.0.1:port (0: any) and returns the bound port, or 0.
int TryBindLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK_GE(fd, 0) << "socket: " << strerror(errno);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  int bound = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    socklen_t len = sizeof(addr);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      bound = ntohs(addr.sin_port);
    }
  }
  close(fd);
  return bound;
}

}  // namespace

// Ports come from 20000-31999, below Linux's ephemeral range (32768-60999),
// so an outgoing connection of any process cannot be given one between the
// pick and the child's bind. Each pick is reserved for the life of this test
// process by an flock on /tmp/txc-test-ports/<port>: parallel test processes
// never pick the same port (a coordinator and another test's participant
// once did, and the test talked to the wrong server). The lock files stay;
// the locks go with the process.
int FreeLoopbackPort() {
  static std::mutex mu;
  static std::vector<int> held;  // lock fds, open until the process exits
  std::lock_guard<std::mutex> lock(mu);
  const std::string dir = "/tmp/txc-test-ports";
  mkdir(dir.c_str(), 01777);
  chmod(dir.c_str(), 01777);  // shared by the root and postgres test users
  static uint32_t seed = static_cast<uint32_t>(getpid()) * 2654435761u;
  for (int tries = 0; tries < 2000; ++tries) {
    seed = seed * 1664525u + 1013904223u;
    const int port = 20000 + static_cast<int>((seed >> 8) % 12000);
    const std::string path = dir + "/" + std::to_string(port);
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) continue;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      close(fd);
      continue;
    }
    if (TryBindLoopback(port) != port) {
      close(fd);
      continue;
    }
    held.push_back(fd);
    return port;
  }
  // Reservations unavailable (e.g. /tmp not writable): the kernel's pick.
  const int port = TryBindLoopback(0);
  CHECK_GT(port, 0) << "no free loopback port";
  return port;
}

Status WaitForPort(int port, int64_t timeout_ms) {
  bool ok = WaitUntil(
      [port] {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return false;
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(static_cast<uint16_t>(port));
        bool connected = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
        close(fd);
        return connected;
      },
      timeout_ms);
  if (ok) return Status::Ok();
  return Status::Timeout("nothing listening on 127.0.0.1:" + std::to_string(port) + " after " +
                         std::to_string(timeout_ms) + " ms");
}

int ConnectFromSource(const std::string& source, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in local{};
  local.sin_family = AF_INET;
  inet_pton(AF_INET, source.c_str(), &local.sin_addr);
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof(remote)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool WaitUntil(const std::function<bool()>& predicate, int64_t timeout_ms) {
  const int64_t deadline = MonotonicMs() + timeout_ms;
  int64_t sleep_ms = 2;
  while (true) {
    if (predicate()) return true;
    if (MonotonicMs() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    sleep_ms = std::min<int64_t>(sleep_ms * 2, 50);
  }
}

std::string ReadFileOrEmpty(const std::string& path) {
  if (path.empty()) return "";
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string SelfExeDir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  CHECK(!ec) << "read /proc/self/exe: " << ec.message();
  return exe.parent_path().string();
}

}  // namespace testing
}  // namespace txc
