#include "coordinator/store/group_commit.h"

#include <glog/logging.h>
#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "common/backoff.h"

namespace txc {
namespace {

constexpr int64_t kRecordOverheadBytes = 64;  // ids, integers and framing per record

int64_t TxnBytes(const TxnRecord& t) {
  return kRecordOverheadBytes + static_cast<int64_t>(t.gtid.size() + t.owner.size() +
                                                     t.idempotency_key.size() + t.payload.size());
}

int64_t BranchBytes(const BranchRecord& b) {
  int64_t n = kRecordOverheadBytes +
              static_cast<int64_t>(b.gtid.size() + b.branch_id.size() + b.endpoint.size() +
                                   b.resource.size() + b.action.size() + b.compensation.size() +
                                   b.payload.size() + b.last_error.size());
  for (const auto& d : b.depends_on) n += static_cast<int64_t>(d.size());
  return n;
}

}  // namespace

int64_t GroupCommitter::EstimateBytes(const WriteBatch& batch) {
  int64_t n = 0;
  for (const auto& t : batch.insert_txns) n += TxnBytes(t);
  for (const auto& b : batch.insert_branches) n += BranchBytes(b);
  for (const auto& u : batch.txn_updates) n += kRecordOverheadBytes + u.gtid.size();
  for (const auto& u : batch.branch_updates) {
    n += kRecordOverheadBytes + u.gtid.size() + u.branch_id.size() +
         (u.last_error ? u.last_error->size() : 0);
  }
  for (const auto& g : batch.delete_txns) n += kRecordOverheadBytes + g.size();
  for (const auto& a : batch.insert_audits) {
    n += kRecordOverheadBytes + a.id.size() + a.gtid.size() + a.who.size() + a.reason.size() +
         a.previous_state.size() + a.new_state.size() + a.target.size();
  }
  return n;
}

GroupCommitter::GroupCommitter(TxnStore* store, GroupCommitOptions options)
    : store_(store), options_(std::move(options)) {
  answerer_ = std::thread([this] { AnswerLoop(); });
  pthread_setname_np(answerer_.native_handle(), "group-done");
  writer_ = std::thread([this] { WriterLoop(); });
  pthread_setname_np(writer_.native_handle(), "group-commit");
}

GroupCommitter::~GroupCommitter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  writer_.join();
  {
    std::lock_guard<std::mutex> lock(answers_mu_);
    answers_stop_ = true;
  }
  answers_cv_.notify_all();
  answerer_.join();
}

void GroupCommitter::AnswerLoop() {
  std::vector<Answer> batch;
  int64_t next_scan_ms = MonotonicMs() + kTakeBackScanMs;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(answers_mu_);
      // A bounded wait only so that expired WriteAsync batches are taken back
      // while the writer is stuck in a store call: no wake-up per write.
      answers_cv_.wait_for(lock, std::chrono::milliseconds(kTakeBackScanMs),
                           [this] { return answers_stop_ || !answers_.empty(); });
      if (answers_stop_ && answers_.empty()) return;  // stopped, everything answered
      batch.swap(answers_);
    }
    for (Answer& a : batch) a.first->Finish(std::move(a.second));
    batch.clear();
    const int64_t now = MonotonicMs();
    if (now >= next_scan_ms) {
      next_scan_ms = now + kTakeBackScanMs;
      TakeBackExpired(now);
    }
  }
}

void GroupCommitter::TakeBackExpired(int64_t now_ms) {
  std::vector<std::shared_ptr<Pending>> expired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queued_with_take_back_ == 0) return;
    for (auto it = queue_.begin(); it != queue_.end();) {
      Pending& p = **it;
      int queued = Pending::kQueued;
      if (p.take_back_at_ms > 0 && p.take_back_at_ms <= now_ms &&
          p.phase.compare_exchange_strong(queued, Pending::kAbandoned)) {
        queued_bytes_ -= p.bytes;
        queued_with_take_back_ -= 1;
        stats_.taken_back += 1;
        expired.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& p : expired) {
    p->Finish(Status::Unavailable("group commit did not reach this write within " +
                                  std::to_string(options_.write_timeout_ms) +
                                  " ms; it was taken back and nothing was written"));
  }
}

void GroupCommitter::Pending::Finish(Status s) {
  if (on_done) {
    on_done(s);
  } else {
    done.set_value(std::move(s));
  }
}

