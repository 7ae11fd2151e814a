/*
 * saga.pml: the saga step function and its driver, with the participant
 * barrier, as the code does it:
 *   coordinator/core/saga_machine.cc  StepSaga: one event -> writes + effects
 *   coordinator/core/saga.cc          PlanSaga: the planner StepSaga runs
 *   coordinator/driver/saga_driver.cc logs the writes, then runs the effects
 *   participant-sdk/src/barrier.cc    RunAction / RunCompensate
 *
 * One saga of N = 3 steps, each depending on the previous (the wire default).
 * One coordinator that can crash and restart (the sweeper feeds Resumed from
 * the store). With -DTAKEOVER, also a lease takeover between two replicas
 * (below: "Lease takeover"); without it, the saga driver's writes are fenced
 * as in twopc.pml (conditional on the stored states and on (owner, epoch)).
 *
 * The coordinator is a loop of events. Each event is one atomic step_saga,
 * mirroring StepSaga's handlers: a stale event (its attempt is not the one
 * outstanding, or the step / saga is past it) is a no-op; otherwise the edge
 * is applied to the run in memory (sst, stp, att), the planner runs, and the
 * effects (CallAction, CallCompensation, RetryAfter, Finished) are queued.
 *
 * Forward progress is logged lazily (--saga_progress_log_ms, the saga's
 * kFlagLazyProgress): the store (lsst, lstp, latt) is a separate copy. An
 * event that leaves a RUNNING saga RUNNING (a step done and the next started,
 * a retry armed or resent, Resumed going forward) is adopted in memory only
 * and its effects run while the store keeps the older state (UNLOGGED). Any
 * other event that writes (a change of the saga's state: SUCCEEDED,
 * COMPENSATING; everything while COMPENSATING / PARKED) is logged in the same
 * atomic step, before its effects, and the write carries all the progress
 * that waited (store := memory). The LogDue timer may fire whenever progress
 * waits (store := memory, no effects). The definition with the first wave is
 * logged before anything is sent (init). A crash loses the memory, unlogged
 * progress included; Resumed loads the run from the store and sets
 * may_have_run (SagaRun::pending_may_have_run): if it then compensates, the
 * steps its log shows PENDING are logged RUNNING ("outcome unknown") and
 * compensated, not skipped; a run that never crashed skips them.
 *
 * The queued effects run in later steps, so a crash between "logged" (or
 * "adopted, not logged") and "sent" is explored: every crash point of the
 * driver is such a place.
 *   saga.after_step_started           a write logs a step RUNNING: the
 *                                     definition's first wave (action not
 *                                     sent), or progress that waited (a
 *                                     LogDue write, a switch: already sent)
 *   saga.after_unlogged_send          an action sent (or a retry armed)
 *                                     while the run's forward progress is not
 *                                     logged: the store shows the step PENDING
 *                                     (or an older attempt)
 *   saga.after_action_logged          a write logs an action's DONE / FAILED
 *                                     (with a change of state, or a LogDue
 *                                     write), the sends it decided not made
 *   saga.after_compensation_started   COMPENSATING logged, not sent
 *   saga.mid_compensation             a step COMPENSATED, the saga not final
 *   saga.before_final_state           before SUCCEEDED / COMPENSATED is logged
 *
 * Events: ActionAnswered(k, attempt, outcome), ActionCallFailed(k, attempt)
 * (a call's timeout: the request or its answer may still be in transit),
 * CompensationAnswered(k, attempt, ok), RetryDue(k, attempt) (a RetryAfter
 * timer fired), Resumed (the sweeper, after a crash or for a PARKED saga),
 * CancelRequested (an operator's cancel, at any time) and LogDue (the
 * LogAfter timer fired).
 *
 * Requests and answers carry their attempt, and may be reordered: requests
 * in transit to step k's participant are a set of attempts (areq[k], a bit
 * per attempt); answers in transit back are per (step, attempt).
 *
 * Lease takeover (-DTAKEOVER; TAKEOVERS of them). The replica driving the
 * run in memory (the old owner) is paused (SIGSTOP, a VM freeze, a stall)
 * past its lease; another replica's sweeper claims the saga (ClaimOrphans, or
 * TakeOverIfOwnerDead on a resubmission: owner and epoch := its own, one
 * fenced write, the steps untouched) and its Resumed loads the run from the
 * store like a restart (may_have_run set). Pause, lease expiry and claim are
 * one atomic step ("takeover"): nothing of the old owner happens between
 * them. The model's memory is then the new owner's (empty until its Resumed),
 * and what is left of the old owner is:
 *   - its sends: the effects it had decided but not sent (send_action /
 *     send_comp: adopted with may_defer true before the pause, the window
 *     between SagaInputs::may_defer and the send, or logged before the
 *     pause, the window between a write and its send), and its requests in
 *     transit, become stale requests (sreq / screq): the participant serves
 *     them through the barrier at any later time, and their answers go to
 *     the old owner (dropped here: see the next item). Timers (RetryAfter,
 *     LogAfter) lead to events, that is to writes: dropped.
 *   - its run (oalive): awake again, its lease is not live (the incarnation's
 *     lease_valid_until never moves forward again), so every event it steps
 *     (an answer, a timer, LogDue, a cancel) writes before any effect
 *     (may_defer false, and the group commit's may_write refuses it anyway);
 *     the store checks the batch's (owner, epoch) (FenceWrites sets them on
 *     every txn and branch update), refuses it, and the run is released.
 *     An event without writes has no effects. So the old run sends nothing
 *     it had not decided before the pause, and tries one write, refused.
 * -DBAD_UNFENCED (implies TAKEOVER): the store does not check (owner, epoch);
 * the old run's write is accepted when the saga is still as it logged it
 * (the state-conditional part, approximated: nothing written since the
 * takeover). Ghost stale_write: a write accepted from a replica that is not
 * the owner (at most one owner's writes succeed after a takeover).
 *
 * Known-bad variants (each must produce a counterexample):
 *   -DBAD_FORWARD_COMPENSATION  compensate in forward order
 *   -DBAD_NO_BARRIER            the participant runs the hooks without the barrier
 *   -DBAD_NO_HANGING_CHECK      the barrier lets an action run after its (null)
 *                               compensation
 *   -DBAD_SKIP_UNLOGGED         a resumed run skips the steps its log shows
 *                               PENDING (ignores may_have_run): an action sent
 *                               with unlogged progress is never compensated
 *   -DBAD_UNFENCED              (with takeover) the old owner's write is
 *                               accepted after the takeover
 * -DGHOST_UNKNOWN adds the ghost unknown_applied, -DGHOST_STALE the ghosts
 * of the stale sends, for check.sh's probes.
 */

