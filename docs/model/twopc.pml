/*
 * twopc.pml: two-phase commit with presumed abort, participant recovery,
 * coordinator crashes, and lease takeover with epoch fencing, as the code does
 * it (coordinator/core/two_phase.cc, coordinator/driver/two_phase_driver.cc,
 * coordinator/recovery/sweeper.cc, coordinator/store/txn_store.h).
 *
 * One global transaction with NB = 2 branches, begun and enlisted on replica 0
 * (ACTIVE, both branches REGISTERED: begin and enlist are durable before the
 * client can commit, so they are the initial state). Two coordinator
 * replicas share the store. Every store write is one atomic step, conditional
 * on the expected state and on (owner, epoch) exactly as the driver's
 * FencedUpdate; every RPC is a message or a non-deterministic outcome.
 *
 * Driver steps (replica pc) are named after the code's crash points:
 *   AFTER_PREPARE_SENT     TXC_CRASH_POINT("2pc.after_prepare_sent")
 *   AFTER_DECISION_LOGGED  TXC_CRASH_POINT("2pc.after_decision_logged")
 *   PHASE2 (after 1 ack)   TXC_CRASH_POINT("2pc.mid_phase2")
 *   BEFORE_FINAL_STATE     TXC_CRASH_POINT("2pc.before_final_state")
 * and these steps have no crash point in the code (see README.md):
 *   PREPARING_LOGGED       PREPARING durable, no prepare sent yet
 *   AFTER_ABORT_LOGGED     ABORTING logged by AbortClaimed (deadline,
 *                          presumed abort on resume), aborts not sent yet
 * A replica may crash between any two steps, not only at the named ones.
 *
 * Known-bad variants (each must produce a counterexample):
 *   -DBAD_ABORT_WHILE_PREPARING  queryOutcome answers ABORT for PREPARING
 *   -DBAD_UNFENCED               the store ignores (owner, epoch) on writes
 */

#define NB 2 /* branches (participants) */
#define NR 2 /* coordinator replicas */

#ifndef CRASHES
#define CRASHES 1 /* coordinator crashes (SIGKILL) in a run */
#endif
#ifndef PAUSES
#define PAUSES 1 /* coordinator pauses (SIGSTOP) long enough for the lease to expire */
#endif
#ifndef LOSSES
#define LOSSES 1 /* phase-2 calls lost (request or reply) */
#endif
#ifndef RETRIES
#define RETRIES 1 /* client commit retries after a failed call */
#endif
#ifndef MAX_ROUNDS
#define MAX_ROUNDS 2 /* kMaxRounds (8 in the code): a commit call's re-reads after a conflict */
#endif

/* TxnState: values as coordinator/core/states.h */
#define NONE 0 /* no record: never begun, or deleted by retention */
#define ACTIVE 1
#define PREPARING 2
#define COMMITTING 3
#define COMMITTED 4
#define ABORTING 5
#define ABORTED 6

/* BranchState: values as coordinator/core/states.h */
#define B_REG 1
#define B_PREP 2
#define B_RO 3
#define B_COMMITTED 4
#define B_ABORTED 5

/* BranchVote as the coordinator receives it; V_NONE: no answer (yet) */
#define V_NONE 0
#define V_PREPARED 1
#define V_RO 2
#define V_ABORT 3

/* TwoPhaseOutcome / Decision */
#define O_PENDING 1
#define O_COMMIT 2
#define O_ABORT 3

/* participant's local resource (a PostgreSQL prepared transaction) */
#define P_IDLE 0       /* nothing prepared: no local work exists */
#define P_PREPARED 1   /* PREPARE TRANSACTION done: in doubt */
#define P_COMMITTED 2  /* COMMIT PREPARED done */
#define P_ROLLEDBACK 3 /* voted ABORT, or ROLLBACK PREPARED done */
#define P_RO 4         /* voted READ_ONLY: nothing to do */

