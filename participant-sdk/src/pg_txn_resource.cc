#include "txc/participant/pg_txn_resource.h"

#include <glog/logging.h>

#include <chrono>

#include "common/backoff.h"
#include "common/crash_point.h"
#include "pg_pool.h"
#include "txc/participant/context.h"

namespace txc {
namespace participant {

namespace {

constexpr char kOpCommitOnePhase[] = "commit_one_phase";
// A finished (prepared, committed or rolled back) gtid is remembered this long
// after its deadline, so a late call cannot open a second local transaction.
constexpr int64_t kForgetFinishedAfterDeadlineMs = 600000;

bool IsBroken(const Status& s) {
  return s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kIndeterminate;
}

}  // namespace

// One gtid's open local transaction on a dedicated connection.
struct PgTxnResource::Session {
  std::mutex mu;  // serialises the gtid's calls, prepare and the reaper; guards below
  BranchContext branch;
  std::unique_ptr<internal::PgConnection> conn;
  std::unique_ptr<pqxx::work> work;  // open while the session is
  bool closed = false;               // prepared, committed or rolled back: no more calls
  int calls_ok = 0;                  // calls whose work is in the transaction
  int64_t last_used_ms = 0;          // MonotonicMs()
};

Result<std::shared_ptr<PgTxnResource>> PgTxnResource::Create(std::shared_ptr<TxnResources> registry,
                                                             const std::string& name,
                                                             PgTxnResourceOptions options) {
  if (registry == nullptr) return Status::InvalidArgument("PgTxnResource: null registry");
  if (options.max_open_transactions == 0 || options.idle_timeout_ms <= 0) {
    return Status::InvalidArgument(
        "PgTxnResource: max_open_transactions and idle_timeout_ms must be > 0");
  }
  options.xa.resource = name;
  TXC_ASSIGN_OR_RETURN(std::unique_ptr<PgXaResource> xa, PgXaResource::Create(options.xa));
  std::shared_ptr<PgTxnResource> resource(
      new PgTxnResource(registry, name, std::move(options), std::move(xa)));
  TXC_RETURN_IF_ERROR(registry->Register(name, resource));
  return resource;
}

PgTxnResource::PgTxnResource(std::shared_ptr<TxnResources> registry, std::string name,
                             PgTxnResourceOptions options, std::unique_ptr<PgXaResource> xa)
    : registry_(std::move(registry)),
      name_(std::move(name)),
      options_(std::move(options)),
      xa_(std::move(xa)),
      session_pool_(std::make_unique<internal::PgPool>(
          options_.xa.conninfo, options_.max_open_transactions, options_.xa.acquire_timeout_ms)),
      autocommit_pool_(std::make_unique<internal::PgPool>(
          options_.xa.conninfo, options_.xa.max_connections, options_.xa.acquire_timeout_ms)) {
  reaper_ = std::thread([this] { ReaperLoop(); });
}

PgTxnResource::~PgTxnResource() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stop_.notify_all();
  reaper_.join();
  std::map<std::string, std::shared_ptr<Session>> sessions;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sessions.swap(sessions_);
  }
  for (auto& [gtid, session] : sessions) {
    std::lock_guard<std::mutex> lock(session->mu);
    CloseSessionLocked(session.get(), true);
  }
}

size_t PgTxnResource::open_transactions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.size();
}

void PgTxnResource::Retire(const std::string& gtid, int64_t deadline_unix_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_.erase(gtid);
  // deadline 0 (unknown, e.g. recovery): kept for the forget period from now.
  finished_[gtid] = deadline_unix_ms > 0 ? deadline_unix_ms : NowUnixMs();
}

std::shared_ptr<PgTxnResource::Session> PgTxnResource::FindSession(const std::string& gtid,
                                                                   bool take_out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(gtid);
  if (it == sessions_.end()) return nullptr;
  auto session = it->second;
  if (take_out) sessions_.erase(it);
  return session;
}

