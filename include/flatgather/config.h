#pragma once
/// \file config.h
/// Portability macros shared by host code and CUDA kernels, and the build's configuration
/// (version, FLATGATHER_WITH_CUDA) from the generated flatgather/build_config.h.

#include "flatgather/build_config.h"

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FG_HOST_DEVICE __host__ __device__
#define FG_DEVICE __device__
#else
#define FG_HOST_DEVICE
#define FG_DEVICE
#endif

#if defined(__CUDA_ARCH__)
#define FG_FORCE_INLINE __forceinline__
#else
#define FG_FORCE_INLINE inline __attribute__((always_inline))
#endif
