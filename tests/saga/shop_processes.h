// The order-payment example's three services (examples/order-payment-saga) as
// child processes for process tests: each on its own loopback port and SQLite
// database under the test's directory, restartable on the same port and
// database, or moved to a new port (a participant that moved). The including
// target defines TXC_ORDER_SERVICE_BIN, TXC_PAYMENT_SERVICE_BIN and
// TXC_INVENTORY_SERVICE_BIN. The services get the suite's transport
// (tests/harness/suite_tls.h) unless built with suite_tls = false.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "examples/order-payment-saga/shop.h"
#include "tests/harness/process.h"
#include "tests/harness/suite_tls.h"

namespace txc {
namespace testing {

class ShopProcesses {
 public:
  // `dir` and `ep` outlive this; Start fills ep's service endpoints.
  // suite_tls: each service gets the suite's TLS flags (plaintext: none)
  // before `extra`; false for a test that brings its own certificates.
  ShopProcesses(TempDir* dir, shop::ShopEndpoints* ep, std::string inventory_seed,
                std::string payment_seed, bool suite_tls = true)
      : dir_(dir),
        ep_(ep),
        inventory_seed_(std::move(inventory_seed)),
        payment_seed_(std::move(payment_seed)),
        suite_tls_(suite_tls) {}

  // Starts (or restarts, on the same port and database) one service of
  // "order", "payment", "inventory"; new_port: on a port it never had.
  void Start(const std::string& name, std::vector<std::string> extra = {}, bool new_port = false) {
    int& port = ports_[name];
    if (port == 0 || new_port) port = FreeLoopbackPort();
    const char* bin = name == "order"     ? TXC_ORDER_SERVICE_BIN
                      : name == "payment" ? TXC_PAYMENT_SERVICE_BIN
                                          : TXC_INVENTORY_SERVICE_BIN;
    ChildProcess::Options o;
    o.argv = {bin, "--db=" + dir_->Child(name + ".db"), "--port=" + std::to_string(port),
              "--coordinator=" + ep_->coordinator};
    if (name == "inventory") o.argv.push_back("--seed=" + inventory_seed_);
    if (name == "payment") o.argv.push_back("--seed=" + payment_seed_);
    if (suite_tls_) SuiteTls::Get().AppendServiceFlags(&o.argv);
    for (auto& e : extra) o.argv.push_back(e);
    o.log_path = dir_->Child(name + ".log");
    auto child = ChildProcess::Start(o);
    ASSERT_TRUE(child.ok()) << child.status();
    services_[name] = std::move(child).value();
    ASSERT_TRUE(WaitForPort(port, 20000).ok()) << services_[name]->LogTail();
    const std::string endpoint = "127.0.0.1:" + std::to_string(port);
    if (name == "order") ep_->order = endpoint;
    if (name == "payment") ep_->payment = endpoint;
    if (name == "inventory") ep_->inventory = endpoint;
  }

  // SIGKILLs one service and waits for it.
  void Stop(const std::string& name) {
    ASSERT_TRUE(services_[name]->Kill(SIGKILL).ok());
    ASSERT_TRUE(services_[name]->Wait(20000).ok());
  }

  ChildProcess& operator[](const std::string& name) { return *services_[name]; }
  // The end of every service's log, for a failure message.
  std::string LogTails(size_t bytes) {
    std::string out;
    for (auto& [name, p] : services_) out += "--- " + name + " ---\n" + p->LogTail(bytes);
    return out;
  }
  int port(const std::string& name) { return ports_[name]; }

 private:
  TempDir* const dir_;
  shop::ShopEndpoints* const ep_;
  const std::string inventory_seed_;
  const std::string payment_seed_;
  const bool suite_tls_;
  std::map<std::string, int> ports_;
  std::map<std::string, std::unique_ptr<ChildProcess>> services_;
};

}  // namespace testing
}  // namespace txc