void PgTxnResource::CloseSessionLocked(Session* session, bool rollback) {
  bool healthy = true;
  if (session->work != nullptr) {
    if (rollback) {
      try {
        session->work->abort();
      } catch (const std::exception& e) {
        healthy = false;
        LOG(WARNING) << "gtid=" << session->branch.gtid << " rollback: " << e.what();
      }
    }
    session->work.reset();
  }
  if (session->conn != nullptr) session_pool_->Release(std::move(session->conn), healthy);
  session->closed = true;
}

Status PgTxnResource::Run(const std::function<void(pqxx::transaction_base&)>& fn) {
  if (CurrentTxnContext() == nullptr) return RunLocal(fn);
  auto registry = registry_.lock();
  if (registry == nullptr) return Status::Unavailable(name_ + ": its TxnResources is gone");
  TXC_ASSIGN_OR_RETURN(BranchContext branch, registry->Join(name_));

  std::shared_ptr<Session> session;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_.count(branch.gtid) != 0) {
      return Status::IllegalTransition("gtid=" + branch.gtid + ": the branch on " + name_ +
                                       " was already prepared or rolled back");
    }
    auto it = sessions_.find(branch.gtid);
    if (it != sessions_.end()) {
      session = it->second;
    } else {
      if (sessions_.size() >= options_.max_open_transactions) {
        return Status::Unavailable("gtid=" + branch.gtid + ": " + std::to_string(sessions_.size()) +
                                   " local transactions already open on " + name_);
      }
      session = std::make_shared<Session>();
      session->branch = branch;
      session->last_used_ms = MonotonicMs();
      sessions_[branch.gtid] = session;
    }
  }

  std::lock_guard<std::mutex> lock(session->mu);
  if (session->closed) {
    return Status::IllegalTransition("gtid=" + branch.gtid + ": the branch on " + name_ +
                                     " was already prepared or rolled back");
  }
  if (session->work == nullptr) {
    auto conn = session_pool_->Acquire();
    if (!conn.ok()) {
      CloseSessionLocked(session.get(), false);
      Retire(branch.gtid, branch.deadline_unix_ms);
      return conn.status();
    }
    session->conn = std::move(conn).value();
    try {
      session->work = std::make_unique<pqxx::work>(session->conn->conn);
      if (options_.lock_timeout_ms > 0) {
        session->work->exec("SET LOCAL lock_timeout = " + std::to_string(options_.lock_timeout_ms));
      }
    } catch (const std::exception& e) {
      Status s = internal::StatusFromException(e, "begin on " + name_);
      CloseSessionLocked(session.get(), false);
      Retire(branch.gtid, branch.deadline_unix_ms);
      return s;
    }
    VLOG(1) << "gtid=" << branch.gtid << " " << name_ << ": local transaction opened";
  }
  session->last_used_ms = MonotonicMs();
  try {
    pqxx::subtransaction call(*session->work, "txc_call");
    try {
      fn(call);
      call.commit();
    } catch (const pqxx::broken_connection&) {
      throw;
    } catch (const std::exception& e) {
      call.abort();  // ROLLBACK TO SAVEPOINT: only this call's work is undone
      VLOG(1) << "gtid=" << branch.gtid << " " << name_ << ": call failed, undone: " << e.what();
      return Status::Internal(e.what());
    }
  } catch (const std::exception& e) {
    // The local transaction itself is gone (connection lost, or the savepoint
    // could not be rolled back): the branch can only vote abort.
    Status s = internal::StatusFromException(e, "call on " + name_);
    LOG(ERROR) << "gtid=" << branch.gtid << " " << name_ << ": local transaction lost: " << s;
    CloseSessionLocked(session.get(), true);
    Retire(branch.gtid, branch.deadline_unix_ms);
    return s;
  }
  ++session->calls_ok;
  session->last_used_ms = MonotonicMs();
  return Status::Ok();
}

