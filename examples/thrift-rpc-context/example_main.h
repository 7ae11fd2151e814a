// The start of main() both programs of this example share.
#pragma once

#include <glog/logging.h>

#include <boost/program_options.hpp>
#include <iostream>

#include "common/thrift_util.h"

namespace rpc_context {

// Parses argv by `flags`, then (going on) sends glog and Thrift's own logging
// to stderr. Returns -1 when main should go on; otherwise main's exit code: 2
// after printing a bad command line's error and the flags, 0 after printing
// the flags for --help.
inline int StartMain(int argc, char** argv,
                     const boost::program_options::options_description& flags) {
  namespace po = boost::program_options;
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, flags), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n" << flags;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << flags;
    return 0;
  }
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  txc::RouteThriftLogsToGlog();
  return -1;
}

}  // namespace rpc_context
