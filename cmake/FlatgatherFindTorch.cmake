# Finds LibTorch: the imported target `torch`, TORCH_LIBRARIES and Torch_VERSION.
#
# NOTE: [finding torch]
# LibTorch's CMake config lives where Debian's libtorch-dev puts it (the multiarch CMake
# folder, searched by default) or inside a pip-installed torch (torch.utils.cmake_prefix_path).
# The operators must be built against the torch that will load them, so a pip build
# (FLATGATHER_PYTHON) asks the Python running it first; a plain CMake build asks Python
# only when the default search finds nothing. Torch_DIR or CMAKE_PREFIX_PATH, when given,
# still win.
function(_fg_python_torch_prefix out)
  set(${out} "" PARENT_SCOPE)
  if(DEFINED Python_EXECUTABLE)
    set(_python ${Python_EXECUTABLE})
  elseif(DEFINED Python3_EXECUTABLE)
    set(_python ${Python3_EXECUTABLE})
  else()
    find_package(Python3 COMPONENTS Interpreter QUIET)
    set(_python ${Python3_EXECUTABLE})
  endif()
  if(NOT _python)
    return()
  endif()
  execute_process(
    COMMAND ${_python} -c "import torch.utils; print(torch.utils.cmake_prefix_path, end='')"
    OUTPUT_VARIABLE _prefix RESULT_VARIABLE _rc ERROR_QUIET)
  if(_rc EQUAL 0 AND IS_DIRECTORY "${_prefix}/Torch")
    message(STATUS "flatgather: LibTorch from ${_python}'s torch: ${_prefix}")
    set(${out} "${_prefix}" PARENT_SCOPE)
  endif()
endfunction()

# GLOBAL: a project that add_subdirectory()s flatgather links flatgather::torch, whose
# interface names LibTorch's imported target.
if(NOT FLATGATHER_PYTHON)
  find_package(Torch QUIET GLOBAL)
endif()
if(NOT Torch_FOUND)
  _fg_python_torch_prefix(_fg_torch_prefix)
  if(_fg_torch_prefix)
    # After a given CMAKE_PREFIX_PATH, before the default folders.
    list(APPEND CMAKE_PREFIX_PATH "${_fg_torch_prefix}")
  endif()
  find_package(Torch REQUIRED GLOBAL)
endif()

# NOTE: [torch's own libraries]
# TorchConfig.cmake looks up c10 and the rest of TORCH_LIBRARIES with find_library(... PATHS
# <torch>/lib), and CMake searches the system's folders before PATHS: on a machine with
# Debian's libtorch-dev, a build against a pip torch linked the operators to
# /usr/lib/x86_64-linux-gnu/libc10.so (1.13) beside the pip torch's own libc10.so, two c10s in
# one process (grad mode set in one was not seen by the other, then a crash). Each library the
# found torch ships itself is taken from its own folder.
get_filename_component(_fg_torch_lib "${TORCH_INSTALL_PREFIX}/lib" REALPATH)
set(_fg_torch_libraries "")
foreach(_fg_lib IN LISTS TORCH_LIBRARIES)
  if(NOT TARGET "${_fg_lib}" AND EXISTS "${_fg_lib}" AND NOT IS_DIRECTORY "${_fg_lib}")
    get_filename_component(_fg_name "${_fg_lib}" NAME)
    get_filename_component(_fg_dir "${_fg_lib}" DIRECTORY)
    get_filename_component(_fg_dir "${_fg_dir}" REALPATH)
    if(NOT _fg_dir STREQUAL _fg_torch_lib AND EXISTS "${_fg_torch_lib}/${_fg_name}")
      message(STATUS "flatgather: ${_fg_lib} is not the found LibTorch's: "
                     "${_fg_torch_lib}/${_fg_name} instead")
      set(_fg_lib "${_fg_torch_lib}/${_fg_name}")
    endif()
  endif()
  list(APPEND _fg_torch_libraries "${_fg_lib}")
endforeach()
set(TORCH_LIBRARIES "${_fg_torch_libraries}")
