#include "common/cli.h"

#include <iostream>

namespace txc {
namespace cli {

namespace po = boost::program_options;

namespace {

// An error Parse reports as it is (no "the argument ... is invalid" wrapping).
class FlagValueError : public po::error {
 public:
  explicit FlagValueError(const std::string& message) : po::error(message) {}
};

}  // namespace

int UsageError(const std::string& program, const std::string& message) {
  std::cerr << program << ": " << message << "\nRun '" << program << " --help' for the flags.\n";
  return kExitUsage;
}

int Parse(const std::string& program, const std::string& usage, int argc, char** argv,
          const po::options_description& flags, po::variables_map* vm,
          const po::positional_options_description* positional) {
  po::options_description all;
  all.add_options()("help,h", "print this help and exit");
  all.add(flags);
  po::variables_map local;
  po::variables_map& out = vm != nullptr ? *vm : local;
  try {
    po::command_line_parser parser(argc, argv);
    parser.options(all);
    if (positional != nullptr) {
      parser.positional(*positional);
    } else {
      parser.positional(po::positional_options_description());  // none allowed
    }
    po::store(parser.run(), out);
    if (out.count("help")) {
      std::cout << usage << "\n\n" << all << "\n";
      return 0;
    }
    po::notify(out);
  } catch (const po::error& e) {
    return UsageError(program, e.what());
  }
  return -1;
}

std::function<void(const int&)> InRange(const std::string& flag, int lo, int hi) {
  return [flag, lo, hi](const int& v) {
    if (v < lo || v > hi) {
      throw FlagValueError("--" + flag + " must be in " + std::to_string(lo) + ".." +
                           std::to_string(hi) + ", got " + std::to_string(v));
    }
  };
}

std::function<void(const int64_t&)> InRange64(const std::string& flag, int64_t lo, int64_t hi) {
  return [flag, lo, hi](const int64_t& v) {
    if (v < lo || v > hi) {
      throw FlagValueError("--" + flag + " must be in " + std::to_string(lo) + ".." +
                           std::to_string(hi) + ", got " + std::to_string(v));
    }
  };
}

std::function<void(const std::string&)> NotEmpty(const std::string& flag) {
  return [flag](const std::string& v) {
    if (v.empty()) throw FlagValueError("--" + flag + " must not be empty");
  };
}

void AddTlsFlags(boost::program_options::options_description& flags, TlsFlags* tls) {
  namespace po = boost::program_options;
  flags.add_options()("tls_cert", po::value(&tls->cert_file),
                      "PEM certificate this process presents (as a server and as a client); "
                      "with --tls_key and --tls_ca turns mutual TLS on")(
      "tls_key", po::value(&tls->key_file), "PEM private key of --tls_cert")(
      "tls_ca", po::value(&tls->ca_file),
      "PEM CA bundle that verifies the peers' certificates (servers and callers)")(
      "tls_crl", po::value(&tls->crl_file),
      "PEM certificate revocation list(s) of --tls_ca's CAs: a peer whose certificate is "
      "revoked is refused")(
      "tls_crl_chain", po::bool_switch(&tls->crl_check_chain),
      "check every certificate of a peer's chain against --tls_crl, intermediate CAs too "
      "(the file must then hold a current CRL of every CA in the chain)");
}

}  // namespace cli
}  // namespace txc
