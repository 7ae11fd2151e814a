// Metrics and probes, with real processes: a coordinator on a throwaway
// PostgreSQL, a participant (the SDK's ParticipantServer, in this process,
// voting PREPARED), and a real Prometheus (Debian package `prometheus`) on
// loopback with its own config and data directory, scraping the coordinator
// and evaluating the example alert rules (deploy/prometheus/txc-alerts.yml).
//
//  * after N committed and M rolled-back transactions, Prometheus's HTTP API
//    (/api/v1/query) returns the counters that must hold (finished >= N,
//    participant prepare/commit calls >= 2N, ...);
//  * `promtool check metrics` accepts the /metrics output and `promtool check
//    rules` the alert rules;
//  * /readyz turns 503 while the store is down (the lease cannot be renewed,
//    then not re-acquired) and 200 again once it is back, with a new lease
//    epoch and a counted lease loss; /healthz stays 200 throughout;
//  * with TLS (MetricsTlsProcessTest): the HTTP port is HTTPS with mutual TLS
//    and --auth_policy; Prometheus scrapes it with tls_config (up 1), a scrape
//    job whose certificate lacks the reader role is refused 403 (up 0); no
//    certificate, another CA's and plaintext are refused; the plaintext probe
//    port (--http_probe_port) serves /healthz and /readyz only; SIGHUP
//    switches the HTTPS port to new certificate files.
//
// Every wait has a deadline; nothing is asserted about time.
#include <glog/logging.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "common/backoff.h"
#include "tests/harness/http_client.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"
#include "tests/harness/test_certs.h"
#include "txc/participant/coordinator_client.h"
#include "txc/participant/participant.h"
#include "txc/participant/participant_server.h"

namespace txc {
namespace {

using testing::ChildProcess;

constexpr int64_t kWaitMs = 60000;
constexpr int kLeaseTtlMs = 1000;

using testing::HttpGet;
using testing::HttpResult;
using testing::TestCa;

std::string UrlEncode(const std::string& s) {
  std::string out;
  char buf[4];
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// A participant that prepares and commits every branch (nothing durable to
// do: the test is about the coordinator's view of the calls).
class AlwaysPrepared : public participant::Participant {
 public:
  participant::Vote Prepare(const participant::BranchContext&) override {
    return participant::Vote::kPrepared;
  }
  void Commit(const participant::BranchContext&) override {}
  void Abort(const participant::BranchContext&) override {}
  std::vector<participant::PreparedBranch> Recover() override { return {}; }
};

class MetricsProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<testing::TempDir>("txc-metrics-");
    if (tls_) MakeCertificates();
    auto pg = testing::PgCluster::Start({});
    ASSERT_TRUE(pg.ok()) << pg.status();
    pg_ = std::move(pg).value();
    ASSERT_TRUE(pg_->CreateDatabase("coord").ok());

    coordinator_port_ = testing::FreeLoopbackPort();
    http_port_ = testing::FreeLoopbackPort();
    ChildProcess::Options o;
    o.argv = {TXC_COORDINATOR_BIN,
              "--host=127.0.0.1",
              "--port=" + std::to_string(coordinator_port_),
              "--http_port=" + std::to_string(http_port_),
              "--data_dir=" + dir_->Child("coord"),
              "--store=" + pg_->ConnectionString("coord"),
              "--node_id=metrics-node",
              "--lease_ttl_ms=" + std::to_string(kLeaseTtlMs),
              "--metrics_store_refresh_ms=200",
              "--sweep_interval_ms=100"};
    if (tls_) {
      probe_port_ = testing::FreeLoopbackPort();
      o.argv.insert(
          o.argv.end(),
          {"--tls_cert=" + server_tls_.cert_file, "--tls_key=" + server_tls_.key_file,
           "--tls_ca=" + server_tls_.ca_file, "--auth_policy=" + dir_->Child("policy.conf"),
           "--http_probe_port=" + std::to_string(probe_port_)});
    }
    o.log_path = dir_->Child("coordinator.log");
    auto child = ChildProcess::Start(o);
    ASSERT_TRUE(child.ok()) << child.status();
    coordinator_ = std::move(child).value();
    ASSERT_TRUE(testing::WaitForPort(coordinator_port_, kWaitMs).ok()) << coordinator_->LogTail();
    ASSERT_TRUE(testing::WaitUntil(
        [&] { return HttpGet(http_port_, "/readyz", scrape_tls_).status == 200; }, kWaitMs))
        << coordinator_->LogTail();

    participant::ParticipantServerOptions po;
    po.host = "127.0.0.1";
    po.coordinators = {Endpoint()};
    po.coordinator_client.tls = client_tls_;
    participant_ =
        std::make_unique<participant::ParticipantServer>(std::make_shared<AlwaysPrepared>(), po);
    ASSERT_TRUE(participant_->Start().ok());

    participant::CoordinatorClientOptions co;
    co.endpoints = {Endpoint()};
    co.rpc_timeout_ms = 5000;
    co.tls = client_tls_;
    auto client = participant::CoordinatorClient::Create(co);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(client).value();
  }

