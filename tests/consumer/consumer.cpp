// A program that uses flatgather the way a downstream project would: through its installed
// (or add_subdirectory'd) CMake targets. Exits 0 when a gather/scatter round trip is exact.
#include <torch/torch.h>

#include <iostream>
#include <vector>

#include <flatgather/torch.h>

int main() {
  // The LibTorch adapter on a module.
  torch::manual_seed(0);
  torch::nn::Sequential model(torch::nn::Linear(4, 3), torch::nn::ReLU(), torch::nn::Linear(3, 2));
  const auto plan = flatgather::torch::Plan::from_module(*model);
  const at::Tensor weights = plan.gather();
  std::vector<at::Tensor> pieces;
  for (const auto& p : model->parameters()) pieces.push_back(p.detach().reshape(-1));
  const bool gather_ok = torch::equal(weights, torch::cat(pieces));
  plan.scatter(weights * 2);
  const bool scatter_ok = torch::equal(plan.gather(), weights * 2);

  std::cout << "flatgather::torch consumer: gather " << (gather_ok ? "ok" : "FAIL") << ", scatter "
            << (scatter_ok ? "ok" : "FAIL") << " (" << plan.numel() << " elements, "
            << plan.core().describe() << ")\n";
  return gather_ok && scatter_ok ? 0 : 1;
}
