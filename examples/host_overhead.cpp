// Host time per call of a built plan, with and without the per-call tensor check
// (Options::check_tensors), for growing tensor counts. The figures in docs/perf.md come
// from this program.
//
//   ./build/examples/host_overhead [max_tensors=100000]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>

#include "flatgather/torch.h"

namespace {

// Median over `reps` runs of the time of one call, in microseconds.
template <class F>
double median_us(int reps, int calls, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int c = 0; c < calls; ++c) f();
    const auto stop = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::micro>(stop - start).count() / calls);
  }
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  return t[reps / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const long max_tensors = argc > 1 ? std::atol(argv[1]) : 100000;
  std::cout << "tensors  check_tensors=on (us/call)  check_tensors=off (us/call)\n";
  for (long n = 1; n <= max_tensors; n *= 10) {
    std::vector<at::Tensor> tensors;
    for (long i = 0; i < n; ++i) tensors.push_back(at::randn({1}));
    flatgather::torch::Options on, off;
    off.check_tensors = false;
    auto p_on = flatgather::torch::Plan::from_tensors(tensors, {}, on);
    auto p_off = flatgather::torch::Plan::from_tensors(tensors, {}, off);
    at::Tensor flat = p_on.empty_flat();
    const int calls = static_cast<int>(std::max(1L, 20000 / n));
    const double t_on = median_us(7, calls, [&] { p_on.gather(flat); });
    const double t_off = median_us(7, calls, [&] { p_off.gather(flat); });
    if (!at::equal(flat, at::cat(tensors))) {
      std::cerr << "wrong result at " << n << " tensors\n";
      return 1;
    }
    std::cout << n << "  " << t_on << "  " << t_off << "\n";
  }
  std::cout << "all checks passed\n";
  return 0;
}
