#include "tests/harness/patroni_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <glog/logging.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <pqxx/pqxx>
#include <thread>

#include "common/backoff.h"

namespace txc {
namespace testing {

namespace {

bool IsRoot() { return geteuid() == 0; }

// argv run as user postgres when we are root; setpriv execs (no extra
// process), so the child's pid is Patroni's own.
std::vector<std::string> AsPostgres(std::vector<std::string> argv) {
  if (!IsRoot()) return argv;
  std::vector<std::string> out = {"setpriv", "--reuid=postgres", "--regid=postgres",
                                  "--init-groups", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

}  // namespace

Result<int> HttpGetStatus(int port, const std::string& path, int64_t timeout_ms) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Status::Internal(std::string("socket: ") + strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int64_t deadline = MonotonicMs() + timeout_ms;
  auto wait_for = [&](short events) {
    pollfd p{fd, events, 0};
    int64_t left = deadline - MonotonicMs();
    return left > 0 && poll(&p, 1, static_cast<int>(left)) == 1;
  };
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS || !wait_for(POLLOUT)) {
      return Status::Unavailable("connect to port " + std::to_string(port) + " failed");
    }
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0)
      return Status::Unavailable("connect to port " + std::to_string(port) + ": " + strerror(err));
  }
  const std::string request =
      "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return Status::Unavailable("send to port " + std::to_string(port) + " failed");
  }
  std::string response;
  char buf[512];
  while (response.find("\r\n") == std::string::npos) {
    if (!wait_for(POLLIN))
      return Status::Unavailable("no HTTP answer on port " + std::to_string(port));
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0)
      return Status::Unavailable("HTTP connection closed on port " + std::to_string(port));
    response.append(buf, static_cast<size_t>(n));
  }
  // "HTTP/1.0 200 OK"
  size_t space = response.find(' ');
  if (space == std::string::npos) return Status::Internal("bad HTTP status line: " + response);
  return atoi(response.c_str() + space + 1);
}

