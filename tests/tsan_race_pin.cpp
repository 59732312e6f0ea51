// The ThreadSanitizer stage's pin (scripts/sanitize.sh tsan): a program with a real data race
// on a plan, which the stage must report. Two threads use one core plan with no lock between
// them, one rebinding its tensor back and forth while the other gathers: exactly what
// Plan::rebind's documentation forbids and what flatgather::torch::Plan's rebind mutex
// prevents. Built only in the tsan preset; its test expects TSan's exit code and report, so
// a build that is not instrumented, or a TSan that misses the race, fails the stage.
#include <atomic>
#include <iostream>
#include <thread>
#include <vector>

#include <flatgather/plan.h>

int main() {
  constexpr int kRounds = 2000;
  std::vector<float> a(64, 1.0f), b(64, 2.0f), flat(64);
  flatgather::Plan plan = flatgather::Plan::build(
      {{a.data(), flatgather::DType::Float32, {64}, {}, flatgather::Device::cpu(), "a"}});
  std::atomic<bool> go{false};  // only starts the threads together; orders nothing else
  std::thread rebinder([&] {
    while (!go.load(std::memory_order_relaxed)) {}
    for (int i = 0; i < kRounds; ++i) plan.rebind(0, i % 2 ? a.data() : b.data());
  });
  std::thread gatherer([&] {
    while (!go.load(std::memory_order_relaxed)) {}
    for (int i = 0; i < kRounds; ++i) plan.gather(flat.data(), 64);
  });
  go.store(true, std::memory_order_relaxed);
  rebinder.join();
  gatherer.join();
  // Reached only when TSan did not stop the program at the race (halt_on_error=1).
  std::cout << "tsan_race_pin: no race reported\n";
  return 0;
}
