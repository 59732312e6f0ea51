// The core target alone (flatgather::flatgather): no LibTorch header, no LibTorch library.
// Two host arrays into one flat buffer and back; exits 0 when both directions are exact.
#include <iostream>
#include <vector>

#include <flatgather/plan.h>

int main() {
  std::vector<float> w(6), b = {-1.0f, -2.0f};
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i) + 0.5f;
  const flatgather::Plan plan = flatgather::Plan::build(
      {{w.data(), flatgather::DType::Float32, {2, 3}, {}, flatgather::Device::cpu(), "w"},
       {b.data(), flatgather::DType::Float32, {2}, {}, flatgather::Device::cpu(), "b"}});
  std::vector<float> flat(static_cast<std::size_t>(plan.layout().numel()));
  plan.gather(flat.data(), static_cast<std::int64_t>(flat.size()));
  const bool gather_ok = flat.size() == 8 && flat[0] == 0.5f && flat[5] == 5.5f && flat[7] == -2.0f;
  for (float& v : flat) v *= 2;
  plan.scatter(flat.data(), static_cast<std::int64_t>(flat.size()));
  const bool scatter_ok = w[5] == 11.0f && b[1] == -4.0f;
  std::cout << "flatgather::flatgather consumer: gather " << (gather_ok ? "ok" : "FAIL")
            << ", scatter " << (scatter_ok ? "ok" : "FAIL") << " (" << plan.describe() << ")\n";
  return gather_ok && scatter_ok ? 0 : 1;
}
