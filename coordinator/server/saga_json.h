// The saga file of `txcctl submit-saga`, read strictly:
//
//   {"gtid": "...",                                  optional
//    "steps": [{"step_id": "s1", "endpoint": "h:p", "action": "a",
//               "compensation": "c", "payload": "...",  optional strings
//               "depends_on": ["s0"],                  optional array of strings
//               "concurrent": true,                    optional boolean
//               "max_attempts": 5, "initial_backoff_ms": 100,
//               "max_backoff_ms": 10000}]}             optional int32 integers
//
// Any of the three retry keys sets the step's RetryPolicy; the ones not given
// keep the IDL defaults (5, 100, 10000). A value of the wrong JSON type, a
// number that is fractional or outside int32, an unknown or repeated key and
// a "steps" that is not an array are refused, not ignored: a typo such as
// "depend_on" would otherwise change what the saga does without a word.
// Whether the values make sense (ids, endpoints, ranges) is the
// coordinator's to check.
#pragma once

#include <string>

#include "common/status.h"
#include "gen-cpp/coordinator_types.h"

namespace txc {

// Parses the text of a saga file. kInvalidArgument naming the place
// ("steps[1].max_attempts: must be an integer, got 2.5"; "line 3, column 7:
// ..." for malformed JSON). The request's gtid is set only when the file has one.
Result<wire::SubmitSagaRequest> ParseSagaJson(const std::string& text);

}  // namespace txc
