// AsyncParticipantClient: the coordinator's calls to participants, event
// driven. No thread waits on an outstanding call: requests are encoded with the
// generated Thrift types (framed binary, as every participant serves), written
// and read by Boost.Asio on a few I/O threads, and each call's completion runs
// a callback. Timeouts and retry delays are Asio timers.
//
// Per endpoint:
//   * persistent connections are reused (one call at a time on each);
//   * at most `max_calls_per_endpoint` calls are outstanding; more wait in two
//     queues, one for prepare-class calls (prepare, commitOnePhase, action) and
//     one for finishing calls (commit, abort, compensate), served alternately,
//     so neither kind starves the other and one slow participant holds only its
//     own slots, never a thread;
//   * a call whose `still_wanted` answers false when its turn comes is not
//     sent: its callback gets kCancelled (a prepare still queued when the
//     decision is taken).
// A transport error or timeout closes that connection and completes the call
// with kUnavailable / kTimeout; the caller decides what an unanswered call
// means.
//
// Callbacks run on an I/O thread: they must not block (hand long work to a
// pool, or log through GroupCommitter::WriteLater).
//
// Thread-safety: every method may be called from any thread, including from a
// callback. The destructor completes every queued and outstanding call with
// kUnavailable ("shutting down") and joins the I/O threads; after it returns
// no callback runs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/core/two_phase.h"

namespace txc {

struct AsyncParticipantClientOptions {
  int io_threads = 1;
  int connect_timeout_ms = 1000;
  int max_calls_per_endpoint = 32;
  size_t max_idle_per_endpoint = 64;
  int64_t max_message_bytes = 16 << 20;  // a larger reply is an error
};

// Everything one call carries; owned (copied), so the caller's records may change.
struct ParticipantCall {
  std::string endpoint;  // "host:port"
  std::string gtid;
  std::string branch_id;  // 2PC branch or saga step id
  std::string resource;   // 2PC
  std::string name;       // saga: the action's or compensation's name
  std::string payload;
  int32_t attempt = 1;  // saga: 1 on the first delivery
  std::vector<std::string> coordinators;
  int64_t deadline_ms = 0;  // the transaction's deadline (unix ms), for the context
  int timeout_ms = 5000;    // this call's own timeout, from when it is sent
  // Asked right before sending; false: not sent, completed with kCancelled.
  std::function<bool()> still_wanted;
};

// A saga participant's answer (wire StepResult).
enum class StepOutcome { kSuccess, kFailure, kRetryLater };
struct StepAnswer {
  StepOutcome outcome = StepOutcome::kFailure;
  std::string message;
};

class AsyncParticipantClient {
 public:
  explicit AsyncParticipantClient(AsyncParticipantClientOptions options);
  ~AsyncParticipantClient();
  AsyncParticipantClient(const AsyncParticipantClient&) = delete;
  AsyncParticipantClient& operator=(const AsyncParticipantClient&) = delete;

  // 2PC. Errors to the callbacks: kUnavailable, kTimeout, kCancelled.
  void Prepare(ParticipantCall call, std::function<void(Result<BranchVote>)> done);
  // kCommit, kAbort, or kPending (ask again).
  void CommitOnePhase(ParticipantCall call, std::function<void(Result<Outcome>)> done);
  void Commit(ParticipantCall call, std::function<void(Status)> done);
  void Abort(ParticipantCall call, std::function<void(Status)> done);
  // Saga.
  void Action(ParticipantCall call, std::function<void(Result<StepAnswer>)> done);
  void Compensate(ParticipantCall call, std::function<void(Result<StepAnswer>)> done);

  // Runs `fn` on an I/O thread once `delay_ms` passed (retry backoff). Never
  // run after the destructor started.
  void After(int64_t delay_ms, std::function<void()> fn);

  // Calls outstanding or queued right now, over all endpoints (metrics, tests).
  size_t PendingCalls() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace txc
