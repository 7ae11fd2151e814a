// CoordinatorServer: one coordinator replica, wired together from an options
// struct so that tests can run it in-process and main.cc can run it as the
// `coordinator` executable.
//
//   CoordinatorServerOptions o;
//   o.port = 0;                          // any free port
//   o.data_dir = dir;                    // SQLite file <data_dir>/coordinator.db
//   CoordinatorServer server(o);
//   TXC_RETURN_IF_ERROR(server.Start());
//   ... server.port(), server.service() ...
//   server.Stop();
//
// Start(): opens the store (OpenStore) and migrates it, acquires this node's
// lease (a new epoch: the previous incarnation's writes are fenced off), starts
// the lease-renewal thread, then the GroupCommitter, the CoordinatorService,
// the drivers, the CoordinatorHandler and the ThriftServer.
//
// Lease loss: when a renewal is refused (kConflict/kNotFound: another process
// took this node id) or no renewal succeeded for a whole TTL (store down,
// process paused), the server LOG(ERROR)s, stops serving (Thrift closed, health
// not serving) and calls options.on_lease_lost; lease_lost() turns true. The
// executable then exits non-zero, so a replica that lost its lease never
// writes again. (Every state write is also fenced by (owner, epoch) in the store.)
//
// Stop(): stops accepting and closes connections (in-flight calls finish), stops
// the drivers, stops the lease thread, drains the group commit. Idempotent.
//
// Thread-safety: Start/Stop/the destructor from one owning thread; the
// accessors from any thread after Start() returned OK.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "common/thrift_server.h"
#include "common/thrift_util.h"
#include "coordinator/driver/saga_driver.h"
#include "coordinator/driver/two_phase_driver.h"
#include "coordinator/recovery/sweeper.h"
#include "coordinator/rpc/coordinator_handler.h"
#include "coordinator/service/coordinator_service.h"
#include "coordinator/store/group_commit.h"
#include "coordinator/store/txn_store.h"

namespace txc {

constexpr int kDefaultCoordinatorPort = 7400;

struct CoordinatorServerOptions {
  std::string host = "0.0.0.0";        // address to listen on
  int port = kDefaultCoordinatorPort;  // 0: a free port (see CoordinatorServer::port())
  // "host:port" clients and participants reach this replica at; stored in the
  // lease table. Empty: host:port, with the machine's hostname when host is a
  // wildcard address.
  std::string advertise_endpoint;
  std::string data_dir = "./txc-data";  // created if missing
  // Empty: the SQLite file <data_dir>/coordinator.db. "postgresql://..." or a
  // libpq key=value string (multi-host allowed): PostgreSQL. See OpenStore().
  std::string store;
  std::string node_id;                  // empty: <hostname>:<port>
  int64_t lease_ttl_ms = 10000;         // a lease not renewed for this long is lost
  int64_t lease_renew_interval_ms = 0;  // 0: lease_ttl_ms / 3
  int64_t max_message_bytes = kDefaultMaxMessageBytes;
  GroupCommitOptions group_commit;
  TwoPhaseDriverOptions two_phase;  // 2PC driver: timeouts, fan-out threads, retries
  // Recovery sweeper: interval, batch limits, retention of finished
  // transactions (finished_retention_ms, retention_sweep_interval_ms).
  SweeperOptions sweeper;
  SagaDriverOptions saga;  // Saga driver: call timeouts, parking, worker threads
  // Called once, from the lease thread, after the server stopped serving
  // because its lease was lost. May be empty.
  std::function<void(const Status&)> on_lease_lost;
};

class CoordinatorServer {
 public:
  explicit CoordinatorServer(CoordinatorServerOptions options);
  ~CoordinatorServer();  // Stop()s
  CoordinatorServer(const CoordinatorServer&) = delete;
  CoordinatorServer& operator=(const CoordinatorServer&) = delete;

  // kInvalidArgument for bad options, kUnavailable when the store or the port
  // cannot be opened, or another store error. On error nothing keeps running.
  Status Start();
  void Stop();

  // Waits until the lease is lost (returns true and sets *reason) or
  // timeout_ms passed / Stop() was called (returns false).
  bool WaitForLeaseLoss(int64_t timeout_ms, Status* reason);
  bool lease_lost() const { return lease_lost_.load(std::memory_order_acquire); }

  int port() const { return port_; }
  const std::string& endpoint() const { return node_.endpoint; }
  const CoordinatorServerOptions& options() const { return options_; }
  // "sqlite:<path>" or "postgresql" (no credentials), for logs.
  std::string StoreDescription() const;

  // The parts, for the drivers and for tests. Valid between Start() and Stop().
  TxnStore* store() { return store_.get(); }
  GroupCommitter* log() { return log_.get(); }
  const NodeInfo& node() const { return node_; }
  CoordinatorService* service() { return service_.get(); }
  TwoPhaseDriver* two_phase_driver() { return two_phase_.get(); }
  Sweeper* sweeper() { return sweeper_.get(); }
  SagaDriver* saga_driver() { return saga_.get(); }

 private:
  void LeaseLoop(int64_t acquired_mono_ms);
  void LoseLease(const Status& reason);

  CoordinatorServerOptions options_;
  std::string store_location_;
  int port_ = 0;
  NodeInfo node_;
  bool started_ = false;

  // Construction order = Start() order; Stop() tears down in reverse.
  std::unique_ptr<TxnStore> store_;
  std::unique_ptr<GroupCommitter> log_;
  std::unique_ptr<CoordinatorService> service_;

  // ==== 2PC engineer: TwoPhaseDriver and the recovery Sweeper live here. ====
  // (members, created in Start() at the marked place, stopped in Stop())
  std::unique_ptr<TwoPhaseDriver> two_phase_;
  std::unique_ptr<Sweeper> sweeper_;  // the Saga driver plugs in with sweeper_->SetSagaOps()

  // ==== Saga engineer: SagaDriver lives here. ====
  std::unique_ptr<SagaDriver> saga_;

  std::shared_ptr<CoordinatorHandler> handler_;
  std::unique_ptr<ThriftServer> thrift_;

  // Lease renewal.
  std::thread lease_thread_;
  std::mutex lease_mu_;               // guards lease_stop_ and lease_loss_reason_
  std::condition_variable lease_cv_;  // signalled on stop and on loss
  bool lease_stop_ = false;
  Status lease_loss_reason_;
  std::atomic<bool> lease_lost_{false};
};

}  // namespace txc
