// The three examples of the article this project grew from, each in a few lines of
// flatgather, checked bit for bit against the article's own code (written here in LibTorch).
//
//   ./build/examples/article      # prints the shapes; exits 1 if any result differs
#include <torch/torch.h>

#include <iostream>

#include "flatgather/torch.h"

namespace fg = flatgather::torch;

struct SimpleModelImpl : torch::nn::Module {
  torch::nn::Linear linear1{register_module("linear1", torch::nn::Linear(10, 5))};
  torch::nn::Linear linear2{register_module("linear2", torch::nn::Linear(5, 2))};
};
TORCH_MODULE(SimpleModel);

struct ConvModelImpl : torch::nn::Module {
  torch::nn::Conv2d conv1{
      register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 16, 3).padding(1)))};
  torch::nn::Linear linear1{register_module("linear1", torch::nn::Linear(16 * 28 * 28, 10))};
};
TORCH_MODULE(ConvModel);

namespace {
int failures = 0;

void check(const char* what, const at::Tensor& ours, const at::Tensor& article) {
  const bool same = ours.sizes() == article.sizes() && ours.dtype() == article.dtype() &&
                    at::equal(ours.view(at::kInt), article.view(at::kInt));
  std::cout << what << ": shape " << ours.sizes()
            << (same ? "  (bit-identical to the article's code)" : "  MISMATCH") << "\n";
  failures += same ? 0 : 1;
}
}  // namespace

int main() {
  torch::manual_seed(0);

  // (1) One named weight, flattened: state_dict()['linear1.weight'].reshape(-1).
  SimpleModel model;
  {
    fg::Selection only;
    only.include = {"linear1.weight"};
    const at::Tensor ours = fg::Plan::from_module(*model, only).gather();
    check("linear1.weight flattened", ours,
          model->named_parameters()["linear1.weight"].reshape(-1));
  }

  // (2) Every tensor whose name contains "weight", concatenated (state_dict order).
  {
    fg::Selection weights;
    weights.buffers = true;  // state_dict holds buffers too (this model has none)
    weights.include = {"*weight*"};
    const at::Tensor ours = fg::Plan::from_module(*model, weights).gather();
    std::vector<at::Tensor> article;
    for (const auto& p : model->named_parameters())
      if (p.key().find("weight") != std::string::npos) article.push_back(p.value().reshape(-1));
    check("all weights", ours, torch::cat(article, 0));
  }

  // (3) Conv2d + Linear: weights and biases into two separate flat tensors.
  ConvModel conv;
  {
    fg::Selection weights, biases;
    weights.kind = fg::Selection::Kind::Weights;
    biases.kind = fg::Selection::Kind::Biases;
    const at::Tensor all_weights = fg::Plan::from_module(*conv, weights).gather();
    const at::Tensor all_biases = fg::Plan::from_module(*conv, biases).gather();
    std::vector<at::Tensor> w, b;
    for (const auto& p : conv->named_parameters()) {
      if (p.key().find("weight") != std::string::npos) {
        w.push_back(p.value().flatten());
      } else if (p.key().find("bias") != std::string::npos) {
        b.push_back(p.value());
      }
    }
    check("conv model weights", all_weights, torch::cat(w, 0));
    check("conv model biases", all_biases, torch::cat(b, 0));
  }
  std::cout << (failures == 0 ? "all checks passed" : "checks failed") << "\n";
  return failures == 0 ? 0 : 1;
}