/* replica program counter (one flight: TwoPhaseDriver::Flight) */
#define IDLE 0                  /* no flight in this process */
#define START_COMMIT 1          /* CommitClaimed: about to log PREPARING */
#define PREPARING_LOGGED 2      /* (no crash point in the code) */
#define COLLECTING 3            /* prepares sent, waiting on the votes latch */
#define AFTER_PREPARE_SENT 4    /* 2pc.after_prepare_sent */
#define AFTER_DECISION_LOGGED 5 /* 2pc.after_decision_logged */
#define PHASE2 6                /* fan-out; 2pc.mid_phase2 after the first ack */
#define BEFORE_FINAL_STATE 7    /* 2pc.before_final_state */
#define ABORT_CLAIMED 8         /* AbortClaimed: about to log ABORTING */
#define AFTER_ABORT_LOGGED 9    /* (no crash point in the code) */

/* ---- the store (txns row, branches rows, leases rows) ---- */
byte st = ACTIVE;               /* txns.state */
byte own = 0;                   /* txns.owner */
byte oep = 1;                   /* txns.epoch */
bool commit_requested = false;  /* kFlagCommitRequested */
byte bst[NB];                   /* branches.state */
byte lep[NR];                   /* leases.epoch */
bool llive[NR];                 /* leases.expires_ms > now */

/* ---- the replicas ---- */
byte rep_ep[NR];   /* the epoch this replica's incarnation holds (NodeInfo::epoch) */
bool down[NR];     /* crashed, not restarted */
bool paused[NR];   /* SIGSTOPped */
bool commit_req[NR]; /* a client commit call waiting at this replica */
byte pc[NR];        /* the replica's flight: where its driver is (IDLE: none) */
byte rounds[NR];    /* re-reads the commit call at this replica made after a conflict */

/* ---- messages ---- */
bool prep_req[NB]; /* prepare in transit to participant i */
byte vote_rep[NB]; /* its vote in transit back */

/* ---- the participants ---- */
byte ps[NB];

/* ---- faults left ---- */
byte crashes = CRASHES;
byte pauses = PAUSES;
byte losses = LOSSES;
byte retries = RETRIES;

/* ---- ghosts ---- */
byte decision = 0;   /* the first decision the store accepted */
byte client_ans = 0; /* what the client was told (O_COMMIT / O_ABORT) */
bool stale_write = false; /* a write accepted from a replica that does not own the record */

#define DECIDED(s) (s == COMMITTING || s == COMMITTED || s == ABORTING || s == ABORTED)
#define DECISION_OF(s) ((s == COMMITTING || s == COMMITTED) -> O_COMMIT : O_ABORT)
#define DECISION_STATE(d) ((d == O_COMMIT) -> COMMITTING : ABORTING)
#define FINAL_STATE(d) ((d == O_COMMIT) -> COMMITTED : ABORTED)
#define BRANCH_FINAL(d) ((d == O_COMMIT) -> B_COMMITTED : B_ABORTED)
#define UNFINISHED(s) (s == ACTIVE || s == PREPARING || s == COMMITTING || s == ABORTING)

/* OutcomeForState (core/two_phase.cc), as QueryOutcome answers from the store
 * on any replica. NONE (unknown or deleted) is ABORT: presumed abort. */
#ifdef BAD_ABORT_WHILE_PREPARING
#define STILL_DECIDING(s) (s == ACTIVE)
#else
#define STILL_DECIDING(s) (s == ACTIVE || s == PREPARING)
#endif
#define OUTCOME(s) ((s == COMMITTING || s == COMMITTED) -> O_COMMIT : \
                    (STILL_DECIDING(s) -> O_PENDING : O_ABORT))

/* The store's fence: expected_owner / expected_epoch of every TxnUpdate and
 * BranchUpdate. */
#ifdef BAD_UNFENCED
#define FENCE(r) true
#else
#define FENCE(r) (own == r && oep == rep_ep[r])
#endif

/* Called inside every accepted write: the writer must own the record. */
#define ACCEPTED(r) if :: !(own == r && oep == rep_ep[r]) -> stale_write = true :: else -> skip fi

