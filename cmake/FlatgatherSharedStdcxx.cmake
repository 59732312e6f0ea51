# Finds the shared C++ runtime to link into flatgather's shared libraries when the compiler
# itself would link the static one: sets FLATGATHER_SHARED_STDCXX (empty when it need not).
#
# NOTE: [shared libstdc++]
# g++ links `-lstdc++`, and the linker takes libstdc++.a when the libstdc++.so beside it is
# missing or a dangling link, as in a g++ copied away from its runtime. On the H200 machine
# (g++ 13 under /opt/gcc) libflatgather_torch.so came out with no libstdc++.so.6 among its
# NEEDED entries; a dangling libstdc++.so there is the likely cause (not seen; reproduced
# here by making Debian's dangle). An executable survives that; the library, loaded into a
# Python that already holds the shared libstdc++, got a second, uninitialised copy of the
# streams and locales, and the first operator that formatted a number crashed in it
# (2026-11-30). Naming the shared runtime on the link line first makes the linker resolve
# every C++ runtime symbol there, so nothing is taken from the archive.
set(FLATGATHER_SHARED_STDCXX "")
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND NOT APPLE)
  execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libstdc++.so
    OUTPUT_VARIABLE _fg_stdcxx_link OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(NOT IS_ABSOLUTE "${_fg_stdcxx_link}" OR NOT EXISTS "${_fg_stdcxx_link}")
    execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libstdc++.so.6
      OUTPUT_VARIABLE _fg_stdcxx_runtime OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(NOT IS_ABSOLUTE "${_fg_stdcxx_runtime}" OR NOT EXISTS "${_fg_stdcxx_runtime}")
      find_file(_fg_stdcxx_found NAMES libstdc++.so.6
        PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE} /lib/${CMAKE_LIBRARY_ARCHITECTURE}
              /usr/lib64 /lib64 /usr/lib NO_DEFAULT_PATH NO_CACHE)
      set(_fg_stdcxx_runtime "${_fg_stdcxx_found}")
    endif()
    if(_fg_stdcxx_runtime AND EXISTS "${_fg_stdcxx_runtime}")
      get_filename_component(FLATGATHER_SHARED_STDCXX "${_fg_stdcxx_runtime}" REALPATH)
      message(STATUS "flatgather: ${CMAKE_CXX_COMPILER} has no shared libstdc++ to link "
                     "(-print-file-name=libstdc++.so: '${_fg_stdcxx_link}'): linking "
                     "${FLATGATHER_SHARED_STDCXX} into the shared libraries instead of "
                     "libstdc++.a (NOTE: [shared libstdc++])")
    else()
      message(WARNING "flatgather: ${CMAKE_CXX_COMPILER} would link libstdc++.a into "
                      "libflatgather_torch.so and no libstdc++.so.6 was found: Python "
                      "crashes in such a library. Install the compiler's libstdc++ "
                      "development files.")
    endif()
  endif()
endif()
