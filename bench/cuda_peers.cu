// CUDA peers and timing for flatgather-bench (see cuda_peers.h). CUDA and CUB headers only.
#include <cuda_runtime.h>

#include <sstream>
#include <stdexcept>

#if __has_include(<cub/device/device_memcpy.cuh>)
#include <cub/device/device_memcpy.cuh>
#define FGBENCH_HAVE_CUB_BATCHED 1
#else
#define FGBENCH_HAVE_CUB_BATCHED 0
#endif

// cudaMemcpyBatchAsync arrived in CUDA 12.8 (with a failIdx argument that 13.0 removed).
#if defined(CUDART_VERSION) && CUDART_VERSION >= 12080
#define FGBENCH_HAVE_MEMCPY_BATCH 1
#else
#define FGBENCH_HAVE_MEMCPY_BATCH 0
#endif

#include "cuda_peers.h"

namespace fgbench {
namespace cuda {
namespace {

[[noreturn]] void throw_cuda(cudaError_t err, const char* call, const char* file, int line) {
  std::ostringstream os;
  os << file << ":" << line << ": " << call << " failed: " << cudaGetErrorName(err) << " ("
     << cudaGetErrorString(err) << ")";
  throw std::runtime_error(os.str());
}

#define FGBENCH_CUDA(call)                                 \
  do {                                                     \
    const cudaError_t fgbench_err_ = (call);               \
    if (fgbench_err_ != cudaSuccess) {                     \
      throw_cuda(fgbench_err_, #call, __FILE__, __LINE__); \
    }                                                      \
  } while (false)

cudaStream_t as_stream(void* s) {
  return static_cast<cudaStream_t>(s);
}

// Device-side copy lists for the byte-copy peers: uploaded once, freed with the peer.
struct DeviceLists {
  const void** d_srcs = nullptr;
  void** d_dsts = nullptr;
  std::size_t* d_sizes = nullptr;

  DeviceLists(const std::vector<const void*>& srcs, const std::vector<void*>& dsts,
              const std::vector<std::size_t>& sizes) {
    const std::size_t n = srcs.size();
    FGBENCH_CUDA(cudaMalloc(reinterpret_cast<void**>(&d_srcs), n * sizeof(void*)));
    FGBENCH_CUDA(cudaMalloc(reinterpret_cast<void**>(&d_dsts), n * sizeof(void*)));
    FGBENCH_CUDA(cudaMalloc(reinterpret_cast<void**>(&d_sizes), n * sizeof(std::size_t)));
    FGBENCH_CUDA(cudaMemcpy(d_srcs, srcs.data(), n * sizeof(void*), cudaMemcpyHostToDevice));
    FGBENCH_CUDA(cudaMemcpy(d_dsts, dsts.data(), n * sizeof(void*), cudaMemcpyHostToDevice));
    FGBENCH_CUDA(
        cudaMemcpy(d_sizes, sizes.data(), n * sizeof(std::size_t), cudaMemcpyHostToDevice));
  }
  ~DeviceLists() {
    cudaFree(d_srcs);
    cudaFree(d_dsts);
    cudaFree(d_sizes);
  }
  DeviceLists(const DeviceLists&) = delete;
  DeviceLists& operator=(const DeviceLists&) = delete;
};

#if FGBENCH_HAVE_CUB_BATCHED
class CubBatched final : public BatchedCopy {
 public:
  CubBatched(const std::vector<const void*>& srcs, const std::vector<void*>& dsts,
             const std::vector<std::size_t>& sizes)
      : lists_(srcs, dsts, sizes), count_(static_cast<std::int64_t>(srcs.size())) {
    FGBENCH_CUDA(cub::DeviceMemcpy::Batched(nullptr, temp_bytes_, lists_.d_srcs, lists_.d_dsts,
                                            lists_.d_sizes, count_, nullptr));
    FGBENCH_CUDA(cudaMalloc(&d_temp_, temp_bytes_ > 0 ? temp_bytes_ : 1));
  }
  ~CubBatched() override { cudaFree(d_temp_); }
  void run() override {
    std::size_t bytes = temp_bytes_;
    FGBENCH_CUDA(cub::DeviceMemcpy::Batched(d_temp_, bytes, lists_.d_srcs, lists_.d_dsts,
                                            lists_.d_sizes, count_, nullptr));
  }
  void* stream() const override { return nullptr; }

 private:
  DeviceLists lists_;
  std::int64_t count_;
  std::size_t temp_bytes_ = 0;
  void* d_temp_ = nullptr;
};
#endif

#if FGBENCH_HAVE_MEMCPY_BATCH
class MemcpyBatch final : public BatchedCopy {
 public:
  MemcpyBatch(const std::vector<const void*>& srcs, const std::vector<void*>& dsts,
              const std::vector<std::size_t>& sizes)
      : srcs_(srcs), dsts_(dsts), sizes_(sizes) {
    // A blocking stream: ordered after LibTorch's work on the legacy default stream.
    FGBENCH_CUDA(cudaStreamCreate(&stream_));
    attrs_.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
    attrs_.srcLocHint.type = cudaMemLocationTypeDevice;
    attrs_.dstLocHint.type = cudaMemLocationTypeDevice;
    int device = 0;
    FGBENCH_CUDA(cudaGetDevice(&device));
    attrs_.srcLocHint.id = device;
    attrs_.dstLocHint.id = device;
    attrs_.flags = 0;
  }
  ~MemcpyBatch() override { cudaStreamDestroy(stream_); }
  void run() override {
    std::size_t attr_index = 0;
#if CUDART_VERSION >= 13000
    FGBENCH_CUDA(cudaMemcpyBatchAsync(dsts_.data(), srcs_.data(), sizes_.data(), sizes_.size(),
                                      &attrs_, &attr_index, 1, stream_));
#else
    std::size_t fail_index = 0;
    FGBENCH_CUDA(cudaMemcpyBatchAsync(
        const_cast<void**>(dsts_.data()), const_cast<void**>(srcs_.data()), sizes_.data(),
        sizes_.size(), &attrs_, &attr_index, 1, &fail_index, stream_));
#endif
  }
  void* stream() const override {
    return stream_;
  }

 private:
  std::vector<const void*> srcs_;
  std::vector<void*> dsts_;
  std::vector<std::size_t> sizes_;
  cudaMemcpyAttributes attrs_{};
  cudaStream_t stream_ = nullptr;
};
#endif

}  // namespace

bool compiled() {
  return true;
}

std::size_t l2_bytes() {
  int device = 0, bytes = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 0;
  if (cudaDeviceGetAttribute(&bytes, cudaDevAttrL2CacheSize, device) != cudaSuccess) return 0;
  return static_cast<std::size_t>(bytes);
}

std::string device_name() {
  int device = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&device) != cudaSuccess) return "unknown";
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) return "unknown";
  return prop.name;
}

