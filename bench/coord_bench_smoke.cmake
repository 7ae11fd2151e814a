# ctest coord_bench_smoke: a few-second coord_bench run (both stores, every
# workload, 1 and 2 clients). Passes when the bench exits 0 (no failed
# transaction) and its CSV has one row per store x workload x client count,
# each with transactions and failed = 0; and every echo server model (ours,
# TNonblockingServer, the Asio event loop, each of ours and the Asio loop with a
# hand-off) answered
# calls at every client count. Nothing about timing is checked.
#   cmake -DBENCH=path/to/coord_bench -DOUT=dir -P coord_bench_smoke.cmake
file(MAKE_DIRECTORY ${OUT})
set(csv ${OUT}/smoke.csv)
set(json ${OUT}/smoke.json)
file(REMOVE ${csv} ${json})
execute_process(
  COMMAND ${BENCH} --stores=sqlite,postgresql --clients=1,2
          --workloads=2pc_begin,2pc_enlist,saga --duration_s=0.5 --warmup_s=0.2
          --echo_s=0.3 --raw_s=0.3 --server_models=true --csv=${csv} --json=${json}
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
if(NOT n EQUAL 13)
  message(FATAL_ERROR "expected a header and 12 rows in ${csv}, got ${n} lines:\n${lines}")
endif()
list(GET lines 0 header)
string(REPLACE "," ";" names "${header}")
list(FIND names "failed" failed_col)
list(FIND names "committed" committed_col)
list(REMOVE_AT lines 0)
set(seen "")
foreach(line IN LISTS lines)
  string(REPLACE "," ";" f "${line}")
  list(GET f 0 store)
  list(GET f 1 workload)
  list(GET f 2 clients)
  list(GET f ${failed_col} failed)
  list(GET f ${committed_col} committed)
  if(NOT failed EQUAL 0)
    message(FATAL_ERROR "failed transactions in row: ${line}")
  endif()
  if(NOT committed GREATER 0)
    message(FATAL_ERROR "no committed transaction in row: ${line}")
  endif()
  list(APPEND seen "${store}/${workload}/${clients}")
endforeach()
foreach(store sqlite postgresql)
  foreach(workload 2pc_begin 2pc_enlist saga)
    foreach(clients 1 2)
      list(FIND seen "${store}/${workload}/${clients}" at)
      if(at EQUAL -1)
        message(FATAL_ERROR "row ${store}/${workload}/${clients} missing from ${csv}")
      endif()
    endforeach()
  endforeach()
endforeach()
# The server models: 7 models x 2 client counts, each with calls answered.
file(READ ${json} doc)
string(JSON models_n LENGTH "${doc}" server_models)
if(NOT models_n EQUAL 14)
  message(FATAL_ERROR "expected 14 server-model rows in ${json}, got ${models_n}")
endif()
math(EXPR last "${models_n} - 1")
foreach(i RANGE ${last})
  string(JSON server GET "${doc}" server_models ${i} server)
  string(JSON calls GET "${doc}" server_models ${i} calls_per_s)
  if(NOT calls GREATER 0)
    message(FATAL_ERROR "echo server '${server}' answered no call (row ${i} of ${json})")
  endif()
endforeach()
message(STATUS "coord_bench smoke: 12 rows, no failed transaction; 12 server-model rows served")