#define RUN(r) (!down[r] && !paused[r])
#define MINE(r) (own == r && oep == rep_ep[r])
/* Commit's loop: re-read after kConflict, or give up (Unavailable).
 * MAX_ROUNDS=0: no bound (for the finding in README.md). */
#if MAX_ROUNDS == 0
#define RE_READ(r) commit_req[r] = true
#else
#define RE_READ(r) if :: rounds[r] < MAX_ROUNDS -> rounds[r]++; commit_req[r] = true :: else -> skip fi
#endif

/* Atomicity (invariant 2): never one branch committed and another rolled back. */
#define ATOMIC !((ps[0] == P_COMMITTED && ps[1] == P_ROLLEDBACK) || \
                 (ps[1] == P_COMMITTED && ps[0] == P_ROLLEDBACK))
/* The store never changes its decision (COMMITTING is never followed by ABORT...). */
#define ONE_DECISION (decision == 0 || st == NONE || !DECIDED(st) || DECISION_OF(st) == decision)
/* What the client is told is the stored decision (invariant 7). */
#define ANSWER_OK (client_ans == 0 || client_ans == decision)
/* Fencing (invariant 4): no write accepted from a stale (owner, epoch).
 * -DIGNORE_STALE_WRITES drops this property only, to ask what else breaks
 * without the fence (see README.md). */
#ifdef IGNORE_STALE_WRITES
#define FENCED true
#else
#define FENCED (!stale_write)
#endif

#define DONE ((st == COMMITTED || st == ABORTED || st == NONE) && \
              ps[0] != P_PREPARED && ps[1] != P_PREPARED)

#ifdef LIVENESS
ltl eventually_final { <> [] DONE }
#endif

/* The client is told `o`: only after the store accepted that decision (the
 * record may be gone since: finished and deleted by retention). */
inline answer(o) {
  assert(o == decision);
  client_ans = o
}

/* The decision ghost: set by the first accepted decision write. */
inline note_decision(d) {
  if
  :: decision == 0 -> decision = d
  :: else -> skip
  fi
}

/* A participant applies commit or abort (PgXaResource::FinishPrepared):
 * COMMIT/ROLLBACK PREPARED, or "no such prepared transaction" = OK (a no-op). */
inline phase2_apply(i, d) {
  if
  :: d == O_COMMIT && ps[i] == P_PREPARED -> ps[i] = P_COMMITTED
  :: d == O_ABORT && ps[i] == P_PREPARED -> ps[i] = P_ROLLEDBACK
  :: else -> skip
  fi
}

/* NeedsPhaseTwo: REGISTERED or PREPARED (READ_ONLY and finished branches: no). */
#define NEEDS_P2(i) ((bst[i] == B_REG || bst[i] == B_PREP))

