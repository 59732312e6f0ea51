# Install rules and the package config, so that find_package(flatgather) works.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(_fg_targets flatgather)
if(TARGET flatgather_torch)
  list(APPEND _fg_targets flatgather_torch)
endif()

install(TARGETS ${_fg_targets} EXPORT flatgatherTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/flatgather DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(_fg_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/flatgather)
install(EXPORT flatgatherTargets NAMESPACE flatgather:: DESTINATION ${_fg_cmake_dir})
export(EXPORT flatgatherTargets NAMESPACE flatgather::
  FILE ${CMAKE_CURRENT_BINARY_DIR}/flatgatherTargets.cmake)

set(FLATGATHER_CONFIG_CUDA ${FLATGATHER_CUDA})
set(FLATGATHER_CONFIG_TORCH ${FLATGATHER_TORCH})
configure_package_config_file(cmake/flatgatherConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/flatgatherConfig.cmake
  INSTALL_DESTINATION ${_fg_cmake_dir})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/flatgatherConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/flatgatherConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/flatgatherConfigVersion.cmake
  DESTINATION ${_fg_cmake_dir})