Status PgTxnResource::RunLocal(const std::function<void(pqxx::transaction_base&)>& fn) {
  TXC_ASSIGN_OR_RETURN(auto conn, autocommit_pool_->Acquire());
  bool healthy = true;
  Status result;
  try {
    pqxx::work w(conn->conn);
    if (options_.lock_timeout_ms > 0) {
      w.exec("SET LOCAL lock_timeout = " + std::to_string(options_.lock_timeout_ms));
    }
    fn(w);
    w.commit();
  } catch (const pqxx::sql_error& e) {
    result = internal::StatusFromException(e, "call on " + name_);
    healthy = !IsBroken(result);
  } catch (const pqxx::broken_connection& e) {
    result = internal::StatusFromException(e, "call on " + name_);
    healthy = false;
  } catch (const std::exception& e) {
    result = Status::Internal(e.what());
  }
  autocommit_pool_->Release(std::move(conn), healthy);
  return result;
}

Vote PgTxnResource::Prepare(const BranchContext& ctx) {
  auto session = FindSession(ctx.gtid, false);
  if (session == nullptr) {
    // No open local transaction: a redelivered prepare of a branch already
    // prepared (PgXaResource answers kPrepared without running the function),
    // or one whose work was lost (restart, idle timeout): vote abort.
    auto vote = xa_->Prepare(ctx, [&](pqxx::work&) {
      LOG(WARNING) << "gtid=" << ctx.gtid << " " << name_
                   << ": prepare without an open local transaction (lost or expired): abort";
      return Vote::kAbort;
    });
    return vote.ok() ? *vote : Vote::kAbort;
  }
  std::lock_guard<std::mutex> lock(session->mu);
  if (session->closed || ctx.branch_id != session->branch.branch_id) {
    LOG(WARNING) << "gtid=" << ctx.gtid << " " << name_ << ": prepare of branch " << ctx.branch_id
                 << " finds no usable local transaction: abort";
    return Vote::kAbort;
  }
  if (session->calls_ok == 0) {
    CloseSessionLocked(session.get(), true);
    Retire(ctx.gtid, ctx.deadline_unix_ms);
    VLOG(1) << "gtid=" << ctx.gtid << " " << name_ << ": no work, read-only";
    return Vote::kReadOnly;
  }
  auto gid = xa_->GidFor(ctx.gtid, ctx.branch_id);
  if (!gid.ok()) {
    LOG(ERROR) << "gtid=" << ctx.gtid << " " << gid.status();
    CloseSessionLocked(session.get(), true);
    Retire(ctx.gtid, ctx.deadline_unix_ms);
    return Vote::kAbort;
  }
  Status failed;
  try {
    session->work->exec("PREPARE TRANSACTION " + session->work->quote(*gid));
    // The server transaction has ended; this only tells libpqxx.
    session->work->commit();
  } catch (const std::exception& e) {
    failed = internal::StatusFromException(e, "prepare " + *gid);
  }
  const bool broken = IsBroken(failed);
  session->work.reset();
  session_pool_->Release(std::move(session->conn), !broken);
  session->closed = true;
  Retire(ctx.gtid, ctx.deadline_unix_ms);
  if (!failed.ok()) {
    LOG(ERROR) << "gtid=" << ctx.gtid << " " << name_ << ": prepare failed: " << failed;
    if (broken) {
      // Whether PREPARE happened is re-read (kPrepared if it did).
      auto vote = xa_->Prepare(ctx, [](pqxx::work&) { return Vote::kAbort; });
      return vote.ok() ? *vote : Vote::kAbort;
    }
    return Vote::kAbort;
  }
  TXC_CRASH_POINT("participant.after_prepare");
  VLOG(1) << "gtid=" << ctx.gtid << " " << name_ << ": prepared as " << *gid;
  return Vote::kPrepared;
}

