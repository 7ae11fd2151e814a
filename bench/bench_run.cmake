# Shared by the coord_bench ctest scripts: txc_bench_run(CSV EXPECTED_ROWS arg...)
# runs ${BENCH} with the args plus --csv=CSV, fails the test when it exits
# non-zero, writes no CSV or not EXPECTED_ROWS rows, and sets in the caller:
#   bench_columns  the header's column names (a list)
#   bench_rows     the rows, each a comma-separated line
#   bench_output   what the bench printed (for failure messages)
function(txc_bench_run csv expected_rows)
  file(REMOVE ${csv})
  execute_process(
    COMMAND ${BENCH} ${ARGN} --csv=${csv}
    RESULT_VARIABLE rc
    OUTPUT_VARIABLE out
    ERROR_VARIABLE err
    TIMEOUT 240)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "coord_bench exited with ${rc}\n${out}\n${err}")
  endif()
  if(NOT EXISTS ${csv})
    message(FATAL_ERROR "coord_bench wrote no CSV\n${out}\n${err}")
  endif()
  file(STRINGS ${csv} lines)
  list(LENGTH lines n)
  math(EXPR want "${expected_rows} + 1")
  if(NOT n EQUAL want)
    message(FATAL_ERROR "expected a header and ${expected_rows} rows in ${csv}, got ${n} lines:\n${lines}")
  endif()
  list(GET lines 0 header)
  string(REPLACE "," ";" names "${header}")
  list(REMOVE_AT lines 0)
  set(bench_columns "${names}" PARENT_SCOPE)
  set(bench_rows "${lines}" PARENT_SCOPE)
  set(bench_output "${out}\n${err}" PARENT_SCOPE)
endfunction()