void synchronize() {
  FGBENCH_CUDA(cudaDeviceSynchronize());
}

struct Timer::Impl {
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
};

Timer::Timer(void* stream) : impl_(new Impl) {
  impl_->stream = as_stream(stream);
  FGBENCH_CUDA(cudaEventCreate(&impl_->start));
  FGBENCH_CUDA(cudaEventCreate(&impl_->stop));
}

Timer::~Timer() {
  cudaEventDestroy(impl_->start);
  cudaEventDestroy(impl_->stop);
}

void Timer::start() {
  FGBENCH_CUDA(cudaEventRecord(impl_->start, impl_->stream));
}

double Timer::stop() {
  FGBENCH_CUDA(cudaEventRecord(impl_->stop, impl_->stream));
  FGBENCH_CUDA(cudaEventSynchronize(impl_->stop));
  float ms = 0.f;
  FGBENCH_CUDA(cudaEventElapsedTime(&ms, impl_->start, impl_->stop));
  return static_cast<double>(ms) * 1e-3;
}

void memcpy_d2d(void* dst, const void* src, std::size_t bytes) {
  FGBENCH_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, nullptr));
}

std::unique_ptr<BatchedCopy> make_cub_batched(const std::vector<const void*>& srcs,
                                              const std::vector<void*>& dsts,
                                              const std::vector<std::size_t>& sizes) {
#if FGBENCH_HAVE_CUB_BATCHED
  return std::make_unique<CubBatched>(srcs, dsts, sizes);
#else
  (void)srcs, (void)dsts, (void)sizes;
  return nullptr;
#endif
}

std::unique_ptr<BatchedCopy> make_memcpy_batch(const std::vector<const void*>& srcs,
                                               const std::vector<void*>& dsts,
                                               const std::vector<std::size_t>& sizes) {
#if FGBENCH_HAVE_MEMCPY_BATCH
  return std::make_unique<MemcpyBatch>(srcs, dsts, sizes);
#else
  (void)srcs, (void)dsts, (void)sizes;
  return nullptr;
#endif
}

std::string cub_batched_unavailable() {
  return FGBENCH_HAVE_CUB_BATCHED ? "" : "this CUB has no cub::DeviceMemcpy::Batched";
}

std::string memcpy_batch_unavailable() {
  return FGBENCH_HAVE_MEMCPY_BATCH ? "" : "cudaMemcpyBatchAsync needs CUDA 12.8 or newer";
}

}  // namespace cuda
}  // namespace fgbench
