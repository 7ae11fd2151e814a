// txcctl: a small operator CLI for the coordinator.
//
//   txcctl [--coordinator host:port,...] health
//   txcctl [--coordinator ...] begin [--timeout_ms N] [--idempotency_key K]   # prints the gtid
//   txcctl [--coordinator ...] status GTID
//   txcctl [--coordinator ...] commit GTID [--wait decision|completion] [--wait_timeout_ms N]
//   txcctl [--coordinator ...] rollback GTID
//
// The replicas are tried in order; the next one is used when one cannot be
// reached or answers Unavailable; a NotOwner naming the owner's endpoint is
// retried there first (each endpoint at most once). Exit codes: 0 success, 1 the
// coordinator refused (NotFound, InvalidArgument, ...), 2 usage, 3 no
// coordinator reachable.
#include <algorithm>
#include <boost/program_options.hpp>
#include <ctime>
#include <iostream>
#include <string>
#include <vector>

#include "common/strings.h"
#include "common/thrift_util.h"
#include "gen-cpp/Coordinator.h"

namespace po = boost::program_options;
using txc::wire::CoordinatorClient;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitRefused = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

const char kUsage[] =
    "Usage: txcctl [--coordinator host:port,...] COMMAND [ARGS]\n"
    "Commands:\n"
    "  health                                   the replica's health and the live replicas\n"
    "  begin [--timeout_ms N] [--idempotency_key K]\n"
    "                                           start a 2PC transaction, print its gtid\n"
    "  status GTID                              the transaction and its branches/steps\n"
    "  commit GTID [--wait decision|completion] [--wait_timeout_ms N]\n"
    "  rollback GTID\n";

std::string Name(const std::map<int, const char*>& names, int value) {
  auto it = names.find(value);
  return it == names.end() ? "?" + std::to_string(value) : it->second;
}

std::string StripPrefix(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0 ? s.substr(prefix.size()) : s;
}

std::string Time(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  const time_t secs = static_cast<time_t>(unix_ms / 1000);
  tm utc{};
  gmtime_r(&secs, &utc);
  char buf[64];
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &utc);
  char out[80];
  snprintf(out, sizeof(out), "%s.%03dZ", buf, static_cast<int>(unix_ms % 1000));
  return out;
}

std::string Join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

void PrintStatus(const txc::wire::TxnStatus& s) {
  using txc::wire::_BranchState_VALUES_TO_NAMES;
  std::cout << "gtid:     " << s.gtid << "\n"
            << "kind:     " << Name(txc::wire::_TxnKind_VALUES_TO_NAMES, s.kind) << "\n"
            << "state:    " << Name(txc::wire::_TxnState_VALUES_TO_NAMES, s.state) << "\n"
            << "owner:    " << s.owner << " (epoch " << s.epoch << ")\n"
            << "created:  " << Time(s.created_unix_ms) << "\n"
            << "deadline: " << Time(s.deadline_unix_ms) << "\n"
            << "attempts: " << s.attempts << "\n"
            << "branches: " << s.branches.size() << "\n";
  for (const auto& b : s.branches) {
    std::cout << "  " << b.branch_id << "  " << Name(_BranchState_VALUES_TO_NAMES, b.state)
              << "  endpoint=" << b.endpoint;
    if (!b.resource.empty()) std::cout << " resource=" << b.resource;
    if (!b.action.empty()) std::cout << " action=" << b.action;
    if (!b.compensation.empty()) std::cout << " compensation=" << b.compensation;
    if (!b.depends_on.empty()) std::cout << " depends_on=" << Join(b.depends_on, ",");
    std::cout << " attempts=" << b.attempts;
    if (!b.last_error.empty()) std::cout << " last_error=\"" << b.last_error << "\"";
    std::cout << "\n";
  }
}

// Runs `call` against each coordinator in turn until one answers. Returns the
// exit code; prints the refusal (typed exception) when there is one.
int WithCoordinator(const std::vector<std::string>& coordinators, int timeout_ms,
                    const std::function<void(CoordinatorClient&)>& call) {
  txc::ConnectOptions connect;
  connect.connect_timeout_ms = std::min(timeout_ms, 2000);
  connect.rpc_timeout_ms = timeout_ms;
  std::string last_error = "no coordinator given";
  std::vector<std::string> candidates = coordinators;  // grows by NotOwner.owner_endpoint
  for (size_t i = 0; i < candidates.size(); ++i) {
    const std::string endpoint = candidates[i];
    auto hp = txc::ParseEndpoint(endpoint);
    if (!hp.ok()) {
      std::cerr << "txcctl: " << hp.status().message() << "\n";
      return kExitUsage;
    }
    auto conn = txc::OpenConnection<CoordinatorClient>(*hp, connect);
    if (!conn.ok()) {
      last_error = conn.status().message();
      continue;
    }
    try {
      call(*(*conn)->client);
      return kExitOk;
    } catch (const txc::wire::NotFound& e) {
      std::cerr << "NotFound: " << e.message << "\n";
      return kExitRefused;
    } catch (const txc::wire::InvalidArgument& e) {
      std::cerr << "InvalidArgument: " << e.message << (e.field.empty() ? "" : " (field ")
                << e.field << (e.field.empty() ? "" : ")") << "\n";
      return kExitRefused;
    } catch (const txc::wire::IllegalTransition& e) {
      std::cerr << "IllegalTransition: " << e.message << " (current state "
                << Name(txc::wire::_TxnState_VALUES_TO_NAMES, e.current_state) << ")\n";
      return kExitRefused;
    } catch (const txc::wire::NotOwner& e) {
      last_error = "NotOwner: " + e.message + " (owner " + e.owner_endpoint + ")";
      if (txc::ParseEndpoint(e.owner_endpoint).ok() &&
          std::find(candidates.begin(), candidates.end(), e.owner_endpoint) == candidates.end()) {
        candidates.insert(candidates.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                          e.owner_endpoint);
      }
    } catch (const txc::wire::Unavailable& e) {
      last_error = "Unavailable at " + endpoint + ": " + e.message;
    } catch (const apache::thrift::TException& e) {
      last_error = "error talking to " + endpoint + ": " + e.what();
    }
  }
  std::cerr << "txcctl: " << last_error << "\n";
  return kExitUnreachable;
}