#ifdef BAD_UNFENCED
#ifndef TAKEOVER
#define TAKEOVER
#endif
#endif

#define N 3
#define AMAX 8 /* attempts are 1 .. AMAX - 1 (asserted) */

#ifndef MAX_ATTEMPTS
#define MAX_ATTEMPTS 2 /* a step's retry policy: max_attempts */
#endif
#ifndef PARK_AFTER
#define PARK_AFTER 2 /* --saga_park_after_attempts */
#endif
#ifndef CRASHES
#define CRASHES 1 /* coordinator crashes */
#endif
#ifndef TIMEOUTS
#define TIMEOUTS 1 /* calls whose answer the coordinator never gets */
#endif
#ifndef COMP_FAILURES
#define COMP_FAILURES 1 /* compensation hook failures (transient: retried) */
#endif
#ifndef CANCELS
#define CANCELS 1 /* operator cancels */
#endif
#ifndef TAKEOVERS
#define TAKEOVERS 1 /* with -DTAKEOVER: lease takeovers */
#endif

/* TxnState (saga), values as coordinator/core/states.h */
#define RUNNING 10
#define SUCCEEDED 11
#define COMPENSATING 12
#define COMPENSATED 13
#define PARKED 14

/* BranchState (step) */
#define S_PENDING 10
#define S_RUNNING 11
#define S_DONE 12
#define S_FAILED 13
#define S_COMPENSATING 14
#define S_COMPENSATED 15
#define S_SKIPPED 16

/* StepOutcome on the wire; R_NONE: no answer */
#define R_NONE 0
#define R_SUCCESS 1
#define R_FAILURE 2
#define R_RETRY 3

/* SagaCall::Kind: what is outstanding for a step (Run::in_flight) */
#define F_NONE 0
#define F_ACTION 1
#define F_COMP 2
#define F_TIMER 3

/* barrier rows (txc_barrier): the action row's outcome */
#define ROW_NONE 0     /* no row */
#define ROW_SUCCESS 1
#define ROW_FAILURE 2
#define ROW_NULLCOMP 3 /* inserted by a compensation that came first (reason = compensate) */

/* ---- the store (what a crash keeps; SagaRun::logged while progress waits) ---- */
byte lsst = RUNNING;
byte lstp[N];
byte latt[N];

