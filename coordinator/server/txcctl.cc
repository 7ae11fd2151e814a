// txcctl: the operator CLI of the coordinator (kUsage below lists the
// commands). Human output by default, --json for scripts.
//
// The replicas are tried in order; the next one is used when one cannot be
// reached or answers Unavailable; a NotOwner naming the owner's endpoint is
// retried there first (each endpoint at most once). Exit codes (kExit*): 0 ok,
// 1 refused as invalid (InvalidArgument), 2 usage, 3 no replica reachable or
// all Unavailable, 4 NotFound, 5 IllegalTransition, 6 watch timed out,
// 7 PermissionDenied (this identity's roles do not allow the call).
// Errors are one line on stderr, Thrift's exception texts put in our words
// (InOurWords); Thrift's own log messages go to glog (VLOG 1), never to the
// terminal.
#include <glog/logging.h>
#include <thrift/TOutput.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/backoff.h"
#include "common/strings.h"
#include "common/thrift_util.h"
#include "coordinator/server/saga_json.h"
#include "gen-cpp/Coordinator.h"

namespace po = boost::program_options;
using txc::wire::CoordinatorClient;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitRefused = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;
constexpr int kExitNotFound = 4;
constexpr int kExitIllegal = 5;
constexpr int kExitWatchTimeout = 6;
constexpr int kExitPermissionDenied = 7;

#ifndef TXC_VERSION
#define TXC_VERSION "dev"
#endif

const char kUsage[] =
    "Usage: txcctl [--coordinator host:port,...] [--json] COMMAND [ARGS]\n"
    "Commands:\n"
    "  health                                   the replica's health and the live replicas\n"
    "  begin [--timeout_ms N] [--idempotency_key K]\n"
    "                                           start a 2PC transaction, print its gtid\n"
    "  enlist GTID BRANCH_ID ENDPOINT [--resource R]\n"
    "                                           register a 2PC branch\n"
    "  commit GTID [--wait decision|completion] [--wait_timeout_ms N]\n"
    "  rollback GTID\n"
    "  outcome GTID [BRANCH_ID]                 COMMIT, ABORT or PENDING (participant recovery)\n"
    "  submit-saga FILE.json [--gtid G] [--wait] [--wait_timeout_ms N]\n"
    "                                           submit a saga ({\"steps\": [{\"step_id\", "
    "\"endpoint\",\n"
    "                                           \"action\", \"compensation\", \"payload\", "
    "\"depends_on\": [..]}]})\n"
    "  status GTID                              the transaction, its branches/steps, audit\n"
    "  watch GTID [--timeout 60s]               print state changes until it is final\n"
    "  list [--state S,..|--all] [--kind 2pc|saga] [--older-than 10m] [--endpoint E]\n"
    "       [--owner N] [--gtid-prefix P] [--limit N] [--cursor C]\n"
    "                                           transactions, oldest first (default: unfinished)\n"
    "  retry GTID [--reason R]                  drive it now, retry budgets reset\n"
    "  cancel GTID [--reason R]                 a RUNNING saga compensates what it did\n"
    "  resolve GTID BRANCH_ID --as compensated|committed|aborted [--reason R]\n"
    "                                           mark a step/branch finished by hand\n"
    "  rebind (GTID | --all) --from HOST:PORT --to HOST:PORT [--reason R]\n"
    "                                           calls for an endpoint go to another\n"
    "Exit codes: 0 ok, 1 InvalidArgument, 2 usage, 3 unreachable/Unavailable, 4 NotFound,\n"
    "5 IllegalTransition, 6 watch timed out, 7 PermissionDenied.\n";

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

// --- JSON output (a small writer: strings escaped, numbers as is) -----------

