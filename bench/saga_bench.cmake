# bench/saga_bench.cc: the 4-step order saga (examples/order-payment-saga) at 1
# and 32 concurrent clients. Included from bench/CMakeLists.txt.
if(TARGET txc_bench_util AND TARGET order_saga_shop AND TARGET txc_test_harness)
  add_executable(saga_bench saga_bench.cc)
  target_link_libraries(saga_bench txc_bench_util order_saga_shop txc_test_harness
                        txc_cli)
  add_dependencies(saga_bench order_service payment_service inventory_service)
  target_compile_definitions(saga_bench PRIVATE
    TXC_ORDER_SERVICE_BIN="$<TARGET_FILE:order_service>"
    TXC_PAYMENT_SERVICE_BIN="$<TARGET_FILE:payment_service>"
    TXC_INVENTORY_SERVICE_BIN="$<TARGET_FILE:inventory_service>")
endif()