/* ---- the coordinator's memory (SagaRun; lost in a crash) ---- */
bool down = false;
bool running = false;  /* a run exists (SagaDriver::runs_) */
/* the run as adopted (SagaRun.txn / steps): what the handlers and the planner
 * work on; equal to the store except for forward progress not logged yet */
byte sst = RUNNING;
byte stp[N];
byte att[N];
bool may_have_run = false; /* SagaRun::pending_may_have_run: set by Resumed */
byte fk[N];            /* in_flight[k].kind */
byte fa[N];            /* in_flight[k].attempt */
bool parked_round_failed = false;
/* effects queued once the writes were logged, not run yet: the attempt to send, 0: none */
byte send_action[N];
byte send_comp[N];
byte timer[N]; /* an armed RetryAfter timer's attempt */

/* ---- messages ---- */
byte areq[N];             /* action requests in transit: bit a = attempt a */
byte creq[N];             /* compensation requests in transit */
byte arep[N * AMAX];      /* action answers in transit back, by (step, attempt) */
byte crep[N * AMAX];      /* compensation answers: R_SUCCESS, or R_RETRY (not done) */

/* ---- the participants: barrier rows and business effects ---- */
byte arow[N];
bool crow[N];
byte applied[N]; /* times the action hook's effect was committed */
byte undone[N];  /* times the compensation hook's effect was committed */

/* ---- faults left ---- */
byte crashes = CRASHES;
byte timeouts = TIMEOUTS;
byte comp_failures = COMP_FAILURES;
byte cancels = CANCELS;
bool deadline_passed = false;

#ifdef TAKEOVER
/* ---- lease takeover ---- */
byte takeovers = TAKEOVERS;
byte lown = 0;        /* the store's (owner, epoch): one more per takeover */
byte oown = 0;        /* the old owner's (owner, epoch), as its writes carry it */
bool oalive = false;  /* the old owner's run exists, awake: its next event writes */
bool sreq[N];         /* the old owner's action requests: sent after the takeover, or in transit */
bool screq[N];        /* the same for compensations */
bool stale_write = false; /* ghost: a write accepted from a replica that is not the owner */
#ifdef BAD_UNFENCED
bool lchanged = false; /* a write was accepted since the takeover */
#endif
#ifdef GHOST_STALE
bool swin[N];           /* sreq[k] includes an action sent after the takeover with no write before it */
bool stale_refused = false; /* such an action reached the barrier after its null compensation */
bool stale_applied = false; /* such an action ran (the first to reach the barrier) */
bool stale_dup = false;     /* such an action came after its step was compensated for real */
bool stale_fresh = false;   /* scratch: no action row when it arrived */
bool fence_refused = false; /* the old owner's write was refused by the fence */
#endif
#define FENCE_OK (!stale_write)
#else
#define FENCE_OK true
#endif

/* ---- ghosts ---- */
bool order_ok = true; /* no compensation ran while a later step's effect stood */
#ifdef GHOST_UNKNOWN
bool unknown_applied = false; /* a step the log showed PENDING, its action applied, was settled RUNNING */
#endif

#define ATTEMPTED(s) (s != S_PENDING && s != S_SKIPPED)
#define NEEDS_COMPENSATION(s) (s == S_RUNNING || s == S_DONE || s == S_FAILED || s == S_COMPENSATING)
#define NEVER_RAN_OR_COMPENSATED(s) (s == S_COMPENSATED || s == S_SKIPPED || s == S_PENDING)
#define FLYING(k) (fk[k] != F_NONE)
#define NOTHING_FLYING (fk[0] == F_NONE && fk[1] == F_NONE && fk[2] == F_NONE)
#define BIT(a) (1 << (a))

/* every effect at most once, no compensation without its action */
#define EFFECTS_ONCE (applied[0] <= 1 && applied[1] <= 1 && applied[2] <= 1 && \
                      undone[0] <= applied[0] && undone[1] <= applied[1] && undone[2] <= applied[2])
/* a finished saga is all done, or all compensated (invariant 2), and stays so;
 * on the store's state (a final state is always logged before its effects) */
#define SUCCEEDED_OK (lsst != SUCCEEDED || (applied[0] == 1 && applied[1] == 1 && applied[2] == 1 && \
                                           undone[0] == 0 && undone[1] == 0 && undone[2] == 0))
#define COMPENSATED_OK (lsst != COMPENSATED || (applied[0] == undone[0] && applied[1] == undone[1] && \
                                               applied[2] == undone[2]))
