// rpc_context_inventory: an application service that joins global
// transactions whose context arrives inside its own Thrift requests.
//
// It serves two Thrift services:
//  * Inventory (inventory.thrift) on --port, for the application's clients;
//  * the txc Participant service on --participant_port, for the coordinator.
// On reserve(): decode the context, make it current (ScopedTxnContext), enlist
// a branch at the coordinator (endpoint: our participant server, payload: the
// item and quantity), and answer. The coordinator then drives the branch:
// Prepare holds the stock, Commit consumes it, Abort releases it.
//
// State is kept in memory to keep the example about propagation: a crash loses
// held stock. See examples/bank-transfer-2pc for a branch whose prepared state
// survives crashes (PgXaResource).
//
//   rpc_context_inventory --port 7601 --participant_port 7602 --stock apple=10,pear=3
#include <glog/logging.h>
#include <signal.h>

#include <atomic>
#include <boost/program_options.hpp>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>

#include "common/strings.h"
#include "common/thrift_server.h"
#include "examples/thrift-rpc-context/example_main.h"
#include "gen-cpp/Inventory.h"
#include "txc/participant/context.h"
#include "txc/participant/coordinator_client.h"
#include "txc/participant/participant_server.h"

namespace po = boost::program_options;
using txc::participant::BranchContext;
using txc::participant::Vote;

namespace {

// Payload of a branch: "<item>\n<quantity>".
std::string EncodePayload(const std::string& item, int quantity) {
  return item + "\n" + std::to_string(quantity);
}
bool DecodePayload(const std::string& payload, std::string* item, int* quantity) {
  const auto nl = payload.find('\n');
  if (nl == std::string::npos) return false;
  *item = payload.substr(0, nl);
  *quantity = std::atoi(payload.c_str() + nl + 1);
  return !item->empty() && *quantity > 0;
}

// Stock with holds per branch. Thread-safe.
class Stock {
 public:
  explicit Stock(std::map<std::string, int> available) : available_(std::move(available)) {}

  // Holds quantity for the branch; false when short. Idempotent per branch.
  bool Hold(const std::string& key, const std::string& item, int quantity) {
    std::lock_guard<std::mutex> lock(mu_);
    if (held_.count(key) != 0) return true;
    auto it = available_.find(item);
    if (it == available_.end() || it->second < quantity) return false;
    it->second -= quantity;
    held_[key] = {item, quantity};
    return true;
  }
  // Consumes (commit=true) or returns (false) a hold. Unknown key: no-op.
  void Finish(const std::string& key, bool commit) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = held_.find(key);
    if (it == held_.end()) return;
    if (!commit) available_[it->second.first] += it->second.second;
    held_.erase(it);
  }
  int Available(const std::string& item) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = available_.find(item);
    return it == available_.end() ? 0 : it->second;
  }

 private:
  std::mutex mu_;  // guards both maps
  std::map<std::string, int> available_;
  std::map<std::string, std::pair<std::string, int>> held_;  // gtid/branch -> item, quantity
};

// The 2PC side: what the coordinator calls.
class InventoryParticipant : public txc::participant::Participant {
 public:
  explicit InventoryParticipant(std::shared_ptr<Stock> stock) : stock_(std::move(stock)) {}

  Vote Prepare(const BranchContext& ctx) override {
    std::string item;
    int quantity = 0;
    if (!DecodePayload(ctx.payload, &item, &quantity)) return Vote::kAbort;
    const bool held = stock_->Hold(Key(ctx), item, quantity);
    LOG(INFO) << "gtid=" << ctx.gtid << " prepare " << quantity << " x " << item << ": "
              << (held ? "held" : "not enough stock");
    return held ? Vote::kPrepared : Vote::kAbort;
  }
  void Commit(const BranchContext& ctx) override {
    stock_->Finish(Key(ctx), true);
    LOG(INFO) << "gtid=" << ctx.gtid << " committed";
  }
  void Abort(const BranchContext& ctx) override {
    stock_->Finish(Key(ctx), false);
    LOG(INFO) << "gtid=" << ctx.gtid << " aborted";
  }

 private:
  static std::string Key(const BranchContext& ctx) { return ctx.gtid + "/" + ctx.branch_id; }
  std::shared_ptr<Stock> stock_;
};

// The application side: the Inventory service.
class InventoryHandler : public txc::example::InventoryIf {
 public:
  InventoryHandler(std::shared_ptr<Stock> stock, std::string participant_endpoint,
                   txc::TlsOptions tls)
      : stock_(std::move(stock)),
        participant_endpoint_(std::move(participant_endpoint)),
        tls_(std::move(tls)) {}

  void reserve(txc::example::ReserveReply& reply,
               const txc::example::ReserveRequest& req) override {
    if (req.item.empty() || req.quantity <= 0) Bad("item and a positive quantity are required");
    if (req.txn_context.empty()) Bad("reserve only runs inside a global transaction");
    auto ctx = txc::participant::DecodeTxnContext(req.txn_context);
    if (!ctx.ok()) Bad(ctx.status().ToString());
    txc::participant::ScopedTxnContext scope(*ctx);
    DoReserve(reply, req);
  }

  int32_t available(const std::string& item) override { return stock_->Available(item); }

 private:
  [[noreturn]] static void Bad(const std::string& message) {
    txc::example::BadRequest e;
    e.message = message;
    throw e;
  }

