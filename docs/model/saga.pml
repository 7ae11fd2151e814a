/*
 * saga.pml: saga execution and compensation order with the participant
 * barrier, as the code does it (coordinator/core/saga.cc PlanSaga,
 * coordinator/driver/saga_driver.cc Advance/CallAction/CallCompensation,
 * participant-sdk/src/barrier.cc RunAction/RunCompensate).
 *
 * One saga of N = 3 steps, each depending on the previous (the wire default).
 * One coordinator that can crash and restart (the sweeper resumes the saga
 * from the store); lease takeover and fencing are in twopc.pml, and the saga
 * driver's writes are fenced the same way (conditional on the stored step and
 * saga states and on (owner, epoch)).
 *
 * Every Advance is one atomic step: plan (PlanSaga), write the batch, then the
 * sends it decided are queued in the driver's memory and leave in later steps,
 * so a crash between "logged" and "sent" is explored. The crash points:
 *   saga.after_action_logged  a batch logged an action's outcome (DONE/FAILED)
 *   saga.mid_compensation     a batch logged a COMPENSATED step, saga not final
 * are both "after a write, before its sends"; the model also crashes after a
 * step was logged RUNNING (incl. the definition's first wave:
 * saga.after_step_started), after a compensation was logged COMPENSATING
 * (saga.after_compensation_started), and before SUCCEEDED/COMPENSATED
 * (saga.before_final_state); see README.md.
 *
 * Known-bad variants (each must produce a counterexample):
 *   -DBAD_FORWARD_COMPENSATION  compensate in forward order
 *   -DBAD_NO_BARRIER            the participant runs the hooks without the barrier
 *   -DBAD_NO_HANGING_CHECK      the barrier lets an action run after its (null)
 *                               compensation
 */

#define N 3

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

/* barrier rows (txc_barrier): the action row's outcome */
#define ROW_NONE 0     /* no row */
#define ROW_SUCCESS 1
#define ROW_FAILURE 2
#define ROW_NULLCOMP 3 /* inserted by a compensation that came first (reason = compensate) */

/* ---- the store ---- */
byte sst = RUNNING;
byte stp[N];
byte att[N];

/* ---- the coordinator ---- */
bool down = false;

/* ---- messages ---- */
byte areq[N]; /* action requests in transit to step i's participant */
byte creq[N]; /* compensation requests in transit */
byte arep[N]; /* latest action answer in transit back */
byte crep[N]; /* latest compensation answer in transit back */

/* ---- the participants: barrier rows and business effects ---- */
byte arow[N];
bool crow[N];
byte applied[N]; /* times the action hook's effect was committed */
byte undone[N];  /* times the compensation hook's effect was committed */

/* ---- faults left ---- */
byte crashes = CRASHES;
byte timeouts = TIMEOUTS;
byte comp_failures = COMP_FAILURES;
bool deadline_passed = false;

/* ---- ghosts ---- */
bool order_ok = true; /* no compensation ran while a later step's effect stood */

#define ATTEMPTED(s) (s != S_PENDING && s != S_SKIPPED)
#define NEEDS_COMPENSATION(s) (s == S_RUNNING || s == S_DONE || s == S_FAILED || s == S_COMPENSATING)
#define NEVER_RAN_OR_COMPENSATED(s) (s == S_COMPENSATED || s == S_SKIPPED || s == S_PENDING)

/* every effect at most once, no compensation without its action */
#define EFFECTS_ONCE (applied[0] <= 1 && applied[1] <= 1 && applied[2] <= 1 && \
                      undone[0] <= applied[0] && undone[1] <= applied[1] && undone[2] <= applied[2])
/* a finished saga is all done, or all compensated (invariant 2), and stays so */
#define SUCCEEDED_OK (sst != SUCCEEDED || (applied[0] == 1 && applied[1] == 1 && applied[2] == 1 && \
                                           undone[0] == 0 && undone[1] == 0 && undone[2] == 0))