#define FINISHED (sst == SUCCEEDED || sst == COMPENSATED)
#define LFINISHED (lsst == SUCCEEDED || lsst == COMPENSATED)
/* the run's forward progress not logged yet (SagaRun::logged is set) */
#define UNLOGGED (sst != lsst || stp[0] != lstp[0] || stp[1] != lstp[1] || stp[2] != lstp[2] || \
                  att[0] != latt[0] || att[1] != latt[1] || att[2] != latt[2])

#ifdef LIVENESS
ltl eventually_finished { <> [] LFINISHED }
#endif

/* ---- the planner (PlanSaga) and its application (PlanInto) ---- */

/* PlanInto's compensate list: log COMPENSATING (attempts 1) or attempts + 1,
 * mark it in flight, queue CallCompensation. The ghost checks reverse order:
 * no later attempted step may still stand uncompensated. */
inline compensate(k) {
  if
  :: stp[k] != S_COMPENSATING -> stp[k] = S_COMPENSATING; att[k] = 1
  :: else -> att[k]++
  fi;
  assert(att[k] < AMAX);
  for (m : k + 1 .. N - 1) {
    if :: ATTEMPTED(stp[m]) && stp[m] != S_COMPENSATED -> order_ok = false :: else -> skip fi
  }
  fk[k] = F_COMP; fa[k] = att[k]; send_comp[k] = att[k]
}

/* Which steps to compensate now. `compensate_ok`: PlanInto sends nothing new
 * in a PARKED round that failed. */
#ifndef BAD_FORWARD_COMPENSATION
inline plan_compensation() {
  pending_work = false;
  for (i : 0 .. N - 1) {
    j = N - 1 - i;
    if
    :: NEEDS_COMPENSATION(stp[j]) ->
       pending_work = true;
       if
       :: !FLYING(j) && (j == N - 1 || NEVER_RAN_OR_COMPENSATED(stp[j + 1])) && compensate_ok ->
          compensate(j)
       :: else -> skip
       fi
    :: else -> skip
    fi
  }
  if :: !pending_work -> sst = COMPENSATED; finished = true :: else -> skip fi
}
#else
/* BAD: forward order, no dependency check */
inline plan_compensation() {
  pending_work = false;
  for (j : 0 .. N - 1) {
    if
    :: NEEDS_COMPENSATION(stp[j]) ->
       pending_work = true;
       if :: !FLYING(j) && compensate_ok -> compensate(j) :: else -> skip fi
    :: else -> skip
    fi
  }
  if :: !pending_work -> sst = COMPENSATED; finished = true :: else -> skip fi
}
#endif

/* PlanSaga's settle_pending: the saga compensates, so its PENDING steps will
 * never run. A run that never crashed knows what it sent: they are skipped.
 * A resumed run (may_have_run) cannot know (forward progress is logged
 * lazily): they are logged RUNNING, "outcome unknown", and compensated like
 * any attempted step. BAD_SKIP_UNLOGGED: a resumed run skips them too. */
inline settle_pending() {
  for (i : 0 .. N - 1) {
    if
#ifndef BAD_SKIP_UNLOGGED
    :: stp[i] == S_PENDING && may_have_run ->
       stp[i] = S_RUNNING;
#ifdef GHOST_UNKNOWN
       if :: applied[i] > 0 -> unknown_applied = true :: else -> skip fi
#endif
    :: stp[i] == S_PENDING && !may_have_run -> stp[i] = S_SKIPPED
#else
    :: stp[i] == S_PENDING -> stp[i] = S_SKIPPED
#endif
    :: else -> skip
    fi
  }
}

/* Advance: the planner over the run (the event's edge already applied): the
 * run's new state (memory; handle() logs it, or not) and the effects
 * (queued). Then PlanInto's end: Finished lets the run go; a PARKED round
 * that failed ends once nothing is in flight; anything else with nothing in
 * flight is StepSaga's kInternal ("cannot progress"), which must never
 * happen. */