  // Runs with the caller's transaction as the current context.
  void DoReserve(txc::example::ReserveReply& reply, const txc::example::ReserveRequest& req) {
    const txc::wire::TxnContext& ctx = *txc::participant::CurrentTxnContext();
    auto client = ClientFor(ctx.coordinators);
    if (!client.ok()) Bad(client.status().ToString());
    txc::wire::EnlistRequest enlist;
    enlist.gtid = ctx.gtid;
    enlist.branch.branch_id = "inventory-" + std::to_string(++branch_seq_);
    enlist.branch.endpoint = participant_endpoint_;
    enlist.branch.resource = "inventory";
    enlist.branch.payload = EncodePayload(req.item, req.quantity);
    txc::Status s = (*client)->Enlist(enlist);
    reply.branch_id = enlist.branch.branch_id;
    reply.enlisted = s.ok();
    reply.message = s.ok() ? "enlisted" : s.ToString();
    LOG(INFO) << "gtid=" << ctx.gtid << " reserve " << req.quantity << " x " << req.item
              << ": enlist " << (s.ok() ? "ok" : s.ToString());
  }

  // One client per coordinator replica list (normally one list).
  txc::Result<std::shared_ptr<txc::participant::CoordinatorClient>> ClientFor(
      const std::vector<std::string>& endpoints) {
    std::ostringstream key;
    for (const auto& e : endpoints) key << e << ",";
    std::lock_guard<std::mutex> lock(mu_);
    auto it = clients_.find(key.str());
    if (it != clients_.end()) return it->second;
    txc::participant::CoordinatorClientOptions o;
    o.endpoints = endpoints;
    o.tls = tls_;
    auto created = txc::participant::CoordinatorClient::Create(o);
    if (!created.ok()) return created.status();
    std::shared_ptr<txc::participant::CoordinatorClient> client = std::move(created).value();
    clients_[key.str()] = client;
    return client;
  }

  std::shared_ptr<Stock> stock_;
  const std::string participant_endpoint_;
  const txc::TlsOptions tls_;  // to the coordinator
  std::atomic<int64_t> branch_seq_{0};
  std::mutex mu_;  // guards clients_
  std::map<std::string, std::shared_ptr<txc::participant::CoordinatorClient>> clients_;
};

// "item=n,..." -> {item: n}; kInvalidArgument for an entry without '=' or a
// count that is not a number >= 0.
txc::Result<std::map<std::string, int>> ParseStock(const std::string& text) {
  std::map<std::string, int> out;
  for (const std::string& entry : txc::SplitList(text)) {
    const auto eq = entry.find('=');
    auto n = eq == std::string::npos ? txc::Result<int64_t>(txc::Status::InvalidArgument(""))
                                     : txc::ParseInt64(entry.substr(eq + 1));
    if (eq == 0 || !n.ok() || *n < 0 || *n > 1000000000) {
      return txc::Status::InvalidArgument("--stock wants item=count,..., got '" + entry + "'");
    }
    out[entry.substr(0, eq)] = static_cast<int>(*n);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 7601, participant_port = 7602;
  std::string host = "127.0.0.1", stock_text = "apple=10,pear=3";
  po::options_description flags("rpc_context_inventory");
  flags.add_options()("host", po::value(&host)->default_value(host),
                      "address to listen on (both services)")(
      "port", po::value(&port)->default_value(port)->notifier(txc::cli::InRange("port", 0, 65535)),
      "Inventory service port (0: any)")(
      "participant_port",
      po::value(&participant_port)
          ->default_value(participant_port)
          ->notifier(txc::cli::InRange("participant_port", 0, 65535)),
      "txc Participant service port (0: any)")(
      "stock", po::value(&stock_text)->default_value(stock_text), "initial stock item=n,...");
  txc::cli::TlsFlags tls_flags;
  txc::cli::AddTlsFlags(flags, &tls_flags);
  if (int rc = rpc_context::StartMain("rpc_context_inventory", argc, argv, flags); rc >= 0) {
    return rc;
  }
  auto parsed_stock = ParseStock(stock_text);
  if (!parsed_stock.ok()) {
    return txc::cli::UsageError("rpc_context_inventory", parsed_stock.status().message());
  }

  // Block the stop signals before any thread starts, so sigwait gets them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const txc::TlsOptions tls = tls_flags.Options();
  auto stock = std::make_shared<Stock>(*parsed_stock);
  txc::participant::ParticipantServerOptions options;
  options.host = host;
  options.port = participant_port;
  // No coordinators configured: learned from the first request's context. The
  // in-memory state has nothing to recover.
  options.run_recovery = false;
  options.tls = tls;
  options.coordinator_client.tls = tls;
  txc::participant::ParticipantServer participant(std::make_shared<InventoryParticipant>(stock),
                                                  options);
  txc::Status s = participant.Start();
  if (!s.ok()) {
    LOG(ERROR) << "participant server: " << s;
    return 1;
  }
  txc::ThriftServerOptions app_options;
  app_options.host = host;
  app_options.port = port;
  app_options.tls = tls;
  txc::ThriftServer app(std::make_shared<txc::example::InventoryProcessor>(
                            std::make_shared<InventoryHandler>(stock, participant.endpoint(), tls)),
                        app_options);
  s = app.Start();
  if (!s.ok()) {
    LOG(ERROR) << "inventory server: " << s;
    return 1;
  }
  LOG(INFO) << "inventory on " << host << ":" << app.port() << ", participant on "
            << participant.endpoint();
  int sig = 0;
  sigwait(&signals, &sig);
  LOG(INFO) << "signal " << sig << ", stopping";
  app.Stop();
  participant.Stop();
  return 0;
}
