// The command line of every binary we ship, on Boost.Program_options:
// `--flag value` and `--flag=value`, `--help` / `-h`, and for an unknown flag,
// a missing or malformed value or a value out of range, one line
// "<program>: <what is wrong>" and a hint on stderr, exit code 2.
//
//   namespace po = boost::program_options;
//   int port = 0;
//   po::options_description flags("Flags");
//   flags.add_options()
//       ("port", po::value(&port)->default_value(0)->notifier(txc::cli::InRange("port", 0, 65535)),
//        "port to serve on");
//   if (int rc = txc::cli::Parse("bank", "Usage: bank [flags]", argc, argv, flags); rc >= 0) {
//     return rc;
//   }
//
// Parse adds "help,h" itself. Thread-safety: call from main only.
#pragma once

#include <boost/program_options.hpp>
#include <cstdint>
#include <functional>
#include <string>

#include "common/tls.h"

namespace txc {
namespace cli {

constexpr int kExitUsage = 2;

// Parses argv by `flags` (plus positional arguments into the option they name
// when `positional` is given) into `vm` (may be null when the values are bound
// to variables) and runs the notifiers. Returns -1 when main should go on;
// otherwise main's exit code: 0 after printing `usage` and the flags to
// stdout for --help, kExitUsage after printing the error to stderr.
int Parse(const std::string& program, const std::string& usage, int argc, char** argv,
          const boost::program_options::options_description& flags,
          boost::program_options::variables_map* vm = nullptr,
          const boost::program_options::positional_options_description* positional = nullptr);

// Prints "<program>: <message>" and "Run '<program> --help' for the flags." to
// stderr; returns kExitUsage (for checks after Parse).
int UsageError(const std::string& program, const std::string& message);

// Notifiers that refuse a value outside [lo, hi] with a clear message, e.g.
// "--port must be in 0..65535, got 70000".
std::function<void(const int&)> InRange(const std::string& flag, int lo, int hi);
std::function<void(const int64_t&)> InRange64(const std::string& flag, int64_t lo, int64_t hi);
// Refuses an empty string ("--db must not be empty").
std::function<void(const std::string&)> NotEmpty(const std::string& flag);

// The TLS flags of the example and bench binaries: one certificate, key and
// CA bundle per process, used both for the port it serves (mutual TLS: callers
// need a certificate from the CA) and for the calls it makes (the CA verifies
// the servers; the certificate is its client identity). Build a
// txc::TlsOptions{cert_file, key_file, ca_file} from them (common/tls.h).
struct TlsFlags {
  std::string cert_file;         // --tls_cert
  std::string key_file;          // --tls_key
  std::string ca_file;           // --tls_ca
  std::string crl_file;          // --tls_crl
  bool crl_check_chain = false;  // --tls_crl_chain
  bool enabled() const { return !cert_file.empty() || !key_file.empty() || !ca_file.empty(); }
  // The flags as the SDK's and the clients' TLS options.
  TlsOptions Options() const {
    TlsOptions o;
    o.cert_file = cert_file;
    o.key_file = key_file;
    o.ca_file = ca_file;
    o.crl_file = crl_file;
    o.crl_check_chain = crl_check_chain;
    return o;
  }
};
void AddTlsFlags(boost::program_options::options_description& flags, TlsFlags* tls);

}  // namespace cli
}  // namespace txc