proctype Replica(byte r) {
  byte dec = 0;          /* the decision this flight drives */
  bool serving = false;  /* this flight answers the client's commit call */
  byte got0 = V_NONE, got1 = V_NONE; /* votes collected */
  bool acked0 = false, acked1 = false, gaveup0 = false, gaveup1 = false;

end_loop:
  do
  /* ------------------------------------------------------------ faults */
  :: atomic { !down[r] && crashes > 0 ->
       crashes--; down[r] = true; paused[r] = false; commit_req[r] = false;
       pc[r] = IDLE; dec = 0; serving = false; got0 = V_NONE; got1 = V_NONE;
       acked0 = false; acked1 = false; gaveup0 = false; gaveup1 = false }
  :: atomic { (down[r] || paused[r]) && llive[r] -> llive[r] = false } /* nobody renews the lease */
  :: atomic { down[r] && !llive[r] ->
       /* restart: AcquireLease(kIfExpired) is refused while the old lease is live */
       down[r] = false; lep[r]++; rep_ep[r] = lep[r]; llive[r] = true }
  :: atomic { RUN(r) && pauses > 0 -> pauses--; paused[r] = true }
  :: atomic { paused[r] -> paused[r] = false } /* resumes with its in-memory flight and old epoch */
  :: atomic { RUN(r) && !llive[r] ->
       /* RenewLease fails: the incarnation is retired (in-flight work dropped, group
        * commit fenced) and a new epoch acquired. Until this step runs, the resumed
        * replica may still try writes with its old epoch. */
       commit_req[r] = false;
       pc[r] = IDLE; dec = 0; serving = false; got0 = V_NONE; got1 = V_NONE;
       acked0 = false; acked1 = false; gaveup0 = false; gaveup1 = false;
       lep[r]++; rep_ep[r] = lep[r]; llive[r] = true }

  /* ------------------------------------------------------------ sweeper */
  :: atomic { RUN(r) && llive[r] && UNFINISHED(st) &&
              ((own == r && oep < rep_ep[r]) || (own != r && !llive[own])) ->
       /* ClaimOrphans: only a live lease holder claims; owner's lease expired, or
        * this node under an older epoch */
       own = r; oep = rep_ep[r] }
  :: atomic { RUN(r) && pc[r] == IDLE && own == r && oep == rep_ep[r] &&
              (st == ACTIVE || st == PREPARING) ->
       /* Resume -> ResumeClaimed: ACTIVE past its deadline (time is abstract: the
        * deadline may have passed at any look), or PREPARING with no driver in
        * this process (no decision logged: presumed abort) */
       pc[r] = ABORT_CLAIMED }
  :: atomic { RUN(r) && pc[r] == IDLE && own == r && oep == rep_ep[r] &&
              (st == COMMITTING || st == ABORTING) ->
       /* Resume: redrive phase 2 */
       dec = DECISION_OF(st); pc[r] = PHASE2 }

  /* ------------------------------------------------------------ commit call */
  /* TwoPhaseDriver::Commit on any replica: a decided transaction is answered
   * from the store; PREPARING at another replica whose lease is live is waited
   * for (the request stays until that changes); ACTIVE elsewhere, or PREPARING
   * whose owner's lease lapsed, is taken over (TakeOverUpdate: conditional on
   * the state and (owner, epoch) just read; read and write are one step here)
   * and driven here. */
  :: atomic { RUN(r) && commit_req[r] && (pc[r] == IDLE || DECIDED(st)) &&
              !(st == PREPARING && !MINE(r) && llive[own]) ->
       commit_req[r] = false;
       if
       :: st == NONE -> skip /* NotFound */
       :: st == COMMITTING || st == COMMITTED -> answer(O_COMMIT)
       :: (st == ABORTING || st == ABORTED) && commit_requested -> answer(O_ABORT)
       :: (st == ABORTING || st == ABORTED) && !commit_requested -> skip /* IllegalTransition */
       :: st == ACTIVE || st == PREPARING ->
          if
          :: !MINE(r) -> own = r; oep = rep_ep[r] /* TakeOver */
          :: else -> skip
          fi;
          serving = true;
          if
          :: st == ACTIVE -> pc[r] = START_COMMIT
          :: st == PREPARING -> pc[r] = ABORT_CLAIMED /* ResumeClaimed: presumed abort */
          fi
       fi }

  /* ------------------------------------------------------------ CommitClaimed */
  :: atomic { RUN(r) && pc[r] == START_COMMIT ->
       if
       :: st == ACTIVE && FENCE(r) ->
          ACCEPTED(r); st = PREPARING; commit_requested = true; pc[r] = PREPARING_LOGGED
       :: else -> /* kConflict: Commit re-reads, up to kMaxRounds */
          RE_READ(r); pc[r] = IDLE; serving = false
       fi }
  :: atomic { RUN(r) && pc[r] == PREPARING_LOGGED ->
       prep_req[0] = true; prep_req[1] = true; pc[r] = COLLECTING }
  :: atomic { RUN(r) && pc[r] == COLLECTING && vote_rep[0] != V_NONE && vote_rep[1] != V_NONE ->
       got0 = vote_rep[0]; got1 = vote_rep[1]; pc[r] = AFTER_PREPARE_SENT }
  :: atomic { RUN(r) && pc[r] == COLLECTING ->
       /* the latch times out: `collected` stays all nullopt, even for votes that came */
       got0 = V_NONE; got1 = V_NONE; pc[r] = AFTER_PREPARE_SENT }
  :: atomic { RUN(r) && pc[r] == AFTER_PREPARE_SENT ->
       /* DecideFromVotes; the decision batch, fenced, conditional on PREPARING */
       dec = (((got0 == V_PREPARED || got0 == V_RO) && (got1 == V_PREPARED || got1 == V_RO))
              -> O_COMMIT : O_ABORT);
       if
       :: st == PREPARING && FENCE(r) ->
          ACCEPTED(r); st = DECISION_STATE(dec); note_decision(dec);
          if :: got0 == V_PREPARED -> bst[0] = B_PREP :: got0 == V_RO -> bst[0] = B_RO
             :: got0 == V_ABORT -> bst[0] = B_ABORTED :: got0 == V_NONE -> skip fi;
          if :: got1 == V_PREPARED -> bst[1] = B_PREP :: got1 == V_RO -> bst[1] = B_RO
             :: got1 == V_ABORT -> bst[1] = B_ABORTED :: got1 == V_NONE -> skip fi;
          pc[r] = AFTER_DECISION_LOGGED
       :: else ->
          /* re-read: follow a decision logged under this owner, else NotOwner */
          if
          :: own == r && oep == rep_ep[r] && DECIDED(st) ->
             dec = DECISION_OF(st); pc[r] = AFTER_DECISION_LOGGED
          :: else -> pc[r] = IDLE; dec = 0; serving = false
          fi
       fi;
       got0 = V_NONE; got1 = V_NONE }
  :: atomic { RUN(r) && pc[r] == AFTER_DECISION_LOGGED ->
       /* Publish; the client (WAIT_DECISION) is answered; StartPhaseTwo */
       if :: serving -> answer(dec) :: else -> skip fi;
       serving = false; pc[r] = PHASE2 }

  /* ------------------------------------------------------------ AbortClaimed */
  :: atomic { RUN(r) && pc[r] == ABORT_CLAIMED ->
       if
       :: (st == ACTIVE || st == PREPARING) && FENCE(r) ->
          ACCEPTED(r); st = ABORTING; note_decision(O_ABORT); dec = O_ABORT;
          pc[r] = AFTER_ABORT_LOGGED
       :: else -> /* kConflict: the caller re-reads */
          if :: serving -> RE_READ(r) :: else -> skip fi;
          pc[r] = IDLE; serving = false
       fi }
  :: atomic { RUN(r) && pc[r] == AFTER_ABORT_LOGGED ->
       /* AnswerCommit(ABORTING): ABORT with kFlagCommitRequested, else IllegalTransition */
       if :: serving && commit_requested -> answer(O_ABORT) :: else -> skip fi;
       serving = false; pc[r] = PHASE2 }

  /* ------------------------------------------------------------ phase 2 */
  :: atomic { RUN(r) && pc[r] == PHASE2 && NEEDS_P2(0) && !acked0 && !gaveup0 ->
       if
       :: phase2_apply(0, dec); acked0 = true /* acked; 2pc.mid_phase2 after the first */
       :: losses > 0 -> losses--; gaveup0 = true /* request lost: attempts used up */
       :: losses > 0 -> losses--; phase2_apply(0, dec); gaveup0 = true /* reply lost */
       fi }
  :: atomic { RUN(r) && pc[r] == PHASE2 && NEEDS_P2(1) && !acked1 && !gaveup1 ->
       if
       :: phase2_apply(1, dec); acked1 = true
       :: losses > 0 -> losses--; gaveup1 = true
       :: losses > 0 -> losses--; phase2_apply(1, dec); gaveup1 = true
       fi }
  :: atomic { RUN(r) && pc[r] == PHASE2 &&
              (!NEEDS_P2(0) || acked0 || gaveup0) && (!NEEDS_P2(1) || acked1 || gaveup1) ->
       if
       :: !gaveup0 && !gaveup1 -> pc[r] = BEFORE_FINAL_STATE
       :: else ->
          /* FinishPhaseTwo, not all acked: acks + attempts (WriteLater), release;
           * the sweeper redrives */
          if
          :: st == DECISION_STATE(dec) && FENCE(r) ->
             ACCEPTED(r);
             if :: acked0 -> bst[0] = BRANCH_FINAL(dec) :: else -> skip fi;
             if :: acked1 -> bst[1] = BRANCH_FINAL(dec) :: else -> skip fi
          :: else -> skip
          fi;
          pc[r] = IDLE; dec = 0; acked0 = false; acked1 = false; gaveup0 = false; gaveup1 = false
       fi }
  :: atomic { RUN(r) && pc[r] == BEFORE_FINAL_STATE ->
       /* FinishPhaseTwo: acks + COMMITTED/ABORTED in one WriteLater batch */
       if
       :: st == DECISION_STATE(dec) && FENCE(r) ->
          ACCEPTED(r); st = FINAL_STATE(dec);
          if :: acked0 -> bst[0] = BRANCH_FINAL(dec) :: else -> skip fi;
          if :: acked1 -> bst[1] = BRANCH_FINAL(dec) :: else -> skip fi
       :: else -> skip /* kConflict: nothing applied */
       fi;
       pc[r] = IDLE; dec = 0; acked0 = false; acked1 = false }
  od
}

