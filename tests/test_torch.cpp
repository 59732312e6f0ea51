// The LibTorch adapter on tensor lists, against torch::cat of reshape(-1) and .to(dtype).
#include "flatgather/torch.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "canaries.h"
#include "torch_util.h"

namespace {

namespace fgt = flatgather::torch;
using fgtest::bits_equal;
using fgtest::random_tensor;
using fgtest::reference_gather;

const at::ScalarType kAllTypes[] = {at::kFloat, at::kHalf,  at::kBFloat16, at::kDouble, at::kChar,
                                    at::kByte,  at::kShort, at::kInt,      at::kLong,   at::kBool};
const at::ScalarType kFloatTypes[] = {at::kFloat, at::kHalf, at::kBFloat16, at::kDouble};

// A random tensor of random shape and random memory format: contiguous, channels_last,
// transposed, sliced with a step, at an odd offset into a larger storage, 0-d or empty.
at::Tensor random_layout(std::mt19937& rng, at::ScalarType dtype) {
  const int kind = static_cast<int>(rng() % 8);
  auto dim = [&](int max) { return static_cast<int64_t>(1 + rng() % max); };
  switch (kind) {
    case 0: return random_tensor({}, dtype);           // 0-d scalar
    case 1: return random_tensor({0, dim(4)}, dtype);  // empty
    case 2:
      return random_tensor({dim(9), dim(3), dim(5), dim(5)}, dtype)
          .contiguous(at::MemoryFormat::ChannelsLast);
    case 3: return random_tensor({dim(40), dim(30)}, dtype).t();  // transposed
    case 4: return random_tensor({dim(20), 2 * dim(20)}, dtype).slice(1, 0, c10::nullopt, 2);
    case 5:
      return random_tensor({600}, dtype).narrow(0, 1 + rng() % 7, 1 + rng() % 500);  // odd offset
    case 6: return random_tensor({dim(6), dim(7), dim(8)}, dtype).permute({2, 0, 1});
    default: return random_tensor({dim(3000)}, dtype);
  }
}

TEST(Torch, RandomListsEqualCatOfReshape) {
  std::mt19937 rng(2024);
  torch::manual_seed(2024);
  for (int round = 0; round < 40; ++round) {
    const at::ScalarType dtype = kAllTypes[round % 10];
    std::vector<at::Tensor> tensors;
    const int count = 1 + static_cast<int>(rng() % 30);
    for (int i = 0; i < count; ++i) tensors.push_back(random_layout(rng, dtype));
    fgt::Plan plan = fgt::Plan::from_tensors(tensors);
    at::Tensor out = fgtest::poisoned(plan.numel(), dtype);
    plan.gather(out);
    ASSERT_TRUE(bits_equal(out, reference_gather(tensors, dtype)))
        << "round " << round << " " << dtype;
    ASSERT_TRUE(bits_equal(plan.gather(), out));

    // scatter round trip into fresh destinations of the same layouts
    std::vector<at::Tensor> dest;  // poisoned: every element differs from the source
    for (const auto& t : tensors) dest.push_back(fgtest::poisoned_like(t));
    std::vector<at::Tensor> dest_refs = dest;
    fgt::Plan back = fgt::Plan::from_tensors(dest_refs);
    back.scatter(out);
    for (std::size_t i = 0; i < tensors.size(); ++i)
      ASSERT_TRUE(bits_equal(dest[i], tensors[i])) << i;
  }
}

TEST(Torch, EveryFloatCastEqualsTo) {
  torch::manual_seed(7);
  for (auto from : kFloatTypes) {
    for (auto to : kFloatTypes) {
      std::vector<at::Tensor> tensors = {
          random_tensor({33, 17}, from),
          random_tensor({4, 3, 5, 5}, from).contiguous(at::MemoryFormat::ChannelsLast),
          random_tensor({100}, from).narrow(0, 3, 61),
          torch::tensor(std::vector<double>{std::nan(""), HUGE_VAL, -HUGE_VAL, 1e30, -1e-30,
                                            65519.9, 0.0, -0.0},
                        at::kDouble)
              .to(from)};
      fgt::Options o;
      o.dtype = to;
      fgt::Plan plan = fgt::Plan::from_tensors(tensors, {}, o);
      at::Tensor out = fgtest::poisoned(plan.numel(), to);
      plan.gather(out);
      ASSERT_TRUE(bits_equal(out, reference_gather(tensors, to))) << from << " -> " << to;
      // scatter casts back exactly like .to(from)
      std::vector<at::Tensor> dest;
      for (const auto& t : tensors) dest.push_back(fgtest::poisoned_like(t));
      fgt::Plan back = fgt::Plan::from_tensors(dest, {}, o);
      back.scatter(out);
      int64_t offset = 0;
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        const at::Tensor expected =
            out.narrow(0, offset, tensors[i].numel()).view(tensors[i].sizes()).to(from);
        ASSERT_TRUE(bits_equal(dest[i], expected)) << from << " <- " << to << " tensor " << i;
        offset += tensors[i].numel();
      }
    }
  }
}

