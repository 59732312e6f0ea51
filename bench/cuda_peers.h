#pragma once
// CUDA-side peers and timing for flatgather-bench, as plain functions over raw pointers so
// that the benchmark's .cpp files need no CUDA header and the .cu file no LibTorch header.
// Defined in cuda_peers.cu when FLATGATHER_CUDA is on, else in cuda_peers_stub.cpp (where
// compiled() is false and everything else throws).

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace fgbench {
namespace cuda {

/// True when this binary was built with the CUDA peers.
bool compiled();
/// L2 size of the current device in bytes (0 when unknown).
std::size_t l2_bytes();
/// Name of the current device.
std::string device_name();
/// Waits for the whole device.
void synchronize();

/// CUDA events around a timed region on a stream (nullptr: the legacy default stream, which
/// is LibTorch's current stream unless the caller changed it).
class Timer {
 public:
  explicit Timer(void* stream = nullptr);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  void start();
  /// Records the stop event, waits for it and returns the elapsed seconds.
  double stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// One device-to-device cudaMemcpyAsync of `bytes` on the legacy default stream.
void memcpy_d2d(void* dst, const void* src, std::size_t bytes);

/// N byte copies prepared once (device-side metadata and scratch outside the timed region).
class BatchedCopy {
 public:
  virtual ~BatchedCopy() = default;
  /// Enqueues every copy.
  virtual void run() = 0;
  /// The stream run() uses; time it with a Timer on this stream.
  virtual void* stream() const = 0;
};

/// cub::DeviceMemcpy::Batched. Null when the CUB at hand lacks it.
std::unique_ptr<BatchedCopy> make_cub_batched(const std::vector<const void*>& srcs,
                                              const std::vector<void*>& dsts,
                                              const std::vector<std::size_t>& sizes);
/// cudaMemcpyBatchAsync on a stream of its own (it refuses the legacy default stream). Null
/// when the CUDA runtime at hand lacks it.
std::unique_ptr<BatchedCopy> make_memcpy_batch(const std::vector<const void*>& srcs,
                                               const std::vector<void*>& dsts,
                                               const std::vector<std::size_t>& sizes);
/// Why make_cub_batched / make_memcpy_batch return null ("" when they don't).
std::string cub_batched_unavailable();
std::string memcpy_batch_unavailable();

}  // namespace cuda
}  // namespace fgbench
