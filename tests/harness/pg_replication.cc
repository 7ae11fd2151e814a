#include "tests/harness/pg_replication.h"

#include <glog/logging.h>

#include "tests/harness/process.h"

namespace txc {
namespace testing {

Result<std::unique_ptr<SyncStandbyPair>> SyncStandbyPair::Start(SyncStandbyPairOptions options) {
  std::unique_ptr<SyncStandbyPair> pair(new SyncStandbyPair());
  pair->options_ = options;
  PgClusterOptions primary;
  primary.start_timeout_ms = options.start_timeout_ms;
  primary.extra_settings = {"wal_level = replica", "max_wal_senders = 10", "wal_keep_size = 256MB",
                            "hot_standby = on"};
  TXC_ASSIGN_OR_RETURN(pair->primary_, PgCluster::Start(primary));
  PgClusterOptions standby;
  standby.start_timeout_ms = options.start_timeout_ms;
  standby.standby_of_port = pair->primary_->port();
  standby.standby_name = "standby";
  TXC_ASSIGN_OR_RETURN(pair->standby_, PgCluster::Start(standby));
  TXC_RETURN_IF_ERROR(pair->primary_->Execute(
      "postgres", "ALTER SYSTEM SET synchronous_standby_names = 'standby'"));
  TXC_RETURN_IF_ERROR(pair->primary_->Execute("postgres", "SELECT pg_reload_conf()"));
  Status last;
  bool sync = WaitUntil(
      [&] {
        auto state = pair->primary_->QueryValue(
            "postgres",
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'");
        last = state.status();
        return state.ok() && *state == "sync";
      },
      options.start_timeout_ms);
  if (!sync) {
    return Status::Timeout("the standby never became synchronous (last: " + last.ToString() +
                           ")\nstandby log:\n" + ReadFileOrEmpty(pair->standby_->log_path()));
  }
  VLOG(1) << "sync standby pair: primary " << pair->primary_->port() << ", standby "
          << pair->standby_->port();
  return pair;
}

std::string SyncStandbyPair::MultiHostConnectionString(const std::string& dbname) const {
  return "host=127.0.0.1,127.0.0.1 port=" + std::to_string(primary_->port()) + "," +
         std::to_string(standby_->port()) + " user=postgres dbname=" + dbname +
         " target_session_attrs=read-write connect_timeout=2";
}

Status SyncStandbyPair::CreateDatabase(const std::string& name) {
  TXC_RETURN_IF_ERROR(primary_->CreateDatabase(name));
  bool replicated = WaitUntil(
      [&] {
        auto n = standby_->QueryValue(
            "postgres", "SELECT count(*) FROM pg_database WHERE datname = '" + name + "'");
        return n.ok() && *n == "1";
      },
      options_.start_timeout_ms);
  if (!replicated) return Status::Timeout("database " + name + " never reached the standby");
  return Status::Ok();
}

Status SyncStandbyPair::FailOver() {
  TXC_RETURN_IF_ERROR(primary_->Stop("immediate"));
  TXC_RETURN_IF_ERROR(standby_->Promote());
  return Status::Ok();
}

Status SyncStandbyPair::StopStandby() { return standby_->Stop("immediate"); }

Status SyncStandbyPair::RestartStandby() { return standby_->Restart(); }

}  // namespace testing
}  // namespace txc