  void TearDown() override {
    if (HasFailure()) {
      if (coordinator_) LOG(ERROR) << "coordinator log:\n" << coordinator_->LogTail(8000);
      if (prometheus_) LOG(ERROR) << "prometheus log:\n" << prometheus_->LogTail(4000);
    }
    client_.reset();
    if (participant_) participant_->Stop();
    prometheus_.reset();
    coordinator_.reset();
  }

  std::string Endpoint() const { return "127.0.0.1:" + std::to_string(coordinator_port_); }

  // TLS: a CA and the coordinator's certificate (copied to files SIGHUP
  // re-reads), certificates for Prometheus (reader), the test's client
  // (client, participant), a service with the client role only ("orders"),
  // and the policy file.
  void MakeCertificates() {
    auto ca = TestCa::Create("metrics-test-ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(ca).value();
    auto server = ca_->IssueLoopbackServer("coordinator", "coordinator");
    auto prometheus = ca_->Issue("prometheus", "prometheus");
    auto client = ca_->Issue("test-client", "test-client");
    auto orders = ca_->Issue("orders", "orders");
    ASSERT_TRUE(server.ok() && prometheus.ok() && client.ok() && orders.ok());
    server_tls_.cert_file = dir_->Child("coordinator.pem");
    server_tls_.key_file = dir_->Child("coordinator.key");
    server_tls_.ca_file = dir_->Child("ca.pem");
    InstallServerCertificate(ca_->Options(*server));
    scrape_tls_ = ca_->Options(*prometheus);
    client_tls_ = ca_->Options(*client);
    orders_tls_ = ca_->Options(*orders);
    std::ofstream(dir_->Child("policy.conf")) << "prometheus = reader\n"
                                                 "test-client = client, participant\n"
                                                 "orders = client\n";
  }

  // Copies a certificate, its key and its CA bundle to the files the
  // coordinator was started with.
  void InstallServerCertificate(const TlsOptions& from) {
    for (const auto& [src, dst] : {std::make_pair(from.cert_file, server_tls_.cert_file),
                                   std::make_pair(from.key_file, server_tls_.key_file),
                                   std::make_pair(from.ca_file, server_tls_.ca_file)}) {
      std::ofstream(dst, std::ios::trunc) << testing::ReadFileOrEmpty(src);
    }
  }

  // begin + two branches + commit (waiting for phase 2), or rollback.
  void RunTransaction(bool commit) {
    wire::BeginRequest req;
    req.timeout_ms = 30000;
    auto begun = client_->Begin(req);
    ASSERT_TRUE(begun.ok()) << begun.status();
    for (const char* id : {"a", "b"}) {
      wire::EnlistRequest e;
      e.gtid = begun->gtid;
      e.branch.branch_id = id;
      e.branch.endpoint = participant_->endpoint();
      e.branch.resource = "r";
      ASSERT_TRUE(client_->Enlist(e).ok());
    }
    if (commit) {
      wire::CommitRequest c;
      c.gtid = begun->gtid;
      c.wait = wire::CommitWait::WAIT_COMPLETION;
      c.wait_timeout_ms = 10000;
      auto r = client_->Commit(c);
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_EQ(r->state, wire::TxnState::COMMITTED);
    } else {
      auto r = client_->Rollback(begun->gtid);
      ASSERT_TRUE(r.ok()) << r.status();
    }
  }

  // Starts Prometheus scraping the coordinator every 250 ms, with the
  // example alert rules loaded.
  void StartPrometheus() {
    prometheus_port_ = testing::FreeLoopbackPort();
    const std::string config = dir_->Child("prometheus.yml");
    // With TLS, one job scrapes with Prometheus's certificate (reader), and
    // one with a certificate that has the client role only.
    auto tls_job = [&](const std::string& job, const TlsOptions& tls) {
      return "  - job_name: " + job +
             "\n"
             "    scheme: https\n"
             "    tls_config:\n"
             "      ca_file: " +
             tls.ca_file + "\n      cert_file: " + tls.cert_file +
             "\n      key_file: " + tls.key_file +
             "\n"
             "    static_configs:\n"
             "      - targets: ['127.0.0.1:" +
             std::to_string(http_port_) + "']\n";
    };
    std::ofstream(config) << "global:\n"
                             "  scrape_interval: 250ms\n"
                             "  evaluation_interval: 250ms\n"
                             "rule_files:\n"
                             "  - "
                          << TXC_ALERT_RULES
                          << "\n"
                             "scrape_configs:\n"
                          << (tls_ ? tls_job("txc-coordinator", scrape_tls_) +
                                         tls_job("txc-orders", orders_tls_)
                                   : "  - job_name: txc-coordinator\n"
                                     "    static_configs:\n"
                                     "      - targets: ['127.0.0.1:" +
                                         std::to_string(http_port_) + "']\n");
    ChildProcess::Options o;
    o.argv = {"prometheus", "--config.file=" + config,
              "--storage.tsdb.path=" + dir_->Child("prometheus-data"),
              "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port_),
              "--log.level=warn"};
    o.log_path = dir_->Child("prometheus.log");
    auto child = ChildProcess::Start(o);
    ASSERT_TRUE(child.ok()) << child.status() << " (install the Debian package prometheus)";
    prometheus_ = std::move(child).value();
    ASSERT_TRUE(testing::WaitUntil(
        [&] { return HttpGet(prometheus_port_, "/-/ready").status == 200; }, kWaitMs))
        << prometheus_->LogTail();
  }

  // The value of a PromQL expression that yields one sample; NaN when
  // Prometheus answers no sample (yet).
  double Query(const std::string& expr) {
    HttpResult r = HttpGet(prometheus_port_, "/api/v1/query?query=" + UrlEncode(expr));
    if (r.status != 200) return std::nan("");
    // {"status":"success","data":{"resultType":"vector","result":[{"metric":{...},"value":[1.7e9,"42"]}]}}
    static const std::regex kValue(R"re("value":\[[0-9.e+]+,"([^"]+)"\])re");
    std::smatch m;
    if (!std::regex_search(r.body, m, kValue)) return std::nan("");
    return std::strtod(m[1].str().c_str(), nullptr);
  }

  // Waits until `expr` >= at_least in Prometheus; the last value seen otherwise.
  double WaitForAtLeast(const std::string& expr, double at_least) {
    double last = std::nan("");
    testing::WaitUntil(
        [&] {
          last = Query(expr);
          return !std::isnan(last) && last >= at_least;
        },
        kWaitMs);
    return last;
  }

  bool tls_ = false;  // set by MetricsTlsProcessTest's constructor
  std::unique_ptr<testing::TempDir> dir_;
  std::unique_ptr<TestCa> ca_;
  // TLS only: the coordinator's files; the certificates of Prometheus
  // (reader), of this test's clients (client, participant) and of "orders"
  // (client). Empty without TLS (plaintext).
  TlsOptions server_tls_, scrape_tls_, client_tls_, orders_tls_;
  std::unique_ptr<testing::PgCluster> pg_;
  int coordinator_port_ = 0, http_port_ = 0, prometheus_port_ = 0, probe_port_ = 0;
  std::unique_ptr<ChildProcess> coordinator_, prometheus_;
  std::unique_ptr<participant::ParticipantServer> participant_;
  std::unique_ptr<participant::CoordinatorClient> client_;
};

TEST_F(MetricsProcessTest, PrometheusScrapesTheSeriesThatMustHold) {
  StartPrometheus();
  constexpr int kCommits = 20;
  constexpr int kRollbacks = 3;
  for (int i = 0; i < kCommits; ++i) RunTransaction(true);
  for (int i = 0; i < kRollbacks; ++i) RunTransaction(false);
  if (HasFailure()) return;

  EXPECT_GE(WaitForAtLeast(
                R"(sum(txc_transactions_finished_total{kind="two_phase",outcome="committed"}))",
                kCommits),
            kCommits);
  // Prometheus has scraped at least once after the load: the rest is exact.
  EXPECT_GE(Query(R"(sum(txc_transactions_begun_total{kind="two_phase"}))"), kCommits + kRollbacks);
  EXPECT_GE(
      WaitForAtLeast(R"(sum(txc_transactions_finished_total{outcome="aborted"}))", kRollbacks),
      kRollbacks);
  const std::string endpoint = participant_->endpoint();
  EXPECT_GE(
      WaitForAtLeast(R"(sum(txc_participant_calls_total{method="prepare",result="ok",endpoint=")" +
                         endpoint + "\"})",
                     2 * kCommits),
      2 * kCommits);
  EXPECT_GE(WaitForAtLeast(R"(sum(txc_participant_calls_total{method="commit",result="ok"}))",
                           2 * kCommits),
            2 * kCommits);
  EXPECT_GE(WaitForAtLeast(R"(sum(txc_participant_call_duration_seconds_count{method="prepare"}))",
                           2 * kCommits),
            2 * kCommits);
  // Every begin, enlist and decision is durable: at least one store transaction each.
  EXPECT_GE(
      WaitForAtLeast(R"(sum(txc_group_commit_batches_per_store_transaction_sum))", 3 * kCommits),
      3 * kCommits);
  EXPECT_GE(WaitForAtLeast(R"(sum(txc_group_commit_store_transactions_total{result="ok"}))", 1), 1);
  EXPECT_EQ(Query(R"(sum(txc_group_commit_store_transactions_total{result="error"}))"), 0);
  EXPECT_GE(WaitForAtLeast("txc_lease_epoch", 1), 1);
  EXPECT_EQ(Query("txc_lease_held"), 1);
  EXPECT_GE(WaitForAtLeast("txc_lease_renewals_total", 1), 1);
  EXPECT_GE(WaitForAtLeast("txc_sweeper_passes_total", 1), 1);
  EXPECT_GE(WaitForAtLeast("txc_unfinished_scan_up", 1), 1);
  EXPECT_EQ(Query(R"(sum(txc_transactions_unfinished))"), 0);  // all finished
  EXPECT_EQ(Query("txc_transactions_parked"), 0);
  EXPECT_EQ(Query(R"(up{job="txc-coordinator"})"), 1);
  // The alert rules were loaded and evaluate (no rule group in error).
  HttpResult rules = HttpGet(prometheus_port_, "/api/v1/rules");
  EXPECT_EQ(rules.status, 200);
  EXPECT_NE(rules.body.find("TxcSagaParked"), std::string::npos) << rules.body;
  EXPECT_EQ(rules.body.find("\"health\":\"err\""), std::string::npos) << rules.body;
  const double quantile = Query(
      R"(histogram_quantile(0.5, sum by (le) (txc_participant_call_duration_seconds_bucket)))");
  std::printf("participant call p50 per Prometheus: %.6f s\n", quantile);

  // promtool accepts the exposition as served.
  HttpResult metrics = HttpGet(http_port_, "/metrics");
  ASSERT_EQ(metrics.status, 200);
  const std::string metrics_file = dir_->Child("metrics.txt");
  std::ofstream(metrics_file) << metrics.body;
  ChildProcess::Options check;
  check.argv = {"sh", "-c", "promtool check metrics < " + metrics_file};
  check.log_path = dir_->Child("promtool-metrics.log");
  Status checked = testing::RunCommand(check, kWaitMs);
  EXPECT_TRUE(checked.ok()) << checked << "\n" << testing::ReadFileOrEmpty(check.log_path);
}

TEST_F(MetricsProcessTest, AlertRulesPassPromtool) {
  ChildProcess::Options check;
  check.argv = {"promtool", "check", "rules", TXC_ALERT_RULES};
  check.log_path = dir_->Child("promtool-rules.log");
  Status checked = testing::RunCommand(check, kWaitMs);
  EXPECT_TRUE(checked.ok()) << checked << "\n" << testing::ReadFileOrEmpty(check.log_path);
}

TEST_F(MetricsProcessTest, ReadyzFollowsTheStoreAndTheLease) {
  RunTransaction(true);
  ASSERT_EQ(HttpGet(http_port_, "/readyz").status, 200);
  auto epoch_of = [&]() -> double {
    HttpResult m = HttpGet(http_port_, "/metrics");
    std::smatch match;
    static const std::regex kEpoch("\ntxc_lease_epoch ([0-9]+)\n");
    if (!std::regex_search(m.body, match, kEpoch)) return -1;
    return std::strtod(match[1].str().c_str(), nullptr);
  };
  const double epoch_before = epoch_of();
  ASSERT_GE(epoch_before, 1);

  // Store down: not ready at once (the store reports the failed calls), and
  // once no renewal succeeded for a whole TTL the lease is lost and cannot be
  // acquired again while the store stays down.
  ASSERT_TRUE(pg_->Stop("immediate").ok());
  HttpResult ready;
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        ready = HttpGet(http_port_, "/readyz");
        return ready.status == 503 &&
               ready.body.find("acquiring the lease again") != std::string::npos;
      },
      kWaitMs))
      << ready.status << " " << ready.body;
  LOG(INFO) << "while the store is down: /readyz " << ready.status << " " << ready.body;
  EXPECT_EQ(HttpGet(http_port_, "/healthz").status, 200);  // the process is up
  EXPECT_EQ(HttpGet(http_port_, "/metrics").status, 200);  // and observable

  ASSERT_TRUE(pg_->Restart().ok());
  EXPECT_TRUE(
      testing::WaitUntil([&] { return HttpGet(http_port_, "/readyz").status == 200; }, kWaitMs));
  EXPECT_GT(epoch_of(), epoch_before);
  HttpResult m = HttpGet(http_port_, "/metrics");
  EXPECT_EQ(m.body.find("\ntxc_lease_losses_total 0\n"), std::string::npos) << m.body;
  EXPECT_EQ(m.body.find("\ntxc_lease_renewal_failures_total 0\n"), std::string::npos);
  RunTransaction(true);  // and serving again
}

