#include "coordinator/store/postgres_store.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <pqxx/pqxx>
#include <set>
#include <unordered_set>
#include <utility>

#include "common/backoff.h"
#include "common/crash_point.h"
#include "coordinator/store/store_util.h"
#include "migrations/migrator.h"

namespace txc {

using store_internal::DecodeStringList;
using store_internal::EncodeStringList;
using store_internal::IsRefusal;
using store_internal::kAuditColumns;
using store_internal::kBranchColumns;
using store_internal::kTxnColumns;
using store_internal::StateList;
using store_internal::StateMask;

struct PostgresStore::Conn {
  std::unique_ptr<pqxx::connection> conn;
  std::set<std::string> prepared;  // statement names prepared on conn
  // Set by StartCall (owner thread, under calls_mu_); read by the watchdog
  // under calls_mu_.
  int64_t deadline_mono_ms = 0;
  bool cancelled = false;  // the watchdog cancelled the current call (calls_mu_)
};

namespace {

// Statement parameters in text format; nullptr is SQL NULL. Binary values are
// sent as bytea hex text ("\x..."), so no parameter holds a NUL byte.
class Params {
 public:
  Params& Text(std::string s) {
    store_.push_back(std::move(s));
    ptrs_.push_back(store_.back().c_str());
    return *this;
  }
  Params& Int(int64_t v) { return Text(std::to_string(v)); }
  Params& Bool(bool v) { return Text(v ? "true" : "false"); }
  Params& Bytes(const std::string& b) {
    static const char kHex[] = "0123456789abcdef";
    std::string s = "\\x";
    s.reserve(2 + 2 * b.size());
    for (unsigned char c : b) {
      s += kHex[c >> 4];
      s += kHex[c & 15];
    }
    return Text(std::move(s));
  }
  Params& Null() {
    ptrs_.push_back(nullptr);
    return *this;
  }
  template <typename T>
  Params& OptInt(const std::optional<T>& v) {
    return v.has_value() ? Int(static_cast<int64_t>(*v)) : Null();
  }
  const std::vector<const char*>& get() const { return ptrs_; }
  size_t size() const { return ptrs_.size(); }