inline advance() {
  finished = false;
  if
  :: sst == RUNNING ->
     failed = false; all_done = true;
     if :: !deadline_passed -> deadline_passed = true; failed = true :: true -> skip fi;
     for (i : 0 .. N - 1) {
       if
       :: stp[i] == S_FAILED -> failed = true
       :: stp[i] == S_RUNNING && !FLYING(i) && att[i] >= MAX_ATTEMPTS -> stp[i] = S_FAILED; failed = true
       :: else -> skip
       fi;
       if :: stp[i] != S_DONE -> all_done = false :: else -> skip fi
     }
     if
     :: failed ->
        settle_pending();
        sst = COMPENSATING;
        compensate_ok = true;
        plan_compensation()
     :: !failed && all_done -> sst = SUCCEEDED; finished = true
     :: !failed && !all_done ->
        for (i : 0 .. N - 1) {
          if
          :: stp[i] == S_PENDING && (i == 0 || stp[i - 1] == S_DONE) ->
             stp[i] = S_RUNNING; att[i] = 1; fk[i] = F_ACTION; fa[i] = 1; send_action[i] = 1
          :: stp[i] == S_RUNNING && !FLYING(i) ->
             att[i]++; assert(att[i] < AMAX);
             fk[i] = F_ACTION; fa[i] = att[i]; send_action[i] = att[i]
          :: else -> skip
          fi
        }
     fi
  :: sst == COMPENSATING || sst == PARKED ->
     settle_pending(); /* PENDING only after cancel_requested's switch */
     park = false;
     if
     :: sst == COMPENSATING ->
        for (i : 0 .. N - 1) {
          if :: stp[i] == S_COMPENSATING && !FLYING(i) && att[i] >= PARK_AFTER -> park = true
             :: else -> skip fi
        }
     :: else -> skip
     fi;
     if
     :: park -> sst = PARKED; parked_round_failed = true /* what flies finishes; nothing new */
     :: else -> compensate_ok = !(sst == PARKED && parked_round_failed); plan_compensation()
     fi
  :: else -> finished = true
  fi;
  if
  :: finished -> running = false
  :: !finished && sst == PARKED && parked_round_failed && NOTHING_FLYING ->
     running = false /* the round ended: the sweeper retries the parked saga later */
  :: !finished && !(sst == PARKED && parked_round_failed) && NOTHING_FLYING ->
     assert(false) /* StepSaga: kInternal, nothing in flight and nothing to send */
  :: else -> skip
  fi
}

/* RetryLater: the step stays in flight as a timer; no plan, nothing else logged. */
inline retry_later(k) {
  fk[k] = F_TIMER; fa[k] = att[k]; timer[k] = att[k]
}

/* ---- the event handlers (StepSaga's Stepper) ---- */

/* ActionAnswered / ActionCallFailed (outcome R_RETRY) for attempt a of step k. */
inline action_result(k, a, outcome) {
  if
  :: FINISHED || stp[k] != S_RUNNING || fk[k] != F_ACTION || fa[k] != a -> skip /* stale: no-op */
  :: else ->
     fk[k] = F_NONE;
     if
     :: outcome == R_SUCCESS -> stp[k] = S_DONE; advance()
     :: outcome == R_FAILURE -> stp[k] = S_FAILED; advance()
     :: outcome == R_RETRY && sst == RUNNING && att[k] < MAX_ATTEMPTS -> retry_later(k)
     :: outcome == R_RETRY && !(sst == RUNNING && att[k] < MAX_ATTEMPTS) -> advance()
     fi
  fi
}

inline compensation_answered(k, a, ok) {
  if
  :: FINISHED || stp[k] != S_COMPENSATING || fk[k] != F_COMP || fa[k] != a -> skip
  :: else ->
     fk[k] = F_NONE;
     if
     :: ok -> stp[k] = S_COMPENSATED; advance()
     :: !ok && sst == PARKED -> parked_round_failed = true; advance()
     :: !ok && sst != PARKED && att[k] < PARK_AFTER -> retry_later(k)
     :: !ok && sst != PARKED && att[k] >= PARK_AFTER -> advance() /* the planner parks */
     fi
  fi
}

inline retry_due(k, a) {
  if
  :: FINISHED || fk[k] != F_TIMER || fa[k] != a -> skip
  :: else -> fk[k] = F_NONE; advance()
  fi
}

/* Resumed: load the run from the store and re-plan as if nothing were in
 * flight; the log may lack forward progress a crashed run made (and sent). */
inline resumed() {
  running = true; parked_round_failed = false; may_have_run = true;
  sst = lsst;
  for (i : 0 .. N - 1) { stp[i] = lstp[i]; att[i] = latt[i] }
  for (i : 0 .. N - 1) { fk[i] = F_NONE; fa[i] = 0; send_action[i] = 0; send_comp[i] = 0; timer[i] = 0 }
  advance()
}

/* CancelRequested: RUNNING -> COMPENSATING; a no-op when compensating,
 * parked or compensated; refused (kIllegalTransition) when SUCCEEDED. */
