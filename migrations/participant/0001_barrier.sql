-- Participant barrier (participant-sdk/include/txc/participant/barrier.h):
-- one row per saga action / compensation (and per one-phase commit) that a
-- participant has seen, written in the same local transaction as the business
-- change. The same text runs on PostgreSQL and SQLite.
--   op       'action' | 'compensate' | 'commit_one_phase'
--   reason   the op whose call inserted the row ('compensate' on an 'action'
--            row marks a null compensation: a later action is refused)
--   outcome  0 none (marker), 1 success, 2 failure
CREATE TABLE txc_barrier (
  gtid TEXT NOT NULL,
  branch_id TEXT NOT NULL,
  op TEXT NOT NULL,
  reason TEXT NOT NULL,
  outcome INTEGER NOT NULL,
  message TEXT NOT NULL DEFAULT '',
  created_unix_ms BIGINT NOT NULL,
  PRIMARY KEY (gtid, branch_id, op)
);

CREATE INDEX txc_barrier_created ON txc_barrier (created_unix_ms);
