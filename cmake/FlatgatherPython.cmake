# The Python package's side of the build (python/flatgather loads libflatgather_torch.so).
#
# flatgather_build_info.json is written next to the library, in the build tree and (pip
# install ., FLATGATHER_PYTHON) inside the installed package: the loader reads it before
# loading, so that a library built against another PyTorch fails with a message naming both
# versions instead of an undefined symbol (python/flatgather/_library.py).
set(_fg_cuda_json false)
if(FLATGATHER_CUDA)
  set(_fg_cuda_json true)
endif()
set(_fg_build_info_json "{
  \"version\": \"${PROJECT_VERSION}\",
  \"torch_version\": \"${Torch_VERSION}\",
  \"cuda\": ${_fg_cuda_json}
}
")
file(GENERATE OUTPUT $<TARGET_FILE_DIR:flatgather_torch>/flatgather_build_info.json
  CONTENT "${_fg_build_info_json}")

if(FLATGATHER_PYTHON)
  # The wheel's root is the install prefix: the library goes into the package's folder, and
  # finds LibTorch where it was linked against (a system folder or a wheel's torch/lib).
  set_target_properties(flatgather_torch PROPERTIES INSTALL_RPATH_USE_LINK_PATH ON)
  install(TARGETS flatgather_torch LIBRARY DESTINATION flatgather)
  install(FILES $<TARGET_FILE_DIR:flatgather_torch>/flatgather_build_info.json
    DESTINATION flatgather)
endif()
