// Test participant shared by recovery_process_test and the ledger_participant
// helper process: a PgXaResource branch that records one ledger entry.
#pragma once

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "txc/participant/participant.h"
#include "txc/participant/pg_resource.h"

namespace txc {
namespace participant {

// A participant over PgXaResource that records the payload's amount as one
// ledger entry per branch (no row locks shared between branches).
class Ledger : public Participant {
 public:
  explicit Ledger(std::unique_ptr<PgXaResource> pg) : pg_(std::move(pg)) {}
  Vote Prepare(const BranchContext& ctx) override {
    auto vote = pg_->Prepare(ctx, [&](pqxx::work& w) {
      w.exec_params("INSERT INTO entry (gtid, branch_id, amount) VALUES ($1, $2, $3)", ctx.gtid,
                    ctx.branch_id, std::stoi(ctx.payload));
      return Vote::kPrepared;
    });
    return vote.ok() ? *vote : Vote::kAbort;
  }
  void Commit(const BranchContext& ctx) override {
    ++commit_calls;
    if (fail_commit) throw std::runtime_error("commit refused by the test");
    ThrowIfError(pg_->Commit(ctx));
  }
  void Abort(const BranchContext& ctx) override { ThrowIfError(pg_->Abort(ctx)); }
  std::vector<PreparedBranch> Recover() override { return ValueOrThrow(pg_->Recover()); }

  std::atomic<bool> fail_commit{false};
  std::atomic<int> commit_calls{0};
  PgXaResource& pg() { return *pg_; }

 private:
  std::unique_ptr<PgXaResource> pg_;
};

}  // namespace participant
}  // namespace txc