std::string JsonString(const std::string& v) {
  std::string out = "\"";
  for (unsigned char c : v) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

// {"a": 1, "b": "x"} built field by field.
class JsonObject {
 public:
  JsonObject& Str(const char* key, const std::string& v) { return Raw(key, JsonString(v)); }
  JsonObject& Int(const char* key, int64_t v) { return Raw(key, std::to_string(v)); }
  JsonObject& Raw(const char* key, const std::string& json) {
    body_ += (body_.empty() ? "" : ", ") + JsonString(key) + ": " + json;
    return *this;
  }
  std::string str() const { return "{" + body_ + "}"; }

 private:
  std::string body_;
};

std::string JsonArray(const std::vector<std::string>& items) {
  return "[" + Join(items, ", ") + "]";
}

std::string TxnStateName(int v) { return Name(txc::wire::_TxnState_VALUES_TO_NAMES, v); }
std::string BranchStateName(int v) { return Name(txc::wire::_BranchState_VALUES_TO_NAMES, v); }
std::string KindName(int v) { return Name(txc::wire::_TxnKind_VALUES_TO_NAMES, v); }

std::string StatusJson(const txc::wire::TxnStatus& s) {
  std::vector<std::string> branches;
  for (const auto& b : s.branches) {
    std::vector<std::string> deps;
    for (const auto& d : b.depends_on) deps.push_back(JsonString(d));
    branches.push_back(JsonObject()
                           .Str("branch_id", b.branch_id)
                           .Str("endpoint", b.endpoint)
                           .Str("resource", b.resource)
                           .Str("action", b.action)
                           .Str("compensation", b.compensation)
                           .Raw("depends_on", JsonArray(deps))
                           .Str("state", BranchStateName(b.state))
                           .Int("attempts", b.attempts)
                           .Str("last_error", b.last_error)
                           .Int("started_unix_ms", b.started_unix_ms)
                           .Int("finished_unix_ms", b.finished_unix_ms)
                           .Int("next_attempt_unix_ms", b.next_attempt_unix_ms)
                           .str());
  }
  std::vector<std::string> audit;
  for (const auto& a : s.audit) {
    audit.push_back(JsonObject()
                        .Str("action", a.action)
                        .Str("who", a.who)
                        .Int("at_unix_ms", a.at_unix_ms)
                        .Str("reason", a.reason)
                        .Str("previous_state", a.previous_state)
                        .Str("new_state", a.new_state)
                        .Str("target", a.target)
                        .str());
  }
  return JsonObject()
      .Str("gtid", s.gtid)
      .Str("kind", KindName(s.kind))
      .Str("state", TxnStateName(s.state))
      .Str("owner", s.owner)
      .Int("epoch", s.epoch)
      .Int("created_unix_ms", s.created_unix_ms)
      .Int("updated_unix_ms", s.updated_unix_ms)
      .Int("deadline_unix_ms", s.deadline_unix_ms)
      .Int("next_attempt_unix_ms", s.next_attempt_unix_ms)
      .Int("attempts", s.attempts)
      .Raw("branches", JsonArray(branches))
      .Raw("audit", JsonArray(audit))
      .str();
}

void PrintStatus(const txc::wire::TxnStatus& s) {
  std::cout << "gtid:     " << s.gtid << "\n"
            << "kind:     " << KindName(s.kind) << "\n"
            << "state:    " << TxnStateName(s.state) << "\n"
            << "owner:    " << s.owner << " (epoch " << s.epoch << ")\n"
            << "created:  " << Time(s.created_unix_ms) << "\n"
            << "updated:  " << Time(s.updated_unix_ms) << "\n"
            << "deadline: " << Time(s.deadline_unix_ms) << "\n"
            << "next:     " << Time(s.next_attempt_unix_ms) << "\n"
            << "attempts: " << s.attempts << "\n"
            << "branches: " << s.branches.size() << "\n";
  for (const auto& b : s.branches) {
    std::cout << "  " << b.branch_id << "  " << BranchStateName(b.state)
              << "  endpoint=" << b.endpoint;
    if (!b.resource.empty()) std::cout << " resource=" << b.resource;
    if (!b.action.empty()) std::cout << " action=" << b.action;
    if (!b.compensation.empty()) std::cout << " compensation=" << b.compensation;
    if (!b.depends_on.empty()) std::cout << " depends_on=" << Join(b.depends_on, ",");
    std::cout << " attempts=" << b.attempts;
    if (b.started_unix_ms > 0) std::cout << " started=" << Time(b.started_unix_ms);
    if (b.finished_unix_ms > 0) std::cout << " finished=" << Time(b.finished_unix_ms);
    if (b.next_attempt_unix_ms > 0) std::cout << " next=" << Time(b.next_attempt_unix_ms);
    if (!b.last_error.empty()) std::cout << " last_error=\"" << b.last_error << "\"";
    std::cout << "\n";
  }
  if (!s.audit.empty()) {
    std::cout << "audit:    " << s.audit.size() << "\n";
    for (const auto& a : s.audit) {
      std::cout << "  " << Time(a.at_unix_ms) << "  " << a.action << " by " << a.who << ": "
                << a.previous_state << " -> " << a.new_state;
      if (!a.target.empty()) std::cout << " [" << a.target << "]";
      std::cout << " reason=\"" << a.reason << "\"\n";
    }
  }
}

// "10m", "90s", "2h", "1d", "500ms" or plain milliseconds (0 included) -> milliseconds; -1 if
// malformed.
int64_t ParseDurationMs(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0 || i > 12) return -1;
  const int64_t n = std::stoll(text.substr(0, i));  // < 10^12
  const std::string unit = text.substr(i);
  if (unit.empty() || unit == "ms") return n;
  if (unit == "s") return n * 1000;
  if (unit == "m") return n * 60 * 1000;
  if (unit == "h") return n * 3600 * 1000;
  if (unit == "d") return n > INT64_MAX / 86400000 ? -1 : n * 86400 * 1000;
  return -1;
}

