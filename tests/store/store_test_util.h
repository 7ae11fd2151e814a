// Shared by the store tests: open a fresh store of either backend.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "coordinator/store/txn_store.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"

namespace txc {
namespace testing {

// A migrated store on a fresh SQLite file (in `dir`) or a fresh database of
// SharedPgCluster(). `location` receives what OpenStore() was given.
inline std::unique_ptr<TxnStore> OpenFreshStore(const std::string& backend, const TempDir& dir,
                                                std::string* location) {
  std::string loc;
  if (backend == "sqlite") {
    loc = dir.Child("txc.db");
  } else {
    PgCluster* pg = SharedPgCluster();
    loc = pg->ConnectionString(pg->CreateUniqueDatabase("store"));
  }
  auto store = OpenStore(loc);
  if (!store.ok()) {
    ADD_FAILURE() << "OpenStore(" << loc << "): " << store.status();
    return nullptr;
  }
  Status migrated = (*store)->Migrate();
  if (!migrated.ok()) {
    ADD_FAILURE() << "Migrate: " << migrated;
    return nullptr;
  }
  if (location != nullptr) *location = loc;
  return std::move(store).value();
}

inline TxnRecord MakeTxn(const std::string& gtid, const std::string& owner, int64_t epoch,
                         TxnState state = TxnState::kActive) {
  TxnRecord t;
  t.gtid = gtid;
  t.kind = TxnKind::kTwoPhase;
  t.state = state;
  t.owner = owner;
  t.epoch = epoch;
  t.created_ms = 1000;
  t.deadline_ms = 50000;
  t.next_attempt_ms = 2000;
  return t;
}

inline BranchRecord MakeBranch(const std::string& gtid, const std::string& branch_id,
                               int32_t ordinal, BranchState state = BranchState::kRegistered) {
  BranchRecord b;
  b.gtid = gtid;
  b.branch_id = branch_id;
  b.ordinal = ordinal;
  b.endpoint = "127.0.0.1:9000";
  b.resource = "accounts";
  b.state = state;
  return b;
}

}  // namespace testing
}  // namespace txc