 private:
  std::deque<std::string> store_;  // stable addresses
  std::vector<const char*> ptrs_;
};

// Executes `sql` prepared as `name` on the connection (prepared on first use).
pqxx::result ExecPrepared(PostgresStore::Conn& c, pqxx::transaction_base& tx,
                          const std::string& name, const std::string& sql, const Params& params) {
  if (c.prepared.insert(name).second) {
    try {
      c.conn->prepare(name, sql);
    } catch (...) {
      c.prepared.erase(name);
      throw;
    }
  }
  return tx.exec_prepared(name, pqxx::prepare::make_dynamic_params(params.get()));
}

std::string Bytes(const pqxx::field& f) {
  if (f.is_null()) return "";
  return pqxx::binarystring(f).str();
}
std::string TextOrEmpty(const pqxx::field& f) { return f.is_null() ? "" : f.as<std::string>(); }

TxnRecord ReadTxn(const pqxx::row& r) {
  TxnRecord t;
  t.gtid = r[0].as<std::string>();
  t.kind = static_cast<TxnKind>(r[1].as<int>());
  t.state = static_cast<TxnState>(r[2].as<int>());
  t.owner = r[3].as<std::string>();
  t.epoch = r[4].as<int64_t>();
  t.created_ms = r[5].as<int64_t>();
  t.updated_ms = r[6].as<int64_t>();
  t.deadline_ms = r[7].as<int64_t>();
  t.next_attempt_ms = r[8].as<int64_t>();
  t.attempts = r[9].as<int>();
  t.idempotency_key = TextOrEmpty(r[10]);
  t.payload = Bytes(r[11]);
  t.flags = r[12].as<int>();
  return t;
}

Result<BranchRecord> ReadBranch(const pqxx::row& r) {
  BranchRecord b;
  b.gtid = r[0].as<std::string>();
  b.branch_id = r[1].as<std::string>();
  b.ordinal = r[2].as<int>();
  b.endpoint = r[3].as<std::string>();
  b.resource = r[4].as<std::string>();
  b.action = r[5].as<std::string>();
  b.compensation = r[6].as<std::string>();
  TXC_ASSIGN_OR_RETURN(b.depends_on, DecodeStringList(Bytes(r[7])));
  b.payload = Bytes(r[8]);
  b.state = static_cast<BranchState>(r[9].as<int>());
  b.attempts = r[10].as<int>();
  b.max_attempts = r[11].as<int>();
  b.initial_backoff_ms = r[12].as<int>();
  b.max_backoff_ms = r[13].as<int>();
  b.next_attempt_ms = r[14].as<int64_t>();
  b.last_error = Bytes(r[15]);
  b.started_ms = r[16].as<int64_t>();
  b.finished_ms = r[17].as<int64_t>();
  return b;
}

std::string IntArray(const std::vector<TxnState>& states) { return "{" + StateList(states) + "}"; }

// "($1::text, $2::int), ($3::text, $4::int)" for `rows` rows of `types`.
std::string ValuesList(const std::vector<const char*>& types, size_t rows) {
  std::string out;
  int n = 1;
  for (size_t r = 0; r < rows; ++r) {
    out += r == 0 ? "(" : ", (";
    for (size_t c = 0; c < types.size(); ++c) {
      if (c > 0) out += ", ";
      out += "$" + std::to_string(n++) + "::" + types[c];
    }
    out += ")";
  }
  return out;
}

// --- statements, by number of rows --------------------------------------------

std::string InsertTxnsSql(size_t rows) {
  return std::string("INSERT INTO txns (") + kTxnColumns + ") SELECT gtid, kind, state, owner, " +
         "epoch, created_ms, updated_ms, deadline_ms, next_attempt_ms, attempts, " +
         "NULLIF(idempotency_key, ''), payload, flags FROM (VALUES " +
         ValuesList({"text", "integer", "integer", "text", "bigint", "bigint", "bigint", "bigint",
                     "bigint", "integer", "text", "bytea", "integer"},
                    rows) +
         ") AS v(" + kTxnColumns + ") ON CONFLICT DO NOTHING";
}
void AddInsertTxn(Params& p, const TxnRecord& t, int64_t now_ms) {
  p.Text(t.gtid)
      .Int(static_cast<int>(t.kind))
      .Int(static_cast<int>(t.state))
      .Text(t.owner)
      .Int(t.epoch)
      .Int(t.created_ms)
      .Int(now_ms)
      .Int(t.deadline_ms)
      .Int(t.next_attempt_ms)
      .Int(t.attempts)
      .Text(t.idempotency_key)
      .Bytes(t.payload)
      .Int(t.flags);
}

std::string InsertBranchesSql(size_t rows) {
  return std::string("INSERT INTO branches (") + kBranchColumns + ") VALUES " +
         ValuesList({"text", "text", "integer", "text", "text", "text", "text", "bytea", "bytea",
                     "integer", "integer", "integer", "integer", "integer", "bigint", "bytea",
                     "bigint", "bigint"},
                    rows) +
         " ON CONFLICT DO NOTHING";
}
void AddInsertBranch(Params& p, const BranchRecord& b, int64_t now_ms) {
  p.Text(b.gtid)
      .Text(b.branch_id)
      .Int(b.ordinal)
      .Text(b.endpoint)
      .Text(b.resource)
      .Text(b.action)
      .Text(b.compensation)
      .Bytes(EncodeStringList(b.depends_on))
      .Bytes(b.payload)
      .Int(static_cast<int>(b.state))
      .Int(b.attempts)
      .Int(b.max_attempts)
      .Int(b.initial_backoff_ms)
      .Int(b.max_backoff_ms)
      .Int(b.next_attempt_ms)
      .Bytes(b.last_error)
      .Int(store_internal::BranchStartedMs(b.state, now_ms))
      .Int(store_internal::BranchFinishedMs(b.state, now_ms));
}

// Returns the idx of each row that matched its conditions and was updated.
// The branch count is correlated with u.gtid, not t.gtid (equal in every
// matching row): the condition then filters the VALUES rows alone and is
// costed the same whatever the join. Correlated with t it was charged to each
// probe of txns, and without statistics (a new database that autovacuum has
// not analyzed yet) PostgreSQL guesses ~100-150 branches per gtid, so the
// index probe looked dearer than hashing a sequential scan of all of txns:
// 10-50 ms per few-row UPDATE once txns held ~10k rows.
std::string UpdateTxnsSql(size_t rows) {
  return "UPDATE txns AS t SET state = COALESCE(u.state, t.state), "
         "owner = COALESCE(u.owner, t.owner), epoch = COALESCE(u.epoch, t.epoch), "
         "next_attempt_ms = COALESCE(u.next_attempt_ms, t.next_attempt_ms), "
         "attempts = COALESCE(u.attempts, t.attempts), "
         "deadline_ms = COALESCE(u.deadline_ms, t.deadline_ms), "
         "flags = COALESCE(u.flags, t.flags), updated_ms = u.now_ms FROM (VALUES " +
         ValuesList({"integer", "text", "text", "bigint", "bigint", "integer", "text", "bigint",
                     "bigint", "integer", "bigint", "integer", "bigint", "integer"},
                    rows) +
         ") AS u(idx, gtid, expected_owner, expected_epoch, mask, state, owner, epoch, "
         "next_attempt_ms, attempts, deadline_ms, flags, now_ms, expected_branches) "
         "WHERE t.gtid = u.gtid AND t.owner = u.expected_owner AND t.epoch = u.expected_epoch "
         "AND (u.mask = 0 OR ((u.mask >> t.state) & 1) = 1) "
         "AND (u.expected_branches IS NULL OR "
         "(SELECT count(*) FROM branches AS c WHERE c.gtid = u.gtid) = u.expected_branches) "
         "RETURNING u.idx";
}
void AddUpdateTxn(Params& p, size_t idx, const TxnUpdate& u, int64_t now_ms) {
  p.Int(static_cast<int64_t>(idx))
      .Text(u.gtid)
      .Text(u.expected_owner)
      .Int(u.expected_epoch)
      .Int(StateMask(u.expected_states))
      .OptInt(u.state);
  if (u.owner.has_value()) {
    p.Text(*u.owner);
  } else {
    p.Null();
  }
  p.OptInt(u.epoch)
      .OptInt(u.next_attempt_ms)
      .OptInt(u.attempts)
      .OptInt(u.deadline_ms)
      .OptInt(u.flags)
      .Int(now_ms)
      .OptInt(u.expected_branch_count);
}

std::string UpdateBranchesSql(size_t rows) {
  return "UPDATE branches AS b SET state = COALESCE(u.state, b.state), "
         "attempts = COALESCE(u.attempts, b.attempts), "
         "next_attempt_ms = COALESCE(u.next_attempt_ms, b.next_attempt_ms), "
         "last_error = COALESCE(u.last_error, b.last_error), "
         "started_ms = CASE WHEN u.state IS NOT NULL AND u.state <> b.state AND b.started_ms = 0 "
         "THEN u.started_ms ELSE b.started_ms END, "
         "finished_ms = CASE WHEN u.state IS NOT NULL AND u.state <> b.state THEN u.finished_ms "
         "ELSE b.finished_ms END, "
         "endpoint = COALESCE(u.endpoint, b.endpoint) FROM (VALUES " +
         ValuesList({"integer", "text", "text", "bigint", "text", "bigint", "integer", "integer",
                     "bigint", "bytea", "bigint", "bigint", "text"},
                    rows) +
         ") AS u(idx, gtid, branch_id, mask, expected_owner, expected_epoch, state, attempts, "
         "next_attempt_ms, last_error, started_ms, finished_ms, endpoint), txns AS t "
         "WHERE b.gtid = u.gtid AND b.branch_id = u.branch_id "
         "AND (u.mask = 0 OR ((u.mask >> b.state) & 1) = 1) "
         "AND t.gtid = u.gtid AND t.owner = u.expected_owner AND t.epoch = u.expected_epoch "
         "RETURNING u.idx";
}
void AddUpdateBranch(Params& p, size_t idx, const BranchUpdate& u, int64_t now_ms) {
  p.Int(static_cast<int64_t>(idx))
      .Text(u.gtid)
      .Text(u.branch_id)
      .Int(StateMask(u.expected_states))
      .Text(u.expected_owner)
      .Int(u.expected_epoch)
      .OptInt(u.state)
      .OptInt(u.attempts)
      .OptInt(u.next_attempt_ms);
  if (u.last_error.has_value()) {
    p.Bytes(*u.last_error);
  } else {
    p.Null();
  }
  if (u.state.has_value()) {
    p.Int(store_internal::BranchStartedMs(*u.state, now_ms))
        .Int(store_internal::BranchFinishedMs(*u.state, now_ms));
  } else {
    p.Null().Null();
  }
  if (u.endpoint.has_value()) {
    p.Text(*u.endpoint);
  } else {
    p.Null();
  }
}

std::string InsertAuditsSql(size_t rows) {
  return std::string("INSERT INTO audit (") + kAuditColumns + ") VALUES " +
         ValuesList({"text", "text", "text", "text", "bigint", "bytea", "text", "text", "text"},
                    rows) +
         " ON CONFLICT DO NOTHING";
}
void AddInsertAudit(Params& p, const AuditRecord& a) {
  p.Text(a.id)
      .Text(a.gtid)
      .Text(a.action)
      .Text(a.who)
      .Int(a.at_ms)
      .Bytes(a.reason)
      .Text(a.previous_state)
      .Text(a.new_state)
      .Text(a.target);
}

std::string DeleteSql(const char* table, size_t rows) {
  std::string sql = std::string("DELETE FROM ") + table + " WHERE gtid IN (";
  for (size_t i = 0; i < rows; ++i) sql += (i ? ", $" : "$") + std::to_string(i + 1) + "::text";
  return sql + ")";
}

// Runs a statement kind over `items` in chunks; add(params, item, index) adds
// one row. Returns the total affected rows, or the returned idx values.
template <typename T, typename SqlFn, typename AddFn>
size_t ExecChunked(PostgresStore::Conn& c, pqxx::transaction_base& tx, const std::string& name,
                   const std::vector<const T*>& items, size_t max_rows, SqlFn sql, AddFn add,
                   std::vector<int64_t>* returned_idx) {
  size_t affected = 0;
  for (size_t start = 0; start < items.size(); start += max_rows) {
    size_t rows = std::min(max_rows, items.size() - start);
    Params p;
    for (size_t i = start; i < start + rows; ++i) add(p, *items[i], i);
    pqxx::result r = ExecPrepared(c, tx, name + "_" + std::to_string(rows), sql(rows), p);
    affected += r.affected_rows();
    if (returned_idx != nullptr) {
      for (const auto& row : r) returned_idx->push_back(row[0].as<int64_t>());
    }
  }
  return affected;
}

// All rows of one group (or one batch), by kind.
struct Rows {
  std::vector<const TxnRecord*> insert_txns;
  std::vector<const BranchRecord*> insert_branches;
  std::vector<const TxnUpdate*> txn_updates;
  std::vector<const BranchUpdate*> branch_updates;
  std::vector<const std::string*> deletes;
  std::vector<const AuditRecord*> insert_audits;

