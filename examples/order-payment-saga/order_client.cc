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
#include "examples/order-payment-saga/shop.h"

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  shop::ServiceFlags flags = shop::ParseFlags(argc, argv);
  auto get = [&](const char* k, const std::string& def) {
    auto it = flags.all.find(k);
    return it == flags.all.end() ? def : it->second;
  };
  shop::ShopEndpoints ep;
  ep.coordinator = get("coordinator", "127.0.0.1:7400");
  ep.order = get("order", "");
  ep.payment = get("payment", "");
  ep.inventory = get("inventory", "");
  ep.order_db = get("order_db", "orders.db");
  ep.payment_db = get("payment_db", "payment.db");
  ep.inventory_db = get("inventory_db", "inventory.db");
  if (ep.order.empty() || ep.payment.empty() || ep.inventory.empty()) {
    std::fprintf(stderr, "--order, --payment and --inventory endpoints are required\n");
    return 2;
  }
  shop::PlaceOptions options;
  options.orders = std::stoi(get("orders", "200"));
  options.concurrency = std::stoi(get("concurrency", "16"));
  options.seed = std::stoull(get("seed", "1"));
  options.id_prefix = get("prefix", "order-" + std::to_string(txc::NowUnixMs()));

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
