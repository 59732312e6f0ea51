# Tests of the CUDA executor, included by tests/CMakeLists.txt.
# test_tiles: the kernels' index math (host/device functions) and their warp code, emulated on
# the CPU; runs everywhere. Its casts and scatter_add are checked against LibTorch
# (torch_reference.cpp, a separate file: test_tiles.cpp emulates CUDA intrinsics).
if(FLATGATHER_TORCH)
  fg_add_test(test_tiles SOURCES test_tiles.cpp torch_reference.cpp TORCH)
  target_include_directories(test_tiles PRIVATE ${PROJECT_SOURCE_DIR}/kernels ${PROJECT_SOURCE_DIR}/src)
  if(NOT FLATGATHER_CUDA)
    # Without the CUDA executor nothing in the adapter refers to the tuning parser, so the
    # linker leaves kernels/tuning.cpp out of libflatgather_torch.so: the test compiles it.
    target_sources(test_tiles PRIVATE ${PROJECT_SOURCE_DIR}/kernels/tuning.cpp)
  endif()
endif()

# test_cuda: the kernels on a GPU against the CPU path and LibTorch; skips without a device.
if(FLATGATHER_CUDA AND FLATGATHER_TORCH)
  fg_add_test(test_cuda SOURCES test_cuda.cpp LABELS gpu TORCH)
  target_link_libraries(test_cuda PRIVATE CUDA::cudart)
endif()