Outcome PgTxnResource::CommitOnePhase(const BranchContext& ctx) {
  auto session = FindSession(ctx.gtid, false);
  auto by_barrier = [&] {
    // No open transaction (or its commit's outcome is unknown): the barrier
    // row tells whether a commit happened; without it the work is lost: abort.
    auto outcome = xa_->CommitOnePhase(ctx, [](pqxx::work&) { return Vote::kAbort; });
    ThrowIfError(outcome.status());
    return *outcome;
  };
  if (session == nullptr) return by_barrier();
  std::unique_lock<std::mutex> lock(session->mu);
  if (session->closed || ctx.branch_id != session->branch.branch_id) {
    lock.unlock();
    return by_barrier();
  }
  bool commit_sent = false;
  Status failed;
  try {
    session->work->exec_params(
        "INSERT INTO txc_barrier (gtid, branch_id, op, reason, outcome, message, "
        "created_unix_ms) VALUES ($1, $2, $3, $3, 1, '', $4) "
        "ON CONFLICT (gtid, branch_id, op) DO NOTHING",
        ctx.gtid, ctx.branch_id, kOpCommitOnePhase, NowUnixMs());
    commit_sent = true;
    session->work->commit();
  } catch (const std::exception& e) {
    failed = internal::StatusFromException(e, "one-phase commit on " + name_);
  }
  const bool broken = IsBroken(failed);
  session->work.reset();
  session_pool_->Release(std::move(session->conn), failed.ok() || !broken);
  session->closed = true;
  Retire(ctx.gtid, ctx.deadline_unix_ms);
  lock.unlock();
  if (failed.ok()) {
    VLOG(1) << "gtid=" << ctx.gtid << " " << name_ << ": one-phase committed";
    return Outcome::kCommit;
  }
  LOG(ERROR) << "gtid=" << ctx.gtid << " " << name_ << ": one-phase commit failed: " << failed;
  if (commit_sent && broken) return by_barrier();
  return Outcome::kAbort;
}

void PgTxnResource::Commit(const BranchContext& ctx) {
  if (FindSession(ctx.gtid, false) != nullptr) {
    throw std::runtime_error("gtid=" + ctx.gtid + ": commit of an unprepared branch on " + name_);
  }
  ThrowIfError(xa_->Commit(ctx));
}

void PgTxnResource::Abort(const BranchContext& ctx) {
  if (auto session = FindSession(ctx.gtid, false)) {
    std::lock_guard<std::mutex> lock(session->mu);
    if (!session->closed) {
      CloseSessionLocked(session.get(), true);
      VLOG(1) << "gtid=" << ctx.gtid << " " << name_ << ": open local transaction rolled back";
    }
  }
  Retire(ctx.gtid, ctx.deadline_unix_ms);
  ThrowIfError(xa_->Abort(ctx));
}

std::vector<PreparedBranch> PgTxnResource::Recover() { return ValueOrThrow(xa_->Recover()); }

void PgTxnResource::ReaperLoop() {
  const int64_t period_ms =
      std::max<int64_t>(50, std::min<int64_t>(1000, options_.idle_timeout_ms / 4));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    stop_.wait_for(lock, std::chrono::milliseconds(period_ms));
    if (stopping_) break;
    const int64_t now_ms = MonotonicMs();
    const int64_t now_unix_ms = NowUnixMs();
    std::vector<std::shared_ptr<Session>> candidates;
    for (auto& [gtid, session] : sessions_) candidates.push_back(session);
    lock.unlock();
    for (auto& session : candidates) {
      std::unique_lock<std::mutex> session_lock(session->mu, std::try_to_lock);
      if (!session_lock.owns_lock() || session->closed) continue;  // busy: next round
      const bool idle = now_ms - session->last_used_ms > options_.idle_timeout_ms;
      const bool expired =
          session->branch.deadline_unix_ms > 0 &&
          now_unix_ms > session->branch.deadline_unix_ms + options_.deadline_grace_ms;
      if (!idle && !expired) continue;
      LOG(WARNING) << "gtid=" << session->branch.gtid << " " << name_ << ": local transaction "
                   << (expired ? "past its deadline" : "idle too long") << ", rolled back";
      CloseSessionLocked(session.get(), true);
      session_lock.unlock();
      Retire(session->branch.gtid, session->branch.deadline_unix_ms);
    }
    lock.lock();
    for (auto it = finished_.begin(); it != finished_.end();) {
      if (it->second + kForgetFinishedAfterDeadlineMs < now_unix_ms) {
        it = finished_.erase(it);
      } else {
        ++it;
      }
    }
  }
}

}  // namespace participant
}  // namespace txc
