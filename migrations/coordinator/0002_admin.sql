-- Coordinator schema, version 2: the operations plane (admin API, issue 8).
-- One text for PostgreSQL and SQLite. Forward-only: never edit once applied.

-- Per branch / step times, maintained by the stores when the state moves
-- (coordinator/core/records.h: BranchRecord::started_ms, finished_ms). Rows
-- written before this version keep 0 ("not known").
ALTER TABLE branches ADD COLUMN started_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE branches ADD COLUMN finished_ms BIGINT NOT NULL DEFAULT 0;

-- Listing by age ("unfinished older than 10 min", PARKED oldest first) reads
-- only the rows of the states asked for: state leads, created_ms orders.
-- Finished history is never scanned when the states named are unfinished.
CREATE INDEX txns_state_created ON txns (state, created_ms, gtid);

-- "Which transactions have a branch at endpoint E" (list --endpoint, rebind).
CREATE INDEX branches_endpoint ON branches (endpoint, gtid);

-- One row per operator action (retry, cancel, resolve, rebind). Kept with the
-- transaction's lifetime is not required: audit rows outlive retention of the
-- transaction they name. reason may hold any bytes.
CREATE TABLE audit (
  id             TEXT   NOT NULL PRIMARY KEY,
  gtid           TEXT   NOT NULL,
  action         TEXT   NOT NULL,
  who            TEXT   NOT NULL,
  at_ms          BIGINT NOT NULL,
  reason         BYTEA  NOT NULL,
  previous_state TEXT   NOT NULL,
  new_state      TEXT   NOT NULL,
  target         TEXT   NOT NULL
);
CREATE INDEX audit_gtid ON audit (gtid, at_ms, id);
