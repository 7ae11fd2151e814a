#!/usr/bin/python3
"""A hostile Python client of the coordinator, written only from idl/*.thrift.

It generates the Python bindings with `thrift --gen py` into a temporary
directory, starts a coordinator (SQLite store, free port, temp data dir) unless
--endpoint is given, and then:

  * runs the happy path (beginTxn, status, commit, rollback, queryOutcome, health);
  * sends invalid arguments (bad enums, empty/long/NUL/non-UTF-8 ids and names,
    bad timeouts, oversized payloads, 10k branches, broken saga graphs) and
    expects a TYPED exception (InvalidArgument/NotFound/IllegalTransition/
    Unavailable), no change of the stored rows (when it can read the SQLite
    file) and a working health() afterwards;
  * asks for illegal transitions (commit after rollback, enlist after commit,
    2PC calls on a saga, ...);
  * abuses the socket (garbage, huge frame lengths, truncated frames, unknown
    method, invalid field type bytes, hundreds of idle connections);
  * runs concurrent idempotent begins with one key and expects one gtid.

Exit status: 0 when every expectation held, 1 otherwise (each failure is
printed as "FAIL: ..."), 2 on a setup error. Run with /usr/bin/python3 (the
Debian python3-thrift package installs the runtime there).

  hostile_client.py --coordinator build/coordinator/server/coordinator
  hostile_client.py --endpoint localhost:7400          # an already running one
"""

import argparse
import logging
import os
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time

FAILURES = []
CHECKS = [0]


def fail(message):
    FAILURES.append(message)
    print("FAIL: " + message, flush=True)


def check(condition, message):
    CHECKS[0] += 1
    if not condition:
        fail(message)
    return condition