  void Add(const WriteBatch& b) {
    for (const auto& x : b.insert_audits) insert_audits.push_back(&x);
    for (const auto& x : b.insert_txns) insert_txns.push_back(&x);
    for (const auto& x : b.insert_branches) insert_branches.push_back(&x);
    for (const auto& x : b.txn_updates) txn_updates.push_back(&x);
    for (const auto& x : b.branch_updates) branch_updates.push_back(&x);
    for (const auto& x : b.delete_txns) deletes.push_back(&x);
  }
};

// Writes `rows` with one statement per kind (chunked). Returns true when every
// row applied (inserts all new, updates all matched). On false the caller
// must roll back: which row failed is not known here.
bool WriteRows(PostgresStore::Conn& c, pqxx::transaction_base& tx, const Rows& rows,
               size_t max_rows, int64_t now_ms) {
  if (!rows.insert_txns.empty()) {
    size_t n = ExecChunked(
        c, tx, "ins_txn", rows.insert_txns, max_rows, InsertTxnsSql,
        [now_ms](Params& p, const TxnRecord& t, size_t) { AddInsertTxn(p, t, now_ms); }, nullptr);
    if (n != rows.insert_txns.size()) return false;
  }
  if (!rows.insert_branches.empty()) {
    size_t n = ExecChunked(
        c, tx, "ins_branch", rows.insert_branches, max_rows, InsertBranchesSql,
        [now_ms](Params& p, const BranchRecord& b, size_t) { AddInsertBranch(p, b, now_ms); },
        nullptr);
    if (n != rows.insert_branches.size()) return false;
  }
  if (!rows.txn_updates.empty()) {
    std::vector<int64_t> idx;
    ExecChunked(
        c, tx, "upd_txn", rows.txn_updates, max_rows, UpdateTxnsSql,
        [now_ms](Params& p, const TxnUpdate& u, size_t i) { AddUpdateTxn(p, i, u, now_ms); }, &idx);
    if (idx.size() != rows.txn_updates.size()) return false;
  }
  if (!rows.branch_updates.empty()) {
    std::vector<int64_t> idx;
    ExecChunked(
        c, tx, "upd_branch", rows.branch_updates, max_rows, UpdateBranchesSql,
        [now_ms](Params& p, const BranchUpdate& u, size_t i) { AddUpdateBranch(p, i, u, now_ms); },
        &idx);
    if (idx.size() != rows.branch_updates.size()) return false;
  }
  if (!rows.insert_audits.empty()) {
    size_t n = ExecChunked(
        c, tx, "ins_audit", rows.insert_audits, max_rows, InsertAuditsSql,
        [](Params& p, const AuditRecord& a, size_t) { AddInsertAudit(p, a); }, nullptr);
    if (n != rows.insert_audits.size()) return false;
  }
  if (!rows.deletes.empty()) {
    for (const char* table : {"branches", "txns"}) {
      ExecChunked(
          c, tx, std::string("del_") + table, rows.deletes, max_rows,
          [table](size_t n) { return DeleteSql(table, n); },
          [](Params& p, const std::string& gtid, size_t) { p.Text(gtid); }, nullptr);
    }
  }
  return true;
}

// The transactions a batch touches. False when the batch cannot go through
// the multi-row statements even alone (malformed, or one row updated twice).
bool BatchKeys(const WriteBatch& b, std::unordered_set<std::string>* gtids) {
  if (!store_internal::CheckBatch(b).ok()) return false;
  for (const auto& t : b.insert_txns) gtids->insert(t.gtid);
  for (const auto& x : b.insert_branches) gtids->insert(x.gtid);
  std::unordered_set<std::string> updated;
  for (const auto& u : b.txn_updates) {
    if (!updated.insert(u.gtid).second) return false;
    gtids->insert(u.gtid);
  }
  std::set<std::pair<std::string, std::string>> updated_branches;
  for (const auto& u : b.branch_updates) {
    if (!updated_branches.emplace(u.gtid, u.branch_id).second) return false;
    gtids->insert(u.gtid);
  }
  for (const auto& g : b.delete_txns) gtids->insert(g);
  for (const auto& a : b.insert_audits) gtids->insert(a.gtid);
  return true;
}

// A run of consecutive batches [begin, end) of a group. `together`: they can
// share multi-row statements with the outcome of applying them one after
// another (no transaction touched by two of them, each well-formed).
struct Segment {
  size_t begin;
  size_t end;
  bool together;
};

// Splits a group into maximal segments whose batches can be written together,
// in order; a batch that cannot is a segment of its own.
std::vector<Segment> SplitGroup(const std::vector<const WriteBatch*>& batches) {
  std::vector<Segment> segments;
  std::unordered_set<std::string> current;
  size_t begin = 0;
  for (size_t i = 0; i < batches.size(); ++i) {
    std::unordered_set<std::string> keys;
    const bool ok = BatchKeys(*batches[i], &keys);
    bool overlaps = !ok;
    for (const auto& k : keys) {
      if (overlaps) break;
      overlaps = current.count(k) > 0;
    }
    if (overlaps && i > begin) {
      segments.push_back({begin, i, true});
      begin = i;
      current.clear();
    }
    if (!ok) {
      segments.push_back({i, i + 1, false});
      begin = i + 1;
      current.clear();
      continue;
    }
    current.insert(keys.begin(), keys.end());
  }
  if (begin < batches.size()) segments.push_back({begin, batches.size(), true});
  return segments;
}

Result<bool> Exists(PostgresStore::Conn& c, pqxx::transaction_base& tx, const std::string& name,
                    const std::string& sql, const Params& p) {
  return !ExecPrepared(c, tx, name, sql, p).empty();
}

// One batch, row by row where order matters, explaining a refusal. Inside an
// open transaction; on a refusal the caller rolls back to its savepoint.
Status ApplyOneBatch(PostgresStore::Conn& c, pqxx::transaction_base& tx, const WriteBatch& batch,
                     size_t max_rows, int64_t now_ms) {
  TXC_RETURN_IF_ERROR(store_internal::CheckBatch(batch));
  Rows inserts;
  for (const auto& x : batch.insert_txns) inserts.insert_txns.push_back(&x);
  if (!WriteRows(c, tx, inserts, max_rows, now_ms)) {
    return Status::AlreadyExists("a transaction id or idempotency key in the batch exists");
  }
  inserts = Rows();
  for (const auto& x : batch.insert_branches) inserts.insert_branches.push_back(&x);
  if (!WriteRows(c, tx, inserts, max_rows, now_ms)) {
    return Status::AlreadyExists("a branch in the batch exists");
  }
  for (const TxnUpdate& u : batch.txn_updates) {
    Rows one;
    one.txn_updates.push_back(&u);
    if (WriteRows(c, tx, one, max_rows, now_ms)) continue;
    TXC_ASSIGN_OR_RETURN(
        bool exists,
        Exists(c, tx, "txn_exists", "SELECT 1 FROM txns WHERE gtid = $1", Params().Text(u.gtid)));
    if (!exists) return Status::NotFound("transaction " + u.gtid + " not found");
    return Status::Conflict("transaction " + u.gtid +
                            " is not in the expected state or (owner, epoch)");
  }
  for (const BranchUpdate& u : batch.branch_updates) {
    Rows one;
    one.branch_updates.push_back(&u);
    if (WriteRows(c, tx, one, max_rows, now_ms)) continue;
    TXC_ASSIGN_OR_RETURN(bool txn, Exists(c, tx, "txn_exists", "SELECT 1 FROM txns WHERE gtid = $1",
                                          Params().Text(u.gtid)));
    if (!txn) return Status::NotFound("transaction " + u.gtid + " not found");
    TXC_ASSIGN_OR_RETURN(
        bool branch,
        Exists(c, tx, "branch_exists", "SELECT 1 FROM branches WHERE gtid = $1 AND branch_id = $2",
               Params().Text(u.gtid).Text(u.branch_id)));
    if (!branch) return Status::NotFound("branch " + u.gtid + "/" + u.branch_id + " not found");
    return Status::Conflict("branch " + u.gtid + "/" + u.branch_id +
                            " is not in the expected state or its transaction's (owner, epoch)");
  }
  Rows deletes;
  for (const auto& g : batch.delete_txns) deletes.deletes.push_back(&g);
  WriteRows(c, tx, deletes, max_rows, now_ms);
  Rows audits;
  for (const auto& a : batch.insert_audits) audits.insert_audits.push_back(&a);
  if (!WriteRows(c, tx, audits, max_rows, now_ms)) {
    return Status::AlreadyExists("an audit record id in the batch exists");
  }
  return Status::Ok();
}

// SQLSTATE classes caused by one batch's values (data exception, integrity
// constraint): that batch is refused, the others of its group go on.
bool IsBatchDataError(const std::string& state) {
  return state.rfind("22", 0) == 0 || state.rfind("23", 0) == 0;
}

// SQLSTATE classes that mean "try again later", not "bug".
bool IsTransientSqlState(const std::string& state) {
  return state.rfind("08", 0) == 0 ||  // connection exception
         state.rfind("40", 0) == 0 ||  // serialization failure, deadlock
         state.rfind("53", 0) == 0 ||  // insufficient resources
         state.rfind("57", 0) == 0 ||  // operator intervention (shutdown)
         state == "55P03" ||           // lock_timeout
         state == "25P03" ||           // idle_in_transaction_session_timeout
         state == "25006";             // read-only transaction (standby after failover)
}

}  // namespace

PostgresStore::PostgresStore(std::string connection_string, PostgresStoreOptions options)
    : connection_string_(std::move(connection_string)), options_(options) {
  if (options_.call_timeout_ms > 0) watchdog_ = std::thread([this] { WatchdogLoop(); });
}

PostgresStore::~PostgresStore() {
  {
    std::lock_guard<std::mutex> lock(calls_mu_);
    stop_ = true;
  }
  calls_cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
}

void PostgresStore::WatchdogLoop() {
  // Polls every tick instead of being woken per call (a wake-up per store
  // call would cost a context switch each): a deadline is overshot by at
  // most one tick.
  const int64_t tick_ms = std::clamp<int64_t>(options_.call_timeout_ms / 4, 10, 250);
  std::unique_lock<std::mutex> lock(calls_mu_);
  while (!stop_) {
    const int64_t now = MonotonicMs();
    int64_t next = now + tick_ms;
    for (Conn* c : busy_) {
      if (c->cancelled) continue;
      if (c->deadline_mono_ms > now) {
        next = std::min(next, c->deadline_mono_ms);
        continue;
      }
      // PQcancel is safe from another thread; the connection stays owned by
      // the calling thread, which discards it after the call (EndCall).
      c->cancelled = true;
      try {
        c->conn->cancel_query();
      } catch (const std::exception& e) {
        LOG(WARNING) << "cancelling a store call past its deadline: " << e.what();
      }
      LOG(WARNING) << "a PostgreSQL store call passed its deadline of " << options_.call_timeout_ms
                   << " ms: cancelled";
    }
    calls_cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(1, next - now)));
  }
}

