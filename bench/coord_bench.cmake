# coord_bench (bench/coord_bench.cc): the coordinator process under load from
# its own client threads, against no-op participant processes, next to the
# Thrift echo ceiling and the raw store commit rate of the same run. Included
# from bench/CMakeLists.txt.
pkg_check_modules(THRIFT_NB IMPORTED_TARGET thrift-nb)
pkg_check_modules(LIBEVENT IMPORTED_TARGET libevent)

set(TXC_ECHO_GEN_DIR ${CMAKE_CURRENT_BINARY_DIR}/gen-echo)
file(MAKE_DIRECTORY ${TXC_ECHO_GEN_DIR}/gen-cpp)
add_custom_command(
  OUTPUT ${TXC_ECHO_GEN_DIR}/gen-cpp/Echo.cpp
  COMMAND ${THRIFT_COMPILER} --gen cpp:moveable_types -out ${TXC_ECHO_GEN_DIR}/gen-cpp
          ${CMAKE_CURRENT_SOURCE_DIR}/echo.thrift
  COMMAND ${CMAKE_COMMAND} -E remove -f ${TXC_ECHO_GEN_DIR}/gen-cpp/Echo_server.skeleton.cpp
  DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/echo.thrift
  COMMENT "Generating Thrift C++ code from bench/echo.thrift")
add_library(txc_echo_wire STATIC ${TXC_ECHO_GEN_DIR}/gen-cpp/Echo.cpp)
target_compile_options(txc_echo_wire PRIVATE -Wno-unused-parameter -Wno-error)
target_include_directories(txc_echo_wire PUBLIC ${TXC_ECHO_GEN_DIR})
target_link_libraries(txc_echo_wire PUBLIC PkgConfig::THRIFT)

add_executable(echo_server echo_server.cc)
target_link_libraries(echo_server txc_echo_wire txc_common txc_cli)
if(THRIFT_NB_FOUND AND LIBEVENT_FOUND)
  target_link_libraries(echo_server PkgConfig::THRIFT_NB PkgConfig::LIBEVENT)
  target_compile_definitions(echo_server PRIVATE TXC_HAVE_THRIFT_NB=1)
endif()

add_executable(noop_participant noop_participant.cc)
target_link_libraries(noop_participant txc_participant txc_cli)

if(TARGET txc_bench_util AND TARGET coordinator)
  add_executable(coord_bench coord_bench.cc)
  target_link_libraries(coord_bench txc_bench_util txc_echo_wire txc_test_harness txc_test_certs
                        txc_cli)
  add_dependencies(coord_bench coordinator noop_participant echo_server)
  target_compile_definitions(coord_bench PRIVATE
    TXC_COORDINATOR_BIN="$<TARGET_FILE:coordinator>"
    TXC_NOOP_PARTICIPANT_BIN="$<TARGET_FILE:noop_participant>"
    TXC_ECHO_SERVER_BIN="$<TARGET_FILE:echo_server>")

  # Smoke run: tiny counts, both stores, every workload; checks only that the
  # CSV has every row and no transaction failed (nothing about timing).
  add_test(NAME coord_bench_smoke
           COMMAND ${CMAKE_COMMAND} -DBENCH=$<TARGET_FILE:coord_bench>
                   -DOUT=${CMAKE_CURRENT_BINARY_DIR}/coord_bench_smoke
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/coord_bench_smoke.cmake)
  set_tests_properties(coord_bench_smoke PROPERTIES LABELS process TIMEOUT 300)

  # The same coordinator against participants written in Python from idl/,
  # every participant's calls batched. Needs Debian's python3-thrift (as
  # tests/rpc's hostile client probe; scripts/lib.sh installs it).
  find_program(TXC_BENCH_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
  if(TXC_BENCH_PYTHON3 AND THRIFT_COMPILER)
    execute_process(COMMAND ${TXC_BENCH_PYTHON3} -c "import thrift"
                    RESULT_VARIABLE TXC_BENCH_PY_THRIFT_MISSING OUTPUT_QUIET ERROR_QUIET)
    if(TXC_BENCH_PY_THRIFT_MISSING EQUAL 0)
      add_test(NAME coord_bench_python_participants
               COMMAND ${CMAKE_COMMAND} -DBENCH=$<TARGET_FILE:coord_bench>
                       -DCOORDINATOR=$<TARGET_FILE:coordinator>
                       -DPARTICIPANT=${CMAKE_CURRENT_SOURCE_DIR}/py_participant.py
                       -DOUT=${CMAKE_CURRENT_BINARY_DIR}/coord_bench_python
                       -P ${CMAKE_CURRENT_SOURCE_DIR}/py_participant_smoke.cmake)
      set_tests_properties(coord_bench_python_participants PROPERTIES LABELS process TIMEOUT 300)
    else()
      message(STATUS "python3-thrift not installed: coord_bench_python_participants skipped")
    endif()
  endif()
endif()