TEST_F(MetricsProcessTest, ReadyAgainAfterAPausePastTheLease) {
  ASSERT_EQ(HttpGet(http_port_, "/readyz").status, 200);
  ASSERT_TRUE(coordinator_->Kill(SIGSTOP).ok());
  // Paused for three TTLs (fault injection, not synchronisation: the lease
  // must run out while the process cannot renew it).
  const int64_t until = MonotonicMs() + 3 * kLeaseTtlMs;
  testing::WaitUntil([&] { return MonotonicMs() >= until; }, 10 * kLeaseTtlMs);
  ASSERT_TRUE(coordinator_->Kill(SIGCONT).ok());
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        HttpResult m = HttpGet(http_port_, "/metrics");
        return m.status == 200 && m.body.find("\ntxc_lease_losses_total 1\n") != std::string::npos;
      },
      kWaitMs));
  EXPECT_TRUE(
      testing::WaitUntil([&] { return HttpGet(http_port_, "/readyz").status == 200; }, kWaitMs));
  RunTransaction(true);
}

TEST_F(MetricsProcessTest, BadHttpRequestsGet4xxAndThriftKeepsServing) {
  EXPECT_EQ(HttpGet(http_port_, "/nope").status, 404);
  EXPECT_EQ(HttpGet(http_port_, "/metrics?x=1").status, 200);
  RunTransaction(true);
}

