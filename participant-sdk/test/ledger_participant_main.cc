// ledger_participant: a participant process for recovery_process_test.
//
//   ledger_participant <conninfo> <port> <coordinator host:port>
//                      [--tls_cert=F --tls_key=F --tls_ca=F]
//
// With --tls_*: mutual TLS on its port and to the coordinator (recovery).
// Serves the Ledger participant (ledger_participant.h) on 127.0.0.1:<port>
// until SIGTERM/SIGINT; recovery runs on start. Crash points come from
// TXC_CRASH_POINTS (e.g. participant.after_prepare).
#include <glog/logging.h>
#include <signal.h>

#include <string>
#include <vector>

#include "common/tls.h"
#include "participant-sdk/test/ledger_participant.h"
#include "txc/participant/participant_server.h"

int main(int argc, char** argv) {
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  std::vector<std::string> args;  // the positional ones
  txc::TlsOptions tls;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const std::string& name, std::string* out) {
      if (a.rfind(name + "=", 0) != 0) return false;
      *out = a.substr(name.size() + 1);
      return true;
    };
    if (!value("--tls_cert", &tls.cert_file) && !value("--tls_key", &tls.key_file) &&
        !value("--tls_ca", &tls.ca_file)) {
      args.push_back(a);
    }
  }
  if (args.size() != 4) {
    LOG(ERROR) << "usage: ledger_participant <conninfo> <port> <coordinator> "
                  "[--tls_cert=F --tls_key=F --tls_ca=F]";
    return 2;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  txc::participant::PgXaOptions pg;
  pg.conninfo = args[1];
  pg.prefix = "ledger";
  auto resource = txc::participant::PgXaResource::Create(pg);
  if (!resource.ok()) {
    LOG(ERROR) << resource.status();
    return 1;
  }
  txc::participant::ParticipantServerOptions o;
  o.host = "127.0.0.1";
  o.port = std::atoi(args[2].c_str());
  o.coordinators = {args[3]};
  o.tls = tls;
  o.coordinator_client.tls = tls;
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
