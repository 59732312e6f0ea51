# flatgather_warnings(target): the project's warning set, as errors when FLATGATHER_WERROR.
function(flatgather_warnings target)
  set(cxx_flags -Wall -Wextra -Wpedantic -Wno-unused-parameter)
  set(cuda_flags -Xcompiler=-Wall,-Wextra -Xptxas=-v)
  if(FLATGATHER_WERROR)
    list(APPEND cxx_flags -Werror)
    list(APPEND cuda_flags --Werror=all-warnings)
  endif()
  # LibTorch's headers are not warning-clean under -Wpedantic; they come in as system headers.
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:${cxx_flags}>
    $<$<COMPILE_LANGUAGE:CUDA>:${cuda_flags}>)
endfunction()