void PostgresStore::StartCall(Conn* conn) {
  if (options_.call_timeout_ms <= 0) return;
  {
    std::lock_guard<std::mutex> lock(calls_mu_);
    conn->deadline_mono_ms = MonotonicMs() + options_.call_timeout_ms;
    conn->cancelled = false;
    busy_.insert(conn);
  }
}

bool PostgresStore::EndCall(Conn* conn) {
  if (options_.call_timeout_ms <= 0) return false;
  std::lock_guard<std::mutex> lock(calls_mu_);
  busy_.erase(conn);
  return conn->cancelled;
}

void PostgresStore::RecordOutcome(const Status& s) {
  std::lock_guard<std::mutex> lock(health_mu_);
  if (s.ok()) {
    last_success_mono_ms_ = MonotonicMs();
  } else {
    last_failure_ = s;
    last_failure_mono_ms_ = MonotonicMs();
  }
}

Status PostgresStore::HealthCheck() const {
  {
    std::lock_guard<std::mutex> lock(health_mu_);
    if (last_failure_mono_ms_ > 0 && last_failure_mono_ms_ >= last_success_mono_ms_) {
      return Status::Unavailable("the last store call failed " +
                                 std::to_string(MonotonicMs() - last_failure_mono_ms_) +
                                 " ms ago: " + last_failure_.message());
    }
  }
  std::lock_guard<std::mutex> lock(calls_mu_);
  const int64_t now = MonotonicMs();
  for (const Conn* c : busy_) {
    if (c->deadline_mono_ms <= now) {
      return Status::Unavailable(
          "a store call is " +
          std::to_string(now - c->deadline_mono_ms + options_.call_timeout_ms) +
          " ms old, past its deadline");
    }
  }
  return Status::Ok();
}

