#include "tests/harness/pg_cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <glog/logging.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <pqxx/pqxx>
#include <thread>

#include "common/backoff.h"

namespace txc {
namespace testing {

namespace {

constexpr char kMissingServerHelp[] =
    "PostgreSQL 15 server binaries not found (looked for /usr/lib/postgresql/*/bin/initdb): "
    "install the Debian package postgresql-15 (apt-get install -y postgresql-15)";

bool IsRoot() { return geteuid() == 0; }

std::string FindBinDir() {
  const std::string preferred = "/usr/lib/postgresql/15/bin";
  if (access((preferred + "/initdb").c_str(), X_OK) == 0) return preferred;
  std::string best;
  int best_version = -1;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    std::string bin = entry.path().string() + "/bin";
    if (access((bin + "/initdb").c_str(), X_OK) != 0) continue;
    int version = atoi(entry.path().filename().c_str());
    if (version > best_version) {
      best_version = version;
      best = bin;
    }
  }
  return best;
}

}  // namespace

PgCluster::PgCluster(PgClusterOptions options) : options_(std::move(options)) {}

Result<std::unique_ptr<PgCluster>> PgCluster::Start(PgClusterOptions options) {
  if (options.bin_dir.empty()) options.bin_dir = FindBinDir();
  if (options.bin_dir.empty() || access((options.bin_dir + "/initdb").c_str(), X_OK) != 0) {
    return Status::Unavailable(kMissingServerHelp);
  }
  std::unique_ptr<PgCluster> cluster(new PgCluster(std::move(options)));
  TXC_RETURN_IF_ERROR(cluster->Init());
  // The port may be taken between FreeLoopbackPort() and the server's bind:
  // try a few ports.
  Status started;
  for (int attempt = 0; attempt < 3; ++attempt) {
    cluster->port_ = cluster->options_.port != 0 ? cluster->options_.port : FreeLoopbackPort();
    started = cluster->StartServer();
    if (started.ok() || cluster->options_.port != 0) break;
    LOG(WARNING) << "PostgreSQL did not start on port " << cluster->port_
                 << ", retrying: " << started.message().substr(0, 300);
  }
  TXC_RETURN_IF_ERROR(started);
  return cluster;
}

ChildProcess::Options PgCluster::AsPostgres(std::vector<std::string> argv) const {
  ChildProcess::Options o;
  if (IsRoot()) {
    o.argv = {"runuser", "-u", "postgres", "--"};
    o.argv.insert(o.argv.end(), argv.begin(), argv.end());
  } else {
    o.argv = std::move(argv);
  }
  o.cwd = dir_->path();
  o.log_path = dir_->Child("harness.log");
  o.env = {{"LC_ALL", "C"}, {"LANG", "C"}};
  return o;
}

Status PgCluster::Init() {
  dir_ = std::make_unique<TempDir>("txc-pg-");
  data_dir_ = dir_->Child("data");
  if (IsRoot()) {
    struct passwd* pw = getpwnam("postgres");
    if (pw == nullptr) {
      return Status::Unavailable(
          "running as root but there is no `postgres` user to run PostgreSQL as: install the "
          "Debian package postgresql-15 (it creates the user)");
    }
    if (chown(dir_->path().c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return Status::Internal("chown " + dir_->path() + ": " + strerror(errno));
    }
  }
  StartWatchdog();
  if (options_.standby_of_port != 0) {
    TXC_RETURN_IF_ERROR(
        RunCommand(AsPostgres({options_.bin_dir + "/pg_basebackup", "-h", "127.0.0.1", "-p",
                               std::to_string(options_.standby_of_port), "-U", "postgres", "-D",
                               data_dir_, "-R", "-X", "stream", "-c", "fast", "--no-sync"}),
                   options_.start_timeout_ms));
    // -R wrote primary_conninfo into postgresql.auto.conf; the last line wins.
    std::ofstream auto_conf(data_dir_ + "/postgresql.auto.conf", std::ios::app);
    auto_conf << "primary_conninfo = 'host=127.0.0.1 port=" << options_.standby_of_port
              << " user=postgres application_name=" << options_.standby_name << "'\n";
    auto_conf.close();
    if (!auto_conf)
      return Status::Internal("could not write " + data_dir_ + "/postgresql.auto.conf");
  } else {
    TXC_RETURN_IF_ERROR(InitDataDir());
  }
  std::ofstream conf(data_dir_ + "/postgresql.conf", std::ios::app);
  conf << "\n# txc test harness\n"
       << "listen_addresses = '127.0.0.1'\n"
       << "unix_socket_directories = '" << dir_->path() << "'\n"
       << "fsync = on\n"
       << "synchronous_commit = on\n"
       << "max_prepared_transactions = 64\n"
       << "max_connections = 200\n"
       << "shared_buffers = 32MB\n"
       << "log_min_messages = warning\n";
  for (const auto& line : options_.extra_settings) conf << line << "\n";
  conf.close();
  if (!conf) return Status::Internal("could not write " + data_dir_ + "/postgresql.conf");
  return Status::Ok();
}

Status PgCluster::RunInitdb(const std::string& dir) const {
  return RunCommand(AsPostgres({options_.bin_dir + "/initdb", "-D", dir, "-U", "postgres", "-A",
                                "trust", "-E", "UTF8", "--locale=C", "--no-sync"}),
                    options_.start_timeout_ms);
}

Status PgCluster::InitDataDir() {
  const char* no_template = getenv("TXC_PG_NO_TEMPLATE");
  if (no_template != nullptr && std::string(no_template) == "1") return RunInitdb(data_dir_);
  // initdb costs seconds; a copy of a pristine cluster made once per machine
  // (per server version and user) costs milliseconds. Bump kTemplateVersion
  // when the initdb arguments change.
  constexpr int kTemplateVersion = 1;
  std::string key = options_.bin_dir;
  for (char& c : key) {
    if (c == '/') c = '_';
  }
  const char* tmp = getenv("TMPDIR");
  const std::string root = (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
  const std::string tpl = root + "/txc-pg-template-v" + std::to_string(kTemplateVersion) + key +
                          "-uid" + std::to_string(geteuid());
  {
    int lock_fd = open((tpl + ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (lock_fd < 0) return RunInitdb(data_dir_);
    // Exclusive while the template is being made; bounded wait.
    const int64_t deadline = MonotonicMs() + options_.start_timeout_ms;
    while (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
      if (MonotonicMs() >= deadline) {
        close(lock_fd);
        return Status::Timeout("waiting for the PostgreSQL template lock " + tpl + ".lock");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    Status made;
    if (access((tpl + "/PG_VERSION").c_str(), F_OK) != 0) {
      ChildProcess::Options rm;
      rm.argv = {"rm", "-rf", tpl + ".tmp"};
      made = RunCommand(rm, 60000);
      if (made.ok()) made = RunInitdb(tpl + ".tmp");
      if (made.ok() && rename((tpl + ".tmp").c_str(), tpl.c_str()) != 0) {
        made = Status::Internal("rename " + tpl + ".tmp: " + strerror(errno));
      }
    }
    close(lock_fd);  // releases the lock
    if (!made.ok()) {
      LOG(WARNING) << "no PostgreSQL template (" << made << "); running initdb";
      return RunInitdb(data_dir_);
    }
  }
  ChildProcess::Options cp;
  cp.argv = {"cp", "-a", tpl, data_dir_};  // keeps the postgres ownership when root
  return RunCommand(cp, options_.start_timeout_ms);
}

std::string PgCluster::log_path() const { return dir_->Child("postgres.log"); }

Status PgCluster::StartServer() {
  // The port lives in the command line (-o), so Restart() keeps it.
  Status s = RunCommand(
      AsPostgres({options_.bin_dir + "/pg_ctl", "start", "-D", data_dir_, "-l", log_path(), "-w",
                  "-t", std::to_string(options_.start_timeout_ms / 1000 + 1), "-o",
                  "-p " + std::to_string(port_)}),
      options_.start_timeout_ms + 5000);
  if (!s.ok()) {
    std::string log = ReadFileOrEmpty(log_path());
    if (log.size() > 3000) log = log.substr(log.size() - 3000);
    return Status(s.code(), "pg_ctl start failed: " + s.message() + "\nserver log:\n" + log);
  }
  running_ = true;
  // pg_ctl -w already waited; pg_isready double-checks that TCP works.
  const std::string isready = options_.bin_dir + "/pg_isready";
  bool ready = WaitUntil(
      [&] {
        ChildProcess::Options o;
        o.argv = {isready, "-h",       "127.0.0.1", "-p", std::to_string(port_),
                  "-U",    "postgres", "-t",        "2"};
        return RunCommand(o, 5000).ok();
      },
      options_.start_timeout_ms);
  if (!ready) return Status::Timeout("pg_isready never succeeded on port " + std::to_string(port_));
  VLOG(1) << "PostgreSQL started on port " << port_ << " in " << data_dir_;
  return Status::Ok();
}

Status PgCluster::Restart() {
  if (running_) return Status::Ok();
  return StartServer();
}

Status PgCluster::Promote() {
  return RunCommand(AsPostgres({options_.bin_dir + "/pg_ctl", "promote", "-D", data_dir_, "-w",
                                "-t", std::to_string(options_.start_timeout_ms / 1000 + 1)}),
                    options_.start_timeout_ms + 5000);
}

Result<std::string> PgCluster::QueryValue(const std::string& dbname, const std::string& sql) {
  try {
    pqxx::connection conn(ConnectionString(dbname) + " connect_timeout=5");
    pqxx::nontransaction tx(conn);
    pqxx::result r = tx.exec(sql);
    if (r.empty() || r[0][0].is_null()) return std::string();
    return r[0][0].as<std::string>();
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string(e.what()) + " (sql: " + sql.substr(0, 200) + ")");
  }
}

Status PgCluster::Stop(const std::string& mode) {
  if (!running_) return Status::Ok();
  Status s = RunCommand(
      AsPostgres({options_.bin_dir + "/pg_ctl", "stop", "-D", data_dir_, "-m", mode, "-w"}), 60000);
  if (s.ok()) running_ = false;
  return s;
}

void PgCluster::StartWatchdog() {
  // A detached shell that waits for EOF on a pipe whose write end only this
  // process holds; when this process ends (in any way) it stops the server
  // and removes the directory. Everything is prepared before fork().
  std::string pg_ctl = ShellQuote(options_.bin_dir + "/pg_ctl");
  std::string stop = pg_ctl + " stop -D " + ShellQuote(data_dir_) + " -m immediate";
  if (IsRoot()) stop = "runuser -u postgres -- " + stop;
  std::string cleanup = stop + " >/dev/null 2>&1";
  const char* keep = getenv("TXC_KEEP_TEST_DIRS");
  if (keep == nullptr || std::string(keep) != "1") {
    cleanup += "; rm -rf " + ShellQuote(dir_->path()) + " >/dev/null 2>&1";
  }
  watchdog_.Start(cleanup, dir_->path());
}

PgCluster::~PgCluster() {
  if (running_) {
    Status s = Stop("immediate");
    if (!s.ok()) LOG(WARNING) << "stopping PostgreSQL on port " << port_ << ": " << s;
  }
  // The watchdog now runs a no-op pg_ctl stop and rm -rf; reap it (bounded).
  watchdog_.Stop();
  // dir_ (TempDir) removes whatever is left.
}

std::string PgCluster::ConnectionString(const std::string& dbname) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=" + dbname;
}

std::string PgCluster::ConnectionUri(const std::string& dbname) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + dbname;
}

Status PgCluster::Execute(const std::string& dbname, const std::string& sql) {
  try {
    pqxx::connection conn(ConnectionString(dbname));
    pqxx::nontransaction tx(conn);
    tx.exec(sql);
    return Status::Ok();
  } catch (const pqxx::sql_error& e) {
    if (e.sqlstate() == "42P04") return Status::AlreadyExists(e.what());
    return Status::Internal(std::string(e.what()) + " (sql: " + sql.substr(0, 200) + ")");
  } catch (const std::exception& e) {
    return Status::Unavailable(e.what());
  }
}

Status PgCluster::CreateDatabase(const std::string& name) {
  return Execute("postgres", "CREATE DATABASE \"" + name + "\"");
}

Status PgCluster::DropDatabase(const std::string& name) {
  return Execute("postgres", "DROP DATABASE IF EXISTS \"" + name + "\" WITH (FORCE)");
}

std::string PgCluster::CreateUniqueDatabase(const std::string& prefix) {
  static std::atomic<int> counter{0};
  std::string name = prefix + "_" + std::to_string(getpid()) + "_" + std::to_string(++counter);
  Status s = CreateDatabase(name);
  CHECK(s.ok()) << "CREATE DATABASE " << name << ": " << s;
  return name;
}

PgCluster* SharedPgCluster() {
  static std::mutex mu;
  static std::unique_ptr<PgCluster> cluster;  // stopped by its destructor at exit
  static Status failure;
  std::lock_guard<std::mutex> lock(mu);
  if (cluster == nullptr && failure.ok()) {
    auto started = PgCluster::Start({});
    if (started.ok()) {
      cluster = std::move(started).value();
    } else {
      failure = started.status();
    }
  }
  CHECK(cluster != nullptr) << "the shared test PostgreSQL could not start: " << failure;
  return cluster.get();
}

}  // namespace testing
}  // namespace txc
