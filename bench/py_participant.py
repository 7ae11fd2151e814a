#!/usr/bin/python3
"""A no-op participant written in Python from idl/ (stock Thrift 0.17 Python
server), for coord_bench --participant_bin: prepare votes PREPARED, commit and
abort succeed, saga actions and compensations succeed. It shows that the
coordinator's batched calls (several requests written at once on one
connection) are plain Thrift pipelining that any blocking Thrift server
answers. Bindings are generated with `thrift --gen py` into a temporary
directory at start. Flags: --port=N (required), --idl=DIR (default: the
repository's idl/)."""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    port = None
    idl = os.path.join(HERE, "..", "idl")
    for arg in sys.argv[1:]:
        if arg.startswith("--port="):
            port = int(arg.split("=", 1)[1])
        elif arg.startswith("--idl="):
            idl = arg.split("=", 1)[1]
    if port is None:
        sys.exit("usage: py_participant.py --port=N [--idl=DIR]")
    gen = tempfile.mkdtemp(prefix="py-participant-")
    subprocess.run(["thrift", "-r", "--gen", "py", "-out", gen,
                    os.path.join(idl, "participant.thrift")], check=True)
    sys.path.insert(0, gen)
    from thrift.protocol import TBinaryProtocol
    from thrift.server import TServer
    from thrift.transport import TSocket, TTransport
    from txc.wire.common.ttypes import Outcome, StepOutcome, Vote
    from txc.wire.participant import Participant
    from txc.wire.participant.ttypes import StepResult

    class Handler:
        def prepare(self, req):
            return Vote.VOTE_PREPARED

        def commitOnePhase(self, req):
            return Outcome.OUTCOME_COMMIT

        def commit(self, req):
            pass

        def abort(self, req):
            pass

        def action(self, req):
            return StepResult(StepOutcome.SUCCESS, "")

        def compensate(self, req):
            return StepResult(StepOutcome.SUCCESS, "")

    server = TServer.TThreadedServer(Participant.Processor(Handler()),
                                     TSocket.TServerSocket(host="127.0.0.1", port=port),
                                     TTransport.TFramedTransportFactory(),
                                     TBinaryProtocol.TBinaryProtocolFactory(),
                                     daemon=True)
    server.serve()


if __name__ == "__main__":
    main()
