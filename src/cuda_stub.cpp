// The CUDA entry points of a build without CUDA: same API, a clear error.
#include "executor.h"
#include "check.h"

namespace flatgather {

bool cuda_available() {
  return false;
}
int cuda_device_count() {
  return 0;
}

namespace detail {
std::string cuda_pointer_problem(const void*, int) {
  return "";
}

std::unique_ptr<Executor> make_cuda_executor(ExecutorInput input) {
  FG_CHECK(false, "the tensors are on " << to_string(input.device)
                                        << " but flatgather was built without CUDA; rebuild "
                                           "with -DFLATGATHER_CUDA=ON or use CPU tensors");
  return nullptr;
}
}  // namespace detail
}  // namespace flatgather
