#include "txc/participant/pg_resource.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "common/backoff.h"
#include "common/crash_point.h"
#include "pg_pool.h"

namespace txc {
namespace participant {

namespace {

constexpr size_t kMaxGidBytes = 199;  // PostgreSQL GIDSIZE (200) minus the NUL
constexpr char kOpCommitOnePhase[] = "commit_one_phase";

bool PlainSafe(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c == ':' || c == '\'' || c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

std::string Hex(const std::string& s) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

bool Unhex(const std::string& s, std::string* out) {
  if (s.size() % 2 != 0) return false;
  out->clear();
  for (size_t i = 0; i < s.size(); i += 2) {
    auto nibble = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    const int hi = nibble(s[i]), lo = nibble(s[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t pos = s.find(sep, start);
    if (pos == std::string::npos) {
      parts.push_back(s.substr(start));
      return parts;
    }
    parts.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

bool IsSqlState(const std::exception& e, const char* state) {
  auto* sql = dynamic_cast<const pqxx::sql_error*>(&e);
  return sql != nullptr && sql->sqlstate() == state;
}

// A pooled connection returned on scope exit; MarkBroken() drops it instead.
class Lease {
 public:
  Lease(internal::PgPool* pool, std::unique_ptr<internal::PgConnection> conn)
      : pool_(pool), conn_(std::move(conn)) {}
  ~Lease() { pool_->Release(std::move(conn_), healthy_); }
  pqxx::connection& conn() { return conn_->conn; }
  void Judge(const Status& s) {
    if (s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kIndeterminate) {
      healthy_ = false;
    }
  }
  void MarkBroken() { healthy_ = false; }

 private:
  internal::PgPool* pool_;
  std::unique_ptr<internal::PgConnection> conn_;
  bool healthy_ = true;
};

}  // namespace

void ThrowIfError(const Status& s) {
  if (!s.ok()) throw std::runtime_error(s.ToString());
}

Result<std::unique_ptr<PgXaResource>> PgXaResource::Create(PgXaOptions options) {
  if (options.conninfo.empty()) return Status::InvalidArgument("PgXaResource: empty conninfo");
  if (options.prefix.empty() || options.prefix.size() > 32) {
    return Status::InvalidArgument("PgXaResource: prefix must be 1..32 characters");
  }
  for (char c : options.prefix) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) {
      return Status::InvalidArgument("PgXaResource: prefix must be [A-Za-z0-9_-]: '" +
                                     options.prefix + "'");
    }
  }
  if (options.resource.empty()) options.resource = options.prefix;
  if (options.prepare_lock_timeout_ms < 0) {
    return Status::InvalidArgument("PgXaResource: prepare_lock_timeout_ms must be >= 0");
  }
  return std::unique_ptr<PgXaResource>(new PgXaResource(std::move(options)));
}

PgXaResource::PgXaResource(PgXaOptions options)
    : options_(std::move(options)),
      pool_(std::make_unique<internal::PgPool>(options_.conninfo, options_.max_connections,
                                               options_.acquire_timeout_ms)) {}

PgXaResource::~PgXaResource() = default;

void PgXaResource::DropIdleConnections() { pool_->DropIdle(); }

Result<std::string> PgXaResource::GidFor(const std::string& gtid,
                                         const std::string& branch_id) const {
  if (gtid.empty() || branch_id.empty()) {
    return Status::InvalidArgument("gtid and branch id must not be empty");
  }
  std::string gid = PlainSafe(gtid) && PlainSafe(branch_id)
                        ? options_.prefix + ":" + gtid + ":" + branch_id
                        : options_.prefix + ":x:" + Hex(gtid) + ":" + Hex(branch_id);
  if (gid.size() > kMaxGidBytes) {
    return Status::InvalidArgument("prepared transaction id too long (" +
                                   std::to_string(gid.size()) + " > 199 bytes) for gtid " + gtid +
                                   " branch " + branch_id);
  }
  return gid;
}

Result<bool> PgXaResource::IsPrepared(const std::string& gid) {
  Result<bool> r = IsPreparedOnce(gid);
  if (!r.ok() && r.status().code() == StatusCode::kUnavailable) r = IsPreparedOnce(gid);
  return r;
}

Result<bool> PgXaResource::IsPreparedOnce(const std::string& gid) {
  TXC_ASSIGN_OR_RETURN(auto conn, pool_->Acquire());
  Lease lease(pool_.get(), std::move(conn));
  try {
    pqxx::nontransaction n(lease.conn());
    pqxx::result r = n.exec_params(
        "SELECT 1 FROM pg_prepared_xacts WHERE gid = $1 AND database = current_database()", gid);
    return !r.empty();
  } catch (const std::exception& e) {
    Status s = internal::StatusFromException(e, "check prepared " + gid);
    lease.Judge(s);
    return s;
  }
}

// Registers a running prepare of `gid` for its lifetime (an Abort() of the
// same branch waits for it to end); Aborted() tells whether an abort of the
// branch arrived.
class PgXaResource::PrepareGuard {
 public:
  PrepareGuard(PgXaResource* owner, std::string gid) : owner_(owner), gid_(std::move(gid)) {
    std::lock_guard<std::mutex> lock(owner_->aborts_mu_);
    ++owner_->preparing_[gid_];
  }
  ~PrepareGuard() {
    {
      std::lock_guard<std::mutex> lock(owner_->aborts_mu_);
      auto it = owner_->preparing_.find(gid_);
      if (--it->second == 0) owner_->preparing_.erase(it);
    }
    owner_->prepare_done_.notify_all();
  }
  bool Aborted() {
    std::lock_guard<std::mutex> lock(owner_->aborts_mu_);
    return owner_->AbortedLocked(gid_, MonotonicMs());
  }

 private:
  PgXaResource* const owner_;
  const std::string gid_;
};

bool PgXaResource::AbortedLocked(const std::string& gid, int64_t now_ms) {
  while (!abort_order_.empty() && abort_order_.front().first <= now_ms) {
    auto it = aborted_.find(abort_order_.front().second);
    if (it != aborted_.end() && it->second <= now_ms) aborted_.erase(it);
    abort_order_.pop_front();
  }
  return aborted_.count(gid) > 0;
}

void PgXaResource::RememberAbortLocked(const std::string& gid, int64_t now_ms) {
  AbortedLocked(gid, now_ms);  // drops what expired
  const int64_t until = now_ms + options_.abort_memory_ms;
  aborted_[gid] = until;
  abort_order_.emplace_back(until, gid);
  while (aborted_.size() > options_.abort_memory_entries && !abort_order_.empty()) {
    auto it = aborted_.find(abort_order_.front().second);
    if (it != aborted_.end() && it->second == abort_order_.front().first) aborted_.erase(it);
    abort_order_.pop_front();
  }
}

Result<Vote> PgXaResource::Prepare(const BranchContext& ctx,
                                   const std::function<Vote(pqxx::work&)>& fn) {
  TXC_ASSIGN_OR_RETURN(const std::string gid, GidFor(ctx.gtid, ctx.branch_id));
  PrepareGuard guard(this, gid);
  if (guard.Aborted()) {
    LOG(WARNING) << "gtid=" << ctx.gtid << " branch=" << ctx.branch_id
                 << " prepare arrived after the branch's abort: voting abort, work not run";
    return Vote::kAbort;
  }
  TXC_ASSIGN_OR_RETURN(const bool already, IsPrepared(gid));
  if (already) {
    VLOG(1) << "gtid=" << ctx.gtid << " branch=" << ctx.branch_id
            << " prepare redelivered: already prepared as " << gid;
    return Vote::kPrepared;
  }
  TXC_ASSIGN_OR_RETURN(auto conn, pool_->Acquire());
  Lease lease(pool_.get(), std::move(conn));
  bool prepare_sent = false;
  Status failed;
  try {
    pqxx::work w(lease.conn());
    if (options_.prepare_lock_timeout_ms > 0) {
      w.exec("SET LOCAL lock_timeout = " + std::to_string(options_.prepare_lock_timeout_ms));
    }
    const Vote vote = fn(w);
    switch (vote) {
      case Vote::kPrepared:
        if (guard.Aborted()) {
          w.abort();
          LOG(WARNING) << "gtid=" << ctx.gtid << " branch=" << ctx.branch_id
                       << " aborted while its prepare ran: rolled back, voting abort";
          return Vote::kAbort;
        }
        prepare_sent = true;
        w.exec("PREPARE TRANSACTION " + w.quote(gid));
        // The server transaction has ended; this COMMIT only tells libpqxx
        // (the server answers "no transaction in progress", silenced).
        w.commit();
        TXC_CRASH_POINT("participant.after_prepare");
        VLOG(1) << "gtid=" << ctx.gtid << " branch=" << ctx.branch_id << " prepared as " << gid;
        return Vote::kPrepared;
      case Vote::kReadOnly:
      case Vote::kAbort:
        w.abort();
        VLOG(1) << "gtid=" << ctx.gtid << " branch=" << ctx.branch_id << " prepare voted "
                << VoteName(vote) << ", local transaction rolled back";
        return vote;
    }
    return Status::Internal("unknown vote");
  } catch (const std::exception& e) {
    if (IsSqlState(e, "42710")) {
      // A concurrent delivery of the same prepare won: the branch is prepared.
      VLOG(1) << "gtid=" << ctx.gtid << " branch=" << ctx.branch_id
              << " prepared concurrently by a duplicate delivery";
      return Vote::kPrepared;
    }
    failed = internal::StatusFromException(e, "prepare " + gid);
    lease.Judge(failed);
  }
  if (prepare_sent &&
      (failed.code() == StatusCode::kUnavailable || failed.code() == StatusCode::kIndeterminate)) {
    // The connection broke around PREPARE: whether it happened is re-read.
    Result<bool> prepared = IsPrepared(gid);
    if (prepared.ok() && *prepared) return Vote::kPrepared;
  }
  LOG(ERROR) << "gtid=" << ctx.gtid << " branch=" << ctx.branch_id << " prepare failed: " << failed;
  return failed;
}

Status PgXaResource::FinishPrepared(const BranchContext& ctx, bool commit) {
  TXC_ASSIGN_OR_RETURN(const std::string gid, GidFor(ctx.gtid, ctx.branch_id));
  TXC_ASSIGN_OR_RETURN(auto conn, pool_->Acquire());
  Lease lease(pool_.get(), std::move(conn));
  const char* what = commit ? "COMMIT PREPARED" : "ROLLBACK PREPARED";
  if (commit) TXC_CRASH_POINT("participant.before_commit_prepared");
  try {
    pqxx::nontransaction n(lease.conn());
    n.exec(std::string(what) + " " + n.quote(gid));
    VLOG(1) << "gtid=" << ctx.gtid << " branch=" << ctx.branch_id << " " << what << " done";
    return Status::Ok();
  } catch (const std::exception& e) {
    if (IsSqlState(e, "42704")) {
      // No such prepared transaction: already finished (or, for abort, never prepared).
      VLOG(1) << "gtid=" << ctx.gtid << " branch=" << ctx.branch_id << " " << what
              << ": not prepared (already finished), ok";
      return Status::Ok();
    }
    Status s = internal::StatusFromException(e, std::string(what) + " " + gid);
    if (IsSqlState(e, "55006")) s = Status::Unavailable(s.message());  // busy: in use elsewhere
    lease.Judge(s);
    LOG(ERROR) << "gtid=" << ctx.gtid << " branch=" << ctx.branch_id << " " << s;
    return s;
  }
}

// Phase 2 and recovery are idempotent: after a broken (e.g. pooled, since
// terminated) connection they are tried once more on a fresh one.
Status PgXaResource::Commit(const BranchContext& ctx) {
  Status s = FinishPrepared(ctx, true);
  if (s.code() == StatusCode::kUnavailable) s = FinishPrepared(ctx, true);
  return s;
}

Status PgXaResource::Abort(const BranchContext& ctx) {
  TXC_ASSIGN_OR_RETURN(const std::string gid, GidFor(ctx.gtid, ctx.branch_id));
  {
    // Remembered first: a prepare of this branch from now on votes abort; one
    // running now is waited for, so that what it prepared is rolled back below.
    std::unique_lock<std::mutex> lock(aborts_mu_);
    RememberAbortLocked(gid, MonotonicMs());
    const bool ended = prepare_done_.wait_for(
        lock, std::chrono::milliseconds(std::max<int64_t>(0, options_.acquire_timeout_ms)),
        [&] { return preparing_.count(gid) == 0; });
    if (!ended) {
      return Status::Unavailable("abort of gtid " + ctx.gtid + " branch " + ctx.branch_id +
                                 ": its prepare is still running; retry");
    }
  }
  Status s = FinishPrepared(ctx, false);
  if (s.code() == StatusCode::kUnavailable) s = FinishPrepared(ctx, false);
  return s;
}

Result<std::vector<PreparedBranch>> PgXaResource::Recover() {
  auto r = RecoverOnce();
  if (!r.ok() && r.status().code() == StatusCode::kUnavailable) r = RecoverOnce();
  return r;
}

Result<Outcome> PgXaResource::CommitOnePhase(const BranchContext& ctx,
                                             const std::function<Vote(pqxx::work&)>& fn) {
  TXC_ASSIGN_OR_RETURN(auto conn, pool_->Acquire());
  Lease lease(pool_.get(), std::move(conn));
  bool commit_sent = false;
  Status failed;
  try {
    pqxx::work w(lease.conn());
    pqxx::result inserted = w.exec_params(
        "INSERT INTO txc_barrier (gtid, branch_id, op, reason, outcome, message, "
        "created_unix_ms) VALUES ($1, $2, $3, $3, 1, '', $4) "
        "ON CONFLICT (gtid, branch_id, op) DO NOTHING",
        ctx.gtid, ctx.branch_id, kOpCommitOnePhase, NowUnixMs());
    if (inserted.affected_rows() == 0) {
      w.abort();
      VLOG(1) << "gtid=" << ctx.gtid << " branch=" << ctx.branch_id
              << " one-phase commit redelivered: already committed";
      return Outcome::kCommit;
    }
    const Vote vote = fn(w);
    if (vote == Vote::kAbort) {
      w.abort();
      VLOG(1) << "gtid=" << ctx.gtid << " branch=" << ctx.branch_id
              << " one-phase commit: voted abort, rolled back";
      return Outcome::kAbort;
    }
    commit_sent = true;
    w.commit();
    VLOG(1) << "gtid=" << ctx.gtid << " branch=" << ctx.branch_id << " one-phase committed";
    return Outcome::kCommit;
  } catch (const std::exception& e) {
    failed = internal::StatusFromException(e, "one-phase commit");
    lease.Judge(failed);
  }
  if (commit_sent) {
    // The outcome of COMMIT is unknown: the barrier row tells.
    lease.MarkBroken();
    auto again = pool_->Acquire();
    if (again.ok()) {
      Lease check(pool_.get(), std::move(again).value());
      try {
        pqxx::nontransaction n(check.conn());
        pqxx::result r = n.exec_params(
            "SELECT 1 FROM txc_barrier WHERE gtid = $1 AND branch_id = $2 AND op = $3", ctx.gtid,
            ctx.branch_id, kOpCommitOnePhase);
        if (!r.empty()) return Outcome::kCommit;
        failed = Status::Unavailable("one-phase commit did not happen: " + failed.message());
      } catch (const std::exception& e) {
        check.MarkBroken();
        failed = Status::Unavailable("one-phase commit outcome unknown: " + failed.message());
      }
    } else {
      failed = Status::Unavailable("one-phase commit outcome unknown: " + failed.message());
    }
  }
  LOG(ERROR) << "gtid=" << ctx.gtid << " branch=" << ctx.branch_id
             << " one-phase commit failed: " << failed;
  return failed;
}

Result<std::vector<PreparedBranch>> PgXaResource::RecoverOnce() {
  TXC_ASSIGN_OR_RETURN(auto conn, pool_->Acquire());
  Lease lease(pool_.get(), std::move(conn));
  const std::string head = options_.prefix + ":";
  pqxx::result rows;
  try {
    pqxx::nontransaction n(lease.conn());
    rows = n.exec_params(
        "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() "
        "AND left(gid, $2) = $1 ORDER BY prepared",
        head, static_cast<int>(head.size()));
  } catch (const std::exception& e) {
    Status s = internal::StatusFromException(e, "recover");
    lease.Judge(s);
    return s;
  }
  std::vector<PreparedBranch> out;
  for (const auto& row : rows) {
    const std::string gid = row[0].as<std::string>();
    std::vector<std::string> parts = Split(gid.substr(head.size()), ':');
    PreparedBranch b;
    b.resource = options_.resource;
    if (parts.size() == 2) {
      b.gtid = parts[0];
      b.branch_id = parts[1];
    } else if (parts.size() == 3 && parts[0] == "x" && Unhex(parts[1], &b.gtid) &&
               Unhex(parts[2], &b.branch_id)) {
    } else {
      LOG(WARNING) << "recover: ignoring prepared transaction '" << gid
                   << "' (prefix matches, format does not)";
      continue;
    }
    out.push_back(std::move(b));
  }
  VLOG(1) << "recover: " << out.size() << " prepared branches with prefix " << options_.prefix;
  return out;
}

}  // namespace participant
}  // namespace txc
