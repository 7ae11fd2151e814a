// The saga driver's participant calls and retry timers, behind one seam: the
// driver only says "call this action / compensation, answer here" and "run
// this later". Both implementations are event-driven from the driver's point
// of view (a callback per call, a timer per retry; nobody sleeps):
//   * the blocking ClientPool on the driver's "saga-worker" pool with the
//     pool's timer thread (saga_driver.cc, today's default);
//   * AsyncParticipantClient (async_participant_client.h), whose Action /
//     Compensate / After have exactly these signatures: an adapter forwarding
//     the three calls is all it takes.
//
// Thread-safety: every method may be called from any thread, including from a
// callback. Callbacks must not block.
#pragma once

#include <cstdint>
#include <functional>

#include "common/status.h"
#include "coordinator/core/saga_machine.h"
#include "coordinator/driver/async_participant_client.h"

namespace txc {

class SagaParticipantCalls {
 public:
  virtual ~SagaParticipantCalls() = default;
  // `done` gets the participant's answer, or kUnavailable / kTimeout /
  // kCancelled when there was none (outcome unknown).
  virtual void Action(ParticipantCall call, std::function<void(Result<StepAnswer>)> done) = 0;
  virtual void Compensate(ParticipantCall call, std::function<void(Result<StepAnswer>)> done) = 0;
  // Runs `fn` once `delay_ms` passed (never after shutdown started).
  virtual void After(int64_t delay_ms, std::function<void()> fn) = 0;
};

}  // namespace txc
