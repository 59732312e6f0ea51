# Reliability tests (docs/reliability.md): the table of bad inputs, the property-based fuzz
# test (bounded by FLATGATHER_FUZZ_SECONDS) and threads on CPU.
if(FLATGATHER_TORCH)
  # Labelled gpu too: each has CUDA cases, so scripts/gpu-check.sh's `ctest -L gpu` runs them.
  fg_add_test(test_errors SOURCES test_errors.cpp LABELS cpu gpu TORCH)
  fg_add_test(test_fuzz SOURCES test_fuzz.cpp LABELS cpu gpu TORCH)
  fg_add_test(test_concurrency SOURCES test_concurrency.cpp TORCH)
  # Every CPU loop choice gives the same bits; the fuzz test's LibTorch oracles checked
  # against the forced baseline and AVX2 (no AVX-512) loops too (NOTE: [cpu isa dispatch]).
  fg_add_test(test_cpu_isa SOURCES test_cpu_isa.cpp TORCH)
  if(FLATGATHER_HAVE_AVX512BF16)  # the library rounds with AVX512_BF16 where the CPU has it
    target_compile_definitions(test_cpu_isa PRIVATE FLATGATHER_CPU_AVX512BF16=1)
  endif()
  foreach(isa IN ITEMS baseline avx2)
    add_test(NAME test_fuzz_${isa}_loops COMMAND ${CMAKE_COMMAND} -E env FLATGATHER_CPU_ISA=${isa}
             FLATGATHER_FUZZ_SECONDS=10 $<TARGET_FILE:test_fuzz> --gtest_color=no)
    set_tests_properties(test_fuzz_${isa}_loops PROPERTIES LABELS cpu TIMEOUT 600
      SKIP_RETURN_CODE ${FG_SKIP_EXIT_CODE})
  endforeach()
  add_test(NAME test_cpu_isa_env_bogus COMMAND test_cpu_isa --gtest_also_run_disabled_tests
           --gtest_filter=CpuIsa.DISABLED_UnknownEnvironmentValueIsAnError --gtest_color=no)
  set_tests_properties(test_cpu_isa_env_bogus PROPERTIES LABELS cpu TIMEOUT 60
    ENVIRONMENT FLATGATHER_CPU_ISA=bogus)
endif()
