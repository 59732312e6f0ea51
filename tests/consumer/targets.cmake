# The consumer programs, shared by both consumer projects (find-package, add-subdirectory).
add_executable(core_consumer ${CMAKE_CURRENT_LIST_DIR}/core_consumer.cpp)
target_link_libraries(core_consumer PRIVATE flatgather::flatgather)

add_executable(consumer ${CMAKE_CURRENT_LIST_DIR}/consumer.cpp)
target_link_libraries(consumer PRIVATE flatgather::torch)

enable_testing()
add_test(NAME core_consumer COMMAND core_consumer)
add_test(NAME consumer COMMAND consumer)