/* A participant: the prepare hook, and the SDK's recovery loop (RecoveryLoop):
 * for a prepared branch it asks queryOutcome (any replica, answered from the
 * store) and commits or aborts; PENDING is asked again later. */
proctype Participant(byte i) {
end_loop:
  do
  :: atomic { prep_req[i] ->
       prep_req[i] = false;
       assert(ps[i] == P_IDLE); /* prepare is sent once per branch */
       if
       :: ps[i] = P_PREPARED; vote_rep[i] = V_PREPARED
       :: ps[i] = P_ROLLEDBACK; vote_rep[i] = V_ABORT
       :: i == 1 -> ps[i] = P_RO; vote_rep[i] = V_RO
       fi }
  :: atomic { ps[i] == P_PREPARED && OUTCOME(st) == O_COMMIT -> ps[i] = P_COMMITTED }
  :: atomic { ps[i] == P_PREPARED && OUTCOME(st) == O_ABORT -> ps[i] = P_ROLLEDBACK }
  od
}

/* The client: commit on replica 0; after a failed call (timeout, crash) it
 * calls again, on either replica (the SDK fails over). */
proctype Client() {
end_loop:
  do
  :: atomic { client_ans == 0 && retries > 0 && !commit_req[0] && !commit_req[1] && st != NONE ->
       retries--;
       if :: commit_req[0] = true; rounds[0] = 0 :: commit_req[1] = true; rounds[1] = 0 fi }
  od
}

/* Retention on any replica: DeleteFinishedBefore removes a finished record
 * (not fenced: it touches finished rows only). Afterwards queryOutcome answers
 * ABORT (unknown) and commit answers NotFound. */
proctype Retention() {
end_wait:
  (st == COMMITTED || st == ABORTED) -> st = NONE
}

/* Safety invariants, checked in every reachable state. */
active proctype Invariants() {
end_wait:
  atomic {
    !(ATOMIC && ONE_DECISION && ANSWER_OK && FENCED) ->
    assert(ATOMIC);
    assert(ONE_DECISION);
    assert(ANSWER_OK);
    assert(FENCED)
  }
}

/* A state nothing can leave must be finished (timeout: nothing else can move). */
active proctype Terminal() {
end_wait:
  timeout -> assert(DONE)
}

init {
  atomic {
    bst[0] = B_REG; bst[1] = B_REG;
    lep[0] = 1; lep[1] = 1; llive[0] = true; llive[1] = true;
    rep_ep[0] = 1; rep_ep[1] = 1;
    commit_req[0] = true;
    run Replica(0); run Replica(1);
    run Participant(0); run Participant(1);
    run Client(); run Retention()
  }
}