std::shared_ptr<GroupCommitter::Pending> GroupCommitter::Enqueue(std::shared_ptr<Pending> pending,
                                                                 Status* refused) {
  pending->bytes = EstimateBytes(pending->batch);
  bool overloaded = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      *refused = Status::Unavailable("group committer is stopping");
    } else if (!fenced_.ok()) {
      *refused = fenced_;
    } else if (!queue_.empty() &&
               (queue_.size() >= static_cast<size_t>(std::max(1, options_.max_queued_batches)) ||
                queued_bytes_ + pending->bytes > options_.max_queued_bytes)) {
      stats_.overloaded += 1;
      overloaded = true;
      *refused = Status::Unavailable("overloaded: " + std::to_string(queue_.size()) + " writes (" +
                                     std::to_string(queued_bytes_) +
                                     " bytes) wait for the store; nothing written, retry later");
    } else {
      queued_bytes_ += pending->bytes;
      if (pending->take_back_at_ms > 0) queued_with_take_back_ += 1;
      queue_.push_back(pending);
    }
  }
  if (overloaded && options_.on_overloaded) options_.on_overloaded();
  if (!refused->ok()) {
    pending->Finish(*refused);  // outside the lock: on_done may take other locks
    return nullptr;
  }
  work_cv_.notify_one();
  return pending;
}

std::future<Status> GroupCommitter::WriteAsync(WriteBatch batch) {
  auto pending = std::make_shared<Pending>();
  pending->batch = std::move(batch);
  std::future<Status> done = pending->done.get_future();
  Status refused;
  Enqueue(std::move(pending), &refused);
  return done;
}

Status GroupCommitter::Write(WriteBatch batch) {
  auto pending = std::make_shared<Pending>();
  pending->batch = std::move(batch);
  std::future<Status> done = pending->done.get_future();
  Status refused;
  if (Enqueue(pending, &refused) == nullptr) return refused;
  const auto timeout = std::chrono::milliseconds(options_.write_timeout_ms);
  if (done.wait_for(timeout) == std::future_status::ready) return done.get();
  int queued = Pending::kQueued;
  if (pending->phase.compare_exchange_strong(queued, Pending::kAbandoned)) {
    // Still queued: taken back, so the writer skips it. Nothing was applied.
    std::lock_guard<std::mutex> lock(mu_);
    stats_.taken_back += 1;
    return Status::Unavailable("group commit did not reach this write within " +
                               std::to_string(options_.write_timeout_ms) +
                               " ms; it was taken back and nothing was written");
  }
  // Inside a store transaction: its outcome is reported by the store call.
  if (done.wait_for(timeout) == std::future_status::ready) return done.get();
  return Status::Timeout("group commit not answered within " +
                         std::to_string(2 * options_.write_timeout_ms) +
                         " ms while the store call runs; the write may still be applied: re-read");
}

void GroupCommitter::WriteLater(WriteBatch batch) {
  // Nobody waits: the future is dropped, the promise is fulfilled into the void.
  // Refused when overloaded: losing it is harmless by contract.
  WriteAsync(std::move(batch));
}

void GroupCommitter::WriteLater(WriteBatch batch, std::function<void(const Status&)> on_done) {
  auto pending = std::make_shared<Pending>();
  pending->batch = std::move(batch);
  pending->on_done = std::move(on_done);
  Status refused;
  Enqueue(std::move(pending), &refused);
}

void GroupCommitter::WriteAsync(WriteBatch batch, std::function<void(const Status&)> on_done) {
  auto pending = std::make_shared<Pending>();
  pending->batch = std::move(batch);
  pending->on_done = std::move(on_done);
  pending->take_back_at_ms = MonotonicMs() + std::max<int64_t>(1, options_.write_timeout_ms);
  Status refused;
  Enqueue(std::move(pending), &refused);
}

void GroupCommitter::Fence(const Status& reason) {
  std::deque<std::shared_ptr<Pending>> refused;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (fenced_.ok()) {
      fenced_ = Status::Unavailable("writes fenced: " + reason.ToString());
      refused.swap(queue_);
      queued_bytes_ = 0;
      queued_with_take_back_ = 0;
    }
    // A group inside the store call finishes before Fence() returns, so that
    // nothing is written once the caller acts on the fence (e.g. acquires a
    // new lease epoch). The store call is bounded by the store's own deadline.
    if (!idle_cv_.wait_for(lock, std::chrono::milliseconds(options_.write_timeout_ms),
                           [this] { return !in_store_call_; })) {
      LOG(ERROR) << "fence: a group is still inside the store call after "
                 << options_.write_timeout_ms << " ms";
    }
  }
  for (auto& p : refused) p->Finish(fenced_);
  work_cv_.notify_all();
}

