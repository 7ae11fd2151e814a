// Places many orders concurrently through the coordinator, each as the
// four-step order saga, then checks the invariant over the three services'
// databases and prints what happened. Exit 0 only if the invariant holds and
// every saga finished.
//
//   order_client --coordinator=127.0.0.1:7400
//     --order=127.0.0.1:P1 --payment=127.0.0.1:P2 --inventory=127.0.0.1:P3
//     --order_db=orders.db --payment_db=payment.db --inventory_db=inventory.db
//     [--orders=200] [--concurrency=16] [--seed=1] [--prefix=order-<time>]
#include <glog/logging.h>

#include <cstdio>
#include <map>

#include "common/backoff.h"
#include "common/cli.h"
#include "common/thrift_util.h"
#include "examples/order-payment-saga/shop.h"

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  shop::ShopEndpoints ep;
  shop::PlaceOptions options;
  options.id_prefix = "order-" + std::to_string(txc::NowUnixMs());
  po::options_description flags("Flags");
  flags.add_options()("coordinator", po::value(&ep.coordinator)->default_value("127.0.0.1:7400"),
                      "coordinator replicas host:port,host:port")(
      "order", po::value(&ep.order)->required()->notifier(txc::cli::NotEmpty("order")),
      "order service host:port")(
      "payment", po::value(&ep.payment)->required()->notifier(txc::cli::NotEmpty("payment")),
      "payment service host:port")(
      "inventory", po::value(&ep.inventory)->required()->notifier(txc::cli::NotEmpty("inventory")),
      "inventory service host:port")(
      "order_db", po::value(&ep.order_db)->default_value("orders.db"), "order service database")(
      "payment_db", po::value(&ep.payment_db)->default_value("payment.db"),
      "payment service database")("inventory_db",
                                  po::value(&ep.inventory_db)->default_value("inventory.db"),
                                  "inventory service database")(
      "orders",
      po::value(&options.orders)
          ->default_value(200)
          ->notifier(txc::cli::InRange("orders", 1, 10000000)),
      "orders to place")("concurrency",
                         po::value(&options.concurrency)
                             ->default_value(16)
                             ->notifier(txc::cli::InRange("concurrency", 1, 1024)),
                         "orders in flight at once")(
      "seed", po::value(&options.seed)->default_value(1), "random seed")(
      "prefix", po::value(&options.id_prefix), "gtid prefix (default order-<unix ms>)");
  txc::cli::TlsFlags tls;
  txc::cli::AddTlsFlags(flags, &tls);
  if (int rc = txc::cli::Parse("order_client",
                               "Usage: order_client --order=H:P --payment=H:P "
                               "--inventory=H:P [flags]",
                               argc, argv, flags);
      rc >= 0) {
    return rc;
  }
  ep.tls = tls.Options();
  google::InitGoogleLogging(argv[0]);
  txc::RouteThriftLogsToGlog();

  std::printf("placing %d orders, %d at a time, through the coordinator at %s\n", options.orders,
              options.concurrency, ep.coordinator.c_str());
  std::fflush(stdout);
  const int64_t start = txc::MonotonicMs();
  auto results = shop::PlaceOrders(ep, options);
  if (!results.ok()) {
    std::fprintf(stderr, "cannot place orders: %s\n", results.status().ToString().c_str());
    return 1;
  }
  const int64_t elapsed = txc::MonotonicMs() - start;
  std::map<std::string, int> states;
  for (const auto& r : *results) states[r.saga_state.substr(0, r.saga_state.find(':'))]++;
  std::printf("%zu sagas in %lld ms:", results->size(), static_cast<long long>(elapsed));
  for (const auto& [state, n] : states) std::printf(" %s=%d", state.c_str(), n);
  std::printf("\n");
  int shown = 0;
  for (const auto& r : *results) {
    if (!r.failure.empty() && shown < 3) {
      std::printf("  e.g. %s (%s x%lld for %s): %s failed: %s\n", r.order.id.c_str(),
                  r.order.item.c_str(), static_cast<long long>(r.order.qty),
                  r.order.customer.c_str(), r.failed_step.c_str(), r.failure.c_str());
      ++shown;
    }
  }
  shop::InvariantReport report = shop::CheckInvariant(ep, *results);
  std::printf("%s\n", report.Summary().c_str());
  return report.ok && report.unfinished == 0 ? 0 : 1;
}
