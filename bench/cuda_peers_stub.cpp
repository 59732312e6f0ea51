// flatgather-bench without CUDA: the CUDA peers exist and say why they cannot run.
#include <stdexcept>

#include "cuda_peers.h"

namespace fgbench {
namespace cuda {
namespace {
[[noreturn]] void no_cuda() {
  throw std::runtime_error("flatgather-bench was built without CUDA (-DFLATGATHER_CUDA=OFF)");
}
}  // namespace

bool compiled() {
  return false;
}
std::size_t l2_bytes() {
  return 0;
}
std::string device_name() {
  return "none";
}
void synchronize() {
  no_cuda();
}

struct Timer::Impl {};
Timer::Timer(void*) {
  no_cuda();
}
Timer::~Timer() = default;
void Timer::start() {
  no_cuda();
}
double Timer::stop() {
  no_cuda();
}

void memcpy_d2d(void*, const void*, std::size_t) {
  no_cuda();
}

std::unique_ptr<BatchedCopy> make_cub_batched(const std::vector<const void*>&,
                                              const std::vector<void*>&,
                                              const std::vector<std::size_t>&) {
  return nullptr;
}
std::unique_ptr<BatchedCopy> make_memcpy_batch(const std::vector<const void*>&,
                                               const std::vector<void*>&,
                                               const std::vector<std::size_t>&) {
  return nullptr;
}
std::string cub_batched_unavailable() {
  return "built without CUDA";
}
std::string memcpy_batch_unavailable() {
  return "built without CUDA";
}

}  // namespace cuda
}  // namespace fgbench
