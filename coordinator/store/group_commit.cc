#include "coordinator/store/group_commit.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

namespace txc {

GroupCommitter::GroupCommitter(TxnStore* store, GroupCommitOptions options)
    : store_(store), options_(options) {
  writer_ = std::thread([this] { WriterLoop(); });
}

GroupCommitter::~GroupCommitter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  writer_.join();
}

void GroupCommitter::Pending::Finish(Status s) {
  if (on_done) {
    on_done(s);
  } else {
    done.set_value(std::move(s));
  }
}

void GroupCommitter::Enqueue(std::unique_ptr<Pending> pending) {
  Status refused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || !fenced_.ok()) {
      refused = fenced_.ok() ? Status::Unavailable("group committer is stopping") : fenced_;
    } else {
      queue_.push_back(std::move(pending));
    }
  }
  if (!refused.ok()) {
    pending->Finish(std::move(refused));  // outside the lock: on_done may take others
    return;
  }
  work_cv_.notify_one();
}

std::future<Status> GroupCommitter::WriteAsync(WriteBatch batch) {
  auto pending = std::make_unique<Pending>();
  pending->batch = std::move(batch);
  std::future<Status> done = pending->done.get_future();
  Enqueue(std::move(pending));
  return done;
}

Status GroupCommitter::Write(WriteBatch batch) {
  std::future<Status> done = WriteAsync(std::move(batch));
  if (done.wait_for(std::chrono::milliseconds(options_.write_timeout_ms)) !=
      std::future_status::ready) {
    return Status::Timeout("group commit not answered within " +
                           std::to_string(options_.write_timeout_ms) +
                           " ms; the write may still be applied: re-read");
  }
  return done.get();
}

void GroupCommitter::WriteLater(WriteBatch batch) {
  // Nobody waits: the future is dropped, the promise is fulfilled into the void.
  WriteAsync(std::move(batch));
}

void GroupCommitter::WriteLater(WriteBatch batch, std::function<void(const Status&)> on_done) {
  auto pending = std::make_unique<Pending>();
  pending->batch = std::move(batch);
  pending->on_done = std::move(on_done);
  Enqueue(std::move(pending));
}

void GroupCommitter::Fence(const Status& reason) {
  std::deque<std::unique_ptr<Pending>> refused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!fenced_.ok()) return;
    fenced_ = Status::Unavailable("writes fenced: " + reason.ToString());
    refused.swap(queue_);
  }
  for (auto& p : refused) p->Finish(fenced_);
  work_cv_.notify_all();
}

GroupCommitter::Stats GroupCommitter::GetStats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void GroupCommitter::WriterLoop() {
  std::vector<std::unique_ptr<Pending>> group;
  std::vector<const WriteBatch*> batches;
  std::vector<Pending*> waiting;
  const size_t max_group = static_cast<size_t>(std::max(1, options_.max_batches_per_group));
  while (true) {
    group.clear();
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued was written
      while (!queue_.empty() && group.size() < max_group) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    Status refused;
    {
      std::lock_guard<std::mutex> lock(mu_);
      refused = fenced_;
    }
    if (refused.ok() && options_.may_write && !options_.may_write()) {
      refused = Status::Unavailable("writes refused: this replica's lease is not known to be live");
    }
    if (!refused.ok()) {
      for (auto& p : group) p->Finish(refused);
      continue;
    }
    batches.clear();
    waiting.clear();
    for (auto& p : group) {
      if (p->batch.empty()) {
        p->Finish(Status::Ok());
        continue;
      }
      batches.push_back(&p->batch);
      waiting.push_back(p.get());
    }
    if (batches.empty()) continue;
    // No lock held across the store call.
    std::vector<Status> results = store_->ApplyGroup(batches);
    if (results.size() != batches.size()) {
      results.assign(batches.size(),
                     Status::Internal("store answered a group with the wrong number of statuses"));
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
      waiting[i]->Finish(std::move(results[i]));
    }
  }
}

}  // namespace txc
