// The start of main() both programs of this example share.
#pragma once

#include <glog/logging.h>

#include <boost/program_options.hpp>
#include <string>

#include "common/cli.h"
#include "common/thrift_util.h"

namespace rpc_context {

// Parses argv by `flags` (common/cli.h: --flag value or --flag=value, --help),
// then (going on) sends glog and Thrift's own logging to stderr. Returns -1
// when main should go on; otherwise main's exit code: 0 after --help, 2 after
// a bad flag or value.
inline int StartMain(const std::string& program, int argc, char** argv,
                     const boost::program_options::options_description& flags) {
  if (int rc = txc::cli::Parse(program, "Usage: " + program + " [flags]", argc, argv, flags);
      rc >= 0) {
    return rc;
  }
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  txc::RouteThriftLogsToGlog();
  return -1;
}

}  // namespace rpc_context