Result<std::unique_ptr<PostgresStore>> PostgresStore::Open(const std::string& connection_string,
                                                           PostgresStoreOptions options) {
  if (options.max_rows_per_statement == 0) options.max_rows_per_statement = 1;
  if (options.max_connections == 0) options.max_connections = 1;
  std::unique_ptr<PostgresStore> store(new PostgresStore(connection_string, options));
  TXC_ASSIGN_OR_RETURN(auto conn, store->Acquire());
  store->Release(std::move(conn));
  return store;
}

Result<std::unique_ptr<PostgresStore::Conn>> PostgresStore::Acquire() {
  {
    std::unique_lock<std::mutex> lock(pool_mu_);
    const bool available =
        pool_cv_.wait_for(lock, std::chrono::milliseconds(options_.acquire_timeout_ms),
                          [this] { return !idle_.empty() || open_ < options_.max_connections; });
    if (!available) {
      return Status::Unavailable("all " + std::to_string(options_.max_connections) +
                                 " PostgreSQL connections stayed busy for " +
                                 std::to_string(options_.acquire_timeout_ms) + " ms");
    }
    if (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      return conn;
    }
    ++open_;  // reserved; connect outside the lock
  }
  try {
    auto conn = std::make_unique<Conn>();
    conn->conn = std::make_unique<pqxx::connection>(connection_string_);
    if (options_.session_timeout_ms > 0) {
      const std::string ms = std::to_string(options_.session_timeout_ms);
      pqxx::nontransaction tx(*conn->conn);
      tx.exec("SET statement_timeout = " + ms + "; SET lock_timeout = " + ms +
              "; SET idle_in_transaction_session_timeout = " + ms);
    }
    return conn;
  } catch (const std::exception& e) {
    {
      std::lock_guard<std::mutex> lock(pool_mu_);
      --open_;
    }
    pool_cv_.notify_one();
    return Status::Unavailable(std::string("connecting to PostgreSQL: ") + e.what());
  }
}

void PostgresStore::Release(std::unique_ptr<Conn> conn) {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    idle_.push_back(std::move(conn));
  }
  pool_cv_.notify_one();
}

void PostgresStore::Discard(std::unique_ptr<Conn> conn) {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    --open_;
  }
  pool_cv_.notify_one();
  conn.reset();  // closed outside the lock
}

void PostgresStore::Drop(std::unique_ptr<Conn> conn) {
  std::vector<std::unique_ptr<Conn>> stale;
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    stale.swap(idle_);
    open_ -= stale.size() + (conn != nullptr ? 1 : 0);
  }
  pool_cv_.notify_all();
  // Closed outside the lock.
}

template <typename Fn>
auto PostgresStore::Run(const char* what, CallKind kind, bool retry_broken, Fn&& fn)
    -> decltype(fn(std::declval<Conn&>())) {
  using R = decltype(fn(std::declval<Conn&>()));
  auto failed = [this](Status s) -> R {
    RecordOutcome(s);
    return s;
  };
  for (int attempt = 0;; ++attempt) {
    auto acquired = Acquire();
    if (!acquired.ok()) return failed(acquired.status());
    std::unique_ptr<Conn> conn = std::move(acquired).value();
    StartCall(conn.get());
    try {
      auto result = fn(*conn);
      if (EndCall(conn.get())) {
        // A cancel may land on a later query: this connection is done.
        Discard(std::move(conn));
        if (kind == CallKind::kWrite) {
          // Cancelled, yet it reports success: its commit was waiting for the
          // synchronous standby. Committed locally, maybe not replicated.
          LOG(ERROR) << what << ": cancelled at its deadline of " << options_.call_timeout_ms
                     << " ms after the commit was sent (synchronous standby gone?): outcome "
                        "indeterminate";
          return failed(Status::Indeterminate(
              std::string(what) + ": commit not confirmed by the synchronous standby within " +
              std::to_string(options_.call_timeout_ms) +
              " ms (committed locally, maybe not "
              "replicated): re-read"));
        }
      } else {
        Release(std::move(conn));
      }
      // Only a write proves the store healthy: reads work on a primary whose
      // commits hang for want of a synchronous standby.
      if (kind == CallKind::kWrite) RecordOutcome(Status::Ok());
      return result;
    } catch (const pqxx::in_doubt_error& e) {
      EndCall(conn.get());
      Drop(std::move(conn));
      LOG(ERROR) << what << ": commit outcome unknown: " << e.what();
      return failed(
          Status::Indeterminate(std::string(what) + ": commit outcome unknown: " + e.what()));
    } catch (const pqxx::broken_connection& e) {
      // The connection is dropped; nothing sent on it was committed. The
      // server probably restarted or failed over: the idle ones are stale too.
      EndCall(conn.get());
      Drop(std::move(conn));
      if (retry_broken && attempt == 0) {
        LOG(WARNING) << what << ": connection broken, retrying on a new one: " << e.what();
        continue;
      }
      return failed(Status::Unavailable(std::string(what) + ": connection broken: " + e.what()));
    } catch (const pqxx::sql_error& e) {
      // The transaction was rolled back when its object went out of scope.
      // The connection is still good unless a cancel was sent on it.
      const bool cancelled = EndCall(conn.get());
      if (cancelled) {
        Discard(std::move(conn));
      } else {
        Release(std::move(conn));
      }
      std::string msg = std::string(what) + ": " + e.what() + " [" + e.sqlstate() + "]";
      if (cancelled) msg += " (cancelled at the call deadline)";
      if (IsTransientSqlState(e.sqlstate())) return failed(Status::Unavailable(msg));
      if (IsBatchDataError(e.sqlstate())) return Status::InvalidArgument(msg);
      LOG(ERROR) << msg;
      return failed(Status::Internal(msg));
    } catch (const std::exception& e) {
      // The connection's state is unknown: do not reuse it.
      EndCall(conn.get());
      std::string msg = std::string(what) + ": " + e.what();
      LOG(ERROR) << msg;
      Discard(std::move(conn));
      return failed(Status::Internal(msg));
    }
  }
}

Status PostgresStore::Migrate() {
  // On a connection of its own without the session timeouts: a migration may
  // wait for another replica's migration lock, and may take long.
  try {
    pqxx::connection conn(connection_string_);
    return MigratePostgres(conn, "coordinator");
  } catch (const pqxx::broken_connection& e) {
    return Status::Unavailable(std::string("migrate: ") + e.what());
  } catch (const std::exception& e) {
    return Status::Internal(std::string("migrate: ") + e.what());
  }
}

// --- writes -------------------------------------------------------------------

Status PostgresStore::Apply(const WriteBatch& batch) { return ApplyGroup({&batch})[0]; }