TEST(Torch, ScatterAddMatchesAddWithAlpha) {
  torch::manual_seed(8);
  // Same dtype: p.add_(update.view_as(p), alpha), the L-BFGS _add_grad loop.
  std::vector<at::Tensor> params = {
      random_tensor({64, 32}, at::kFloat), random_tensor({32}, at::kFloat),
      random_tensor({10, 3, 3, 3}, at::kFloat).contiguous(at::MemoryFormat::ChannelsLast)};
  std::vector<at::Tensor> expected;
  for (const auto& p : params) expected.push_back(p.clone());
  fgt::Plan plan = fgt::Plan::from_tensors(params);
  const at::Tensor update = at::randn({plan.numel()});
  plan.scatter_add(update, 0.37);
  int64_t offset = 0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const int64_t n = params[i].numel();
    // one rounding: fma(alpha, u, p), as LibTorch's vectorized add with alpha
    const at::Tensor ref = (expected[i].to(at::kDouble) +
                            0.37f * update.narrow(0, offset, n).view_as(params[i]).to(at::kDouble))
                               .to(at::kFloat);
    EXPECT_TRUE(bits_equal(params[i], ref)) << i;
    EXPECT_TRUE(at::allclose(params[i],
                             expected[i].add(update.narrow(0, offset, n).view_as(params[i]), 0.37),
                             1e-6, 1e-6));
    offset += n;
  }
  // Low precision parameters, float32 flat: computed in float32, rounded once.
  for (auto low : {at::kHalf, at::kBFloat16}) {
    at::Tensor p = random_tensor({1000}, low);
    const at::Tensor p0 = p.clone();
    fgt::Options o;
    o.dtype = at::kFloat;
    fgt::Plan lp = fgt::Plan::from_tensors({p}, {}, o);
    const at::Tensor u = at::randn({1000});
    lp.scatter_add(u, -2.5);
    const at::Tensor ref =
        (p0.to(at::kDouble) + double(-2.5f) * u.to(at::kDouble)).to(at::kFloat).to(low);
    EXPECT_TRUE(bits_equal(p, ref)) << low;
  }
}

TEST(Torch, LargeTensorsAndAlignment) {
  torch::manual_seed(9);
  std::vector<at::Tensor> tensors = {random_tensor({25'000'000}, at::kFloat),
                                     random_tensor({3}, at::kFloat),
                                     random_tensor({5000, 301}, at::kFloat).t()};
  fgt::Options o;
  o.align_bytes = 256;
  fgt::Plan plan = fgt::Plan::from_tensors(tensors, {"big", "tiny", "transposed"}, o);
  const auto& segs = plan.layout().segments();
  for (const auto& s : segs) EXPECT_EQ(s.offset * 4 % 256, 0) << s.name;
  EXPECT_EQ(plan.numel() * 4 % 256, 0);
  at::Tensor out = fgtest::poisoned(plan.numel(), at::kFloat);
  plan.gather(out);
  at::Tensor expected = at::zeros({plan.numel()});
  for (std::size_t i = 0; i < tensors.size(); ++i)
    expected.narrow(0, segs[i].offset, segs[i].numel).copy_(tensors[i].reshape(-1));
  EXPECT_TRUE(bits_equal(out, expected));
}

