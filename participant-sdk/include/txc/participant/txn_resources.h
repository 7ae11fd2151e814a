// Automatic enlistment: resources a service registers once, which join the
// caller's global transaction by themselves when used inside a propagated
// context (thrift_headers.h), so that the originator's commit includes them.
//
//   auto resources = std::make_shared<TxnResources>();
//   // a PostgreSQL database (pg_txn_resource.h) ...
//   auto db = PgTxnResource::Create(resources, "stock-db", pg_options);
//   // ... or your own hooks:
//   resources->Register("holds", std::make_shared<MyHoldsResource>());
//   ParticipantServer participant(resources->participant(), participant_options);
//   participant.Start();
//   resources->SetEndpoint(participant.endpoint());
//   // in a handler served by TxnHeaderServer + WrapTxnContextProcessor:
//   (*db)->Run([&](pqxx::transaction_base& t) { t.exec_params("UPDATE ...", ...); });
//   resources->Run("holds", [&](const BranchContext& b) { ...; return Status::Ok(); });
//
// Join(name) inside a current context enlists the branch
//   branch_id = "<name>@<participant endpoint, ':' as '_'>", resource = name,
//   endpoint  = the participant endpoint
// at the coordinator (the context names the replicas) before the work runs,
// exactly once per (gtid, resource): later and concurrent calls of the same
// transaction wait for that one enlist (up to enlist_wait_ms) and share its
// result. A failed enlist is not remembered: the next call tries again (enlist
// is idempotent at the coordinator). The coordinator then drives the branch
// through participant(), which hands each call to the resource named by the
// branch. A branch's entry is forgotten when its phase 2 ends, or once its
// transaction's deadline is long past.
//
// Saga steps are not enlisted this way: see participant-sdk/README.md.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "txc/participant/coordinator_client.h"
#include "txc/participant/participant.h"

namespace txc {
namespace participant {

// A 2PC resource's hooks, as for a Participant (participant.h), for one
// registered resource. Throwing from a hook means the same as there.
class TxnResource {
 public:
  virtual ~TxnResource() = default;
  virtual Vote Prepare(const BranchContext& ctx) = 0;
  // Default: Prepare(); kPrepared -> Commit() and kCommit; kReadOnly -> kCommit.
  virtual Outcome CommitOnePhase(const BranchContext& ctx);
  virtual void Commit(const BranchContext& ctx) = 0;
  virtual void Abort(const BranchContext& ctx) = 0;
  // Branches held prepared locally (resolved by ParticipantServer on start).
  virtual std::vector<PreparedBranch> Recover() { return {}; }
};

struct TxnResourcesOptions {
  // Used for enlisting; endpoints come from each context.
  CoordinatorClientOptions coordinator_client;
  // How long a call waits for a concurrent first call's enlist of the same
  // (gtid, resource).
  int64_t enlist_wait_ms = 30000;
  // An enlistment is forgotten this long after its transaction's deadline.
  int64_t forget_after_deadline_ms = 600000;
  // The coordinator replicas ("host:port") this service accepts in a context.
  // A caller's context names the coordinators the service will enlist at;
  // with this set, a context naming any other endpoint is refused by Join
  // (kInvalidArgument) and nothing is sent to it. Empty: any (trusted callers).
  std::vector<std::string> allowed_coordinators;
};

class TxnResources {
 public:
  explicit TxnResources(TxnResourcesOptions options = {});
  ~TxnResources();
  TxnResources(const TxnResources&) = delete;
  TxnResources& operator=(const TxnResources&) = delete;

  // name: 1..48 of [A-Za-z0-9_.-]. kInvalidArgument for a bad name,
  // kAlreadyExists when taken.
  Status Register(const std::string& name, std::shared_ptr<TxnResource> resource);

  // The Participant to serve with ParticipantServer.
  std::shared_ptr<Participant> participant();

  // The participant server's endpoint ("host:port"), set once it listens and
  // before the first Join. kInvalidArgument when not host:port.
  Status SetEndpoint(const std::string& endpoint);

  // Enlists `name` in the calling thread's current transaction (once per
  // gtid), and returns its branch. Errors: kInvalidArgument (a coordinator
  // not in allowed_coordinators), kNotFound (no current context, or
  // no such resource), kInvalidArgument (SetEndpoint not called yet), kTimeout (a concurrent enlist
  // did not finish in enlist_wait_ms), and Enlist's errors (kIllegalTransition: the transaction is
  // deciding or decided; kNotFound: unknown gtid; kUnavailable, kTimeout).
  Result<BranchContext> Join(const std::string& name);

  // For resources with hooks of their own: inside a current context, Join(name)
  // and then fn(branch); outside any context fn gets a BranchContext with an
  // empty gtid (the work is the service's own, not transactional). Returns
  // Join's error (fn not called) or fn's status.
  Status Run(const std::string& name, const std::function<Status(const BranchContext&)>& fn);

  // At most this many coordinator clients (one per distinct replica list) are
  // kept; past it the cache starts over.
  static constexpr size_t kMaxCoordinatorClients = 16;

  // Enlist RPCs sent so far (for tests and metrics).
  int64_t enlist_calls() const { return enlist_calls_.load(); }
  // The branch id `name` enlists under (after SetEndpoint).
  std::string BranchIdFor(const std::string& name) const;

 private:
  class Dispatcher;
  struct Enlistment {
    std::shared_future<Status> done;
    int64_t deadline_unix_ms = 0;
  };
  std::shared_ptr<TxnResource> Find(const std::string& name) const;
  void Forget(const std::string& gtid, const std::string& name);
  Result<std::shared_ptr<CoordinatorClient>> ClientFor(const std::vector<std::string>& endpoints);

  const TxnResourcesOptions options_;
  std::shared_ptr<Participant> dispatcher_;
  std::atomic<int64_t> enlist_calls_{0};

  mutable std::mutex mu_;  // guards everything below; never held across an RPC
  std::map<std::string, std::shared_ptr<TxnResource>> resources_;
  std::string endpoint_;
  std::map<std::string, Enlistment> enlistments_;                      // gtid + '\0' + name
  std::map<std::string, std::shared_ptr<CoordinatorClient>> clients_;  // by endpoint list
};

}  // namespace participant
}  // namespace txc
