// rpc_integration_client: an ordinary client of the Shop service (plain
// framed binary: it knows nothing of transactions or headers).
//
//   rpc_integration_client --shop 127.0.0.1:7601 --account alice --item apple
//       --quantity 3 --price 30 [--tls_cert client.pem --tls_key client.key --tls_ca ca.pem]
//
// Prints "committed gtid=<id>" and exits 0, or "rejected: <why>" and exits 3;
// 1 on other errors.
#include <glog/logging.h>

#include <boost/program_options.hpp>
#include <iostream>

#include "common/cli.h"
#include "common/thrift_util.h"
#include "gen-cpp/Shop.h"

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  std::string shop = "127.0.0.1:7601", account = "alice", item = "apple";
  int quantity = 1;
  int64_t price = 10;
  po::options_description flags("rpc_integration_client");
  flags.add_options()("shop", po::value(&shop)->default_value(shop), "Shop service host:port")(
      "account", po::value(&account)->default_value(account), "account to charge")(
      "item", po::value(&item)->default_value(item), "item to buy")(
      "quantity",
      po::value(&quantity)->default_value(quantity)->notifier(
          txc::cli::InRange("quantity", 1, 1000000)),
      "how many")("price",
                  po::value(&price)->default_value(price)->notifier(
                      txc::cli::InRange64("price", 0, 1000000000)),
                  "total price");
  txc::cli::TlsFlags tls_flags;
  txc::cli::AddTlsFlags(flags, &tls_flags);
  if (int rc = txc::cli::Parse("rpc_integration_client", "Usage: rpc_integration_client [flags]",
                               argc, argv, flags);
      rc >= 0) {
    return rc;
  }
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  txc::RouteThriftLogsToGlog();
  auto endpoint = txc::ParseEndpoint(shop);
  if (!endpoint.ok()) return txc::cli::UsageError("rpc_integration_client", "bad --shop");
  txc::ConnectOptions options;
  options.rpc_timeout_ms = 60000;
  if (tls_flags.enabled()) {
    auto tls = txc::TlsContext::Create(tls_flags.Options(), txc::TlsRole::kClient);
    if (!tls.ok()) return txc::cli::UsageError("rpc_integration_client", tls.status().message());
    options.tls = std::move(tls).value();
  }
  auto conn = txc::OpenConnection<txc::shop::ShopClient>(*endpoint, options);
  if (!conn.ok()) {
    std::cerr << conn.status() << "\n";
    return 1;
  }
  try {
    std::string gtid;
    (*conn)->client->buy(gtid, account, item, quantity, price);
    std::cout << "committed gtid=" << gtid << std::endl;
    return 0;
  } catch (const txc::shop::Rejected& r) {
    std::cout << "rejected: " << r.message << std::endl;
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