class MetricsTlsProcessTest : public MetricsProcessTest {
 protected:
  MetricsTlsProcessTest() { tls_ = true; }
};

TEST_F(MetricsTlsProcessTest, PrometheusScrapesOverMutualTlsAndAReaderRoleIsNeeded) {
  StartPrometheus();
  constexpr int kCommits = 5;
  for (int i = 0; i < kCommits; ++i) RunTransaction(true);
  if (HasFailure()) return;
  EXPECT_GE(WaitForAtLeast(
                R"(sum(txc_transactions_finished_total{kind="two_phase",outcome="committed"}))",
                kCommits),
            kCommits);
  EXPECT_EQ(Query(R"(up{job="txc-coordinator"})"), 1);
  // The job whose certificate holds only the client role: scraped, refused.
  double orders_up = std::nan("");
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        orders_up = Query(R"(up{job="txc-orders"})");
        return !std::isnan(orders_up);
      },
      kWaitMs));
  EXPECT_EQ(orders_up, 0);
  HttpResult targets = HttpGet(prometheus_port_, "/api/v1/targets");
  EXPECT_NE(targets.body.find("403 Forbidden"), std::string::npos) << targets.body;
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        return testing::ReadFileOrEmpty(dir_->Child("coordinator.log"))
                   .find("http: refused GET /metrics to CN=orders") != std::string::npos;
      },
      kWaitMs))
      << coordinator_->LogTail();

  // promtool accepts the exposition as served over mutual TLS.
  HttpResult metrics = HttpGet(http_port_, "/metrics", scrape_tls_);
  ASSERT_EQ(metrics.status, 200) << metrics.error;
  const std::string metrics_file = dir_->Child("metrics.txt");
  std::ofstream(metrics_file) << metrics.body;
  ChildProcess::Options check;
  check.argv = {"sh", "-c", "promtool check metrics < " + metrics_file};
  check.log_path = dir_->Child("promtool-metrics.log");
  Status checked = testing::RunCommand(check, kWaitMs);
  EXPECT_TRUE(checked.ok()) << checked << "\n" << testing::ReadFileOrEmpty(check.log_path);
}

