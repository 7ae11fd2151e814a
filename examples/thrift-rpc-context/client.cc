// rpc_context_client: begins a 2PC transaction, calls the Inventory service
// with the transaction's context in the request, and commits.
//
//   rpc_context_client --coordinator 127.0.0.1:7400 --inventory 127.0.0.1:7601
//       --item apple --quantity 3
//
// Prints one line "gtid=<id> outcome=<COMMIT|ABORT> state=<state>" and exits 0
// on COMMIT, 3 on ABORT, 1 on errors.
#include <glog/logging.h>

#include <boost/program_options.hpp>
#include <iostream>
#include <sstream>

#include "common/thrift_util.h"
#include "examples/thrift-rpc-context/example_main.h"
#include "gen-cpp/Inventory.h"
#include "txc/participant/context.h"
#include "txc/participant/coordinator_client.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  std::string coordinator = "127.0.0.1:7400", inventory = "127.0.0.1:7601", item = "apple";
  int quantity = 1;
  int64_t timeout_ms = 30000;
  po::options_description flags("rpc_context_client");
  flags.add_options()("coordinator", po::value(&coordinator)->default_value(coordinator),
                      "coordinator replicas host:port[,host:port...]")(
      "inventory", po::value(&inventory)->default_value(inventory), "Inventory service host:port")(
      "item", po::value(&item)->default_value(item), "item to reserve")(
      "quantity",
      po::value(&quantity)->default_value(quantity)->notifier(
          txc::cli::InRange("quantity", 1, 1000000000)),
      "how many")("timeout_ms",
                  po::value(&timeout_ms)
                      ->default_value(timeout_ms)
                      ->notifier(txc::cli::InRange64("timeout_ms", 1, 86400000)),
                  "transaction timeout");
  txc::cli::TlsFlags tls_flags;
  txc::cli::AddTlsFlags(flags, &tls_flags);
  if (int rc = rpc_context::StartMain("rpc_context_client", argc, argv, flags); rc >= 0) return rc;

  const txc::TlsOptions tls = tls_flags.Options();
  txc::participant::CoordinatorClientOptions options;
  options.tls = tls;
  std::stringstream list(coordinator);
  for (std::string e; std::getline(list, e, ',');) options.endpoints.push_back(e);
  auto client = txc::participant::CoordinatorClient::Create(options);
  if (!client.ok()) {
    std::cerr << "coordinator client: " << client.status() << "\n";
    return 1;
  }

  // 1. Begin: the coordinator logs the transaction and returns its context.
  txc::wire::BeginRequest begin;
  begin.timeout_ms = timeout_ms;
  auto begun = (*client)->Begin(begin);
  if (!begun.ok()) {
    std::cerr << "begin: " << begun.status() << "\n";
    return 1;
  }
  const std::string gtid = begun->gtid;

  // 2. Call the application service with the context in its own request field.
  txc::example::ReserveRequest req;
  req.txn_context = txc::participant::EncodeTxnContext(begun->context);
  req.item = item;
  req.quantity = quantity;
  txc::example::ReserveReply reply;
  txc::ConnectOptions inventory_connect;
  if (tls.enabled()) {
    auto made = txc::TlsContext::Create(tls, txc::TlsRole::kClient);
    if (!made.ok()) {
      std::cerr << "TLS: " << made.status() << "\n";
      return 2;
    }
    inventory_connect.tls = std::move(made).value();
  }
  txc::ClientPool<txc::example::InventoryClient> pool(inventory_connect);
  txc::Status called = txc::Status::Ok();
  try {
    called = pool.Call(inventory, [&](txc::example::InventoryClient& c) { c.reserve(reply, req); });
  } catch (const txc::example::BadRequest& e) {
    called = txc::Status::InvalidArgument(e.message);
  }
  if (!called.ok() || !reply.enlisted) {
    std::cerr << "gtid=" << gtid
              << " reserve failed: " << (called.ok() ? reply.message : called.ToString())
              << "; rolling back\n";
    auto rolled = (*client)->Rollback(gtid);
    if (!rolled.ok()) std::cerr << "rollback: " << rolled.status() << "\n";
    return 1;
  }

  // 3. Commit, waiting until the branch acknowledged phase 2.
  txc::wire::CommitRequest commit;
  commit.gtid = gtid;
  commit.wait = txc::wire::CommitWait::WAIT_COMPLETION;
  auto committed = (*client)->Commit(commit);
  if (!committed.ok()) {
    std::cerr << "gtid=" << gtid << " commit: " << committed.status() << "\n";
    return 1;
  }
  const bool commit_outcome = committed->outcome == txc::wire::Outcome::OUTCOME_COMMIT;
  std::cout << "gtid=" << gtid << " branch=" << reply.branch_id
            << " outcome=" << (commit_outcome ? "COMMIT" : "ABORT")
            << " state=" << txc::wire::to_string(committed->state) << std::endl;
  return commit_outcome ? 0 : 3;
}