// A wire enum value by its name (case-insensitive, with or without `prefix`); -1 if unknown.
int EnumByName(const std::map<int, const char*>& names, std::string name,
               const std::string& prefix = "") {
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(toupper(c)); });
  for (const auto& [value, n] : names) {
    if (name == n || prefix + name == n) return value;
  }
  return -1;
}

// TLS credentials for every connection (null: plaintext); set once by main().
std::shared_ptr<txc::TlsContext>& ClientTls() {
  static std::shared_ptr<txc::TlsContext> tls;
  return tls;
}

// Thrift's exception texts said in txcctl's words (the rest of the line is
// ours already); a text not listed passes through.
std::string InOurWords(std::string text) {
  static const std::pair<const char*, const char*> kPhrases[] = {
      {"socket open() error: ", ""},  // the OS's reason follows: "Connection refused"
      {"Could not resolve host for client socket.", "cannot resolve the host name"},
      {"Received an oversized frame",
       "the answer is larger than the message limit (is this the coordinator's Thrift port?)"},
      {"Invalid method name: ",
       "the server does not know this call (is this the coordinator's Thrift port?): "},
  };
  for (const auto& [thrift, ours] : kPhrases) {
    const size_t at = text.find(thrift);
    if (at != std::string::npos) text.replace(at, std::string(thrift).size(), ours);
  }
  return text;
}

// Runs `call` against each coordinator in turn until one answers. Returns the
// exit code; prints the refusal (typed exception) when there is one.
int WithCoordinator(const std::vector<std::string>& coordinators, int timeout_ms,
                    const std::function<void(CoordinatorClient&)>& call) {
  txc::ConnectOptions connect;
  connect.connect_timeout_ms = std::min(timeout_ms, 2000);
  connect.rpc_timeout_ms = timeout_ms;
  connect.tls = ClientTls();
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
      last_error = InOurWords(conn.status().message());
      continue;
    }
    try {
      call(*(*conn)->client);
      return kExitOk;
    } catch (const txc::wire::NotFound& e) {
      std::cerr << "NotFound: " << e.message << "\n";
      return kExitNotFound;
    } catch (const txc::wire::InvalidArgument& e) {
      std::cerr << "InvalidArgument: " << e.message << (e.field.empty() ? "" : " (field ")
                << e.field << (e.field.empty() ? "" : ")") << "\n";
      return kExitRefused;
    } catch (const txc::wire::IllegalTransition& e) {
      std::cerr << "IllegalTransition: " << e.message << " (current state "
                << Name(txc::wire::_TxnState_VALUES_TO_NAMES, e.current_state) << ")\n";
      return kExitIllegal;
    } catch (const txc::wire::PermissionDenied& e) {
      std::cerr << "PermissionDenied: " << e.message << "\n";
      return kExitPermissionDenied;
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
      last_error = "error talking to " + endpoint + ": " + InOurWords(e.what());
    }
  }
  std::cerr << "txcctl: " << last_error << "\n";
  return kExitUnreachable;
}