inline cancel_requested() {
  if
  :: sst == RUNNING -> sst = COMPENSATING; advance() /* advance() settles the PENDING steps */
  :: else -> skip
  fi
}

/* The events, as the driver feeds them: each alternative below only picks
 * one (and consumes its message); handle() then steps it, atomically with
 * the pick. */
#define EV_NONE 0
#define EV_ACTION 1    /* ActionAnswered (R_SUCCESS / R_FAILURE / R_RETRY), ActionCallFailed (R_RETRY) */
#define EV_COMP 2      /* CompensationAnswered */
#define EV_RETRY_DUE 3 /* RetryDue */
#define EV_RESUMED 4   /* Resumed */
#define EV_CANCEL 5    /* CancelRequested */
#define EV_LOGDUE 6    /* LogDue: the LogAfter timer fired */

/* The durable write: takes the store from its logged state to the run's
 * (Diff against SagaRun::logged), with all the progress that waited. */
inline log_run() {
  lsst = sst;
  for (i : 0 .. N - 1) { lstp[i] = stp[i]; latt[i] = att[i] };
#ifdef BAD_UNFENCED
  lchanged = true
#else
  skip
#endif
}

/* One event, stepped; then StepSaga's logging rule: forward progress of a
 * RUNNING saga (RUNNING before and after) is not logged before its effects
 * (the store keeps its older state: UNLOGGED); anything else (a change of
 * the saga's state, everything while COMPENSATING / PARKED, LogDue) is
 * logged, in the same atomic step, before its effects run. */
inline handle() {
  was = sst;
  if
  :: ev == EV_ACTION -> action_result(ek, ea, eo)
  :: ev == EV_COMP -> compensation_answered(ek, ea, (eo == R_SUCCESS))
  :: ev == EV_RETRY_DUE -> retry_due(ek, ea)
  :: ev == EV_RESUMED -> resumed()
  :: ev == EV_CANCEL -> cancels--; cancel_requested()
  :: ev == EV_LOGDUE || ev == EV_NONE -> skip
  fi;
  if
  :: ev == EV_NONE -> skip
  :: ev != EV_NONE && ev != EV_LOGDUE && was == RUNNING && sst == RUNNING ->
     skip /* forward progress: adopted and sent, logged later */
  :: else -> log_run()
  fi;
  ev = EV_NONE; ek = 0; ea = 0; eo = 0; i = 0; j = 0; m = 0; was = 0
}

/* One answer of step k's participant for attempt a reaches the coordinator. */
#define RECV(k, a) \
  :: !down && running && arep[k * AMAX + a] != R_NONE -> \
     ev = EV_ACTION; ek = k; ea = a; eo = arep[k * AMAX + a]; arep[k * AMAX + a] = R_NONE \
  :: !down && running && crep[k * AMAX + a] != R_NONE -> \
     ev = EV_COMP; ek = k; ea = a; eo = crep[k * AMAX + a]; crep[k * AMAX + a] = R_NONE

#define RECV_STEP(k) RECV(k, 1) RECV(k, 2) RECV(k, 3) RECV(k, 4) RECV(k, 5) RECV(k, 6) RECV(k, 7)

/* Step k's queued effects run: its call is sent, or its timer fires; or a
 * sent call times out (its request or answer may still be in transit). */
#define EFFECTS(k) \
  :: !down && running && send_action[k] != 0 -> \
     areq[k] = areq[k] | BIT(send_action[k]); send_action[k] = 0 \
  :: !down && running && send_comp[k] != 0 -> \
     creq[k] = creq[k] | BIT(send_comp[k]); send_comp[k] = 0 \
  :: !down && running && timer[k] != 0 -> ev = EV_RETRY_DUE; ek = k; ea = timer[k]; timer[k] = 0 \
  :: !down && running && timeouts > 0 && fk[k] == F_ACTION && send_action[k] == 0 -> \
     timeouts--; ev = EV_ACTION; ek = k; ea = fa[k]; eo = R_RETRY \
  :: !down && running && timeouts > 0 && fk[k] == F_COMP && send_comp[k] == 0 -> \
     timeouts--; ev = EV_COMP; ek = k; ea = fa[k]; eo = R_RETRY

/* A crash, or the old owner's memory once the saga was taken over: the run,
 * its unlogged progress, its queued effects and the answers in transit to
 * it are lost (requests in transit are not: a crash leaves them to reach the
 * participant; a takeover moved them to sreq / screq before). */