def generate_bindings(idl_dir, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    thrift = shutil.which("thrift")
    if thrift is None:
        raise SystemExit("setup: the thrift compiler is not installed")
    for name in ("common", "coordinator", "participant"):
        subprocess.run([thrift, "--gen", "py", "-I", idl_dir, "-out", out_dir,
                        os.path.join(idl_dir, name + ".thrift")], check=True)
    sys.path.insert(0, out_dir)
    # The Python runtime refuses bytes for `string` fields; a hostile client
    # sends them anyway (non-UTF-8 ids and names).
    from thrift.protocol.TProtocol import TProtocolBase

    def write_string(self, value):
        self.writeBinary(value if isinstance(value, bytes) else value.encode("utf-8"))

    TProtocolBase.writeString = write_string


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Probe:
    def __init__(self, host, port, db_path, process):
        from thrift.protocol import TBinaryProtocol
        from thrift.transport import TSocket, TTransport
        from txc.wire.common import ttypes as common
        from txc.wire.coordinator import Coordinator
        from txc.wire.coordinator import ttypes as coord
        self.TBinaryProtocol, self.TSocket, self.TTransport = TBinaryProtocol, TSocket, TTransport
        self.common, self.coord, self.Coordinator = common, coord, Coordinator
        self.host, self.port, self.db_path, self.process = host, port, db_path, process
        self.background = set()  # gtids still driven by the coordinator (rows may change)
        self.typed = (common.InvalidArgument, common.NotFound, common.IllegalTransition,
                      common.Unavailable, common.NotOwner)

    # ---- plumbing ------------------------------------------------------------
    def client(self, timeout_ms=10000):
        sock = self.TSocket.TSocket(self.host, self.port)
        sock.setTimeout(timeout_ms)
        transport = self.TTransport.TFramedTransport(sock)
        transport.open()
        return self.Coordinator.Client(self.TBinaryProtocol.TBinaryProtocol(transport)), transport

    def call(self, method, *args, timeout_ms=10000):
        client, transport = self.client(timeout_ms)
        try:
            return getattr(client, method)(*args)
        finally:
            transport.close()

    def alive(self, after):
        if self.process is not None and self.process.poll() is not None:
            fail("%s: the coordinator exited with %s" % (after, self.process.returncode))
            return False
        try:
            h = self.call("health", timeout_ms=5000)
            return check(h.serving, "%s: health() says not serving" % after)
        except Exception as e:  # noqa: BLE001 - any failure here is the finding
            fail("%s: health() failed afterwards: %r" % (after, e))
            return False

    def settle(self, gtid, timeout_s=10):
        """Waits until `gtid` is in a final state (its rows stop changing)."""
        final = {self.common.TxnState.COMMITTED, self.common.TxnState.ABORTED,
                 self.common.TxnState.SUCCEEDED, self.common.TxnState.COMPENSATED}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.call("status", gtid).state in final:
                return
            time.sleep(0.05)
        fail("%s did not reach a final state within %d s" % (gtid, timeout_s))

    def snapshot(self, exclude=()):
        """Every stored txn and branch row (SQLite only), minus `exclude` gtids and
        the gtids the coordinator still drives in the background."""
        if self.db_path is None:
            return None
        exclude = set(exclude) | self.background
        db = sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=10)
        try:
            rows = []
            for table in ("txns", "branches"):
                for row in db.execute("SELECT * FROM %s ORDER BY 1, 2" % table):
                    if row[0] not in exclude:
                        rows.append((table,) + tuple(row))
            return rows
        finally:
            db.close()

    def expect_error(self, name, method, *args, want=None, exclude=()):
        """`method(*args)` must raise a typed exception (of class `want` when given),
        change no stored row and leave the server serving."""
        want = want or self.typed
        before = self.snapshot(exclude)
        try:
            result = self.call(method, *args)
            fail("%s: no error, answered %r" % (name, result))
        except want:
            CHECKS[0] += 1
        except self.typed as e:
            fail("%s: wrong exception type %s: %s" % (name, type(e).__name__, e))
        except Exception as e:  # noqa: BLE001
            fail("%s: untyped failure %s: %s" % (name, type(e).__name__, e))
        after = self.snapshot(exclude)
        check(before == after, "%s: stored rows changed by a refused request" % name)
        self.alive(name)

    def branch(self, bid="b1", endpoint="127.0.0.1:1", resource="r", payload=b""):
        return self.common.BranchSpec(branch_id=bid, endpoint=endpoint, resource=resource,
                                      payload=payload)

    def step(self, sid, depends_on=None, concurrent=None, **kw):
        return self.common.SagaStep(step_id=sid, endpoint=kw.get("endpoint", "127.0.0.1:1"),
                                    action=kw.get("action", "act"),
                                    compensation=kw.get("compensation", "undo"),
                                    payload=kw.get("payload", b""),
                                    retry_policy=kw.get("retry_policy"),
                                    depends_on=depends_on or [], concurrent=concurrent)

    # ---- scenarios -------------------------------------------------------------
    def happy_path(self):
        c, CW = self.coord, self.common.CommitWait
        r = self.call("beginTxn", c.BeginRequest(timeout_ms=60000))
        check(r.gtid and r.context.gtid == r.gtid, "beginTxn: gtid/context %r" % r)
        st = self.call("status", r.gtid)
        check(st.state == self.common.TxnState.ACTIVE and st.kind == self.common.TxnKind.TWO_PHASE,
              "status after begin: %r" % st)
        cr = self.call("commit", c.CommitRequest(gtid=r.gtid, wait=CW.WAIT_COMPLETION,
                                                 wait_timeout_ms=5000))
        check(cr.outcome == self.common.Outcome.OUTCOME_COMMIT, "commit without branches: %r" % cr)
        self.settle(r.gtid)
        check(self.call("commit", c.CommitRequest(gtid=r.gtid)).outcome ==
              self.common.Outcome.OUTCOME_COMMIT, "commit again is idempotent")
        r2 = self.call("beginTxn", c.BeginRequest(timeout_ms=60000))
        rb = self.call("rollback", r2.gtid)
        check(rb.outcome == self.common.Outcome.OUTCOME_ABORT, "rollback: %r" % rb)
        self.settle(r2.gtid)
        check(self.call("rollback", r2.gtid).outcome == self.common.Outcome.OUTCOME_ABORT,
              "rollback again is idempotent")
        check(self.call("queryOutcome", "no-such-gtid-123", "") ==
              self.common.Outcome.OUTCOME_ABORT, "queryOutcome(unknown) is ABORT")
        check(self.call("queryOutcome", r.gtid, "") == self.common.Outcome.OUTCOME_COMMIT,
              "queryOutcome(committed) is COMMIT")
        self.expect_error("status(unknown)", "status", "no-such-gtid-123",
                          want=self.common.NotFound)
        self.alive("happy path")
        return r.gtid, r2.gtid

    def bad_arguments(self):
        c, cm, IA = self.coord, self.common, self.common.InvalidArgument
        live = self.call("beginTxn", c.BeginRequest(timeout_ms=600000)).gtid
        mib = 1024 * 1024
        bad_bytes = b"\xff\xfe\x80bad"
        # commit/rollback/status/queryOutcome ids
        self.expect_error("commit wait=99", "commit", c.CommitRequest(gtid=live, wait=99), want=IA)
        self.expect_error("commit wait=-1", "commit", c.CommitRequest(gtid=live, wait=-1), want=IA)
        self.expect_error("commit wait_timeout=-1", "commit",
                          c.CommitRequest(gtid=live, wait_timeout_ms=-1), want=IA)
        self.expect_error("commit wait_timeout=2^63-1", "commit",
                          c.CommitRequest(gtid=live, wait_timeout_ms=2**63 - 1), want=IA)
        for label, gtid in (("empty", ""), ("NUL", "ab\0cd"), ("non-UTF-8", bad_bytes),
                            ("long", "g" * 100000), ("space", "a b")):
            self.expect_error("commit gtid " + label, "commit", c.CommitRequest(gtid=gtid), want=IA)
            self.expect_error("rollback gtid " + label, "rollback", gtid, want=IA)
            self.expect_error("status gtid " + label, "status", gtid, want=IA)
            self.expect_error("queryOutcome gtid " + label, "queryOutcome", gtid, "", want=IA)
            self.expect_error("enlist gtid " + label, "enlist",
                              c.EnlistRequest(gtid=gtid, branch=self.branch()), want=IA)
        self.expect_error("queryOutcome branch NUL", "queryOutcome", live, "b\0", want=IA)
        # begin
        for t in (0, -1, -2**63, 2**63 - 1, 7 * 24 * 3600 * 1000 + 1):
            self.expect_error("begin timeout %d" % t, "beginTxn", c.BeginRequest(timeout_ms=t),
                              want=IA)
        for label, key in (("NUL", "k\0"), ("non-UTF-8", bad_bytes), ("long", "k" * 200)):
            self.expect_error("begin key " + label, "beginTxn",
                              c.BeginRequest(idempotency_key=key), want=IA)
        self.expect_error("begin payload 1MiB+1", "beginTxn",
                          c.BeginRequest(branches=[self.branch(payload=b"x" * (mib + 1))]), want=IA)
        self.expect_error("begin 10k branches", "beginTxn",
                          c.BeginRequest(branches=[self.branch("b%d" % i) for i in range(10000)]),
                          want=IA)
        self.expect_error("begin duplicate branch", "beginTxn",
                          c.BeginRequest(branches=[self.branch("x"), self.branch("x")]), want=IA)
        self.expect_error("begin empty branch id", "beginTxn",
                          c.BeginRequest(branches=[self.branch("")]), want=IA)
        self.expect_error("begin bad endpoint", "beginTxn",
                          c.BeginRequest(branches=[self.branch(endpoint="nowhere")]), want=IA)
        self.expect_error("begin endpoint NUL", "beginTxn",
                          c.BeginRequest(branches=[self.branch(endpoint="h\0:1")]), want=IA)
        self.expect_error("begin resource non-UTF-8", "beginTxn",
                          c.BeginRequest(branches=[self.branch(resource=bad_bytes)]), want=IA)
        self.expect_error("begin resource 1 MiB", "beginTxn",
                          c.BeginRequest(branches=[self.branch(resource="r" * mib)]), want=IA)
        # a payload of exactly 1 MiB is legal and binary (any bytes)
        ok = self.call("beginTxn", c.BeginRequest(branches=[
            self.branch(payload=b"\0\xff" * (mib // 2))]))
        check(len(self.call("status", ok.gtid).branches) == 1, "1 MiB payload begin")
        self.background.add(ok.gtid)  # its abort retries an unreachable participant
        self.call("rollback", ok.gtid)
        # enlist
        self.expect_error("enlist payload 1MiB+1", "enlist",
                          c.EnlistRequest(gtid=live, branch=self.branch(payload=b"x" * (mib + 1))),
                          want=IA)
        self.expect_error("enlist unset branch", "enlist", c.EnlistRequest(gtid=live), want=IA)
        self.expect_error("enlist unknown gtid", "enlist",
                          c.EnlistRequest(gtid="unknown-gtid-1", branch=self.branch()),
                          want=cm.NotFound)
        # sagas
        S = c.SubmitSagaRequest
        st = self.step
        cases = [
            ("saga no steps", S(gtid="saga-empty", steps=[])),
            ("saga unset steps", S(gtid="saga-unset")),
            ("saga duplicate step", S(gtid="saga-dup", steps=[st("a"), st("a")])),
            ("saga cycle", S(gtid="saga-cycle", steps=[st("a", ["b"]), st("b", ["a"])])),
            ("saga self dependency", S(gtid="saga-self", steps=[st("a", ["a"])])),
            ("saga unknown dependency", S(gtid="saga-unknown", steps=[st("a", ["zz"])])),
            ("saga non-UTF-8 dependency", S(gtid="saga-dep-bytes", steps=[st("a", [bad_bytes])])),
            ("saga huge dependency id", S(gtid="saga-dep-long", steps=[st("a", ["d" * mib])])),
            ("saga step id NUL", S(gtid="saga-nul", steps=[st("a\0")])),
            ("saga action empty", S(gtid="saga-noact", steps=[st("a", action="")])),
            ("saga action non-UTF-8", S(gtid="saga-actb", steps=[st("a", action=bad_bytes)])),
            ("saga payload 1MiB+1", S(gtid="saga-big", steps=[st("a", payload=b"x" * (mib + 1))])),
            ("saga timeout 0", S(gtid="saga-t0", steps=[st("a")], timeout_ms=0)),
            ("saga timeout -1", S(gtid="saga-tneg", steps=[st("a")], timeout_ms=-1)),
            ("saga wait timeout -1", S(gtid="saga-wneg", steps=[st("a")], wait_timeout_ms=-1)),
            ("saga retry max_attempts 0", S(gtid="saga-r0", steps=[
                st("a", retry_policy=cm.RetryPolicy(max_attempts=0))])),
            ("saga retry backoff negative", S(gtid="saga-rneg", steps=[
                st("a", retry_policy=cm.RetryPolicy(initial_backoff_ms=-5))])),
            ("saga gtid NUL", S(gtid="s\0", steps=[st("a")])),
            ("saga 10k steps", S(gtid="saga-10k", steps=[st("s%d" % i) for i in range(10000)])),
        ]
        for name, request in cases:
            self.expect_error(name, "submitSaga", request, want=IA)
        status = self.call("status", live)
        check(status.state == cm.TxnState.ACTIVE and not status.branches,
              "the live txn is untouched by the refused requests: %r" % status)
        self.call("rollback", live)
        self.settle(live)

    def illegal_transitions(self):
        c, cm, IT = self.coord, self.common, self.common.IllegalTransition
        rolled = self.call("beginTxn", c.BeginRequest()).gtid
        self.call("rollback", rolled)
        self.settle(rolled)
        self.expect_error("commit after rollback", "commit", c.CommitRequest(gtid=rolled), want=IT)
        self.expect_error("enlist after rollback", "enlist",
                          c.EnlistRequest(gtid=rolled, branch=self.branch()), want=IT)
        committed = self.call("beginTxn", c.BeginRequest()).gtid
        self.call("commit", c.CommitRequest(gtid=committed))
        self.settle(committed)
        self.expect_error("rollback after commit", "rollback", committed, want=IT)
        self.expect_error("enlist after commit", "enlist",
                          c.EnlistRequest(gtid=committed, branch=self.branch()), want=IT)
        # A saga whose only step points nowhere: it runs (and retries) in the
        # background, so its own rows are left out of the unchanged-rows check.
        saga = self.call("submitSaga", c.SubmitSagaRequest(
            gtid="probe-saga-1", steps=[self.step("a", retry_policy=cm.RetryPolicy(
                max_attempts=1, initial_backoff_ms=1000, max_backoff_ms=1000))]))
        check(saga.gtid == "probe-saga-1", "submitSaga gtid %r" % saga)
        again = self.call("submitSaga", c.SubmitSagaRequest(
            gtid="probe-saga-1", steps=[self.step("a", retry_policy=cm.RetryPolicy(
                max_attempts=1, initial_backoff_ms=1000, max_backoff_ms=1000))]))
        check(again.gtid == "probe-saga-1", "submitSaga again is idempotent %r" % again)
        self.background.add(saga.gtid)
        skip = ()
        self.expect_error("submitSaga same gtid, other steps", "submitSaga",
                          c.SubmitSagaRequest(gtid=saga.gtid, steps=[self.step("other")]),
                          want=IT, exclude=skip)
        self.expect_error("submitSaga with a 2PC gtid", "submitSaga",
                          c.SubmitSagaRequest(gtid=committed, steps=[self.step("a")]), want=IT)
        self.expect_error("commit of a saga", "commit", c.CommitRequest(gtid=saga.gtid),
                          want=IT, exclude=skip)
        self.expect_error("rollback of a saga", "rollback", saga.gtid, want=IT, exclude=skip)
        self.expect_error("enlist to a saga", "enlist",
                          c.EnlistRequest(gtid=saga.gtid, branch=self.branch("new")),
                          want=IT, exclude=skip)
        steps = [b.branch_id for b in self.call("status", saga.gtid).branches]
        check(steps == ["a"], "saga steps after refused enlist: %r" % steps)

    def idempotent_begin(self):
        c = self.coord
        results, errors = [], []

        def worker():
            try:
                results.append(self.call("beginTxn",
                                         c.BeginRequest(idempotency_key="probe-key-1")).gtid)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        check(not errors, "concurrent idempotent begin errors: %r" % errors[:3])
        check(len(results) == 16 and len(set(results)) == 1,
              "concurrent idempotent begin: %d answers, gtids %r" % (len(results), set(results)))
        if results:
            self.call("rollback", results[0])
            self.settle(results[0])

    # ---- raw socket abuse ------------------------------------------------------------
    def raw(self, name, data, close_after=True, read_reply=False):
        s = socket.create_connection((self.host, self.port), timeout=5)
        reply = b""
        try:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may close on the first bad bytes
            if read_reply:
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass  # the server closed first: fine
                while True:
                    try:
                        chunk = s.recv(65536)
                    except socket.timeout:
                        fail("%s: no reply and no close within 5 s" % name)
                        break
                    except ConnectionResetError:
                        break
                    if not chunk:
                        break
                    reply += chunk
        finally:
            if close_after:
                s.close()
        self.alive(name)
        return reply

    @staticmethod
    def message(method, body, seqid=1):
        name = method.encode()
        head = struct.pack(">iI", -2147418112 | 1, len(name)) + name + struct.pack(">i", seqid)
        msg = head + body
        return struct.pack(">i", len(msg)) + msg

    def socket_abuse(self):
        before = self.snapshot()
        self.raw("garbage (HTTP request)", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", read_reply=True)
        self.raw("garbage (random)", os.urandom(4096), read_reply=True)
        self.raw("frame length 2^31-1", struct.pack(">i", 2**31 - 1) + b"\0" * 64, read_reply=True)
        self.raw("negative frame length", struct.pack(">i", -5) + b"\0" * 64, read_reply=True)
        self.raw("frame length 0", struct.pack(">i", 0), read_reply=True)
        self.raw("truncated frame then close", struct.pack(">i", 1000) + b"\x80\x01\0\x01",
                 read_reply=False)
        # message type byte 99 and a wrong protocol version in an otherwise valid call
        bad_type = struct.pack(">iI", -2147418112 | 99, 6) + b"health" + struct.pack(">i", 1) + b"\0"
        self.raw("message type 99", struct.pack(">i", len(bad_type)) + bad_type, read_reply=True)
        bad_version = struct.pack(">iI", -2147352576 | 1, 6) + b"health" + struct.pack(">i", 1)
        self.raw("protocol version 2", struct.pack(">i", len(bad_version) + 1) + bad_version + b"\0",
                 read_reply=True)
        reply = self.raw("unknown method", self.message("noSuchMethod", b"\0"), read_reply=True)
        check(b"noSuchMethod" in reply, "unknown method: expected a TApplicationException, "
              "got %r" % reply[:80])
        # commit(req) where the CommitRequest struct carries a field with type byte 99,
        # then the same with the bad type in the args struct itself; then 0x7f and 0x11.
        for bad in (99, 0x7F, 0x11, 0xFF):
            body = (b"\x0c\x00\x01" + bytes([bad]) + b"\x00\x07" + b"\0" * 16 + b"\0") + b"\0"
            self.raw("field type %d inside a struct" % bad, self.message("commit", body),
                     read_reply=True)
            body = bytes([bad]) + b"\x00\x01" + b"\0" * 16 + b"\0"
            self.raw("field type %d in args" % bad, self.message("status", body), read_reply=True)
            # a list whose element type byte is invalid
            body = b"\x0c\x00\x01" + b"\x0f\x00\x03" + bytes([bad]) + struct.pack(">i", 3) + \
                b"\0" * 8 + b"\0\0"
            self.raw("list element type %d" % bad, self.message("beginTxn", body), read_reply=True)
            body = b"\x0c\x00\x01" + b"\x0d\x00\x07" + bytes([bad, bad]) + struct.pack(">i", 2) + \
                b"\0" * 8 + b"\0\0"
            self.raw("map key/value type %d" % bad, self.message("beginTxn", body), read_reply=True)
        # a well-typed commit whose enum field holds 99 (i32) and a struct field of the wrong type
        body = (b"\x0c\x00\x01" + b"\x0b\x00\x01" + struct.pack(">i", 3) + b"abc" +
                b"\x08\x00\x02" + struct.pack(">i", 99) + b"\0" + b"\0")
        reply = self.raw("raw commit wait=99", self.message("commit", body), read_reply=True)
        check(b"wait" in reply, "raw commit wait=99: expected InvalidArgument about wait, got %r"
              % reply[:120])
        body = b"\x0b\x00\x01" + struct.pack(">i", 3) + b"abc" + b"\0"  # req as a string
        self.raw("commit with req of the wrong type", self.message("commit", body), read_reply=True)
        # deep nesting: struct in struct in struct ... (recursion limit)
        body = b"\x0c\x00\x01" * 5000 + b"\0" * 5001
        self.raw("deeply nested structs", self.message("commit", body), read_reply=True)
        # a huge declared string/list length inside a small frame
        body = b"\x0c\x00\x01" + b"\x0b\x00\x01" + struct.pack(">i", 2**31 - 1) + b"\0"
        self.raw("string length 2^31-1", self.message("commit", body), read_reply=True)
        body = b"\x0c\x00\x01" + b"\x0f\x00\x03" + b"\x0c" + struct.pack(">i", 2**31 - 1) + b"\0"
        self.raw("list size 2^31-1", self.message("beginTxn", body), read_reply=True)
        check(before == self.snapshot(), "socket abuse changed stored rows")

        # Many idle connections, then a normal call.
        idle = []
        try:
            for _ in range(500):
                idle.append(socket.create_connection((self.host, self.port), timeout=5))
            for s in idle[:100]:
                s.sendall(struct.pack(">i", 64) + b"\x80")  # half a frame, never finished
            self.alive("500 idle connections")
            r = self.call("beginTxn", self.coord.BeginRequest())
            self.call("rollback", r.gtid)
            self.settle(r.gtid)
        except Exception as e:  # noqa: BLE001
            fail("500 idle connections: %r" % e)
        finally:
            for s in idle:
                s.close()
        self.alive("after closing 500 idle connections")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coordinator", help="coordinator binary to start (SQLite, temp dir)")
    parser.add_argument("--endpoint", help="host:port of a running coordinator instead")
    parser.add_argument("--db", help="its SQLite file, for the unchanged-rows checks")
    parser.add_argument("--idl", default=os.path.normpath(os.path.join(here, "../../../idl")))
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, db)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # TSocket logs every refused connect
    if bool(args.coordinator) == bool(args.endpoint):
        parser.error("give exactly one of --coordinator and --endpoint")

    tmp = tempfile.mkdtemp(prefix="txc-probe-")
    process = None
    log = None
    try:
        generate_bindings(args.idl, os.path.join(tmp, "gen"))
        if args.coordinator:
            host, port = "127.0.0.1", free_port()
            data_dir = os.path.join(tmp, "data")
            log = open(os.path.join(tmp, "coordinator.log"), "wb")
            process = subprocess.Popen([args.coordinator, "--port", str(port), "--data_dir",
                                        data_dir], stdout=log, stderr=subprocess.STDOUT)
            db_path = os.path.join(data_dir, "coordinator.db")
        else:
            host, port = args.endpoint.rsplit(":", 1)
            port = int(port)
            db_path = args.db
        probe = Probe(host, port, db_path, process)
        deadline = time.monotonic() + 30
        while True:
            try:
                probe.call("health", timeout_ms=1000)
                break
            except Exception as e:  # noqa: BLE001
                if process is not None and process.poll() is not None:
                    raise SystemExit("setup: coordinator exited with %d" % process.returncode)
                if time.monotonic() > deadline:
                    raise SystemExit("setup: coordinator not answering: %r" % e)
                time.sleep(0.2)

        for scenario in (probe.happy_path, probe.bad_arguments, probe.illegal_transitions,
                         probe.idempotent_begin, probe.socket_abuse):
            print("== " + scenario.__name__, flush=True)
            try:
                scenario()
            except Exception as e:  # noqa: BLE001
                fail("%s: unexpected %s: %s" % (scenario.__name__, type(e).__name__, e))
                probe.alive(scenario.__name__)
    finally:
        if process is not None:
            process.terminate()
            try:
                code = process.wait(15)
                if code not in (0, -15):
                    fail("coordinator exited with %d on SIGTERM" % code)
            except subprocess.TimeoutExpired:
                fail("coordinator did not stop within 15 s of SIGTERM")
                process.kill()
                process.wait()
        if log is not None:
            log.close()
        if FAILURES and process is not None:
            with open(os.path.join(tmp, "coordinator.log"), "rb") as f:
                tail = f.read()[-4000:].decode("utf-8", "replace")
            print("---- coordinator log (tail) ----\n" + tail)
        if args.keep or FAILURES:
            print("temp dir kept: " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d checks, %d failures" % (CHECKS[0], len(FAILURES)))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