#define COMPENSATED_OK (sst != COMPENSATED || (applied[0] == undone[0] && applied[1] == undone[1] && \
                                               applied[2] == undone[2]))
#define FINISHED (sst == SUCCEEDED || sst == COMPENSATED)

#ifdef LIVENESS
ltl eventually_finished { <> [] FINISHED }
#endif

/* log COMPENSATING (attempts 1) or attempts + 1, then queue the compensation.
 * Reverse order at the coordinator: every later attempted step is compensated. */
inline compensate(k) {
  if
  :: stp[k] != S_COMPENSATING -> stp[k] = S_COMPENSATING; att[k] = 1
  :: else -> att[k]++
  fi;
  for (m : k + 1 .. N - 1) {
    if :: ATTEMPTED(stp[m]) && stp[m] != S_COMPENSATED -> order_ok = false :: else -> skip fi
  }
  busy[k] = true; send_comp[k] = true
}

#ifndef BAD_FORWARD_COMPENSATION
/* plan_compensation: reverse order; a step is ready once its dependent (the
 * next step) never ran or is compensated. Nothing new after a parked round failed. */
inline plan_compensation() {
  pending_work = false;
  for (i : 0 .. N - 1) {
    j = N - 1 - i;
    if
    :: NEEDS_COMPENSATION(stp[j]) ->
       pending_work = true;
       if
       :: !busy[j] && (j == N - 1 || NEVER_RAN_OR_COMPENSATED(stp[j + 1])) &&
          !(sst == PARKED && parked_round_failed) -> compensate(j)
       :: else -> skip
       fi
    :: else -> skip
    fi
  }
  if :: !pending_work -> sst = COMPENSATED; running = false :: else -> skip fi
}
#else
/* BAD: forward order, no dependency check */
inline plan_compensation() {
  pending_work = false;
  for (j : 0 .. N - 1) {
    if
    :: NEEDS_COMPENSATION(stp[j]) ->
       pending_work = true;
       if
       :: !busy[j] && !(sst == PARKED && parked_round_failed) -> compensate(j)
       :: else -> skip
       fi
    :: else -> skip
    fi
  }
  if :: !pending_work -> sst = COMPENSATED; running = false :: else -> skip fi
}
#endif

/* PlanSaga over the stored steps (the driver logs what it returns in one
 * batch, conditional on the old states), then the sends are queued. */
inline advance() {
  if
  :: sst == RUNNING ->
     failed = false; all_done = true;
     if :: !deadline_passed -> deadline_passed = true; failed = true :: true -> skip fi;
     for (i : 0 .. N - 1) {
       if
       :: stp[i] == S_FAILED -> failed = true
       :: stp[i] == S_RUNNING && !busy[i] && att[i] >= MAX_ATTEMPTS -> stp[i] = S_FAILED; failed = true
       :: else -> skip
       fi;
       if :: stp[i] != S_DONE -> all_done = false :: else -> skip fi
     }
     if
     :: failed ->
        for (i : 0 .. N - 1) { if :: stp[i] == S_PENDING -> stp[i] = S_SKIPPED :: else -> skip fi }
        sst = COMPENSATING;
        plan_compensation()
     :: !failed && all_done -> sst = SUCCEEDED; running = false
     :: !failed && !all_done ->
        for (i : 0 .. N - 1) {
          if
          :: stp[i] == S_PENDING && (i == 0 || stp[i - 1] == S_DONE) ->
             stp[i] = S_RUNNING; att[i] = 1; busy[i] = true; send_action[i] = true
          :: stp[i] == S_RUNNING && !busy[i] ->
             att[i]++; busy[i] = true; send_action[i] = true
          :: else -> skip
          fi
        }
     fi
  :: sst == COMPENSATING || sst == PARKED ->
     park = false;
     if
     :: sst == COMPENSATING ->
        for (i : 0 .. N - 1) {
          if :: stp[i] == S_COMPENSATING && !busy[i] && att[i] >= PARK_AFTER -> park = true
             :: else -> skip fi
        }
     :: else -> skip
     fi;
     if
     :: park -> sst = PARKED; parked_round_failed = true
     :: else -> plan_compensation()
     fi
  :: else -> running = false
  fi;
  if
  :: running && sst == PARKED && parked_round_failed && !busy[0] && !busy[1] && !busy[2] ->
     running = false /* release: the sweeper retries the parked saga later */
  :: else -> skip
  fi
}