inline lose_run() {
  running = false; parked_round_failed = false; may_have_run = false;
  sst = lsst;
  for (i : 0 .. N - 1) {
    stp[i] = lstp[i]; att[i] = latt[i];
    fk[i] = F_NONE; fa[i] = 0; send_action[i] = 0; send_comp[i] = 0; timer[i] = 0
  }
  for (i : 0 .. N * AMAX - 1) { arep[i] = R_NONE; crep[i] = R_NONE }
}

proctype Coordinator() {
  byte i, j, m, ev, ek, ea, eo, was;
  bool failed, all_done, pending_work, park, finished, compensate_ok;

  /* SubmitSaga: the definition and the first wave (step 0 RUNNING) were
   * logged in one batch (init); its action is queued. */
  atomic { running = true; fk[0] = F_ACTION; fa[0] = 1; send_action[0] = 1 }
end_loop:
  do
  :: atomic {
       if
       /* crash: memory, queued effects and answers in transit to it are lost */
       :: !down && crashes > 0 -> crashes--; down = true; lose_run()
       :: down -> down = false
#ifdef TAKEOVER
       /* the replica driving the run is paused past its lease, another one
        * claims the saga (owner, epoch := its own); what the old one had
        * decided and not sent, or had in transit, is sent (late) anyway */
       :: !down && takeovers > 0 && !LFINISHED ->
          takeovers--; oalive = running; oown = lown; lown++;
#ifdef BAD_UNFENCED
          lchanged = false;
#endif
          for (i : 0 .. N - 1) {
            if
            :: send_action[i] != 0 || areq[i] != 0 ->
#ifdef GHOST_STALE
               if
               :: send_action[i] != 0 && (lstp[i] == S_PENDING || latt[i] < send_action[i]) ->
                  swin[i] = true /* adopted, not logged: no write before the send */
               :: else -> skip
               fi;
#endif
               sreq[i] = true; areq[i] = 0
            :: else -> skip
            fi;
            if :: send_comp[i] != 0 || creq[i] != 0 -> screq[i] = true; creq[i] = 0 :: else -> skip fi
          }
          lose_run() /* the new owner's memory: empty until its sweeper resumes the saga */
       /* the old run, awake: its next event writes first (lease not live);
        * the store checks the batch's (owner, epoch) */
       :: oalive ->
          oalive = false;
          if
#ifndef BAD_UNFENCED
          :: lown == oown -> stale_write = true /* accepted: cannot happen */
#else
          :: !lchanged -> stale_write = true /* BAD: accepted, the saga as it logged it */
#endif
          :: else -> /* refused ("write failed"): the run is released */
#ifdef GHOST_STALE
             fence_refused = true
#else
             skip
#endif
          fi
#endif
       /* the sweeper: a saga not driven here and not finished is Resumed */
       :: !down && !running && !LFINISHED -> ev = EV_RESUMED
       /* the LogDue timer: the progress that waited is written, no effects */
       :: !down && running && UNLOGGED -> ev = EV_LOGDUE
       /* an operator's cancel (cancelSaga: fed to the run driven here) */
       :: !down && running && cancels > 0 -> ev = EV_CANCEL
       EFFECTS(0)
       EFFECTS(1)
       EFFECTS(2)
       RECV_STEP(0)
       RECV_STEP(1)
       RECV_STEP(2)
       fi;
       handle()
     }
  od
}

/* The participant of step k behind the SDK barrier (RunAction / RunCompensate,
 * each in one local transaction with the business change), for a request of
 * attempt a. Its answer carries the attempt. */
inline serve_action(k, a) {
#ifndef BAD_NO_BARRIER
  if
  :: arow[k] == ROW_NONE ->
     if
     :: arow[k] = ROW_SUCCESS; applied[k]++; arep[k * AMAX + a] = R_SUCCESS
     :: arow[k] = ROW_FAILURE; arep[k * AMAX + a] = R_FAILURE /* rolled back to the savepoint */
     :: arep[k * AMAX + a] = R_RETRY /* RETRY_LATER: no row, local transaction rolled back */
     fi
#ifndef BAD_NO_HANGING_CHECK
  :: arow[k] == ROW_NULLCOMP -> arep[k * AMAX + a] = R_FAILURE /* hanging action refused */
#else
  :: arow[k] == ROW_NULLCOMP -> /* BAD: the barrier lets the late action run */
     arow[k] = ROW_SUCCESS; applied[k]++; arep[k * AMAX + a] = R_SUCCESS
#endif
  :: arow[k] == ROW_SUCCESS -> arep[k * AMAX + a] = R_SUCCESS /* duplicate: the first outcome */
  :: arow[k] == ROW_FAILURE -> arep[k * AMAX + a] = R_FAILURE
  fi
#else
  if
  :: applied[k]++; arep[k * AMAX + a] = R_SUCCESS
  :: arep[k * AMAX + a] = R_FAILURE
  :: arep[k * AMAX + a] = R_RETRY
  fi
#endif
}

