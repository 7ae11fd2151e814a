// AsyncParticipantClient: the coordinator's calls to participants, event
// driven. No thread waits on an outstanding call: requests are encoded with the
// generated Thrift types (framed binary, as every participant serves), written
// and read by Boost.Asio on a few I/O threads, and each call's completion runs
// a callback. Timeouts and retry delays are Asio timers.
//
// Per endpoint:
//   * persistent connections are reused; each carries one batch of calls at a
//     time: the calls that became ready together, written in one write (up to
//     `max_batch_calls`, only while the endpoint's replies come faster than
//     `batch_below_us`; otherwise one call per connection), each with its own
//     sequence id, answered in order (the participant serves a connection's
//     calls one after another);
//   * at most `max_calls_per_endpoint` calls are outstanding; more wait in two
//     queues, one for prepare-class calls (prepare, commitOnePhase, action) and
//     one for finishing calls (commit, abort, compensate), served alternately,
//     so neither kind starves the other and one slow participant holds only its
//     own slots, never a thread;
//   * a call whose `still_wanted` answers false when its turn comes is not
//     sent: its callback gets kCancelled (a prepare still queued when the
//     decision is taken).
// A transport error or timeout closes that connection and completes every call
// it carries with kUnavailable / kTimeout (a batch waits as long as the
// shortest timeout among its calls); the caller decides what an unanswered call
// means. A call that could not be answered may still have been delivered: a
// timed-out commit may have committed (every participant call is idempotent).
//
// Errors every call may complete with:
//   kUnavailable  cannot connect (or the connect timed out), a transport error,
//                 a malformed or oversized reply, an unexpected exception in
//                 the participant's handler (TApplicationException), a
//                 wire::Unavailable the participant threw (its message
//                 included), or the client shutting down;
//   kTimeout      no reply within `timeout_ms` of sending;
//   kCancelled    `still_wanted` said false: nothing was sent;
//   kInvalidArgument  the endpoint is not "host:port".
//
// Callbacks run on an I/O thread (never on the caller's thread, never under a
// lock of the client): they must not block or throw (hand long work to a pool,
// or log through GroupCommitter::WriteLater). Each call's callback runs exactly
// once. Two exceptions to "on an I/O thread": see the destructor.
//
// Metrics: every call that was sent (or whose connect was tried) is recorded
// through ParticipantCallTimer (method, endpoint, result, latency from send to
// completion); cancelled calls and calls ended by shutdown are not. Connection
// errors are logged rate-limited per endpoint (LogParticipantConnectionError).
//
// Thread-safety: every method may be called from any thread, including from a
// callback. The destructor completes every queued and outstanding call with
// kUnavailable ("shutting down") on the destructor's own thread, then stops and
// joins the I/O threads; after it returns no callback runs. A call made while
// the destructor runs (from a callback) completes at once, on the calling
// thread, with the same error. Never destroy the client from one of its
// callbacks (it would join its own thread: a fatal error).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/tls.h"
#include "coordinator/core/saga_machine.h"
#include "coordinator/core/two_phase.h"

namespace txc {

struct AsyncParticipantClientOptions {
  int io_threads = 1;                    // threads running Asio (and the callbacks); at least 1
  int connect_timeout_ms = 1000;         // name resolution and TCP connect of a new connection
  int max_calls_per_endpoint = 32;       // sent and unanswered at once; more wait queued
  size_t max_idle_per_endpoint = 64;     // idle connections kept for reuse
  int64_t max_message_bytes = 16 << 20;  // a larger reply is an error
  // Calls written together on one connection (1: never batched), while the
  // endpoint's recent reply latency (a moving average, after 8 answers) is at
  // most batch_below_us. A batch's calls wait for each other's answers at the
  // participant, so a slow participant keeps one call per connection.
  int max_batch_calls = 16;
  int64_t batch_below_us = 2000;
  // An idle connection older than this is closed instead of reused (servers
  // close idle connections: ThriftServerOptions::recv_timeout_ms).
  int64_t max_idle_ms = 60000;
  // TLS to participants when tls.enabled() (Boost.Asio ssl::stream, TLS 1.2+):
  // the participant's certificate must chain to tls.ca_file and name the
  // endpoint's host (or tls.server_name); tls.cert_file/key_file is the
  // identity presented to participants that require client certificates.
  // The handshake counts against connect_timeout_ms. Files that cannot be
  // loaded make every call fail with kUnavailable naming them (callers
  // validate first: TlsContext::Create(tls, TlsRole::kClient)).
  TlsOptions tls{};
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
  int timeout_ms = 5000;    // this call's own timeout, from when it is sent (> 0); a new
                            // connection's connect has its own connect_timeout_ms before
  // Asked right before sending (on an I/O thread, once the endpoint has a free
  // slot); false: not sent, completed with kCancelled. Empty: always wanted.
  // Must be cheap and must not block; a still_wanted that throws counts as true.
  std::function<bool()> still_wanted;
};

// A saga participant's answer is core's StepAnswer (coordinator/core/saga_machine.h).

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
  // run after the destructor started: a pending `fn` is then dropped unrun.
  void After(int64_t delay_ms, std::function<void()> fn);

  // Re-reads the TLS files: connections opened from now on use them, pooled
  // ones keep theirs. On failure the current files stay. kInvalidArgument
  // without TLS.
  Status ReloadTls();

  // Calls outstanding or queued right now, over all endpoints (metrics, tests).
  // A call stops counting just before its callback runs.
  size_t PendingCalls() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace txc
