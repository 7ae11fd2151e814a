#include "tests/harness/suite_tls.h"

#include <glog/logging.h>

#include <cstdlib>
#include <utility>

namespace txc {
namespace testing {

bool SuiteTls::Enabled() {
  const char* v = getenv("TXC_TEST_TLS");
  if (v == nullptr) return false;
  const std::string s(v);
  return s == "1" || s == "true" || s == "yes" || s == "on";
}

const SuiteTls& SuiteTls::Get() {
  static const SuiteTls* const instance = [] {
    // Destroyed at exit (removing the CA directory), after every fixture and
    // so after every child process that reads its files.
    static SuiteTls suite;
    if (!Enabled()) {
      LOG(INFO) << "process suite transport: plaintext (TXC_TEST_TLS=1 for mutual TLS)";
      return &suite;
    }
    auto ca = TestCa::Create("txc-suite-ca");
    CHECK(ca.ok()) << "TXC_TEST_TLS: cannot make the suite CA: " << ca.status();
    suite.ca_ = std::move(ca).value();
    auto issue = [&](const std::string& name, TestCa::Issued* out) {
      auto issued = suite.ca_->IssueLoopbackServer(name, name);
      CHECK(issued.ok()) << "TXC_TEST_TLS: cannot issue " << name << ": " << issued.status();
      *out = *issued;
    };
    issue("txc-suite-coordinator", &suite.coordinator_);
    issue("txc-suite-service", &suite.service_);
    issue("txc-suite-client", &suite.client_);
    issue("txc-suite-admin", &suite.admin_);
    auto context = TlsContext::Create(suite.ClientTls(), TlsRole::kClient);
    CHECK(context.ok()) << "TXC_TEST_TLS: client TLS context: " << context.status();
    suite.client_context_ = std::move(context).value();
    LOG(INFO) << "process suite transport: " << suite.Describe();
    return &suite;
  }();
  return *instance;
}

std::string SuiteTls::Describe() const {
  return enabled() ? "mutual TLS (CA " + ca_->ca_file() + ")" : "plaintext";
}

std::vector<std::string> SuiteTls::Flags(const TestCa& ca, const TestCa::Issued& cert) {
  return {"--tls_cert=" + cert.cert_file, "--tls_key=" + cert.key_file, "--tls_ca=" + ca.ca_file()};
}

std::vector<std::string> SuiteTls::CoordinatorFlags() const {
  if (!enabled()) return {};
  std::vector<std::string> flags = Flags(*ca_, coordinator_);
  flags.push_back("--participant_tls");
  return flags;
}

std::vector<std::string> SuiteTls::ServiceFlags() const {
  return enabled() ? Flags(*ca_, service_) : std::vector<std::string>{};
}

std::vector<std::string> SuiteTls::ClientFlags() const {
  return enabled() ? Flags(*ca_, client_) : std::vector<std::string>{};
}

std::vector<std::string> SuiteTls::TxcctlFlags() const {
  return enabled() ? Flags(*ca_, admin_) : std::vector<std::string>{};
}

TlsOptions SuiteTls::ClientTls() const { return enabled() ? ca_->Options(client_) : TlsOptions{}; }

TlsOptions SuiteTls::ServiceTls() const {
  return enabled() ? ca_->Options(service_) : TlsOptions{};
}

TlsOptions SuiteTls::AdminTls() const { return enabled() ? ca_->Options(admin_) : TlsOptions{}; }

ConnectOptions SuiteTls::Connect(ConnectOptions base) const {
  if (enabled()) base.tls = client_context_;
  return base;
}

}  // namespace testing
}  // namespace txc