TEST(Torch, ViewsShareTheFlatBuffer) {
  std::vector<at::Tensor> tensors = {random_tensor({4, 5}, at::kFloat),
                                     random_tensor({7}, at::kFloat)};
  fgt::Options o;
  o.align_bytes = 64;
  fgt::Plan plan = fgt::Plan::from_tensors(tensors, {"w", "b"}, o);
  at::Tensor flat = plan.gather();
  auto views = plan.views(flat);
  ASSERT_EQ(views.size(), 2u);
  EXPECT_TRUE(bits_equal(views[0], tensors[0]));
  EXPECT_TRUE(bits_equal(views[1], tensors[1]));
  views[1].fill_(3.0f);
  EXPECT_EQ(flat[plan.layout().segments()[1].offset].item<float>(), 3.0f);
  fgt::Options cast;
  cast.dtype = at::kHalf;
  fgt::Plan half = fgt::Plan::from_tensors(tensors, {"w", "b"}, cast);
  EXPECT_THROW_MSG(half.views(half.gather()), "views", "'w'", "float32", "float16");
}

TEST(Torch, TiedTensorsAppearOnce) {
  at::Tensor shared = random_tensor({6, 4}, at::kFloat);
  at::Tensor other = random_tensor({5}, at::kFloat);
  fgt::Plan plan =
      fgt::Plan::from_tensors({shared, other, shared}, {"embed.weight", "bias", "head.weight"});
  EXPECT_EQ(plan.numel(), 29);
  EXPECT_EQ(plan.layout().segments()[0].aliases, std::vector<std::string>{"head.weight"});
  EXPECT_TRUE(bits_equal(plan.gather(), reference_gather({shared, other}, at::kFloat)));
  EXPECT_NE(plan.manifest().find("\"head.weight\""), std::string::npos);
}

TEST(Torch, ScatterBumpsVersionCountersOncePerTensor) {
  at::Tensor w = random_tensor({4, 4}, at::kFloat);
  at::Tensor b = random_tensor({4}, at::kFloat);
  fgt::Plan plan = fgt::Plan::from_tensors({w, b, w}, {"w", "b", "w.tied"});
  const auto vw = w._version(), vb = b._version();
  plan.scatter(plan.gather());
  EXPECT_EQ(w._version(), vw + 1);
  EXPECT_EQ(b._version(), vb + 1);
  plan.scatter_add(plan.gather(), 0.5);
  EXPECT_EQ(w._version(), vw + 2);
  plan.gather();
  EXPECT_EQ(w._version(), vw + 2) << "gather does not write the tensors";
  // autograd refuses a value that scatter overwrote after it was saved
  at::Tensor p = random_tensor({3}, at::kFloat).requires_grad_();
  at::Tensor y = (p * p).sum();
  fgt::Plan pp = fgt::Plan::from_tensors({p});
  {
    at::NoGradGuard no_grad;
    pp.scatter(at::ones({3}));
  }
  EXPECT_THROW(y.backward(), c10::Error);
}

// A gradient plan bumps the gradient it writes now: one that replaced the planned gradient
// since the plan was built (check_tensors, the default) is bumped, the replaced one is not.
TEST(Torch, ScatterBumpsTheCurrentGradient) {
  at::Tensor w = random_tensor({4, 3}, at::kFloat).requires_grad_();
  w.mutable_grad() = random_tensor({4, 3}, at::kFloat);
  fgt::Selection grads;
  grads.grads = true;
  fgt::Plan plan = fgt::Plan::from_named({{"w", w}}, grads);
  const at::Tensor planned = w.grad();
  const auto v0 = planned._version();
  plan.scatter(plan.gather());
  EXPECT_EQ(planned._version(), v0 + 1);
  w.mutable_grad() = random_tensor({4, 3}, at::kFloat);  // zero_grad(set_to_none) + backward
  const at::Tensor fresh = w.grad();
  const auto vf = fresh._version();
  const at::Tensor values = random_tensor({12}, at::kFloat);
  plan.scatter(values);
  EXPECT_EQ(fresh._version(), vf + 1);
  EXPECT_EQ(planned._version(), v0 + 1) << "the replaced gradient is no longer written";
  EXPECT_TRUE(bits_equal(fresh.reshape(-1), values));
}

