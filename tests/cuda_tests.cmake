# Tests of the CUDA executor, included by tests/CMakeLists.txt.
# test_tiles: the kernels' index math (host/device functions) on the CPU; runs everywhere.
fg_add_test(test_tiles SOURCES test_tiles.cpp)
target_include_directories(test_tiles PRIVATE ${PROJECT_SOURCE_DIR}/kernels ${PROJECT_SOURCE_DIR}/src)

# test_cuda: the kernels on a GPU against the CPU path and LibTorch; skips without a device.
if(FLATGATHER_CUDA AND FLATGATHER_TORCH)
  fg_add_test(test_cuda SOURCES test_cuda.cpp LABELS gpu TORCH)
  target_link_libraries(test_cuda PRIVATE CUDA::cudart)
endif()
