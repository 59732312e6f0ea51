// The timed loop of flatgather-bench.
//
// NOTE: [honest timing]
// - Every method of an op moves the same bytes: bytes_moved() counts what the op must read
//   plus write (gather: tensors + flat; scatter: flat + tensors; scatter_add: flat + tensors
//   read + tensors written). A peer that does more work (torch_cat copying a non-contiguous
//   tensor twice) is charged its time, not its bytes.
// - Timing covers only the call: std::chrono::steady_clock around it on the CPU, CUDA events
//   on the method's stream on the GPU (host launch work after the start event is included,
//   since the GPU idles while it happens). Set-up, the reference check and one warm-up call
//   happen before the first timed iteration; Google Benchmark's repetitions give medians.
// - On the GPU the call's host time is timed too (steady_clock around the call alone, inside
//   the events, with no wait in it): the counter host_us, what the caller's thread spends per
//   call before it may go on (planning, checks, the launch).
// - Buffer sets rotate between iterations so that together they span at least
//   kRotateCacheMultiple times the last-level cache (LLC on the CPU, L2 on the GPU; see
//   workload.cpp): no method reads data the previous iteration left in cache. A suite whose
//   one set is that large already uses one set.
// - Every method's result is compared once, exactly, with LibTorch's reference (check.cpp);
//   a wrong answer is reported with SkipWithError instead of a time.
#include "timing.h"

#include <chrono>
#include <cstdio>
#include <memory>

#include <ATen/core/grad_mode.h>

#include "check.h"
#include "cuda_peers.h"

namespace fgbench {
namespace {

double elapsed_seconds() {
  static const auto start = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

void run_benchmark(benchmark::State& state, BenchOp op, Dev dev, const Suite& suite,
                   const MethodSpec& method, const std::string& progress) {
  const at::NoGradGuard no_grad;
  const std::string key = std::string(op_name(op)) + "/" + method.name;
  Method* m = nullptr;
  try {
    Workload& w = workload_for(dev, suite);
    auto found = w.methods.find(key);
    if (found == w.methods.end()) {
      w.methods.clear();  // free the previous benchmark's plans and buffers first
      std::fprintf(stderr, "%s  (%.0f s)\n", progress.c_str(), elapsed_seconds());
      std::unique_ptr<Method> fresh = method.make(op, w, suite);
      // The check doubles as the warm-up call.
      const std::string wrong = check(*fresh, op, w, suite);
      if (!wrong.empty()) {
        w.methods.emplace(key, nullptr);
        state.SkipWithError(wrong.c_str());
        return;
      }
      found = w.methods.emplace(key, std::move(fresh)).first;
    }
    m = found->second.get();
    if (!m) {
      state.SkipWithError("wrong result (see the first repetition)");
      return;
    }
  } catch (const std::exception& e) {
    // The suite stays (rebuilding the 7B one costs seconds); the method's memory goes.
    if (Workload* w = resident_workload()) w->methods.clear();
    state.SkipWithError(e.what());
    return;
  }

  const std::size_t nsets = resident_workload()->sets.size();
  std::size_t set = 0;
  double seconds = 0;
  double host_seconds = 0;  // CUDA: the call alone, on the host (NOTE: [honest timing])
  std::unique_ptr<cuda::Timer> timer;
  if (dev == Dev::CUDA) timer = std::make_unique<cuda::Timer>(m->stream());
  try {
    for (auto _ : state) {
      set = (set + 1) % nsets;
      if (timer) {
        timer->start();
        const auto h0 = std::chrono::steady_clock::now();
        m->run(set);
        host_seconds +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - h0).count();
        seconds += timer->stop();
      } else {
        const auto t0 = std::chrono::steady_clock::now();
        m->run(set);
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  const double iterations = static_cast<double>(state.iterations());
  const double bytes = static_cast<double>(bytes_moved(op, suite));
  if (iterations > 0 && seconds > 0) {
    state.counters["bytes_per_second"] = benchmark::Counter(bytes * iterations / seconds);
    state.counters["time_us"] = benchmark::Counter(seconds / iterations * 1e6);
    if (timer) state.counters["host_us"] = benchmark::Counter(host_seconds / iterations * 1e6);
  }
  state.counters["bytes"] = benchmark::Counter(bytes);
  state.counters["tensors"] = benchmark::Counter(static_cast<double>(suite.tensors.size()));
  state.counters["buffer_sets"] = benchmark::Counter(static_cast<double>(nsets));
  if (dev == Dev::CPU) state.counters["cpu_threads"] = benchmark::Counter(m->threads());
}

}  // namespace fgbench