/* CallAction / CallCompensation of step k returns (or times out), then Advance. */
inline receive(k) {
  if
  :: stp[k] == S_RUNNING ->
     if
     :: arep[k] != R_NONE -> skip
     :: timeouts > 0 -> timeouts--; arep[k] = R_RETRY
     fi;
     if
     :: arep[k] == R_SUCCESS -> stp[k] = S_DONE /* then saga.after_action_logged */
     :: arep[k] == R_FAILURE -> stp[k] = S_FAILED /* then saga.after_action_logged */
     :: arep[k] == R_RETRY -> skip /* retried after backoff, or failed past max_attempts */
     fi;
     arep[k] = R_NONE
  :: stp[k] == S_COMPENSATING ->
     if
     :: crep[k] != R_NONE -> skip
     :: timeouts > 0 -> timeouts--; crep[k] = R_RETRY
     fi;
     if
     :: crep[k] == R_SUCCESS -> stp[k] = S_COMPENSATED /* then saga.mid_compensation */
     :: else -> if :: sst == PARKED -> parked_round_failed = true :: else -> skip fi
     fi;
     crep[k] = R_NONE
  fi;
  busy[k] = false;
  advance()
}

#define CAN_RECEIVE(k) (busy[k] && !send_action[k] && !send_comp[k] && \
  ((stp[k] == S_RUNNING && (arep[k] != R_NONE || timeouts > 0)) || \
   (stp[k] == S_COMPENSATING && (crep[k] != R_NONE || timeouts > 0))))

proctype Coordinator() {
  bool running = true;   /* a Run exists in memory (SagaDriver::runs_) */
  bool busy[N];          /* a call outstanding (Run::busy) */
  bool send_action[N];   /* logged, not sent yet */
  bool send_comp[N];
  bool parked_round_failed = false;
  byte i, j, m;
  bool failed, all_done, pending_work, park;

  /* SubmitSaga: the first wave was logged with the definition; its action is queued */
  atomic { busy[0] = true; send_action[0] = true }
end_loop:
  do
  /* crash: memory, queued sends and answers in transit to it are lost */
  :: atomic { !down && crashes > 0 ->
       crashes--; down = true; running = false; parked_round_failed = false;
       for (i : 0 .. N - 1) { busy[i] = false; send_action[i] = false; send_comp[i] = false;
                              arep[i] = R_NONE; crep[i] = R_NONE }
       i = 0 }
  :: atomic { down -> down = false }
  /* the sweeper: Resume -> ResumeNow reloads the saga and Advances */
  :: atomic { !down && !running && !FINISHED ->
       running = true; parked_round_failed = false;
       for (i : 0 .. N - 1) { busy[i] = false }
       advance(); i = 0; j = 0; m = 0 }
  /* the sends Advance queued */
  :: atomic { !down && running && (send_action[0] || send_action[1] || send_action[2]) ->
       for (i : 0 .. N - 1) {
         if :: send_action[i] -> send_action[i] = false; areq[i]++ :: else -> skip fi }
       i = 0 }
  :: atomic { !down && running && (send_comp[0] || send_comp[1] || send_comp[2]) ->
       for (i : 0 .. N - 1) {
         if :: send_comp[i] -> send_comp[i] = false; creq[i]++ :: else -> skip fi }
       i = 0 }
  :: atomic { !down && running && CAN_RECEIVE(0) -> receive(0); i = 0; j = 0; m = 0 }
  :: atomic { !down && running && CAN_RECEIVE(1) -> receive(1); i = 0; j = 0; m = 0 }
  :: atomic { !down && running && CAN_RECEIVE(2) -> receive(2); i = 0; j = 0; m = 0 }
  od
}

