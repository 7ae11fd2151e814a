#include "coordinator/metrics/coordinator_metrics.h"

#include <gtest/gtest.h>

#include "coordinator/store/txn_store.h"

namespace txc {
namespace {

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(CoordinatorMetricsTest, CommittedBatchCountsBegunAndFinished) {
  MetricsRegistry registry;
  CoordinatorMetrics metrics(&registry);
  WriteBatch begin;
  TxnRecord t;
  t.kind = TxnKind::kTwoPhase;
  begin.insert_txns.push_back(t);
  t.kind = TxnKind::kSaga;
  begin.insert_txns.push_back(t);
  metrics.RecordCommittedBatch(begin);

  WriteBatch finish;
  TxnUpdate u;
  u.state = TxnState::kCommitted;
  finish.txn_updates.push_back(u);
  u.state = TxnState::kCompensated;
  finish.txn_updates.push_back(u);
  u.state = TxnState::kCommitting;  // not final: not counted
  finish.txn_updates.push_back(u);
  u.state.reset();  // a pure precondition: not counted
  finish.txn_updates.push_back(u);
  metrics.RecordCommittedBatch(finish);

  const std::string text = registry.Render();
  EXPECT_TRUE(Has(text, "txc_transactions_begun_total{kind=\"two_phase\"} 1")) << text;
  EXPECT_TRUE(Has(text, "txc_transactions_begun_total{kind=\"saga\"} 1")) << text;
  EXPECT_TRUE(
      Has(text, "txc_transactions_finished_total{kind=\"two_phase\",outcome=\"committed\"} 1"))
      << text;
  EXPECT_TRUE(Has(text, "txc_transactions_finished_total{kind=\"saga\",outcome=\"compensated\"} 1"))
      << text;
  EXPECT_TRUE(
      Has(text, "txc_transactions_finished_total{kind=\"two_phase\",outcome=\"aborted\"} 0"))
      << text;
  // Every unfinished kind/state series exists before the first refresh.
  EXPECT_TRUE(Has(text, "txc_transactions_unfinished{kind=\"saga\",state=\"parked\"} 0")) << text;
}

TEST(CoordinatorMetricsTest, ParticipantCallsByMethodEndpointAndResult) {
  MetricsRegistry registry;
  CoordinatorMetrics metrics(&registry);
  metrics.RecordParticipantCall("prepare", "h:1", Status::Ok(), 0.002);
  metrics.RecordParticipantCall("prepare", "h:1", Status::Unavailable("down"), 1.5);
  const std::string text = registry.Render();
  EXPECT_TRUE(
      Has(text, "txc_participant_calls_total{method=\"prepare\",endpoint=\"h:1\",result=\"ok\"} 1"))
      << text;
  EXPECT_TRUE(Has(
      text,
      "txc_participant_calls_total{method=\"prepare\",endpoint=\"h:1\",result=\"unavailable\"} 1"))
      << text;
  EXPECT_TRUE(Has(
      text, "txc_participant_call_duration_seconds_count{method=\"prepare\",endpoint=\"h:1\"} 2"))
      << text;
  EXPECT_TRUE(Has(text,
                  "txc_participant_call_duration_seconds_bucket{method=\"prepare\",endpoint=\"h:"
                  "1\",le=\"0.0025\"} 1"))
      << text;
}

TEST(CoordinatorMetricsTest, StoreTransactions) {
  MetricsRegistry registry;
  CoordinatorMetrics metrics(&registry);
  metrics.RecordStoreTransaction(3, 0.001, true);
  metrics.RecordStoreTransaction(1, 0.5, false);
  const std::string text = registry.Render();
  EXPECT_TRUE(Has(text, "txc_group_commit_store_transactions_total{result=\"ok\"} 1")) << text;
  EXPECT_TRUE(Has(text, "txc_group_commit_store_transactions_total{result=\"error\"} 1")) << text;
  EXPECT_TRUE(Has(text, "txc_group_commit_batches_per_store_transaction_bucket{le=\"2\"} 1"))
      << text;
  EXPECT_TRUE(Has(text, "txc_group_commit_batches_per_store_transaction_sum 4")) << text;
}

TEST(CoordinatorMetricsTest, ResultLabels) {
  EXPECT_EQ(ResultLabel(Status::Ok()), "ok");
  EXPECT_EQ(ResultLabel(Status::Timeout("x")), "timeout");
  EXPECT_EQ(ResultLabel(Status::Unavailable("x")), "unavailable");
}

}  // namespace
}  // namespace txc
