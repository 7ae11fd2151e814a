// rpc_integration_shop: the front service (shop.thrift). buy() begins a global
// transaction, calls Inventory.reserve and Payment.charge -- generated clients
// of IDLs without any transaction field, wrapped in TxnHeaderClient so the
// context rides along as a header -- and commits. A downstream refusal rolls
// the whole transaction back.
//
//   rpc_integration_shop --port 7601 --coordinators 127.0.0.1:7400
//       --inventory 127.0.0.1:7611 --payment 127.0.0.1:7621
//       [--tls_cert shop.pem --tls_key shop.key --tls_ca ca.pem]   # mutual TLS everywhere
#include "gen-cpp/Shop.h"

#include <glog/logging.h>
#include <signal.h>

#include <boost/program_options.hpp>

#include "common/cli.h"
#include "common/strings.h"
#include "common/thrift_server.h"
#include "gen-cpp/Inventory.h"
#include "gen-cpp/Payment.h"
#include "txc/participant/coordinator_client.h"
#include "txc/participant/thrift_headers.h"

namespace {

using txc::participant::ScopedTxnContext;
using txc::participant::TxnHeaderClient;

class ShopHandler : public txc::shop::ShopIf {
 public:
  // `downstream`: how the downstream services are reached (its tls, when set,
  // is this service's client identity for their mutual-TLS ports).
  ShopHandler(std::shared_ptr<txc::participant::CoordinatorClient> coordinator,
              std::string inventory, std::string payment, txc::ConnectOptions downstream)
      : coordinator_(std::move(coordinator)),
        inventory_(std::move(inventory)),
        payment_(std::move(payment)),
        downstream_(std::move(downstream)) {}

  void buy(std::string& gtid, const std::string& account, const std::string& item, int32_t quantity,
           int64_t price) override {
    txc::wire::BeginRequest begin;
    begin.timeout_ms = 30000;
    auto begun = coordinator_->Begin(begin);
    if (!begun.ok()) Reject("coordinator: " + begun.status().ToString());
    gtid = begun->gtid;

    std::string refusal;
    {
      // Every call made by this thread inside the scope carries the context.
      ScopedTxnContext scope(begun->context);
      try {
        auto inventory = TxnHeaderClient<txc::shop::InventoryClient>::Open(inventory_, downstream_);
        if (!inventory.ok()) throw std::runtime_error(inventory.status().ToString());
        (**inventory)->reserve(item, quantity);
        auto payment = TxnHeaderClient<txc::shop::PaymentClient>::Open(payment_, downstream_);
        if (!payment.ok()) throw std::runtime_error(payment.status().ToString());
        (**payment)->charge(account, price);
      } catch (const txc::shop::OutOfStock& e) {
        refusal = "inventory: " + e.message;
      } catch (const txc::shop::PaymentRefused& e) {
        refusal = "payment: " + e.message;
      } catch (const std::exception& e) {
        refusal = e.what();
      }
    }
    if (!refusal.empty()) {
      auto rolled = coordinator_->Rollback(gtid);
      LOG(INFO) << "gtid=" << gtid << " refused (" << refusal
                << "), rollback: " << (rolled.ok() ? "ok" : rolled.status().ToString());
      Reject(refusal + "; transaction " + gtid + " rolled back");
    }
    txc::wire::CommitRequest commit;
    commit.gtid = gtid;
    commit.wait = txc::wire::CommitWait::WAIT_DECISION;
    auto committed = coordinator_->Commit(commit);
    if (!committed.ok()) Reject("commit of " + gtid + ": " + committed.status().ToString());
    if (committed->state != txc::wire::TxnState::COMMITTING &&
        committed->state != txc::wire::TxnState::COMMITTED) {
      Reject("transaction " + gtid + " aborted");
    }
    LOG(INFO) << "gtid=" << gtid << " committed: " << quantity << " x " << item << " for "
              << account;
  }

 private:
  [[noreturn]] static void Reject(const std::string& message) {
    txc::shop::Rejected r;
    r.message = message;
    throw r;
  }
  std::shared_ptr<txc::participant::CoordinatorClient> coordinator_;
  const std::string inventory_, payment_;
  const txc::ConnectOptions downstream_;
};

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  std::string host = "127.0.0.1", coordinators = "127.0.0.1:7400", inventory, payment;
  int port = 0;
  po::options_description flags("rpc_integration_shop");
  flags.add_options()("host", po::value(&host)->default_value(host), "address to listen on")(
      "port", po::value(&port)->notifier(txc::cli::InRange("port", 1, 65535))->required(),
      "Shop port (framed binary; mutual TLS with --tls_*)")(
      "coordinators", po::value(&coordinators)->default_value(coordinators),
      "coordinator replicas host:port,...")("inventory", po::value(&inventory)->required(),
                                            "Inventory service host:port")(
      "payment", po::value(&payment)->required(), "Payment service host:port");
  txc::cli::TlsFlags tls_flags;
  txc::cli::AddTlsFlags(flags, &tls_flags);
  if (int rc = txc::cli::Parse("rpc_integration_shop", "Usage: rpc_integration_shop [flags]", argc,
                               argv, flags);
      rc >= 0) {
    return rc;
  }
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  txc::RouteThriftLogsToGlog();
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);  // re-read the TLS files
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  const txc::TlsOptions tls = tls_flags.Options();

  txc::participant::CoordinatorClientOptions co;
  co.endpoints = txc::SplitList(coordinators);
  co.tls = tls;
  auto made = txc::participant::CoordinatorClient::Create(co);
  if (!made.ok()) return txc::cli::UsageError("rpc_integration_shop", made.status().message());
  std::shared_ptr<txc::participant::CoordinatorClient> coordinator = std::move(made).value();
  txc::ConnectOptions downstream;
  if (tls.enabled()) {
    auto client_tls = txc::TlsContext::Create(tls, txc::TlsRole::kClient);
    if (!client_tls.ok()) {
      return txc::cli::UsageError("rpc_integration_shop", client_tls.status().message());
    }
    downstream.tls = std::move(client_tls).value();
  }
  txc::ThriftServerOptions so;
  so.host = host;
  so.port = port;
  so.tls = tls;
  txc::ThriftServer server(std::make_shared<txc::shop::ShopProcessor>(std::make_shared<ShopHandler>(
                               coordinator, inventory, payment, downstream)),
                           so);
  txc::Status s = server.Start();
  if (!s.ok()) {
    LOG(ERROR) << "shop: " << s;
    return 1;
  }
  LOG(INFO) << "shop on " << host << ":" << server.port() << (server.tls() ? " (mutual TLS)" : "");
  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
    if (!tls.enabled()) continue;
    txc::Status reloaded = server.ReloadTls();
    if (reloaded.ok()) reloaded = coordinator->ReloadTls();
    if (reloaded.ok()) reloaded = downstream.tls->Reload();
    if (reloaded.ok()) {
      LOG(INFO) << "shop: TLS files reloaded";
    } else {
      LOG(ERROR) << "shop: TLS reload failed (previous files stay): " << reloaded;
    }
  }
  server.Stop();
  return 0;
}