TEST_F(MetricsTlsProcessTest, HttpsPortRefusesCallersWithoutTheRightCertificate) {
  // No certificate: the handshake fails (under TLS 1.3 the client sees it on
  // its first read).
  TlsOptions no_cert;
  no_cert.ca_file = ca_->ca_file();
  HttpResult r = HttpGet(http_port_, "/healthz", no_cert);
  EXPECT_EQ(r.status, 0) << r.body;
  // A certificate from another CA.
  auto other = TestCa::Create("other-ca");
  ASSERT_TRUE(other.ok()) << other.status();
  auto stranger = (*other)->Issue("prometheus", "prometheus");
  ASSERT_TRUE(stranger.ok());
  TlsOptions stranger_tls = (*other)->Options(*stranger);
  stranger_tls.ca_file = ca_->ca_file();
  r = HttpGet(http_port_, "/metrics", stranger_tls);
  EXPECT_EQ(r.status, 0) << r.body;
  // Plaintext: a 400 saying what the port wants.
  r = HttpGet(http_port_, "/metrics");
  EXPECT_EQ(r.status, 400) << r.error;
  EXPECT_NE(r.body.find("HTTPS"), std::string::npos) << r.body;
  // A verified certificate without reader or admin: 403 for /metrics, the
  // probes for any role.
  r = HttpGet(http_port_, "/metrics", orders_tls_);
  EXPECT_EQ(r.status, 403) << r.error;
  EXPECT_NE(r.body.find("needs the reader or admin role; CN=orders"), std::string::npos) << r.body;
  EXPECT_EQ(HttpGet(http_port_, "/readyz", orders_tls_).status, 200);
  EXPECT_EQ(HttpGet(http_port_, "/metrics", scrape_tls_).status, 200);
  // The plaintext probe port: the probes only, no reason text.
  EXPECT_EQ(HttpGet(probe_port_, "/healthz").status, 200);
  r = HttpGet(probe_port_, "/readyz");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "ready\n");
  EXPECT_EQ(HttpGet(probe_port_, "/metrics").status, 404);
  const std::string log = testing::ReadFileOrEmpty(dir_->Child("coordinator.log"));
  EXPECT_NE(log.find("TLS handshake failed"), std::string::npos) << log;
  EXPECT_NE(log.find("plaintext HTTP on the HTTPS port"), std::string::npos) << log;
  // And the Thrift port serves on.
  RunTransaction(true);
}