std::vector<Status> PostgresStore::ApplyGroup(const std::vector<const WriteBatch*>& batches) {
  return ApplyGroupIn(batches, nullptr, 0);
}

std::vector<Status> PostgresStore::ApplyGroupFenced(const std::vector<const WriteBatch*>& batches,
                                                    const std::string& node_id, int64_t epoch) {
  return ApplyGroupIn(batches, &node_id, epoch);
}

std::vector<Status> PostgresStore::ApplyGroupIn(const std::vector<const WriteBatch*>& batches,
                                                const std::string* fence_node,
                                                int64_t fence_epoch) {
  if (batches.empty()) return {};
  const size_t max_rows = options_.max_rows_per_statement;
  auto result =
      Run("apply group", CallKind::kWrite, true, [&](Conn& c) -> Result<std::vector<Status>> {
        const int64_t now_ms = NowUnixMs();
        std::vector<Status> statuses(batches.size());
        const std::vector<Segment> segments = SplitGroup(batches);
        // The writer's lease, locked for the transaction (see ApplyGroupFenced).
        auto fenced = [&](pqxx::transaction_base& tx) {
          if (fence_node == nullptr) return false;
          return ExecPrepared(c, tx, "lease_fence",
                              "SELECT 1 FROM leases WHERE node_id = $1 AND epoch = $2 FOR SHARE",
                              Params().Text(*fence_node).Int(fence_epoch))
              .empty();
        };
        auto fenced_answer = [&] {
          const std::string why = "writes fenced: lease epoch " + std::to_string(fence_epoch) +
                                  " of " + *fence_node + " is no longer current";
          return std::vector<Status>(batches.size(), Status::Unavailable(why));
        };
        auto write_segment = [&](pqxx::transaction_base& tx, const Segment& seg) {
          Rows rows;
          for (size_t i = seg.begin; i < seg.end; ++i) rows.Add(*batches[i]);
          try {
            return WriteRows(c, tx, rows, max_rows, now_ms);
          } catch (const pqxx::sql_error& e) {
            // A value one batch got wrong: found below, batch by batch.
            if (!IsBatchDataError(e.sqlstate())) throw;
            return false;
          }
        };
        // Common case: the whole group in a few statements, no savepoints.
        bool whole_group_failed = false;
        if (segments.size() == 1 && segments[0].together) {
          pqxx::work tx(*c.conn);
          if (fenced(tx)) return fenced_answer();
          if (write_segment(tx, segments[0])) {
            // Tests pause the process here (SIGSTOP) while its updated rows are
            // locked: the session timeouts must free them for a takeover.
            bool updates = false;
            for (const WriteBatch* b : batches) updates = updates || !b->txn_updates.empty();
            if (updates) TXC_PAUSE_POINT("store.pg.group_rows_locked");
            tx.commit();
            counters_.commits += 1;
            counters_.batches += static_cast<int64_t>(batches.size());
            fast_groups_ += 1;
            return statuses;
          }
          tx.abort();  // some batch is refused: redo them one by one
          whole_group_failed = true;
        }
        savepoint_groups_ += 1;
        pqxx::work tx(*c.conn);
        if (fenced(tx)) return fenced_answer();
        const bool single = batches.size() == 1;
        bool any_applied = false;
        for (const Segment& seg : segments) {
          // Try the segment's batches together; on a refusal, one by one.
          if (seg.together && seg.end - seg.begin > 1 && !whole_group_failed) {
            tx.exec("SAVEPOINT segment");
            if (write_segment(tx, seg)) {
              tx.exec("RELEASE SAVEPOINT segment");
              any_applied = true;
              continue;
            }
            tx.exec("ROLLBACK TO SAVEPOINT segment");
            tx.exec("RELEASE SAVEPOINT segment");
          }
          for (size_t i = seg.begin; i < seg.end; ++i) {
            if (!single) tx.exec("SAVEPOINT batch");
            Status s;
            try {
              s = ApplyOneBatch(c, tx, *batches[i], max_rows, now_ms);
            } catch (const pqxx::sql_error& e) {
              // Refuse this batch alone; its savepoint makes the transaction usable again.
              if (single || !IsBatchDataError(e.sqlstate())) throw;
              s = Status::InvalidArgument(std::string("batch refused by PostgreSQL: ") + e.what());
            }
            if (!s.ok() && !IsRefusal(s)) return s;
            if (!s.ok()) {
              if (!single) tx.exec("ROLLBACK TO SAVEPOINT batch");
              statuses[i] = s;
            } else {
              any_applied = true;
            }
            if (!single) tx.exec("RELEASE SAVEPOINT batch");
          }
        }
        if (any_applied) {
          tx.commit();
          counters_.commits += 1;
        } else {
          tx.abort();
        }
        counters_.batches += static_cast<int64_t>(batches.size());
        return statuses;
      });
  if (!result.ok()) {
    LOG(ERROR) << "group of " << batches.size() << " batches failed: " << result.status();
    return std::vector<Status>(batches.size(), result.status());
  }
  return std::move(result).value();
}

// --- reads --------------------------------------------------------------------

Result<TxnRecord> PostgresStore::GetTxn(const std::string& gtid) {
  return Run("get txn", CallKind::kRead, true, [&](Conn& c) -> Result<TxnRecord> {
    pqxx::nontransaction tx(*c.conn);
    auto r = ExecPrepared(c, tx, "get_txn",
                          std::string("SELECT ") + kTxnColumns + " FROM txns WHERE gtid = $1",
                          Params().Text(gtid));
    if (r.empty()) return Status::NotFound("transaction " + gtid + " not found");
    return ReadTxn(r[0]);
  });
}

Result<TxnRecord> PostgresStore::FindByIdempotencyKey(const std::string& key) {
  if (key.empty()) return Status::InvalidArgument("empty idempotency key");
  return Run("find by idempotency key", CallKind::kRead, true, [&](Conn& c) -> Result<TxnRecord> {
    pqxx::nontransaction tx(*c.conn);
    auto r =
        ExecPrepared(c, tx, "find_key",
                     std::string("SELECT ") + kTxnColumns + " FROM txns WHERE idempotency_key = $1",
                     Params().Text(key));
    if (r.empty()) return Status::NotFound("no transaction with idempotency key " + key);
    return ReadTxn(r[0]);
  });
}

Result<std::vector<BranchRecord>> PostgresStore::GetBranches(const std::string& gtid) {
  return Run(
      "get branches", CallKind::kRead, true, [&](Conn& c) -> Result<std::vector<BranchRecord>> {
        pqxx::nontransaction tx(*c.conn);
        auto r = ExecPrepared(c, tx, "get_branches",
                              std::string("SELECT ") + kBranchColumns +
                                  " FROM branches WHERE gtid = $1 ORDER BY ordinal, branch_id",
                              Params().Text(gtid));
        std::vector<BranchRecord> out;
        for (const auto& row : r) {
          TXC_ASSIGN_OR_RETURN(BranchRecord b, ReadBranch(row));
          out.push_back(std::move(b));
        }
        return out;
      });
}