int UsageError(const std::string& message) {
  std::cerr << "txcctl: " << message << "\n" << kUsage;
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  std::string coordinators = "127.0.0.1:7400";
  int64_t timeout_ms = 60000;
  std::string idempotency_key;
  std::string wait = "decision";
  int64_t wait_timeout_ms = 30000;
  int rpc_timeout_ms = 10000;
  std::vector<std::string> positional;

  po::options_description flags("Flags");
  flags.add_options()("help,h", "print help")(
      "coordinator", po::value(&coordinators)->default_value(coordinators),
      "comma-separated coordinator replicas, tried in order")(
      "timeout_ms", po::value(&timeout_ms)->default_value(timeout_ms),
      "begin: transaction timeout")("idempotency_key", po::value(&idempotency_key),
                                    "begin: same key again, same transaction")(
      "wait", po::value(&wait)->default_value(wait), "commit: decision or completion")(
      "wait_timeout_ms", po::value(&wait_timeout_ms)->default_value(wait_timeout_ms),
      "commit --wait completion: answer with the current state after this")(
      "rpc_timeout_ms", po::value(&rpc_timeout_ms)->default_value(rpc_timeout_ms),
      "per-call timeout")("args", po::value(&positional), "command and arguments");
  po::positional_options_description pos;
  pos.add("args", -1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(flags).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return UsageError(e.what());
  }
  if (vm.count("help")) {
    std::cout << kUsage << "\n" << flags;
    return kExitOk;
  }
  if (positional.empty()) return UsageError("no command");
  const std::string command = positional[0];
  const std::vector<std::string> endpoints = txc::SplitList(coordinators);
  if (endpoints.empty()) return UsageError("--coordinator is empty");
  if (rpc_timeout_ms <= 0) return UsageError("--rpc_timeout_ms must be positive");
  auto need_args = [&](size_t n) { return positional.size() == n + 1; };

  if (command == "health") {
    if (!need_args(0)) return UsageError("health takes no arguments");
    return WithCoordinator(endpoints, rpc_timeout_ms, [](CoordinatorClient& c) {
      txc::wire::HealthResponse h;
      c.health(h);
      std::cout << "node_id:  " << h.node_id << "\n"
                << "version:  " << h.version << "\n"
                << "store:    " << h.store << "\n"
                << "serving:  " << (h.serving ? "true" : "false") << "\n"
                << "epoch:    " << h.epoch << "\n"
                << "store ok: " << (h.store_healthy ? "true" : "false: " + h.store_error) << "\n"
                << "replicas: " << Join(h.replicas, ", ") << "\n";
    });
  }
  if (command == "begin") {
    if (!need_args(0)) return UsageError("begin takes no arguments (flags only)");
    return WithCoordinator(endpoints, rpc_timeout_ms, [&](CoordinatorClient& c) {
      txc::wire::BeginRequest req;
      req.__set_timeout_ms(timeout_ms);
      if (!idempotency_key.empty()) req.__set_idempotency_key(idempotency_key);
      txc::wire::BeginResponse r;
      c.beginTxn(r, req);
      std::cout << r.gtid << "\n";
    });
  }
  if (command == "status") {
    if (!need_args(1)) return UsageError("status takes one GTID");
    return WithCoordinator(endpoints, rpc_timeout_ms, [&](CoordinatorClient& c) {
      txc::wire::TxnStatus s;
      c.status(s, positional[1]);
      PrintStatus(s);
    });
  }
  auto print_decision = [](const txc::wire::CommitResponse& r) {
    std::cout << r.gtid << ": " << Name(txc::wire::_TxnState_VALUES_TO_NAMES, r.state)
              << " (outcome "
              << StripPrefix(Name(txc::wire::_Outcome_VALUES_TO_NAMES, r.outcome), "OUTCOME_")
              << ")\n";
  };
  if (command == "commit") {
    if (!need_args(1)) return UsageError("commit takes one GTID");
    if (wait != "decision" && wait != "completion") {
      return UsageError("--wait must be decision or completion");
    }
    const int call_timeout =
        wait == "completion"
            ? static_cast<int>(std::min<int64_t>(wait_timeout_ms + rpc_timeout_ms, INT32_MAX))
            : rpc_timeout_ms;
    return WithCoordinator(endpoints, call_timeout, [&](CoordinatorClient& c) {
      txc::wire::CommitRequest req;
      req.__set_gtid(positional[1]);
      req.__set_wait(wait == "completion" ? txc::wire::CommitWait::WAIT_COMPLETION
                                          : txc::wire::CommitWait::WAIT_DECISION);
      req.__set_wait_timeout_ms(wait_timeout_ms);
      txc::wire::CommitResponse r;
      c.commit(r, req);
      print_decision(r);
    });
  }
  if (command == "rollback") {
    if (!need_args(1)) return UsageError("rollback takes one GTID");
    return WithCoordinator(endpoints, rpc_timeout_ms, [&](CoordinatorClient& c) {
      txc::wire::CommitResponse r;
      c.rollback(r, positional[1]);
      print_decision(r);
    });
  }
  return UsageError("unknown command '" + command + "'");
}