TEST_F(MetricsTlsProcessTest, SighupSwitchesTheHttpsPortToNewCertificateFiles) {
  ASSERT_EQ(HttpGet(http_port_, "/metrics", scrape_tls_).status, 200);
  auto next = TestCa::Create("next-ca");
  ASSERT_TRUE(next.ok()) << next.status();
  auto server = (*next)->IssueLoopbackServer("coordinator", "coordinator");
  auto prometheus = (*next)->Issue("prometheus", "prometheus");
  ASSERT_TRUE(server.ok() && prometheus.ok());
  InstallServerCertificate((*next)->Options(*server));
  const TlsOptions next_scrape = (*next)->Options(*prometheus);
  // Not re-read before the signal.
  EXPECT_EQ(HttpGet(http_port_, "/metrics", next_scrape).status, 0);
  ASSERT_TRUE(coordinator_->Kill(SIGHUP).ok());
  HttpResult r;
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        r = HttpGet(http_port_, "/metrics", next_scrape);
        return r.status == 200;
      },
      kWaitMs))
      << r.status << " " << r.error << "\n"
      << coordinator_->LogTail();
  // Certificates of the old CA no longer pass.
  EXPECT_EQ(HttpGet(http_port_, "/metrics", scrape_tls_).status, 0);
}

}  // namespace
}  // namespace txc
