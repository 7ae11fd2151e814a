-- Coordinator schema, version 1. One text for PostgreSQL and SQLite: only
-- types both accept (BIGINT, INTEGER, TEXT, BYTEA). In SQLite, BYTEA has
-- NUMERIC affinity, which leaves blob values untouched; the stores always bind
-- payloads as blobs, so arbitrary bytes (NUL included) round-trip on both.
-- Forward-only: never edit this file once applied; add 0002_... instead.

-- One global transaction (2PC or Saga). kind/state: TxnKind/TxnState numbers
-- (coordinator/core/states.h). Every state write is conditional on
-- (owner, epoch): fencing of replicas that lost their lease.
CREATE TABLE txns (
  gtid            TEXT    NOT NULL PRIMARY KEY,
  kind            INTEGER NOT NULL,
  state           INTEGER NOT NULL,
  owner           TEXT    NOT NULL,
  epoch           BIGINT  NOT NULL,
  created_ms      BIGINT  NOT NULL,
  updated_ms      BIGINT  NOT NULL,
  deadline_ms     BIGINT  NOT NULL,
  next_attempt_ms BIGINT  NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  idempotency_key TEXT    UNIQUE,          -- NULL when the client gave none
  payload         BYTEA   NOT NULL,
  flags           INTEGER NOT NULL DEFAULT 0
);

-- The sweeper's queue: due transactions per state.
CREATE INDEX txns_state_next_attempt ON txns (state, next_attempt_ms);

-- One 2PC branch or Saga step. state: BranchState numbers. depends_on: the
-- step ids, each as "<length>:<bytes>", concatenated.
CREATE TABLE branches (
  gtid               TEXT    NOT NULL,
  branch_id          TEXT    NOT NULL,
  ordinal            INTEGER NOT NULL,
  endpoint           TEXT    NOT NULL,
  resource           TEXT    NOT NULL,
  action             TEXT    NOT NULL,
  compensation       TEXT    NOT NULL,
  depends_on         BYTEA   NOT NULL,
  payload            BYTEA   NOT NULL,
  state              INTEGER NOT NULL,
  attempts           INTEGER NOT NULL DEFAULT 0,
  max_attempts       INTEGER NOT NULL DEFAULT 0,
  initial_backoff_ms INTEGER NOT NULL DEFAULT 0,
  max_backoff_ms     INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms    BIGINT  NOT NULL DEFAULT 0,
  last_error         BYTEA   NOT NULL,
  PRIMARY KEY (gtid, branch_id)
);

-- A replica's lease; epoch is bumped on every (re)acquisition.
CREATE TABLE leases (
  node_id    TEXT   NOT NULL PRIMARY KEY,
  endpoint   TEXT   NOT NULL,
  epoch      BIGINT NOT NULL,
  expires_ms BIGINT NOT NULL
);
