// The command-line parsing bank and transfer share (Boost.Program_options).
#pragma once

#include <boost/program_options.hpp>
#include <iostream>
#include <string>

namespace bank {

// Parses argv by `desc` into `vm`. Returns -1 when main should go on;
// otherwise main's exit code: 0 after printing the options for --help, 2 after
// printing "<program>: <error>" and the options for a bad command line.
inline int ParseCommandLine(const std::string& program, int argc, char** argv,
                            const boost::program_options::options_description& desc,
                            boost::program_options::variables_map* vm) {
  namespace po = boost::program_options;
  try {
    po::store(po::parse_command_line(argc, argv, desc), *vm);
    if (vm->count("help")) {
      std::cout << desc << "\n";
      return 0;
    }
    po::notify(*vm);
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\n" << desc << "\n";
    return 2;
  }
  return -1;
}

}  // namespace bank