int UsageError(const std::string& message) {
  std::cerr << "txcctl: " << message << "\n" << kUsage;
  return kExitUsage;
}

// Thrift's library messages (connect failures, ...) go to glog at VLOG 1,
// never to the terminal: txcctl prints one line per error itself.
void ThriftOutputToGlog(const char* message) { VLOG(1) << "thrift: " << message; }

}  // namespace

int main(int argc, char** argv) {
  FLAGS_logtostderr = false;
  FLAGS_stderrthreshold = 3;  // glog: nothing on stderr (FATAL only)
  google::InitGoogleLogging("txcctl");
  apache::thrift::GlobalOutput.setOutputFunction(ThriftOutputToGlog);

  std::string coordinators = "127.0.0.1:7400";
  int64_t timeout_ms = 60000;
  std::string idempotency_key;
  std::string wait = "decision";
  int64_t wait_timeout_ms = 30000;
  int rpc_timeout_ms = 10000;
  txc::TlsOptions tls;
  std::string resource, saga_gtid, reason, resolve_as, from, to;
  std::string states, kind, older_than, endpoint, owner, gtid_prefix, cursor, watch_timeout = "60s";
  int limit = 50;
  std::vector<std::string> positional;

  po::options_description flags("Flags");
  flags.add_options()("help,h", "print help")("version", "print the version and exit")(
      "coordinator", po::value(&coordinators)->default_value(coordinators),
      "comma-separated coordinator replicas, tried in order")(
      "json", "machine-readable output: one JSON document (watch: one per line per change)")(
      "timeout_ms", po::value(&timeout_ms)->default_value(timeout_ms),
      "begin, submit-saga: transaction timeout")("idempotency_key", po::value(&idempotency_key),
                                                 "begin: same key again, same transaction")(
      "wait", po::value(&wait)->implicit_value("completion")->default_value(wait),
      "commit: decision or completion; submit-saga: --wait waits for the end")(
      "wait_timeout_ms", po::value(&wait_timeout_ms)->default_value(wait_timeout_ms),
      "commit --wait completion, submit-saga --wait: answer with the current state after this")(
      "rpc_timeout_ms", po::value(&rpc_timeout_ms)->default_value(rpc_timeout_ms),
      "per-call timeout")("tls_ca", po::value(&tls.ca_file),
                          "PEM CA bundle verifying the coordinator's certificate; turns TLS on")(
      "tls_cert", po::value(&tls.cert_file),
      "PEM client certificate (for a coordinator requiring client certificates)")(
      "tls_key", po::value(&tls.key_file), "PEM private key of --tls_cert")(
      "tls_server_name", po::value(&tls.server_name),
      "name the coordinator's certificate must carry (default: the host dialled)")(
      "tls_crl", po::value(&tls.crl_file),
      "PEM certificate revocation list(s) of the --tls_ca CA(s): a revoked coordinator "
      "certificate is refused")(
      "tls_crl_chain", po::bool_switch(&tls.crl_check_chain),
      "check every certificate of the coordinator's chain against --tls_crl, intermediate CAs "
      "too")("resource", po::value(&resource), "enlist: the branch's resource name")(
      "gtid", po::value(&saga_gtid), "submit-saga: the saga's id (resubmission is idempotent)")(
      "reason", po::value(&reason), "retry, cancel, resolve, rebind: why (kept in the audit)")(
      "as", po::value(&resolve_as), "resolve: compensated, committed or aborted")(
      "from", po::value(&from), "rebind: the old endpoint host:port")(
      "to", po::value(&to), "rebind: the new endpoint host:port")(
      "all", "list: every state (finished too); rebind: every unfinished transaction")(
      "state", po::value(&states), "list: comma-separated states (e.g. PARKED,COMPENSATING)")(
      "kind", po::value(&kind), "list: 2pc or saga")(
      "older-than", po::value(&older_than), "list: created more than this ago (10m, 2h, 1d)")(
      "endpoint", po::value(&endpoint), "list: has a branch/step at this endpoint")(
      "owner", po::value(&owner), "list: owned by this node id")(
      "gtid-prefix", po::value(&gtid_prefix), "list: gtid starts with this")(
      "limit", po::value(&limit)->default_value(limit), "list: rows per page (1..1000)")(
      "cursor", po::value(&cursor), "list: continue after a previous page")(
      "timeout", po::value(&watch_timeout)->default_value(watch_timeout),
      "watch: give up after this (exit 6); 0: look once")("args", po::value(&positional),
                                                          "command and arguments");
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
  if (vm.count("version")) {
    std::cout << "txcctl " << TXC_VERSION << "\n";
    return kExitOk;
  }
  const bool json = vm.count("json") > 0;
  if (positional.empty()) return UsageError("no command");
  const std::string command = positional[0];
  const std::vector<std::string> endpoints = txc::SplitList(coordinators);
  if (endpoints.empty()) return UsageError("--coordinator is empty");
  if (rpc_timeout_ms <= 0) return UsageError("--rpc_timeout_ms must be positive");
  if (!tls.crl_file.empty() && tls.ca_file.empty()) {
    return UsageError("--tls_crl needs --tls_ca");
  }
  if (tls.crl_check_chain && tls.crl_file.empty()) {
    return UsageError("--tls_crl_chain needs --tls_crl");
  }
  if (tls.enabled()) {
    auto made = txc::TlsContext::Create(tls, txc::TlsRole::kClient);
    if (!made.ok()) return UsageError(made.status().message());
    ClientTls() = std::move(made).value();
  }
  auto need_args = [&](size_t n) { return positional.size() == n + 1; };
  auto with = [&](const std::function<void(CoordinatorClient&)>& call) {
    return WithCoordinator(endpoints, rpc_timeout_ms, call);
  };
  auto print_txn = [&](const txc::wire::TxnStatus& s) {
    if (json) {
      std::cout << StatusJson(s) << "\n";
    } else {
      PrintStatus(s);
    }
  };

  if (command == "health") {
    if (!need_args(0)) return UsageError("health takes no arguments");
    return with([&](CoordinatorClient& c) {
      txc::wire::HealthResponse h;
      c.health(h);
      if (json) {
        std::vector<std::string> replicas;
        for (const auto& r : h.replicas) replicas.push_back(JsonString(r));
        std::cout << JsonObject()
                         .Str("node_id", h.node_id)
                         .Str("version", h.version)
                         .Str("store", h.store)
                         .Raw("serving", h.serving ? "true" : "false")
                         .Int("epoch", h.epoch)
                         .Raw("store_healthy", h.store_healthy ? "true" : "false")
                         .Str("store_error", h.store_error)
                         .Raw("replicas", JsonArray(replicas))
                         .str()
                  << "\n";
        return;
      }
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
    return with([&](CoordinatorClient& c) {
      txc::wire::BeginRequest req;
      req.__set_timeout_ms(timeout_ms);
      if (!idempotency_key.empty()) req.__set_idempotency_key(idempotency_key);
      txc::wire::BeginResponse r;
      c.beginTxn(r, req);
      std::cout << (json ? JsonObject().Str("gtid", r.gtid).str() : r.gtid) << "\n";
    });
  }
  if (command == "enlist") {
    if (!need_args(3)) return UsageError("enlist takes GTID BRANCH_ID ENDPOINT");
    return with([&](CoordinatorClient& c) {
      txc::wire::EnlistRequest req;
      req.__set_gtid(positional[1]);
      txc::wire::BranchSpec branch;
      branch.__set_branch_id(positional[2]);
      branch.__set_endpoint(positional[3]);
      branch.__set_resource(resource);
      req.__set_branch(branch);
      c.enlist(req);
      std::cout << (json ? JsonObject().Str("gtid", req.gtid).Str("branch_id", positional[2]).str()
                         : req.gtid + ": enlisted " + positional[2])
                << "\n";
    });
  }
  if (command == "status") {
    if (!need_args(1)) return UsageError("status takes one GTID");
    return with([&](CoordinatorClient& c) {
      txc::wire::TxnStatus s;
      c.status(s, positional[1]);
      print_txn(s);
    });
  }
  if (command == "outcome") {
    if (!need_args(1) && !need_args(2)) return UsageError("outcome takes GTID [BRANCH_ID]");
    return with([&](CoordinatorClient& c) {
      auto o = c.queryOutcome(positional[1], positional.size() > 2 ? positional[2] : "");
      const std::string name =
          StripPrefix(Name(txc::wire::_Outcome_VALUES_TO_NAMES, o), "OUTCOME_");
      std::cout << (json ? JsonObject().Str("gtid", positional[1]).Str("outcome", name).str()
                         : positional[1] + ": " + name)
                << "\n";
    });
  }
  auto print_decision = [&](const txc::wire::CommitResponse& r) {
    const std::string outcome =
        StripPrefix(Name(txc::wire::_Outcome_VALUES_TO_NAMES, r.outcome), "OUTCOME_");
    if (json) {
      std::cout << JsonObject()
                       .Str("gtid", r.gtid)
                       .Str("state", TxnStateName(r.state))
                       .Str("outcome", outcome)
                       .str()
                << "\n";
      return;
    }
    std::cout << r.gtid << ": " << TxnStateName(r.state) << " (outcome " << outcome << ")\n";
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
    return with([&](CoordinatorClient& c) {
      txc::wire::CommitResponse r;
      c.rollback(r, positional[1]);
      print_decision(r);
    });
  }
  if (command == "submit-saga") {
    if (!need_args(1)) return UsageError("submit-saga takes one FILE.json");
    std::ifstream file(positional[1], std::ios::binary);
    if (!file) return UsageError("cannot read saga " + positional[1] + ": " + std::strerror(errno));
    std::stringstream text;
    text << file.rdbuf();
    auto parsed = txc::ParseSagaJson(text.str());
    if (!parsed.ok()) {
      return UsageError("saga " + positional[1] + ": " + parsed.status().message());
    }
    txc::wire::SubmitSagaRequest req = std::move(parsed).value();
    if (!saga_gtid.empty()) req.__set_gtid(saga_gtid);
    const bool wait_end = vm["wait"].defaulted() ? false : wait == "completion";
    req.__set_wait_for_completion(wait_end);
    req.__set_wait_timeout_ms(wait_timeout_ms);
    if (!vm["timeout_ms"].defaulted()) req.__set_timeout_ms(timeout_ms);
    const int call_timeout =
        wait_end ? static_cast<int>(std::min<int64_t>(wait_timeout_ms + rpc_timeout_ms, INT32_MAX))
                 : rpc_timeout_ms;
    return WithCoordinator(endpoints, call_timeout, [&](CoordinatorClient& c) {
      txc::wire::SubmitSagaResponse r;
      c.submitSaga(r, req);
      std::cout << (json
                        ? JsonObject().Str("gtid", r.gtid).Str("state", TxnStateName(r.state)).str()
                        : r.gtid + ": " + TxnStateName(r.state))
                << "\n";
    });
  }
  if (command == "list") {
    if (!need_args(0)) return UsageError("list takes flags only");
    txc::wire::ListTxnsRequest req;
    std::vector<txc::wire::TxnState::type> wanted;
    if (!states.empty()) {
      for (const std::string& name : txc::SplitList(states)) {
        int v = EnumByName(txc::wire::_TxnState_VALUES_TO_NAMES, name);
        if (v < 0) return UsageError("--state: unknown state '" + name + "'");
        wanted.push_back(static_cast<txc::wire::TxnState::type>(v));
      }
    } else if (!vm.count("all")) {
      for (auto v : {txc::wire::TxnState::ACTIVE, txc::wire::TxnState::PREPARING,
                     txc::wire::TxnState::COMMITTING, txc::wire::TxnState::ABORTING,
                     txc::wire::TxnState::RUNNING, txc::wire::TxnState::COMPENSATING,
                     txc::wire::TxnState::PARKED}) {
        wanted.push_back(v);
      }
    }
    req.__set_states(wanted);
    if (!kind.empty()) {
      if (kind == "2pc" || kind == "two_phase") {
        req.__set_kind(txc::wire::TxnKind::TWO_PHASE);
      } else if (kind == "saga") {
        req.__set_kind(txc::wire::TxnKind::SAGA);
      } else {
        return UsageError("--kind must be 2pc or saga");
      }
    }
    if (!older_than.empty()) {
      const int64_t ms = ParseDurationMs(older_than);
      if (ms < 0) return UsageError("--older-than: not a duration (10m, 2h, 90s): " + older_than);
      req.__set_created_before_unix_ms(txc::NowUnixMs() - ms);
    }
    if (!endpoint.empty()) req.__set_endpoint(endpoint);
    if (!owner.empty()) req.__set_owner(owner);
    if (!gtid_prefix.empty()) req.__set_gtid_prefix(gtid_prefix);
    if (!cursor.empty()) req.__set_cursor(cursor);
    req.__set_limit(limit);
    return with([&](CoordinatorClient& c) {
      txc::wire::ListTxnsResponse r;
      c.listTxns(r, req);
      if (json) {
        std::vector<std::string> rows;
        for (const auto& t : r.txns) {
          rows.push_back(JsonObject()
                             .Str("gtid", t.gtid)
                             .Str("kind", KindName(t.kind))
                             .Str("state", TxnStateName(t.state))
                             .Str("owner", t.owner)
                             .Int("created_unix_ms", t.created_unix_ms)
                             .Int("updated_unix_ms", t.updated_unix_ms)
                             .Int("attempts", t.attempts)
                             .Int("next_attempt_unix_ms", t.next_attempt_unix_ms)
                             .Str("last_error", t.last_error)
                             .str());
        }
        JsonObject out;
        out.Raw("txns", JsonArray(rows));
        if (r.__isset.next_cursor) out.Str("next_cursor", r.next_cursor);
        std::cout << out.str() << "\n";
        return;
      }
      printf("%-44s %-9s %-12s %-24s %-24s %-24s %4s  %s\n", "GTID", "KIND", "STATE", "CREATED",
             "UPDATED", "NEXT ATTEMPT", "ATT", "LAST ERROR");
      for (const auto& t : r.txns) {
        std::string err = t.last_error.substr(0, 60);
        std::replace(err.begin(), err.end(), '\n', ' ');
        printf("%-44s %-9s %-12s %-24s %-24s %-24s %4d  %s\n", t.gtid.c_str(),
               KindName(t.kind).c_str(), TxnStateName(t.state).c_str(),
               Time(t.created_unix_ms).c_str(), Time(t.updated_unix_ms).c_str(),
               Time(t.next_attempt_unix_ms).c_str(), t.attempts, err.c_str());
      }
      printf("(%zu rows)\n", r.txns.size());
      if (r.__isset.next_cursor) printf("more: --cursor %s\n", r.next_cursor.c_str());
      fflush(stdout);
    });
  }
  if (command == "retry" || command == "cancel") {
    if (!need_args(1)) return UsageError(command + " takes one GTID");
    return with([&](CoordinatorClient& c) {
      txc::wire::AdminRequest req;
      req.__set_gtid(positional[1]);
      req.__set_reason(reason);
      txc::wire::TxnStatus s;
      if (command == "retry") {
        c.retryNow(s, req);
      } else {
        c.cancelSaga(s, req);
      }
      print_txn(s);
    });
  }
  if (command == "resolve") {
    if (!need_args(2)) return UsageError("resolve takes GTID BRANCH_ID --as ...");
    txc::wire::BranchState::type as;
    if (resolve_as == "compensated") {
      as = txc::wire::BranchState::STEP_COMPENSATED;
    } else if (resolve_as == "committed") {
      as = txc::wire::BranchState::BRANCH_COMMITTED;
    } else if (resolve_as == "aborted") {
      as = txc::wire::BranchState::BRANCH_ABORTED;
    } else {
      return UsageError("resolve needs --as compensated, committed or aborted");
    }
    return with([&](CoordinatorClient& c) {
      txc::wire::ResolveRequest req;
      req.__set_gtid(positional[1]);
      req.__set_branch_id(positional[2]);
      req.__set_resolved_state(as);
      req.__set_reason(reason);
      txc::wire::TxnStatus s;
      c.resolveBranch(s, req);
      print_txn(s);
    });
  }
  if (command == "rebind") {
    const bool all = vm.count("all") > 0;
    if (all ? !need_args(0) : !need_args(1)) {
      return UsageError("rebind takes one GTID, or --all");
    }
    if (from.empty() || to.empty()) return UsageError("rebind needs --from and --to");
    return with([&](CoordinatorClient& c) {
      txc::wire::RebindRequest req;
      if (!all) req.__set_gtid(positional[1]);
      req.__set_from_endpoint(from);
      req.__set_to_endpoint(to);
      req.__set_reason(reason);
      txc::wire::RebindResponse r;
      c.rebindEndpoint(r, req);
      std::cout << (json ? JsonObject()
                               .Int("transactions", r.transactions)
                               .Int("branches", r.branches)
                               .str()
                         : "rebound " + std::to_string(r.branches) + " branches of " +
                               std::to_string(r.transactions) + " transactions: " + from + " -> " +
                               to)
                << "\n";
    });
  }
  if (command == "watch") {
    if (!need_args(1)) return UsageError("watch takes one GTID");
    // 0: look once (exit 0 if final, 6 if not).
    const int64_t limit_ms = ParseDurationMs(watch_timeout);
    if (limit_ms < 0) {
      return UsageError("--timeout: not a duration (0, 500ms, 90s, 10m, 2h): " + watch_timeout);
    }
    const int64_t deadline = txc::MonotonicMs() + limit_ms;
    std::string last;
    int round = 0;
    for (;;) {
      txc::wire::TxnStatus s;
      int rc = with([&](CoordinatorClient& c) { c.status(s, positional[1]); });
      if (rc != kExitOk) return rc;
      std::string now = TxnStateName(s.state);
      for (const auto& b : s.branches) now += " " + b.branch_id + "=" + BranchStateName(b.state);
      if (now != last) {
        if (json) {
          std::cout << StatusJson(s) << "\n";
        } else {
          std::cout << Time(txc::NowUnixMs()) << "  " << now << "\n";
        }
        std::cout.flush();
        last = now;
        round = 0;
      }
      const auto state = s.state;
      if (state == txc::wire::TxnState::COMMITTED || state == txc::wire::TxnState::ABORTED ||
          state == txc::wire::TxnState::SUCCEEDED || state == txc::wire::TxnState::COMPENSATED) {
        return kExitOk;
      }
      const int64_t left = deadline - txc::MonotonicMs();
      if (left <= 0) {
        std::cerr << "txcctl: watch: " << positional[1] << " still " << TxnStateName(state)
                  << " after " << watch_timeout << "\n";
        return kExitWatchTimeout;
      }
      // Polls back off (with jitter) while nothing changes: 100 ms .. 2 s.
      const int64_t delay = txc::BackoffDelayMs(txc::BackoffPolicy{100, 2000, 2.0}, ++round);
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(delay, left)));
    }
  }
  return UsageError("unknown command '" + command + "'");
}