GroupCommitter::Stats GroupCommitter::GetStats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void GroupCommitter::WriterLoop() {
  std::vector<std::shared_ptr<Pending>> group;
  std::vector<const WriteBatch*> batches;
  std::vector<std::shared_ptr<Pending>> waiting;
  const size_t max_group = static_cast<size_t>(std::max(1, options_.max_batches_per_group));
  while (true) {
    group.clear();
    Status refused;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued was written
      int64_t group_bytes = 0;
      while (!queue_.empty() && group.size() < max_group &&
             (group.empty() || group_bytes + queue_.front()->bytes <= options_.max_group_bytes)) {
        group_bytes += queue_.front()->bytes;
        queued_bytes_ -= queue_.front()->bytes;
        if (queue_.front()->take_back_at_ms > 0) queued_with_take_back_ -= 1;
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      refused = fenced_;
      in_store_call_ = true;  // until this group is handed to the answer thread: Fence() waits
    }
    // Every answer of this round goes to the answer thread, in order after
    // the answers of earlier groups.
    std::vector<Answer> out;
    auto hand_over = [this, &out] {
      if (out.empty()) return;
      {
        std::lock_guard<std::mutex> lock(answers_mu_);
        if (answers_.empty()) {
          answers_.swap(out);
        } else {
          for (Answer& a : out) answers_.push_back(std::move(a));
        }
      }
      out.clear();
      answers_cv_.notify_one();
    };
    // Fence() may have come while the group was formed: it must not reach the store.
    auto finish_call = [this] {
      {
        std::lock_guard<std::mutex> lock(mu_);
        in_store_call_ = false;
      }
      idle_cv_.notify_all();
    };
    if (refused.ok() && options_.may_write && !options_.may_write()) {
      refused = Status::Unavailable("writes refused: this replica's lease is not known to be live");
    }
    batches.clear();
    waiting.clear();
    for (auto& p : group) {
      int queued = Pending::kQueued;
      if (!p->phase.compare_exchange_strong(queued, Pending::kTaken)) {
        // Its caller gave up and was told nothing was written.
        out.emplace_back(p, Status::Unavailable("taken back by its caller"));
        continue;
      }
      if (!refused.ok() || p->batch.empty()) {
        out.emplace_back(p, refused);  // OK for an empty batch: nothing to do
        continue;
      }
      batches.push_back(&p->batch);
      waiting.push_back(p);
    }
    if (batches.empty()) {
      hand_over();
      finish_call();
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      refused = fenced_;
    }
    if (!refused.ok()) {
      for (auto& p : waiting) out.emplace_back(std::move(p), refused);
      hand_over();
      finish_call();
      continue;
    }
    // No lock held across the store call.
    const auto call_start = std::chrono::steady_clock::now();
    std::vector<Status> results =
        options_.fence_node.empty()
            ? store_->ApplyGroup(batches)
            : store_->ApplyGroupFenced(batches, options_.fence_node, options_.fence_epoch);
    const double call_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - call_start).count();
    if (results.size() != batches.size()) {
      results.assign(batches.size(),
                     Status::Internal("store answered a group with the wrong number of statuses"));
    }
    {
      // A refused batch (conflict, not found, exists) is a normal answer; any
      // other error means the store transaction failed or its outcome is unknown.
      bool call_ok = true;
      for (size_t i = 0; i < results.size(); ++i) {
        if (results[i].ok()) {
          if (options_.on_batch_applied) options_.on_batch_applied(*batches[i]);
        } else if (results[i].code() != StatusCode::kConflict &&
                   results[i].code() != StatusCode::kNotFound &&
                   results[i].code() != StatusCode::kAlreadyExists) {
          call_ok = false;
        }
      }
      if (options_.on_store_transaction) {
        options_.on_store_transaction(batches.size(), call_seconds, call_ok);
      }
    }
    {
      // Counted before anyone is answered, so a caller sees its own write counted.
      std::lock_guard<std::mutex> lock(mu_);
      stats_.groups += 1;
      stats_.batches += static_cast<int64_t>(batches.size());
    }
    for (size_t i = 0; i < waiting.size(); ++i) {
      if (!results[i].ok() && results[i].code() != StatusCode::kConflict &&
          results[i].code() != StatusCode::kNotFound &&
          results[i].code() != StatusCode::kAlreadyExists) {
        LOG(ERROR) << "group write failed: " << results[i];
      }
      out.emplace_back(std::move(waiting[i]), std::move(results[i]));
    }
    hand_over();
    finish_call();
  }
}

}  // namespace txc