/* The participant of step k behind the SDK barrier (RunAction / RunCompensate,
 * each in one local transaction with the business change). */
proctype Participant(byte k) {
end_loop:
  do
  :: atomic { areq[k] > 0 ->
       areq[k]--;
#ifndef BAD_NO_BARRIER
       if
       :: arow[k] == ROW_NONE ->
          if
          :: arow[k] = ROW_SUCCESS; applied[k]++; arep[k] = R_SUCCESS
          :: arow[k] = ROW_FAILURE; arep[k] = R_FAILURE /* rolled back to the savepoint */
          :: arep[k] = R_RETRY /* RETRY_LATER: no row, local transaction rolled back */
          fi
#ifndef BAD_NO_HANGING_CHECK
       :: arow[k] == ROW_NULLCOMP -> arep[k] = R_FAILURE /* hanging action refused */
#else
       :: arow[k] == ROW_NULLCOMP -> /* BAD: the barrier lets the late action run */
          arow[k] = ROW_SUCCESS; applied[k]++; arep[k] = R_SUCCESS
#endif
       :: arow[k] == ROW_SUCCESS -> arep[k] = R_SUCCESS /* duplicate: the first outcome */
       :: arow[k] == ROW_FAILURE -> arep[k] = R_FAILURE
       fi
#else
       if
       :: applied[k]++; arep[k] = R_SUCCESS
       :: arep[k] = R_FAILURE
       :: arep[k] = R_RETRY
       fi
#endif
     }
  :: atomic { creq[k] > 0 ->
       creq[k]--;
#ifndef BAD_NO_BARRIER
       if
       :: crow[k] -> crep[k] = R_SUCCESS /* duplicate compensation: the first outcome */
       :: !crow[k] && arow[k] == ROW_NONE ->
          arow[k] = ROW_NULLCOMP; crow[k] = true; crep[k] = R_SUCCESS /* null compensation */
       :: !crow[k] && arow[k] == ROW_FAILURE -> crow[k] = true; crep[k] = R_SUCCESS /* no-op */
       :: !crow[k] && arow[k] == ROW_SUCCESS ->
          if
          :: crow[k] = true; undone[k]++; crep[k] = R_SUCCESS;
             if :: k < N - 1 && applied[k + 1] != undone[k + 1] -> order_ok = false
                :: k < N - 2 && applied[k + 2] != undone[k + 2] -> order_ok = false
                :: else -> skip fi
          :: comp_failures > 0 -> comp_failures--; crep[k] = R_RETRY /* hook failed: rolled back */
          fi
       fi
#else
       if
       :: undone[k]++; crep[k] = R_SUCCESS
       :: comp_failures > 0 -> comp_failures--; crep[k] = R_RETRY
       fi
#endif
     }
  od
}

active proctype Invariants() {
end_wait:
  atomic {
    !(EFFECTS_ONCE && SUCCEEDED_OK && COMPENSATED_OK && order_ok) ->
    assert(EFFECTS_ONCE);
    assert(SUCCEEDED_OK);
    assert(COMPENSATED_OK);
    assert(order_ok)
  }
}

/* A state nothing can leave must be a finished saga. */
active proctype Terminal() {
end_wait:
  timeout -> assert(FINISHED)
}

init {
  atomic {
    /* submitSaga: the definition and the first wave (step 0 RUNNING) in one batch */
    stp[0] = S_RUNNING; att[0] = 1; stp[1] = S_PENDING; stp[2] = S_PENDING;
    run Participant(0); run Participant(1); run Participant(2);
    run Coordinator()
  }
}
