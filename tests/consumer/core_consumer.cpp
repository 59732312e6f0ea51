// The core target alone (flatgather::flatgather): no LibTorch header, no LibTorch library.
// Two host arrays into one flat buffer and back; exits 0 when both directions are exact,
// each checked element by element against the arrays and the buffer read directly.
#include <iostream>
#include <vector>

#include <flatgather/plan.h>

int main() {
  std::vector<float> w(6), b = {-1.0f, -2.0f};
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i) + 0.5f;
  const flatgather::Plan plan = flatgather::Plan::build(
      {{w.data(), flatgather::DType::Float32, {2, 3}, {}, flatgather::Device::cpu(), "w"},
       {b.data(), flatgather::DType::Float32, {2}, {}, flatgather::Device::cpu(), "b"}});

  // gather: the flat buffer (poisoned first) is w's elements, then b's.
  std::vector<float> flat(static_cast<std::size_t>(plan.layout().numel()), -999.0f);
  plan.gather(flat.data(), static_cast<std::int64_t>(flat.size()));
  std::vector<float> expected(w);
  expected.insert(expected.end(), b.begin(), b.end());
  bool gather_ok = flat.size() == expected.size();
  for (std::size_t i = 0; gather_ok && i < flat.size(); ++i) gather_ok = flat[i] == expected[i];

  // scatter: new values unlike the old ones; w[i] is source[i], b[i] is source[w.size() + i].
  std::vector<float> source(flat.size());
  for (std::size_t i = 0; i < source.size(); ++i) source[i] = 100.0f + 0.25f * i;
  plan.scatter(source.data(), static_cast<std::int64_t>(source.size()));
  bool scatter_ok = source.size() == w.size() + b.size();
  for (std::size_t i = 0; scatter_ok && i < w.size(); ++i) scatter_ok = w[i] == source[i];
  for (std::size_t i = 0; scatter_ok && i < b.size(); ++i)
    scatter_ok = b[i] == source[w.size() + i];

  std::cout << "flatgather::flatgather consumer: gather " << (gather_ok ? "ok" : "FAIL")
            << ", scatter " << (scatter_ok ? "ok" : "FAIL") << " (" << plan.describe() << ")\n";
  return gather_ok && scatter_ok ? 0 : 1;
}