Result<std::unique_ptr<PatroniCluster>> PatroniCluster::Start(PatroniClusterOptions options) {
  if (access("/usr/bin/patroni", X_OK) != 0) {
    return Status::Unavailable("patroni not found: install the Debian package patroni");
  }
  if (access("/usr/bin/etcd", X_OK) != 0) {
    return Status::Unavailable("etcd not found: install the Debian package etcd-server");
  }
  if (options.pg_bin_dir.empty()) options.pg_bin_dir = "/usr/lib/postgresql/15/bin";
  if (access((options.pg_bin_dir + "/postgres").c_str(), X_OK) != 0) {
    return Status::Unavailable("PostgreSQL 15 not found: install the Debian package postgresql-15");
  }
  std::unique_ptr<PatroniCluster> c(new PatroniCluster());
  c->options_ = options;
  c->dir_ = std::make_unique<TempDir>("txc-patroni-");
  if (IsRoot()) {
    struct passwd* pw = getpwnam("postgres");
    if (pw == nullptr) return Status::Unavailable("no `postgres` user: install postgresql-15");
    if (chown(c->dir_->path().c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return Status::Internal("chown " + c->dir_->path() + ": " + strerror(errno));
    }
  }
  c->members_.resize(static_cast<size_t>(options.members));
  for (int i = 0; i < options.members; ++i) {
    Member& m = c->members_[static_cast<size_t>(i)];
    m.name = "pg" + std::to_string(i);
    m.pg_port = FreeLoopbackPort();
    m.api_port = FreeLoopbackPort();
    m.data_dir = c->dir_->Child(m.name);
  }
  c->StartWatchdog();
  TXC_RETURN_IF_ERROR(c->StartEtcd());
  // The first member bootstraps the cluster; the others clone it.
  TXC_RETURN_IF_ERROR(c->StartMember(0));
  auto leader = c->WaitForLeader(options.start_timeout_ms);
  if (!leader.ok()) {
    return Status(leader.status().code(), leader.status().message() + "\n" + c->LogTails());
  }
  for (int i = 1; i < options.members; ++i) TXC_RETURN_IF_ERROR(c->StartMember(i));
  // Every replica streams (synchronously, for one of them) from the leader.
  const int expected = options.members - 1;
  std::string last;
  bool streaming = WaitUntil(
      [&] {
        try {
          pqxx::connection conn(c->MultiHostConnectionString("postgres"));
          pqxx::nontransaction tx(conn);
          auto r = tx.exec(
              "SELECT count(*), count(*) FILTER (WHERE sync_state = 'sync') "
              "FROM pg_stat_replication WHERE state = 'streaming'");
          last = r[0][0].as<std::string>() + " streaming, " + r[0][1].as<std::string>() + " sync";
          return r[0][0].as<int>() == expected && (expected == 0 || r[0][1].as<int>() >= 1);
        } catch (const std::exception& e) {
          last = e.what();
          return false;
        }
      },
      options.start_timeout_ms);
  if (!streaming) {
    return Status::Timeout("Patroni replicas never streamed synchronously (" + last + ")\n" +
                           c->LogTails());
  }
  return c;
}

Status PatroniCluster::StartEtcd() {
  etcd_port_ = FreeLoopbackPort();
  etcd_peer_port_ = FreeLoopbackPort();
  const std::string client = "http://127.0.0.1:" + std::to_string(etcd_port_);
  const std::string peer = "http://127.0.0.1:" + std::to_string(etcd_peer_port_);
  ChildProcess::Options o;
  o.argv = {"/usr/bin/etcd",
            "--name=e0",
            "--data-dir=" + dir_->Child("etcd"),
            "--listen-client-urls=" + client,
            "--advertise-client-urls=" + client,
            "--listen-peer-urls=" + peer,
            "--initial-advertise-peer-urls=" + peer,
            "--initial-cluster=e0=" + peer,
            "--initial-cluster-state=new",
            "--enable-v2=true",
            "--log-level=warn"};
  o.log_path = dir_->Child("etcd.log");
  o.kill_with_parent = false;  // the watchdog and the destructor end it
  TXC_ASSIGN_OR_RETURN(etcd_, ChildProcess::Start(o));
  std::ofstream pids(dir_->Child("pids"), std::ios::app);
  pids << etcd_->pid() << "\n";
  pids.close();
  bool up = WaitUntil(
      [&] {
        auto code = HttpGetStatus(etcd_port_, "/health", 1000);
        return code.ok() && *code == 200;
      },
      options_.start_timeout_ms);
  if (!up) return Status::Timeout("etcd never became healthy\n" + etcd_->LogTail());
  return Status::Ok();
}

Status PatroniCluster::StartMember(int index) {
  Member& m = members_[static_cast<size_t>(index)];
  const std::string config = dir_->Child(m.name + ".yml");
  const std::string pg = "127.0.0.1:" + std::to_string(m.pg_port);
  const std::string api = "127.0.0.1:" + std::to_string(m.api_port);
  std::ofstream y(config);
  y << "scope: txc\n"
    << "namespace: /txc/\n"
    << "name: " << m.name << "\n"
    << "log:\n  level: WARNING\n"
    << "restapi:\n  listen: " << api << "\n  connect_address: " << api << "\n"
    << "etcd:\n  host: 127.0.0.1:" << etcd_port_ << "\n  protocol: http\n"
    << "bootstrap:\n"
    << "  dcs:\n"
    << "    ttl: 10\n"
    << "    loop_wait: 1\n"
    << "    retry_timeout: 3\n"
    << "    maximum_lag_on_failover: 1048576\n"
    << "    synchronous_mode: true\n"
    << "    postgresql:\n"
    << "      use_pg_rewind: false\n"
    << "      use_slots: true\n"
    << "      parameters:\n"
    << "        wal_level: replica\n"
    << "        hot_standby: 'on'\n"
    << "        max_wal_senders: 10\n"
    << "        max_replication_slots: 10\n"
    << "        max_connections: 200\n"
    << "        max_prepared_transactions: 64\n"
    << "  initdb:\n"
    << "  - encoding: UTF8\n"
    << "  - locale: C\n"
    << "  - auth: trust\n"
    << "  - no-sync\n"
    << "postgresql:\n"
    << "  listen: " << pg << "\n"
    << "  connect_address: " << pg << "\n"
    << "  data_dir: " << m.data_dir << "\n"
    << "  bin_dir: " << options_.pg_bin_dir << "\n"
    << "  pgpass: " << dir_->Child(m.name + ".pgpass") << "\n"
    << "  authentication:\n"
    << "    superuser:\n      username: postgres\n"
    << "    replication:\n      username: postgres\n"
    << "  parameters:\n"
    << "    unix_socket_directories: '" << dir_->path() << "'\n"
    << "    shared_buffers: 32MB\n"
    << "    fsync: 'on'\n"
    << "  pg_hba:\n"
    << "  - local all all trust\n"
    << "  - host all all 127.0.0.1/32 trust\n"
    << "  - host replication all 127.0.0.1/32 trust\n";
  y.close();
  if (!y) return Status::Internal("could not write " + config);
  ChildProcess::Options o;
  o.argv = AsPostgres({"/usr/bin/patroni", config});
  o.log_path = dir_->Child(m.name + ".log");
  o.cwd = dir_->path();
  o.env = {{"LC_ALL", "C"}, {"LANG", "C"}, {"HOME", dir_->path()}};
  o.kill_with_parent = false;  // cleared by the uid change anyway; the watchdog ends it
  TXC_ASSIGN_OR_RETURN(m.patroni, ChildProcess::Start(o));
  std::ofstream pids(dir_->Child("pids"), std::ios::app);
  pids << m.patroni->pid() << "\n";
  return Status::Ok();
}

Result<int> PatroniCluster::WaitForLeader(int64_t timeout_ms, int not_member) {
  int leader = -1;
  bool found = WaitUntil(
      [&] {
        for (int i = 0; i < members(); ++i) {
          if (i == not_member) continue;
          const Member& m = members_[static_cast<size_t>(i)];
          if (m.patroni == nullptr) continue;
          auto code = HttpGetStatus(m.api_port, "/primary", 1000);
          if (!code.ok() || *code != 200) continue;
          try {
            pqxx::connection conn("host=127.0.0.1 port=" + std::to_string(m.pg_port) +
                                  " user=postgres dbname=postgres connect_timeout=2 "
                                  "target_session_attrs=read-write");
            leader = i;
            return true;
          } catch (const std::exception&) {
            continue;
          }
        }
        return false;
      },
      timeout_ms);
  if (!found)
    return Status::Timeout("no Patroni leader within " + std::to_string(timeout_ms) + " ms");
  return leader;
}

pid_t PatroniCluster::PostmasterPid(const Member& m) const {
  std::string pid_file = ReadFileOrEmpty(m.data_dir + "/postmaster.pid");
  return pid_file.empty() ? -1 : static_cast<pid_t>(atoi(pid_file.c_str()));
}

Status PatroniCluster::KillMember(int member) {
  Member& m = members_[static_cast<size_t>(member)];
  const pid_t postmaster = PostmasterPid(m);
  if (m.patroni != nullptr) {
    TXC_RETURN_IF_ERROR(m.patroni->Kill(SIGKILL));
    auto ended = m.patroni->Wait(10000);
    if (!ended.ok()) return ended.status();
  }
  if (postmaster > 0 && kill(postmaster, SIGKILL) != 0 && errno != ESRCH) {
    return Status::Internal("kill postmaster " + std::to_string(postmaster) + ": " +
                            strerror(errno));
  }
  // Its backends exit when they notice the postmaster is gone.
  bool gone = WaitUntil([&] { return postmaster <= 0 || kill(postmaster, 0) != 0; }, 10000);
  if (!gone) return Status::Timeout("postmaster " + std::to_string(postmaster) + " survived");
  return Status::Ok();
}

Status PatroniCluster::CreateDatabase(const std::string& name) {
  try {
    pqxx::connection conn(MultiHostConnectionString("postgres"));
    pqxx::nontransaction tx(conn);
    tx.exec("CREATE DATABASE \"" + name + "\"");
    return Status::Ok();
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("CREATE DATABASE ") + name + ": " + e.what());
  }
}

