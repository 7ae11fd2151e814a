// The process suite's transport: plaintext by default, mutual TLS on every
// Thrift connection when the environment has TXC_TEST_TLS=1 (scripts/test.sh
// runs the `process` label that way). Every process test builds its
// coordinators, participants and clients through this one piece, so the same
// tests run either way:
//
//   const auto& tls = txc::testing::SuiteTls::Get();
//   o.argv = {TXC_COORDINATOR_BIN, "--port=..."};
//   tls.AppendCoordinatorFlags(&o.argv);      // --tls_* --participant_tls, or nothing
//   bank.argv += tls.ServiceFlags();          // an SDK participant binary
//   txcctl.argv += tls.TxcctlFlags();         // the admin identity
//   CoordinatorClientOptions co; co.tls = tls.ClientTls();
//   ParticipantServerOptions po; po.tls = po.coordinator_client.tls = tls.ServiceTls();
//   OpenConnection<wire::CoordinatorClient>(hp, tls.Connect({1000, 20000}));
//
// In plaintext mode every flag list is empty, every TlsOptions is disabled
// and Connect() returns its argument, so a test needs no branch of its own.
//
// In TLS mode one throwaway CA per test process (TestCa, openssl CLI) issues
// four identities, each good for server and client authentication and
// carrying the loopback SANs (DNS:localhost, IP:127.0.0.1):
//   txc-suite-coordinator  every coordinator: its port and its calls to participants
//   txc-suite-service      every participant (SDK server, example services,
//                          header_echo_service): its port and its calls to coordinators
//   txc-suite-client       clients (SDK CoordinatorClient in tests, order_client,
//                          transfer, raw Thrift connections)
//   txc-suite-admin        txcctl
// Coordinators run without a policy file: any verified identity may call any
// method (roles have their own tests in tests/authz).
//
// Tests that are about plaintext on purpose (the loopback default, a
// plaintext client refused by a TLS port, the Python probes) and tests that
// bring their own certificates (tests/security, tests/authz TLS) do not use
// this and say so.
//
// Thread-safety: Get() may be called from any thread; the returned object is
// immutable.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/thrift_util.h"
#include "common/tls.h"
#include "tests/harness/test_certs.h"

namespace txc {
namespace testing {

class SuiteTls {
 public:
  // Whether TXC_TEST_TLS is set to 1 (or "true"/"yes"/"on").
  static bool Enabled();

  // The process's instance. In TLS mode the first call makes the CA and the
  // certificates (LOG(FATAL) with openssl's output when that fails).
  static const SuiteTls& Get();

  bool enabled() const { return ca_ != nullptr; }
  // "plaintext" or "mutual TLS (CA <file>)", for logs.
  std::string Describe() const;

  // A coordinator process: mutual TLS on its port (--tls_cert/--tls_key/--tls_ca),
  // and TLS with the same identity to participants (--participant_tls).
  std::vector<std::string> CoordinatorFlags() const;
  // An SDK participant binary (bank, the order-payment services,
  // header_echo_service, rpc_context_inventory): its port and its calls.
  std::vector<std::string> ServiceFlags() const;
  // A client binary of the examples (order_client, transfer, rpc_context_client).
  std::vector<std::string> ClientFlags() const;
  // txcctl (the admin identity).
  std::vector<std::string> TxcctlFlags() const;

  // Appends the corresponding flags to an argv.
  void AppendCoordinatorFlags(std::vector<std::string>* argv) const {
    Append(CoordinatorFlags(), argv);
  }
  void AppendServiceFlags(std::vector<std::string>* argv) const { Append(ServiceFlags(), argv); }
  void AppendClientFlags(std::vector<std::string>* argv) const { Append(ClientFlags(), argv); }
  void AppendTxcctlFlags(std::vector<std::string>* argv) const { Append(TxcctlFlags(), argv); }

  // In-process SDK objects: a client of coordinators (CoordinatorClientOptions::tls,
  // shop::ShopEndpoints::tls, bank::TransferOptions::tls) ...
  TlsOptions ClientTls() const;
  // ... a participant server (ParticipantServerOptions::tls and its
  // coordinator_client.tls) ...
  TlsOptions ServiceTls() const;
  // ... and the admin identity.
  TlsOptions AdminTls() const;

  // A raw Thrift connection to a coordinator (OpenConnection, ClientPool):
  // `base` with the client identity's TLS context (shared, loaded once).
  ConnectOptions Connect(ConnectOptions base = {}) const;

 private:
  SuiteTls() = default;
  static void Append(const std::vector<std::string>& flags, std::vector<std::string>* argv) {
    argv->insert(argv->end(), flags.begin(), flags.end());
  }
  static std::vector<std::string> Flags(const TestCa& ca, const TestCa::Issued& cert);

  std::unique_ptr<TestCa> ca_;  // null: plaintext
  TestCa::Issued coordinator_, service_, client_, admin_;
  std::shared_ptr<TlsContext> client_context_;  // for Connect()
};

}  // namespace testing
}  // namespace txc