TEST(Torch, FreeFunctions) {
  std::vector<at::Tensor> tensors = {random_tensor({3, 3}, at::kDouble),
                                     random_tensor({2}, at::kDouble)};
  const at::Tensor flat = flatgather::torch::gather(tensors);
  EXPECT_TRUE(bits_equal(flat, reference_gather(tensors, at::kDouble)));
  std::vector<at::Tensor> dest = {fgtest::poisoned_like(tensors[0]),
                                  fgtest::poisoned_like(tensors[1])};
  flatgather::torch::scatter(flat, dest);
  EXPECT_TRUE(bits_equal(dest[0], tensors[0]));
  EXPECT_TRUE(bits_equal(dest[1], tensors[1]));
}

TEST(Torch, BadInputsGetClearErrors) {
  at::Tensor w = random_tensor({4, 4}, at::kFloat);
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({w, at::Tensor()}, {"w", "ghost"}), "'ghost'",
                   "undefined");
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({w.to_sparse()}, {"sparse"}), "'sparse'", "Sparse",
                   "dense");
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({at::randn({3}, at::kComplexFloat)}, {"z"}), "'z'",
                   "complex");
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({at::quantize_per_tensor(w, 0.1, 0, at::kQInt8)}, {"q"}),
                   "'q'", "quantized");
  EXPECT_THROW_MSG(
      fgt::Plan::from_tensors({at::empty({3}, at::TensorOptions().device(at::kMeta))}, {"m"}),
      "'m'", "meta");
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({w, w.to(at::kHalf)}, {"w", "h"}), "mixed dtypes", "'h'",
                   "float16");
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({}), "empty selection");
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({w}, {"a", "b"}), "2 names for 1 tensors");

  fgt::Plan plan = fgt::Plan::from_tensors({w}, {"w"});
  EXPECT_THROW_MSG(plan.gather(at::empty({15})), "15 elements", "needs 16");
  EXPECT_THROW_MSG(plan.gather(at::empty({16}, at::kDouble)), "dtype float64", "float32");
  EXPECT_THROW_MSG(plan.gather(at::empty({4, 4})), "1-D and contiguous", "[4, 4]");
  EXPECT_THROW_MSG(plan.gather(at::empty({32}).slice(0, 0, 32, 2)), "not contiguous");
  EXPECT_THROW_MSG(plan.gather(w.view(-1)), "overlaps", "'w'");
  EXPECT_THROW_MSG(plan.scatter(at::Tensor()), "undefined");

  // Resized or moved since the plan was built: detected, never a read of freed memory.
  at::Tensor r = random_tensor({8}, at::kFloat);
  fgt::Plan rp = fgt::Plan::from_tensors({r}, {"r"});
  r.resize_({100});
  EXPECT_THROW_MSG(rp.gather(), "'r'", "changed since the plan was built", "rebuild");
  // Data pointer moved by set_() (same shape): rebinding follows it.
  at::Tensor s = random_tensor({8}, at::kFloat);
  fgt::Plan sp = fgt::Plan::from_tensors({s}, {"s"});
  s.set_(random_tensor({8}, at::kFloat));
  EXPECT_TRUE(bits_equal(sp.gather(), s));
}

TEST(Torch, FailingScatterLeavesDestinationsUntouched) {
  at::Tensor a = random_tensor({10}, at::kFloat);
  at::Tensor b = a.narrow(0, 5, 5);  // overlaps a
  const at::Tensor a0 = a.clone();
  fgt::Plan plan = fgt::Plan::from_tensors({a, b}, {"a", "b"});
  EXPECT_TRUE(bits_equal(plan.gather(), at::cat({a0, a0.narrow(0, 5, 5)})));
  EXPECT_THROW_MSG(plan.scatter(at::randn({15})), "'a'", "'b'", "overlap");
  EXPECT_THROW_MSG(plan.scatter_add(at::randn({15}), 1.0), "overlap");
  EXPECT_TRUE(bits_equal(a, a0));
  fgt::Plan ok = fgt::Plan::from_tensors({a}, {"a"});
  EXPECT_THROW_MSG(ok.scatter(at::randn({11})), "11 elements");
  EXPECT_TRUE(bits_equal(a, a0));
}