std::string PatroniCluster::MultiHostConnectionString(const std::string& dbname) const {
  std::string hosts, ports;
  for (const Member& m : members_) {
    if (!hosts.empty()) {
      hosts += ",";
      ports += ",";
    }
    hosts += "127.0.0.1";
    ports += std::to_string(m.pg_port);
  }
  return "host=" + hosts + " port=" + ports + " user=postgres dbname=" + dbname +
         " target_session_attrs=read-write connect_timeout=2";
}

std::string PatroniCluster::LogTails(size_t max_bytes_each) const {
  std::string out;
  for (const Member& m : members_) {
    std::string log = ReadFileOrEmpty(dir_->Child(m.name + ".log"));
    if (log.size() > max_bytes_each) log = log.substr(log.size() - max_bytes_each);
    out += "--- patroni " + m.name + ":\n" + log;
  }
  if (etcd_ != nullptr) out += "--- etcd:\n" + etcd_->LogTail(max_bytes_each);
  return out;
}

void PatroniCluster::StartWatchdog() {
  // Like PgCluster's: a detached shell waiting for EOF on a pipe only this
  // process writes; then it SIGKILLs the recorded Patroni/etcd pids and every
  // member's postmaster, and removes the directory.
  std::string cleanup = "d=" + ShellQuote(dir_->path()) +
                        "; for p in $(cat \"$d/pids\" 2>/dev/null); do kill -9 $p; done; "
                        "for f in \"$d\"/pg*/postmaster.pid; do "
                        "[ -f \"$f\" ] && kill -9 $(head -1 \"$f\"); done; sleep 0.2; ";
  const char* keep = getenv("TXC_KEEP_TEST_DIRS");
  if (keep == nullptr || std::string(keep) != "1") cleanup += "rm -rf \"$d\"";
  cleanup += " >/dev/null 2>&1";
  watchdog_.Start(cleanup, dir_->path());
}

PatroniCluster::~PatroniCluster() {
  for (Member& m : members_) {
    const pid_t postmaster = PostmasterPid(m);
    m.patroni.reset();  // SIGKILL + reap
    if (postmaster > 0) kill(postmaster, SIGKILL);
  }
  etcd_.reset();
  watchdog_.Stop();
}

}  // namespace testing
}  // namespace txc
