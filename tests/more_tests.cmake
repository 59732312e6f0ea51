# Reliability tests (docs/reliability.md): the table of bad inputs, the property-based fuzz
# test (bounded by FLATGATHER_FUZZ_SECONDS) and threads on CPU.
if(FLATGATHER_TORCH)
  # Labelled gpu too: each has CUDA cases, so scripts/gpu-check.sh's `ctest -L gpu` runs them.
  fg_add_test(test_errors SOURCES test_errors.cpp LABELS cpu gpu TORCH)
  fg_add_test(test_fuzz SOURCES test_fuzz.cpp LABELS cpu gpu TORCH)
  fg_add_test(test_concurrency SOURCES test_concurrency.cpp TORCH)
endif()
