#include "common/cli.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace txc {
namespace {

namespace po = boost::program_options;

// Runs cli::Parse on `args` (argv[0] is added) with a --port, --db and --ratio
// flag; captures stdout and stderr.
struct Parsed {
  int rc = -1;
  int port = -1;
  std::string db;
  int64_t delay_ms = -1;
  bool verbose = false;
  std::string out, err;
};

Parsed ParseArgs(std::vector<std::string> args) {
  Parsed r;
  po::options_description flags("Flags");
  flags.add_options()(
      "port", po::value(&r.port)->default_value(0)->notifier(cli::InRange("port", 0, 65535)),
      "port")("db", po::value(&r.db)->notifier(cli::NotEmpty("db")), "database")(
      "delay_ms",
      po::value(&r.delay_ms)->default_value(0)->notifier(cli::InRange64("delay_ms", 0, 60000)),
      "delay")("verbose", po::bool_switch(&r.verbose), "more output");
  args.insert(args.begin(), "prog");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  r.rc =
      cli::Parse("prog", "Usage: prog [flags]", static_cast<int>(argv.size()), argv.data(), flags);
  r.out = ::testing::internal::GetCapturedStdout();
  r.err = ::testing::internal::GetCapturedStderr();
  return r;
}

TEST(CliTest, FlagValueAndFlagEqualsValueBothWork) {
  Parsed spaced = ParseArgs({"--port", "7000", "--db", "x.db", "--delay_ms", "5"});
  EXPECT_EQ(spaced.rc, -1) << spaced.err;
  EXPECT_EQ(spaced.port, 7000);
  EXPECT_EQ(spaced.db, "x.db");
  EXPECT_EQ(spaced.delay_ms, 5);
  Parsed equals = ParseArgs({"--port=7001", "--db=y.db", "--verbose"});
  EXPECT_EQ(equals.rc, -1) << equals.err;
  EXPECT_EQ(equals.port, 7001);
  EXPECT_EQ(equals.db, "y.db");
  EXPECT_TRUE(equals.verbose);
  Parsed defaults = ParseArgs({});
  EXPECT_EQ(defaults.rc, -1);
  EXPECT_EQ(defaults.port, 0);
  EXPECT_FALSE(defaults.verbose);
}

TEST(CliTest, HelpPrintsTheFlagsAndExitsZero) {
  for (const char* help : {"--help", "-h"}) {
    Parsed r = ParseArgs({help});
    EXPECT_EQ(r.rc, 0);
    EXPECT_NE(r.out.find("Usage: prog [flags]"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--port"), std::string::npos) << r.out;
    EXPECT_EQ(r.err, "");
  }
  // --help wins over a bad value elsewhere on the line.
  EXPECT_EQ(ParseArgs({"--port=70000", "--help"}).rc, 0);
}

TEST(CliTest, BadFlagsAndValuesExitTwoWithOneClearLine) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--prot=7000"}, "unrecognised option '--prot=7000'"},
      {{"--port=abc"}, "the argument ('abc') for option '--port' is invalid"},
      {{"--port", "7000x"}, "the argument ('7000x') for option '--port' is invalid"},
      {{"--port=70000"}, "--port must be in 0..65535, got 70000"},
      {{"--port=-1"}, "--port must be in 0..65535, got -1"},
      {{"--delay_ms=99999999"}, "--delay_ms must be in 0..60000, got 99999999"},
      {{"--db", ""}, "--db must not be empty"},
      {{"--db="}, "the argument for option '--db' should follow immediately after the equal sign"},
      {{"--port"}, "the required argument for option '--port' is missing"},
      {{"stray"}, "too many positional options have been specified on the command line"},
      {{"--verbose=yes"}, "option '--verbose' does not take any arguments"},
  };
  for (const Case& c : cases) {
    Parsed r = ParseArgs(c.args);
    EXPECT_EQ(r.rc, cli::kExitUsage) << c.args[0];
    EXPECT_EQ(r.err, "prog: " + c.message + "\nRun 'prog --help' for the flags.\n") << c.args[0];
    EXPECT_EQ(r.out, "");
  }
}

TEST(CliTest, PositionalArgumentsWhenAsked) {
  std::vector<std::string> positional_values;
  po::options_description flags("Flags");
  flags.add_options()("args", po::value(&positional_values), "command");
  po::positional_options_description pos;
  pos.add("args", -1);
  std::vector<std::string> args = {"prog", "commit", "gtid-1"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  po::variables_map vm;
  EXPECT_EQ(
      cli::Parse("prog", "usage", static_cast<int>(argv.size()), argv.data(), flags, &vm, &pos),
      -1);
  EXPECT_EQ(positional_values, (std::vector<std::string>{"commit", "gtid-1"}));
}

TEST(CliTest, TlsFlagsCarryTheCrlIntoTheTlsOptions) {
  cli::TlsFlags tls;
  po::options_description flags("Flags");
  cli::AddTlsFlags(flags, &tls);
  const char* argv[] = {"prog", "--tls_cert=c.pem", "--tls_key=k.pem", "--tls_ca=ca.pem",
                        "--tls_crl=crl.pem"};
  po::variables_map vm;
  po::store(po::parse_command_line(5, argv, flags), vm);
  po::notify(vm);
  const TlsOptions o = tls.Options();
  EXPECT_TRUE(tls.enabled());
  EXPECT_EQ(o.cert_file, "c.pem");
  EXPECT_EQ(o.key_file, "k.pem");
  EXPECT_EQ(o.ca_file, "ca.pem");
  EXPECT_EQ(o.crl_file, "crl.pem");
  EXPECT_FALSE(o.crl_check_chain);
  EXPECT_TRUE(o.require_client_cert);

  cli::TlsFlags chain;
  po::options_description chain_flags("Flags");
  cli::AddTlsFlags(chain_flags, &chain);
  const char* chain_argv[] = {"prog", "--tls_ca=ca.pem", "--tls_crl=crl.pem", "--tls_crl_chain"};
  po::variables_map chain_vm;
  po::store(po::parse_command_line(4, chain_argv, chain_flags), chain_vm);
  po::notify(chain_vm);
  EXPECT_TRUE(chain.Options().crl_check_chain);
}

}  // namespace
}  // namespace txc
