// Threads on CPU (docs/reliability.md, "Thread safety"): one built plan gathered from several
// threads into their own flat buffers, while each thread also scatters through a plan of its
// own into tensors no other thread touches; core plans over disjoint (adjacent) slices of one
// allocation scattering at once; a gradient plan checked per call from several threads.
#include <torch/torch.h>

#include <random>
#include <thread>

#include "flatgather/torch.h"
#include "torch_util.h"

namespace {

namespace fgt = flatgather::torch;
using fgtest::bits_equal;
using fgtest::random_tensor;
using fgtest::reference_gather;

constexpr int kThreads = 4;

TEST(Concurrency, SharedGatherAndPrivateScatterFromThreads) {
  torch::manual_seed(21);
  // Shared sources: many small tensors and one large one (split across OpenMP tasks),
  // cast to float64 so the copy loops, not memcpy, run.
  std::vector<at::Tensor> shared;
  for (int i = 0; i < 150; ++i) shared.push_back(random_tensor({1 + (i * 37) % 300}, at::kFloat));
  shared.push_back(random_tensor({600, 500}, at::kFloat).t());
  shared.push_back(random_tensor({64, 48}, at::kFloat).t());
  fgt::Options cast;
  cast.dtype = at::kDouble;
  cast.num_threads = 2;
  const fgt::Plan plan = fgt::Plan::from_tensors(shared, {}, cast);
  const at::Tensor expected = reference_gather(shared, at::kDouble);

  // Each thread's own destinations (half of them strided views) and its own plan.
  std::vector<std::vector<at::Tensor>> own(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < 40; ++i) {
      at::Tensor base = random_tensor({8 + i, 3 + t}, at::kFloat);
      own[t].push_back(i % 2 ? base.t() : base);
    }
  }
  std::vector<fgt::Plan> own_plans;
  for (int t = 0; t < kThreads; ++t) own_plans.push_back(fgt::Plan::from_tensors(own[t]));

  std::vector<std::string> failures(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 15 && failures[t].empty(); ++rep) {
        at::Tensor flat = fgtest::poisoned(plan.numel(), at::kDouble);
        plan.gather(flat);
        if (!bits_equal(flat, expected)) failures[t] = "shared gather, rep " + std::to_string(rep);
        const at::Tensor values =
            at::arange(own_plans[t].numel(), at::kFloat).add_(1000.0 * t + rep);
        own_plans[t].scatter(values);
        if (!bits_equal(own_plans[t].gather(), values))
          failures[t] = "own round trip, rep " + std::to_string(rep);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], "") << "thread " << t;
  // The last values each thread scattered are in its tensors, element for element.
  for (int t = 0; t < kThreads; ++t) {
    const at::Tensor values = at::arange(own_plans[t].numel(), at::kFloat).add_(1000.0 * t + 14);
    EXPECT_TRUE(bits_equal(reference_gather(own[t], at::kFloat), values)) << "thread " << t;
  }
}

TEST(Concurrency, CorePlansOverAdjacentSlicesScatterAtOnce) {
  // One allocation cut into kThreads interleaved-by-row slices: neighbouring bytes belong to
  // different threads' plans, so a copy that wrote past its elements would show.
  constexpr std::int64_t kRows = 64, kCols = 1024;
  std::vector<float> storage(kRows * kCols, -7.0f);
  std::vector<flatgather::Plan> plans;
  for (int t = 0; t < kThreads; ++t) {
    flatgather::TensorRef r;
    r.data = storage.data() + t * kCols;
    r.dtype = flatgather::DType::Float32;
    r.sizes = {kRows / kThreads, kCols};
    r.strides = {kThreads * kCols, 1};  // every kThreads-th row
    r.name = "rows_" + std::to_string(t);
    flatgather::PlanOptions o;
    o.num_threads = 2;
    plans.push_back(flatgather::Plan::build({r}, o));
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<float> flat(static_cast<std::size_t>(plans[t].layout().numel()));
      for (int rep = 0; rep < 25; ++rep) {
        for (std::size_t i = 0; i < flat.size(); ++i)
          flat[i] = static_cast<float>(t * 1'000'000 + rep * 100'000) + i;
        plans[t].scatter(flat.data(), static_cast<std::int64_t>(flat.size()));
      }
    });
  }
  for (auto& th : threads) th.join();
  for (std::int64_t row = 0; row < kRows; ++row) {
    const int t = static_cast<int>(row % kThreads);
    const std::int64_t local_row = row / kThreads;
    for (std::int64_t col = 0; col < kCols; ++col) {
      const float want =
          static_cast<float>(t * 1'000'000 + 24 * 100'000) + (local_row * kCols + col);
      ASSERT_EQ(storage[row * kCols + col], want) << "row " << row << " col " << col;
    }
  }
}

TEST(Concurrency, UnchangedGradientPlanGatheredFromThreads) {
  torch::manual_seed(22);
  torch::nn::Sequential net(torch::nn::Linear(32, 64), torch::nn::Tanh(), torch::nn::Linear(64, 8));
  net->forward(at::randn({16, 32})).sum().backward();
  fgt::Selection grads;
  grads.grads = true;
  const fgt::Plan plan = fgt::Plan::from_module(*net, grads);
  std::vector<at::Tensor> g;
  for (const auto& p : net->parameters()) g.push_back(p.grad());
  const at::Tensor expected = reference_gather(g, at::kFloat);
  std::vector<int> ok(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 50; ++rep) ok[t] += bits_equal(plan.gather(), expected) ? 1 : 0;
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(ok[t], 50) << "thread " << t;
}

// zero_grad(set_to_none=True) then backward: every gradient is a new tensor, and the first
// calls after it, from several threads at once, all find the moved gradients and rebind the
// plan together (docs/reliability.md: the plan's mutex around rebinding). Each thread's result
// is compared with LibTorch; run under ASan (scripts/sanitize.sh).
TEST(Concurrency, FirstCallsAfterGradientsReallocatedRebindFromThreads) {
  torch::manual_seed(23);
  torch::nn::Sequential net(torch::nn::Linear(32, 64), torch::nn::Tanh(), torch::nn::Linear(64, 8));
  net->forward(at::randn({16, 32})).sum().backward();
  fgt::Selection grads;
  grads.grads = true;
  const fgt::Plan plan = fgt::Plan::from_module(*net, grads);
  for (int round = 0; round < 20; ++round) {
    std::vector<at::Tensor> old;  // kept alive, so the new gradients cannot reuse their memory
    for (auto& p : net->parameters()) {
      old.push_back(p.grad());
      p.mutable_grad() = at::Tensor();  // zero_grad(set_to_none=True)
    }
    net->forward(at::randn({16, 32})).sum().backward();
    std::vector<at::Tensor> g;
    for (const auto& p : net->parameters()) g.push_back(p.grad());
    for (std::size_t i = 0; i < g.size(); ++i) ASSERT_NE(g[i].data_ptr(), old[i].data_ptr());
    const at::Tensor expected = reference_gather(g, at::kFloat);
    std::vector<at::Tensor> outs(kThreads);
    for (auto& o : outs) o = fgtest::poisoned(plan.numel(), at::kFloat);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] { plan.gather(outs[t]); });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t) {
      EXPECT_TRUE(bits_equal(outs[t], expected)) << "round " << round << " thread " << t;
    }
  }
}

}  // namespace
