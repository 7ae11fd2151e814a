# ctest coord_bench_python_participants: coord_bench against participants
# written in Python from idl/ (bench/py_participant.py, a stock Thrift Python
# server), with the coordinator batching every participant's calls
# (--participant_batch_below_us very large: a batch is written as soon as
# calls are ready together). Passes when the bench exits 0 and every row
# committed transactions with none aborted or failed. Nothing about timing.
#   cmake -DBENCH=coord_bench -DCOORDINATOR=coordinator -DPARTICIPANT=py_participant.py
#         -DOUT=dir -P py_participant_smoke.cmake
file(MAKE_DIRECTORY ${OUT})
set(csv ${OUT}/py.csv)
set(wrapper ${OUT}/coordinator-batching)
file(WRITE ${wrapper}
     "#!/bin/sh\nexec '${COORDINATOR}' --participant_batch_below_us=60000000 \"$@\"\n")
file(CHMOD ${wrapper} PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ
     GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
include(${CMAKE_CURRENT_LIST_DIR}/bench_run.cmake)
txc_bench_run(${csv} 2 --stores=sqlite --clients=16 --workloads=2pc_begin,saga --duration_s=1
              --warmup_s=0.5 --echo_s=0.2 --raw_s=0.2 --server_models=false
              --coordinator_bin=${wrapper} --participant_bin=${PARTICIPANT})
set(names "${bench_columns}")
set(lines "${bench_rows}")
list(FIND names "failed" failed_col)
list(FIND names "aborted" aborted_col)
list(FIND names "committed" committed_col)
foreach(line IN LISTS lines)
  string(REPLACE "," ";" f "${line}")
  list(GET f ${failed_col} failed)
  list(GET f ${aborted_col} aborted)
  list(GET f ${committed_col} committed)
  if(NOT failed EQUAL 0 OR NOT aborted EQUAL 0)
    message(FATAL_ERROR "aborted or failed transactions in row: ${line}\n${bench_output}")
  endif()
  if(NOT committed GREATER 0)
    message(FATAL_ERROR "no committed transaction in row: ${line}\n${bench_output}")
  endif()
endforeach()
message(STATUS "python participants, batched calls: ${lines}")