Result<std::vector<TxnRecord>> PostgresStore::ListDue(const std::vector<TxnState>& states,
                                                      const std::string& owner, int64_t epoch,
                                                      int64_t now_ms, int limit) {
  if (states.empty() || limit <= 0) return std::vector<TxnRecord>{};
  return Run("list due", CallKind::kRead, true, [&](Conn& c) -> Result<std::vector<TxnRecord>> {
    pqxx::nontransaction tx(*c.conn);
    auto r = ExecPrepared(
        c, tx, "list_due",
        std::string("SELECT ") + kTxnColumns +
            " FROM txns WHERE state = ANY($1::integer[]) AND next_attempt_ms <= $2 "
            "AND owner = $3 AND epoch = $4 ORDER BY next_attempt_ms, created_ms, gtid LIMIT $5",
        Params().Text(IntArray(states)).Int(now_ms).Text(owner).Int(epoch).Int(limit));
    std::vector<TxnRecord> out;
    for (const auto& row : r) out.push_back(ReadTxn(row));
    return out;
  });
}

Result<TxnPage> PostgresStore::ListTxns(const TxnFilter& filter, const std::string& cursor,
                                        int limit) {
  TXC_RETURN_IF_ERROR(store_internal::CheckListLimit(limit));
  int64_t after_created = 0;
  std::string after_gtid;
  if (!cursor.empty()) {
    TXC_RETURN_IF_ERROR(store_internal::DecodeListCursor(cursor, &after_created, &after_gtid));
  }
  // Only the conditions set are in the SQL, the state list as literals: the
  // planner then reads those states' rows through (state, created_ms, gtid).
  Params p;
  int n = 0;
  auto next = [&n] { return "$" + std::to_string(++n); };
  std::string where = "TRUE";
  if (!filter.states.empty()) where += " AND state IN (" + StateList(filter.states) + ")";
  if (filter.kind.has_value()) {
    where += " AND kind = " + next() + "::integer";
    p.Int(static_cast<int>(*filter.kind));
  }
  if (!filter.owner.empty()) {
    where += " AND owner = " + next() + "::text";
    p.Text(filter.owner);
  }
  auto bound = [&](const char* column, const char* op, int64_t v) {
    if (v <= 0) return;
    where += std::string(" AND ") + column + " " + op + " " + next() + "::bigint";
    p.Int(v);
  };
  bound("created_ms", ">", filter.created_after_ms);
  bound("created_ms", "<", filter.created_before_ms);
  bound("updated_ms", ">", filter.updated_after_ms);
  bound("updated_ms", "<", filter.updated_before_ms);
  if (!filter.gtid_prefix.empty()) {
    where += " AND substr(gtid, 1, " + std::to_string(filter.gtid_prefix.size()) + ") = " + next() +
             "::text";
    p.Text(filter.gtid_prefix);
  }
  if (!filter.endpoint.empty()) {
    where += " AND EXISTS (SELECT 1 FROM branches b WHERE b.endpoint = " + next() +
             "::text AND b.gtid = txns.gtid)";
    p.Text(filter.endpoint);
  }
  if (!cursor.empty()) {
    // Byte order on gtid (COLLATE "C"), as in ORDER BY and in SQLite.
    where += " AND (created_ms, gtid COLLATE \"C\") > (" + next() + "::bigint, ";
    where += next() + "::text)";
    p.Int(after_created).Text(after_gtid);
  }
  const std::string sql =
      std::string("SELECT ") + kTxnColumns +
      ", (SELECT b.last_error FROM branches b WHERE b.gtid = txns.gtid AND "
      "length(b.last_error) > 0 ORDER BY b.ordinal DESC LIMIT 1) FROM txns WHERE " +
      where + " ORDER BY created_ms, gtid COLLATE \"C\" LIMIT " + std::to_string(limit + 1);
  return Run("list txns", CallKind::kRead, true, [&](Conn& c) -> Result<TxnPage> {
    pqxx::nontransaction tx(*c.conn);
    auto r = tx.exec_params(sql, pqxx::prepare::make_dynamic_params(p.get()));
    TxnPage page;
    for (const auto& row : r) {
      TxnListRow out;
      out.txn = ReadTxn(row);
      out.last_error = Bytes(row[13]);
      page.rows.push_back(std::move(out));
    }
    if (page.rows.size() > static_cast<size_t>(limit)) {
      page.rows.resize(static_cast<size_t>(limit));
      page.next_cursor = store_internal::EncodeListCursor(page.rows.back().txn.created_ms,
                                                          page.rows.back().txn.gtid);
    }
    return page;
  });
}

Result<std::vector<AuditRecord>> PostgresStore::GetAudit(const std::string& gtid) {
  return Run("get audit", CallKind::kRead, true, [&](Conn& c) -> Result<std::vector<AuditRecord>> {
    pqxx::nontransaction tx(*c.conn);
    auto r = ExecPrepared(
        c, tx, "get_audit",
        std::string("SELECT ") + kAuditColumns + " FROM audit WHERE gtid = $1 ORDER BY at_ms, id",
        Params().Text(gtid));
    std::vector<AuditRecord> out;
    for (const auto& row : r) {
      AuditRecord a;
      a.id = row[0].as<std::string>();
      a.gtid = row[1].as<std::string>();
      a.action = row[2].as<std::string>();
      a.who = row[3].as<std::string>();
      a.at_ms = row[4].as<int64_t>();
      a.reason = Bytes(row[5]);
      a.previous_state = row[6].as<std::string>();
      a.new_state = row[7].as<std::string>();
      a.target = row[8].as<std::string>();
      out.push_back(std::move(a));
    }
    return out;
  });
}

Result<int64_t> PostgresStore::CountInStates(const std::vector<TxnState>& states) {
  if (states.empty()) return int64_t{0};
  return Run("count", CallKind::kRead, true, [&](Conn& c) -> Result<int64_t> {
    pqxx::nontransaction tx(*c.conn);
    auto r = ExecPrepared(c, tx, "count_states",
                          "SELECT COUNT(*) FROM txns WHERE state = ANY($1::integer[])",
                          Params().Text(IntArray(states)));
    return r[0][0].as<int64_t>();
  });
}

Result<std::vector<StateSummary>> PostgresStore::SummarizeStates(
    const std::vector<TxnState>& states) {
  if (states.empty()) return std::vector<StateSummary>{};
  return Run("summarize", CallKind::kRead, true, [&](Conn& c) -> Result<std::vector<StateSummary>> {
    pqxx::nontransaction tx(*c.conn);
    auto r = ExecPrepared(c, tx, "summarize_states",
                          "SELECT state, COUNT(*), MIN(created_ms) FROM txns "
                          "WHERE state = ANY($1::integer[]) GROUP BY state ORDER BY state",
                          Params().Text(IntArray(states)));
    std::vector<StateSummary> out;
    for (const auto& row : r) {
      StateSummary s;
      s.state = static_cast<TxnState>(row[0].as<int>());
      s.count = row[1].as<int64_t>();
      s.oldest_created_ms = row[2].as<int64_t>();
      out.push_back(s);
    }
    return out;
  });
}