TEST(Torch, ConcurrentCallsOnOnePlan) {
  std::vector<at::Tensor> tensors;
  for (int i = 0; i < 200; ++i) tensors.push_back(random_tensor({1 + i * 37}, at::kFloat));
  fgt::Plan plan = fgt::Plan::from_tensors(tensors);
  const at::Tensor expected = reference_gather(tensors, at::kFloat);
  std::vector<at::Tensor> outs;
  for (int t = 0; t < 4; ++t) outs.push_back(fgtest::poisoned(plan.numel(), at::kFloat));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) plan.gather(outs[t]);
    });
  for (auto& th : threads) th.join();
  for (const auto& o : outs) EXPECT_TRUE(bits_equal(o, expected));
}

TEST(Torch, CallsFromInsideALibTorchParallelRegionGiveTheSameBits) {
  std::vector<at::Tensor> tensors = {random_tensor({2'000'000}, at::kFloat)};
  fgt::Plan plan = fgt::Plan::from_tensors(tensors);
  std::vector<at::Tensor> outs(4);
  for (auto& o : outs) o = fgtest::poisoned(plan.numel(), at::kFloat);
  at::parallel_for(0, 4, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) plan.gather(outs[i]);
  });
  for (const auto& o : outs) EXPECT_TRUE(bits_equal(o, tensors[0]));
}

// Inference tensors (made under c10::InferenceMode) have no version counter: gather, scatter
// and scatter_add still work on them, inside InferenceMode and outside it, bit for bit.
TEST(Torch, ScatterIntoInferenceTensors) {
  torch::manual_seed(31);
  std::vector<at::Tensor> tensors;
  {
    c10::InferenceMode guard;
    tensors = {random_tensor({7, 5}, at::kFloat),
               random_tensor({4, 3, 3, 3}, at::kFloat).contiguous(at::MemoryFormat::ChannelsLast)};
  }
  ASSERT_TRUE(tensors[0].is_inference() && tensors[1].is_inference());
  fgt::Plan plan = fgt::Plan::from_tensors(tensors);
  for (bool inside : {true, false}) {
    std::optional<c10::InferenceMode> guard;
    if (inside) guard.emplace();
    EXPECT_TRUE(bits_equal(fgtest::gather_poisoned(plan), reference_gather(tensors, at::kFloat)));
    const at::Tensor values = at::randn({plan.numel()});
    {
      c10::InferenceMode poisoning;  // LibTorch refuses in-place ops on them outside it
      for (auto& t : tensors) fgtest::poison_(t);
    }
    plan.scatter(values);
    EXPECT_TRUE(bits_equal(reference_gather(tensors, at::kFloat), values)) << "inside " << inside;
    const at::Tensor update = at::randn({plan.numel()});
    plan.scatter_add(update, -0.75);
    EXPECT_TRUE(bits_equal(reference_gather(tensors, at::kFloat),
                           fgtest::reference_add_scaled(values, update, -0.75)));
  }
}

// MemAvailable from /proc/meminfo, in bytes (0 when unknown).
std::int64_t available_memory() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::int64_t kb = 0;
  std::string unit;
  while (meminfo >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb * 1024;
  }
  return 0;
}