inline serve_compensation(k, a) {
#ifndef BAD_NO_BARRIER
  if
  :: crow[k] -> crep[k * AMAX + a] = R_SUCCESS /* duplicate compensation: the first outcome */
  :: !crow[k] && arow[k] == ROW_NONE ->
     arow[k] = ROW_NULLCOMP; crow[k] = true; crep[k * AMAX + a] = R_SUCCESS /* null compensation */
  :: !crow[k] && arow[k] == ROW_FAILURE -> crow[k] = true; crep[k * AMAX + a] = R_SUCCESS /* no-op */
  :: !crow[k] && arow[k] == ROW_SUCCESS ->
     if
     :: crow[k] = true; undone[k]++; crep[k * AMAX + a] = R_SUCCESS;
        if :: k < N - 1 && applied[k + 1] != undone[k + 1] -> order_ok = false
           :: k < N - 2 && applied[k + 2] != undone[k + 2] -> order_ok = false
           :: else -> skip fi
     :: comp_failures > 0 -> comp_failures--; crep[k * AMAX + a] = R_RETRY /* hook failed: rolled back */
     fi
  fi
#else
  if
  :: undone[k]++; crep[k * AMAX + a] = R_SUCCESS
  :: comp_failures > 0 -> comp_failures--; crep[k * AMAX + a] = R_RETRY
  fi
#endif
}

#define SERVE(a) \
  :: atomic { areq[k] & BIT(a) -> areq[k] = areq[k] & ~BIT(a); serve_action(k, a) } \
  :: atomic { creq[k] & BIT(a) -> creq[k] = creq[k] & ~BIT(a); serve_compensation(k, a) }

/* The old owner's requests (after a takeover): served through the same
 * barrier; the answer goes to the old owner (slot 0: no attempt, never read). */
#ifdef TAKEOVER
#ifdef GHOST_STALE
#define STALE_BEFORE \
  if :: swin[k] && arow[k] == ROW_NULLCOMP -> stale_refused = true :: else -> skip fi; \
  if :: swin[k] && arow[k] == ROW_SUCCESS && crow[k] -> stale_dup = true :: else -> skip fi; \
  stale_fresh = (swin[k] && arow[k] == ROW_NONE);
#define STALE_AFTER \
  if :: stale_fresh && arow[k] == ROW_SUCCESS -> stale_applied = true :: else -> skip fi; \
  stale_fresh = false; swin[k] = false;
#else
#define STALE_BEFORE
#define STALE_AFTER
#endif
#define SERVE_STALE \
  :: atomic { sreq[k] -> sreq[k] = false; STALE_BEFORE serve_action(k, 0); STALE_AFTER \
              arep[k * AMAX] = R_NONE } \
  :: atomic { screq[k] -> screq[k] = false; serve_compensation(k, 0); crep[k * AMAX] = R_NONE }
#else
#define SERVE_STALE
#endif

proctype Participant(byte k) {
end_loop:
  do
  SERVE_STALE
  SERVE(1)
  SERVE(2)
  SERVE(3)
  SERVE(4)
  SERVE(5)
  SERVE(6)
  SERVE(7)
  od
}

active proctype Invariants() {
end_wait:
  atomic {
    !(EFFECTS_ONCE && SUCCEEDED_OK && COMPENSATED_OK && order_ok && FENCE_OK) ->
    assert(EFFECTS_ONCE);
    assert(SUCCEEDED_OK);
    assert(COMPENSATED_OK);
    assert(order_ok);
    assert(FENCE_OK)
  }
}

/* A state nothing can leave must be a finished saga. */
active proctype Terminal() {
end_wait:
  timeout -> assert(LFINISHED)
}

init {
  atomic {
    /* submitSaga: the definition and the first wave (step 0 RUNNING) in one batch */
    lstp[0] = S_RUNNING; latt[0] = 1; lstp[1] = S_PENDING; lstp[2] = S_PENDING;
    stp[0] = S_RUNNING; att[0] = 1; stp[1] = S_PENDING; stp[2] = S_PENDING;
    run Participant(0); run Participant(1); run Participant(2);
    run Coordinator()
  }
}
