// A program that uses flatgather the way a downstream project would: through its installed
// (or add_subdirectory'd) CMake targets. Exits 0 when gather and scatter are exact, each
// checked against plain LibTorch: gather against torch::cat of the flattened parameters,
// scatter by comparing every parameter with its own slice of the source buffer.
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

  // New values unlike the old ones (randn + 10); each parameter must then equal its slice of
  // them, in parameter order, without padding.
  const at::Tensor source = torch::randn({plan.numel()}) + 10;
  plan.scatter(source);
  bool scatter_ok = true;
  std::int64_t offset = 0;
  for (const auto& p : model->parameters()) {
    const std::int64_t n = p.numel();
    scatter_ok = scatter_ok && offset + n <= source.numel() &&
                 torch::equal(p.detach().reshape(-1), source.narrow(0, offset, n));
    offset += n;
  }
  scatter_ok = scatter_ok && offset == source.numel();

  std::cout << "flatgather::torch consumer: gather " << (gather_ok ? "ok" : "FAIL") << ", scatter "
            << (scatter_ok ? "ok" : "FAIL") << " (" << plan.numel() << " elements, "
            << plan.core().describe() << ")\n";
  return gather_ok && scatter_ok ? 0 : 1;
}
