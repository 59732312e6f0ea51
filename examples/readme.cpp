// The C++ example of README.md, compiled and checked: the lines between README-BEGIN and
// README-END appear verbatim in README.md (tests/test_readme.sh checks that).
#include <torch/torch.h>

#include <iostream>

#include "flatgather/torch.h"

int main() {
  torch::manual_seed(0);
  auto model = std::make_shared<torch::nn::SequentialImpl>(
      torch::nn::Linear(10, 5), torch::nn::ReLU(), torch::nn::Linear(5, 2));
  const double world_size = 2, lr = 0.1;
  model->forward(torch::randn({4, 10})).sum().backward();
  std::vector<at::Tensor> before, grads_before;
  for (const auto& p : model->parameters()) {
    before.push_back(p.detach().clone());
    grads_before.push_back(p.grad().clone());
  }

  // The block keeps the README's hand-aligned comments.
  // clang-format off
  // README-BEGIN
  namespace fg = flatgather::torch;

  // Once: which tensors, and the flat buffer's dtype and alignment.
  fg::Selection grads;
  grads.grads = true;                  // the parameters' gradients (also: buffers, weights or
  fg::Options opts;                    // biases only, trainable only, include/exclude globs)
  opts.dtype = at::kFloat;             // flat dtype: bf16/fp16 tensors are cast on the way
  opts.align_bytes = 256;              // every segment starts on a 256-byte boundary
  fg::Plan grad_plan = fg::Plan::from_module(*model, grads, opts);
  fg::Plan weight_plan = fg::Plan::from_module(*model, {}, opts);  // the same layout
  at::Tensor flat = grad_plan.empty_flat();

  // Each step, after backward():
  grad_plan.gather(flat);              // one pass, no allocation
  flat.div_(world_size);               // ... all-reduce, clip, ...
  grad_plan.scatter(flat);             // copies into each .grad's own storage
  weight_plan.scatter_add(flat, -lr);  // p += alpha * segment: an SGD step
  std::string manifest = grad_plan.manifest();  // names, shapes, dtypes, offsets (JSON)
  // README-END
  // clang-format on

  int failures = 0;
  const auto params = model->parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {
    const at::Tensor g = grads_before[i] / world_size;
    failures += at::allclose(params[i].grad(), g, 0, 0) ? 0 : 1;
    failures += at::allclose(params[i].detach(), before[i] - lr * g, 1e-6, 1e-7) ? 0 : 1;
  }
  failures += manifest.find("\"0.weight\"") != std::string::npos ? 0 : 1;
  std::cout << (failures == 0 ? "README example: ok" : "README example: FAILED") << "\n";
  return failures == 0 ? 0 : 1;
}
