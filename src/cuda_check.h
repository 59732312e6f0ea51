#pragma once
// Checking CUDA runtime calls: every call goes through FG_CUDA_CHECK (throws flatgather::Error
// naming the call, file and line) or, in destructors, FG_CUDA_CHECK_NOEXCEPT (prints and
// goes on).

#include <cuda_runtime_api.h>

namespace flatgather {
namespace detail {
/// Throws flatgather::Error: "<call> failed at <file>:<line>: <cudaGetErrorName>: <string>".
[[noreturn]] void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line);
/// Prints the same message to stderr; for destructors, which must not throw.
void report_cuda_error(cudaError_t error, const char* call, const char* file, int line) noexcept;
}  // namespace detail
}  // namespace flatgather

#define FG_CUDA_CHECK(call)                                                              \
  do {                                                                                   \
    const cudaError_t fg_cuda_error_ = (call);                                           \
    if (fg_cuda_error_ != cudaSuccess) {                                                 \
      ::flatgather::detail::throw_cuda_error(fg_cuda_error_, #call, __FILE__, __LINE__); \
    }                                                                                    \
  } while (false)

#define FG_CUDA_CHECK_NOEXCEPT(call)                                                      \
  do {                                                                                    \
    const cudaError_t fg_cuda_error_ = (call);                                            \
    if (fg_cuda_error_ != cudaSuccess) {                                                  \
      ::flatgather::detail::report_cuda_error(fg_cuda_error_, #call, __FILE__, __LINE__); \
    }                                                                                     \
  } while (false)