// --- retention ----------------------------------------------------------------

Result<int> PostgresStore::DeleteFinishedBefore(int64_t cutoff_updated_ms, int limit) {
  if (limit <= 0) return 0;
  // One autocommit statement (so one store transaction): lock up to `limit`
  // old finished rows nobody else holds (state = ANY uses the
  // (state, next_attempt_ms) index), delete their branches and them.
  // Retried after a broken connection: deleting again is harmless.
  return Run("delete finished", CallKind::kWrite, true, [&](Conn& c) -> Result<int> {
    pqxx::nontransaction tx(*c.conn);
    auto r = ExecPrepared(
        c, tx, "delete_finished",
        "WITH picked AS (SELECT gtid FROM txns WHERE state = ANY($1::integer[]) "
        "AND updated_ms < $2 ORDER BY updated_ms, gtid LIMIT $3 FOR UPDATE SKIP LOCKED), "
        "gone_branches AS (DELETE FROM branches WHERE gtid IN (SELECT gtid FROM picked)), "
        "gone AS (DELETE FROM txns WHERE gtid IN (SELECT gtid FROM picked) RETURNING 1) "
        "SELECT COUNT(*) FROM gone",
        Params()
            .Text(IntArray(store_internal::FinalTxnStates()))
            .Int(cutoff_updated_ms)
            .Int(limit));
    return static_cast<int>(r[0][0].as<int64_t>());
  });
}

// --- leases -------------------------------------------------------------------

Result<Lease> PostgresStore::AcquireLease(const std::string& node_id, const std::string& endpoint,
                                          int64_t ttl_ms, int64_t now_ms, LeaseTakeover takeover) {
  // Not retried after a broken connection: the epoch may have been bumped.
  return Run("acquire lease", CallKind::kWrite, false, [&](Conn& c) -> Result<Lease> {
    pqxx::nontransaction tx(*c.conn);
    auto r = ExecPrepared(
        c, tx, "acquire_lease",
        "INSERT INTO leases (node_id, endpoint, epoch, expires_ms) VALUES ($1, $2, 1, $3) "
        "ON CONFLICT (node_id) DO UPDATE SET endpoint = excluded.endpoint, "
        "epoch = leases.epoch + 1, expires_ms = excluded.expires_ms "
        "WHERE $4 OR leases.expires_ms <= $5 RETURNING epoch",
        Params()
            .Text(node_id)
            .Text(endpoint)
            .Int(now_ms + ttl_ms)
            .Bool(takeover == LeaseTakeover::kAlways)
            .Int(now_ms));
    if (!r.empty()) return Lease{node_id, endpoint, r[0][0].as<int64_t>(), now_ms + ttl_ms};
    // The lease is live and was left alone: say who holds it.
    auto held = ExecPrepared(c, tx, "read_lease",
                             "SELECT endpoint, epoch, expires_ms FROM leases WHERE node_id = $1",
                             Params().Text(node_id));
    if (held.empty()) return Status::Unavailable("lease of " + node_id + " vanished; retry");
    Lease live{node_id, held[0][0].as<std::string>(), held[0][1].as<int64_t>(),
               held[0][2].as<int64_t>()};
    return store_internal::LiveLeaseRefusal(live, now_ms);
  });
}

Status PostgresStore::RenewLease(const std::string& node_id, int64_t epoch, int64_t ttl_ms,
                                 int64_t now_ms) {
  return Run("renew lease", CallKind::kWrite, true, [&](Conn& c) -> Status {
    pqxx::nontransaction tx(*c.conn);
    auto r = ExecPrepared(c, tx, "renew_lease",
                          "UPDATE leases SET expires_ms = $1 WHERE node_id = $2 AND epoch = $3",
                          Params().Int(now_ms + ttl_ms).Text(node_id).Int(epoch));
    if (r.affected_rows() != 1) {
      return Status::Conflict("lease of " + node_id + " epoch " + std::to_string(epoch) +
                              " was taken over");
    }
    return Status::Ok();
  });
}

Result<std::vector<Lease>> PostgresStore::ListLeases() {
  return Run("list leases", CallKind::kRead, true, [&](Conn& c) -> Result<std::vector<Lease>> {
    pqxx::nontransaction tx(*c.conn);
    auto r = ExecPrepared(
        c, tx, "list_leases",
        "SELECT node_id, endpoint, epoch, expires_ms FROM leases ORDER BY node_id", Params());
    std::vector<Lease> out;
    for (const auto& row : r) {
      out.push_back(Lease{row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<int64_t>(),
                          row[3].as<int64_t>()});
    }
    return out;
  });
}

Result<int> PostgresStore::ClaimOrphans(const std::string& node_id, int64_t epoch, int64_t now_ms,
                                        int limit) {
  if (limit <= 0) return 0;
  return Run("claim orphans", CallKind::kWrite, true, [&](Conn& c) -> Result<int> {
    // One autocommit statement: check that the claimer's own lease is live,
    // lock claimable rows that nobody else holds, take them over.
    pqxx::nontransaction tx(*c.conn);
    auto r = ExecPrepared(
        c, tx, "claim_orphans",
        "WITH me AS (SELECT 1 FROM leases WHERE node_id = $1 AND epoch = $2 AND expires_ms >= $3), "
        "picked AS (SELECT t.gtid FROM txns t WHERE EXISTS (SELECT 1 FROM me) "
        "AND t.state = ANY($5::integer[]) "
        "AND ((t.owner = $1 AND t.epoch < $2) OR (t.owner <> $1 AND NOT EXISTS "
        "(SELECT 1 FROM leases l WHERE l.node_id = t.owner AND l.expires_ms >= $3))) "
        "ORDER BY t.next_attempt_ms LIMIT $4 FOR UPDATE OF t SKIP LOCKED), "
        "claimed AS (UPDATE txns SET owner = $1, epoch = $2, next_attempt_ms = $3, "
        "updated_ms = $3 WHERE gtid IN (SELECT gtid FROM picked) RETURNING 1) "
        "SELECT (SELECT COUNT(*) FROM me), (SELECT COUNT(*) FROM claimed)",
        Params().Text(node_id).Int(epoch).Int(now_ms).Int(limit).Text(
            IntArray(store_internal::UnfinishedTxnStates())));
    if (r[0][0].as<int64_t>() == 0) {
      return Status::Conflict("lease of " + node_id + " epoch " + std::to_string(epoch) +
                              " is not live");
    }
    int claimed = static_cast<int>(r[0][1].as<int64_t>());
    if (claimed > 0) VLOG(1) << node_id << " epoch " << epoch << " claimed " << claimed << " txns";
    return claimed;
  });
}

StoreStats PostgresStore::Stats() const { return counters_.Snapshot(); }

}  // namespace txc
