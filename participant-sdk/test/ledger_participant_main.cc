// ledger_participant: a participant process for recovery_process_test.
//
//   ledger_participant <conninfo> <port> <coordinator host:port>
//
// Serves the Ledger participant (ledger_participant.h) on 127.0.0.1:<port>
// until SIGTERM/SIGINT; recovery runs on start. Crash points come from
// TXC_CRASH_POINTS (e.g. participant.after_prepare).
#include <glog/logging.h>
#include <signal.h>

#include "participant-sdk/test/ledger_participant.h"
#include "txc/participant/participant_server.h"

int main(int argc, char** argv) {
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (argc != 4) {
    LOG(ERROR) << "usage: ledger_participant <conninfo> <port> <coordinator>";
    return 2;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  txc::participant::PgXaOptions pg;
  pg.conninfo = argv[1];
  pg.prefix = "ledger";
  auto resource = txc::participant::PgXaResource::Create(pg);
  if (!resource.ok()) {
    LOG(ERROR) << resource.status();
    return 1;
  }
  txc::participant::ParticipantServerOptions o;
  o.host = "127.0.0.1";
  o.port = std::atoi(argv[2]);
  o.coordinators = {argv[3]};
  o.recovery_backoff = txc::BackoffPolicy{20, 500, 2.0};
  txc::participant::ParticipantServer server(
      std::make_shared<txc::participant::Ledger>(std::move(resource).value()), o);
  txc::Status s = server.Start();
  if (!s.ok()) {
    LOG(ERROR) << s;
    return 1;
  }
  LOG(INFO) << "ledger participant on " << server.endpoint();
  int sig = 0;
  sigwait(&signals, &sig);
  server.Stop();
  return 0;
}