// A CPU tensor of more than 2^31 elements, strided (a transposed byte view: the cache-blocked
// path) and placed after a small tensor, so element offsets and flat offsets pass 2^31 in
// both directions. Needs about 7 GB; skipped, with the reason, when less than 12 GB is free.
TEST(Torch, CpuTensorOfMoreThan2To31Elements) {
  constexpr std::int64_t kNeed = std::int64_t(12) << 30;
  const std::int64_t available = available_memory();
  if (available < kNeed) {
    GTEST_SKIP() << "needs 12 GB of available memory (MemAvailable in /proc/meminfo), has "
                 << (available >> 20) << " MB";
  }
  const std::int64_t m = (std::int64_t(1) << 30) + 3;
  const std::int64_t n = 2 * m;  // 2^31 + 6 elements
  // Values 0..250 repeating with a prime period, so an offset off by 2^31 or 2^32 shows.
  const at::Tensor storage = at::empty({n}, at::kByte);
  {
    std::vector<std::uint8_t> period(251 * 4096);
    for (std::size_t i = 0; i < period.size(); ++i) period[i] = static_cast<std::uint8_t>(i % 251);
    auto* p = storage.data_ptr<std::uint8_t>();
    for (std::int64_t pos = 0; pos < n; pos += static_cast<std::int64_t>(period.size())) {
      const std::int64_t count = std::min<std::int64_t>(n - pos, period.size());
      std::memcpy(p + pos, period.data(), static_cast<std::size_t>(count));
    }
  }
  // big[r][c] = storage[r + 2 * c]: rows are the even and the odd elements.
  const at::Tensor big = storage.as_strided({2, m}, {1, 2});
  const at::Tensor small = at::arange(1, 8, at::kByte);
  fgt::Options o;
  o.num_threads = 2;
  fgt::Plan plan = fgt::Plan::from_tensors({small, big}, {"small", "big"}, o);
  ASSERT_EQ(plan.numel(), 7 + n);
  at::Tensor flat = at::empty({plan.numel()}, at::kByte).fill_(255);
  plan.gather(flat);
  EXPECT_TRUE(flat.narrow(0, 0, 7).equal(small));
  EXPECT_TRUE(flat.narrow(0, 7, m).equal(storage.slice(0, 0, n, 2)));
  EXPECT_TRUE(flat.narrow(0, 7 + m, m).equal(storage.slice(0, 1, n, 2)));

  at::Tensor dest_storage = at::empty({n}, at::kByte).fill_(255);
  at::Tensor dest_small = at::empty({7}, at::kByte).fill_(255);
  fgt::Plan back = fgt::Plan::from_tensors({dest_small, dest_storage.as_strided({2, m}, {1, 2})},
                                           {"small", "big"}, o);
  back.scatter(flat);
  EXPECT_TRUE(dest_small.equal(small));
  EXPECT_TRUE(dest_storage.equal(storage));
}

// The statistics come as views of one new tensor per call (one allocation): each holds its
// own value, and a second call leaves the first call's results as they were.
TEST(Torch, StatisticsAreViewsOfOneTensorPerCallAndIndependentAcrossCalls) {
  at::manual_seed(17);
  std::vector<at::Tensor> tensors = {random_tensor({33, 7}, at::kFloat),
                                     random_tensor({5}, at::kHalf),
                                     random_tensor({4, 6}, at::kFloat).t()};
  fgt::Options o;
  o.dtype = at::kFloat;
  const fgt::Plan plan = fgt::Plan::from_tensors(tensors, {"a", "b", "c"}, o);
  fgt::StatsOptions want;
  want.norm = true;
  want.tensor_norms = true;
  want.check_finite = true;
  want.max_norm = 1.0;
  auto expect_stats = [&](const fgt::GatherStats& st, const at::Tensor& flat) {
    const at::Tensor ref = reference_gather(tensors, at::kFloat);
    EXPECT_TRUE(flat.equal(ref));
    const double norm = at::linalg_vector_norm(ref.to(at::kDouble), 2).item<double>();
    EXPECT_NEAR(st.norm.item<double>(), norm, 1e-6 * norm);
    EXPECT_EQ(st.found_inf.item<float>(), 0.0f);
    EXPECT_NEAR(st.clip_coef.item<double>(), std::min(1.0, 1.0 / (norm + 1e-6)), 1e-6);
    ASSERT_EQ(st.tensor_norms.numel(), 3);
    for (std::int64_t i = 0; i < 3; ++i) {
      const double t = at::linalg_vector_norm(tensors[i].to(at::kDouble), 2).item<double>();
      EXPECT_NEAR(st.tensor_norms[i].item<double>(), t, 1e-6 * t) << "tensor " << i;
    }
  };
  at::Tensor flat = at::full({plan.numel()}, std::nan(""), at::kFloat);
  const fgt::GatherStats first = plan.gather(flat, want);
  expect_stats(first, flat);
  // One storage for all four results.
  EXPECT_TRUE(first.norm.is_alias_of(first.found_inf));
  EXPECT_TRUE(first.norm.is_alias_of(first.clip_coef));
  EXPECT_TRUE(first.norm.is_alias_of(first.tensor_norms));
  const at::Tensor first_values = at::cat({first.norm.reshape(1), first.found_inf.reshape(1),
                                           first.clip_coef.reshape(1), first.tensor_norms})
                                      .clone();

  for (at::Tensor& t : tensors) t.mul_(3);  // new data: every statistic changes
  const fgt::GatherStats second = plan.gather(flat, want);
  expect_stats(second, flat);
  EXPECT_FALSE(second.norm.is_alias_of(first.norm));
  EXPECT_TRUE(at::cat({first.norm.reshape(1), first.found_inf.reshape(1),
                       first.clip_coef.reshape(1), first.tensor_norms})
                  .equal(first_values));
  EXPECT_NE(first.norm.item<float>(), second.norm.item<float>());

  // Only what is asked for is allocated and set.
  fgt::StatsOptions only_inf;
  only_inf.check_finite = true;
  const fgt::GatherStats inf = plan.gather(flat, only_inf);
  EXPECT_FALSE(inf.norm.defined());
  EXPECT_FALSE(inf.tensor_norms.defined());
  EXPECT_FALSE(inf.clip_coef.defined());
  ASSERT_TRUE(inf.found_inf.defined());
  EXPECT_EQ(inf.found_inf.dim(), 0);
  EXPECT_EQ(inf.found_inf.item<float>(), 0.0f);
}

// The canaries of the GPU and fuzz tests (NOTE: [canaries] in tests/canaries.h), on CPU
// tensors through the same helper: one byte changed just past a buffer or just before it
// (contiguous or strided, at a shifted start or not) fails the check, names that buffer and
// the byte, and spares the others; restored, the check passes again.
TEST(TestCanaries, OneByteWrittenPastABufferFailsTheCheck) {
  for (int64_t shift : {0, 1, 3}) {
    for (bool strided : {false, true}) {
      for (bool after : {true, false}) {
        SCOPED_TRACE("shift " + std::to_string(shift) + (strided ? " strided" : " contiguous") +
                     (after ? " after" : " before"));
        fgtest::Canaries canaries;
        const at::Tensor bystander =
            canaries.copy_of(random_tensor({5}, at::kInt), at::kCPU, "bystander");
        // Strided: 3x4 with strides (1, 5) reaches 1 + 2 + 15 = 18 elements of its storage.
        const at::Tensor t =
            strided ? canaries.empty_strided({3, 4}, {1, 5}, at::kDouble, "victim", shift)
                    : canaries.empty({7}, at::kHalf, "victim", shift);
        const int64_t storage_bytes = strided ? 18 * 8 : 7 * 2;
        t.copy_(random_tensor(t.sizes(), t.scalar_type()));  // every element written: no alarm
        bystander.neg_();
        EXPECT_TRUE(canaries.intact());
        auto* first = static_cast<std::uint8_t*>(t.data_ptr());  // the storage's first byte
        std::uint8_t* hit = after ? first + storage_bytes : first - 1;
        *hit ^= 0x01;
        const ::testing::AssertionResult broken = canaries.intact();
        EXPECT_FALSE(broken);
        const std::string message = broken.message();
        EXPECT_NE(message.find("'victim'"), std::string::npos) << message;
        EXPECT_NE(message.find(after ? "byte 0 after its end" : "byte 1 before its start"),
                  std::string::npos)
            << message;
        EXPECT_EQ(message.find("bystander"), std::string::npos) << message;
        *hit ^= 0x01;
        EXPECT_TRUE(canaries.intact()) << "restored";
      }
    }
  }
}

}  // namespace
