// The core plan on raw host memory: no LibTorch. References are written out by hand.
#include "flatgather/plan.h"

#include <cmath>
#include <numeric>
#include <random>
#include <thread>

#include "flatgather/config.h"
#include "copy_desc.h"  // src/
#include "test_util.h"

namespace {

using flatgather::Device;
using flatgather::DType;
using flatgather::Plan;
using flatgather::PlanOptions;
using flatgather::TensorRef;

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

using fgtest::ref;

TEST(Plan, GatherScatterContiguousAndStrided) {
  auto a = random_floats(12, 1);  // 3x4, gathered transposed (4x3 view with strides {1, 4})
  auto b = random_floats(7, 2);
  auto c =
      random_floats(20, 3);  // every other element of a 4x5 slice: sizes {2, 5}, strides {10, 1}
  Plan plan = Plan::build({ref(a.data(), DType::Float32, {4, 3}, "a.t", {1, 4}),
                           ref(b.data(), DType::Float32, {7}, "b"),
                           ref(c.data(), DType::Float32, {2, 5}, "c.rows", {10, 1})});
  ASSERT_EQ(plan.layout().numel(), 12 + 7 + 10);
  std::vector<float> expected;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) expected.push_back(a[j * 4 + i]);
  expected.insert(expected.end(), b.begin(), b.end());
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 5; ++j) expected.push_back(c[i * 10 + j]);
  std::vector<float> flat(29, -777.0f);
  plan.gather(flat.data(), 29);
  EXPECT_EQ(flat, expected);

  // scatter writes exactly the planned elements back
  for (float& x : flat) x = x * 2 + 1;
  const auto c_before = c;
  plan.scatter(flat.data(), 29);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(a[j * 4 + i], flat[i * 3 + j]);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(b[i], flat[12 + i]);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 10; ++j) {
      if (j < 5) {
        EXPECT_EQ(c[i * 10 + j], flat[19 + i * 5 + j]);
      } else {
        EXPECT_EQ(c[i * 10 + j], c_before[i * 10 + j]) << "scatter wrote outside the view";
      }
    }
}

// A stack of transposed matrices large enough to be cut into many tasks: the blocked path
// (NOTE: [cpu transposed blocks]) must give exactly the element-by-element order.
TEST(Plan, TransposedStacksAcrossTasksAndThreads) {
  const int64_t n = 5, rows = 203, cols = 301;  // logical [n][rows][cols], stored [n][cols][rows]
  auto src = random_floats(n * rows * cols, 21);
  std::vector<float> expected;
  for (int64_t a = 0; a < n; ++a)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) expected.push_back(src[a * rows * cols + c * rows + r]);
  for (int threads : {1, 2}) {
    for (DType flat_dtype : {DType::Float32, DType::Float64}) {
      PlanOptions o;
      o.num_threads = threads;
      o.flat_dtype = flat_dtype;
      Plan plan = Plan::build(
          {ref(src.data(), DType::Float32, {n, rows, cols}, "stack", {rows * cols, 1, rows})}, o);
      const int64_t total = n * rows * cols;
      if (flat_dtype == DType::Float32) {
        std::vector<float> flat(total, -5.0f);
        plan.gather(flat.data(), total);
        ASSERT_EQ(flat, expected) << threads << " threads";
        std::vector<float> dest(src.size(), -7.0f);
        Plan back = Plan::build(
            {ref(dest.data(), DType::Float32, {n, rows, cols}, "stack", {rows * cols, 1, rows})},
            o);
        back.scatter(flat.data(), total);
        ASSERT_EQ(dest, src) << threads << " threads";
      } else {
        std::vector<double> flat(total, -5.0);
        plan.gather(flat.data(), total);
        for (int64_t i = 0; i < total; ++i) ASSERT_EQ(flat[i], double(expected[i])) << i;
      }
    }
  }
}

TEST(Plan, PaddingIsZeroAndCastsRound) {
  auto a = random_floats(5, 4);
  auto b = random_floats(3, 5);
  PlanOptions o;
  o.align_bytes = 16;  // 8 bfloat16 elements
  o.flat_dtype = DType::BFloat16;
  Plan plan = Plan::build(
      {ref(a.data(), DType::Float32, {5}, "a"), ref(b.data(), DType::Float32, {3}, "b")}, o);
  ASSERT_EQ(plan.layout().numel(), 16);
  std::vector<uint16_t> flat(16, 0xBEEF);
  plan.gather(flat.data(), 16);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(flat[i], flatgather::float_to_bfloat16_bits(a[i]));
  for (int i = 5; i < 8; ++i) EXPECT_EQ(flat[i], 0) << "padding must be zero";
  for (int i = 0; i < 3; ++i) EXPECT_EQ(flat[8 + i], flatgather::float_to_bfloat16_bits(b[i]));
  for (int i = 11; i < 16; ++i) EXPECT_EQ(flat[i], 0) << "tail padding must be zero";
  plan.scatter(flat.data(), 16);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(a[i], flatgather::bfloat16_bits_to_float(flat[i]));
}

TEST(Plan, ScatterAddUsesOneFusedMultiplyAdd) {
  auto a = random_floats(1000, 6);
  std::vector<double> d(300);
  std::iota(d.begin(), d.end(), 0.25);
  auto a0 = a;
  auto d0 = d;
  Plan plan = Plan::build(
      {ref(a.data(), DType::Float32, {10, 100}, "a"), ref(d.data(), DType::Float64, {300}, "d")},
      PlanOptions{DType::Float32, 0, 0});
  auto update = random_floats(1300, 7);
  plan.scatter_add(update.data(), 1300, -0.375);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(a[i], std::fma(-0.375f, update[i], a0[i]));
  for (int i = 0; i < 300; ++i) EXPECT_EQ(d[i], std::fma(-0.375, double(update[1000 + i]), d0[i]));
}

TEST(Plan, ZeroFillPlaceholderAndRebind) {
  auto a = random_floats(4, 8);
  auto g = random_floats(6, 9);
  TensorRef missing = ref(nullptr, DType::Float32, {2, 3}, "grad.missing");
  missing.zero_fill = true;
  Plan plan = Plan::build({ref(a.data(), DType::Float32, {4}, "a"), missing});
  std::vector<float> flat(10, 99.0f);
  plan.gather(flat.data(), 10);
  for (int i = 4; i < 10; ++i) EXPECT_EQ(flat[i], 0.0f);
  // scatter writes `a` and skips the placeholder (whose data is null: nothing to write).
  const auto values = random_floats(10, 10);
  flat = values;
  plan.scatter(flat.data(), 10);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(a[i], values[i]);
  EXPECT_EQ(flat, values);  // the source is only read

  plan.rebind(1, g.data());
  plan.gather(flat.data(), 10);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(flat[4 + i], g[i]);
  plan.rebind(1, nullptr);
  plan.gather(flat.data(), 10);
  for (int i = 4; i < 10; ++i) EXPECT_EQ(flat[i], 0.0f);
}

// Every gradient reallocated at once (zero_grad with set_to_none): one batched rebind.
TEST(Plan, RebindManySegmentsAtOnce) {
  std::vector<std::vector<float>> old_data, new_data;
  std::vector<TensorRef> refs;
  for (int i = 0; i < 1000; ++i) {
    old_data.push_back(random_floats(1 + i % 7, 300 + i));
    new_data.push_back(random_floats(1 + i % 7, 5000 + i));
  }
  std::vector<float> expected;
  for (int i = 0; i < 1000; ++i) {
    refs.push_back(ref(old_data[i].data(), DType::Float32, {int64_t(old_data[i].size())},
                       "g" + std::to_string(i)));
    expected.insert(expected.end(), new_data[i].begin(), new_data[i].end());
  }
  refs.push_back(ref(nullptr, DType::Float32, {0}, "empty"));
  Plan plan = Plan::build(refs);
  std::vector<std::pair<std::size_t, void*>> changes;
  for (std::size_t i = 0; i < 1000; i += 2) changes.emplace_back(i, new_data[i].data());
  changes.emplace_back(1000, nullptr);  // an empty tensor: nothing to move
  plan.rebind(changes);
  changes.clear();
  for (std::size_t i = 1; i < 1000; i += 2)
    changes.emplace_back(plan.segment_of(i), new_data[i].data());
  plan.rebind(changes);
  std::vector<float> flat(expected.size(), -9.0f);
  plan.gather(flat.data(), static_cast<int64_t>(flat.size()));
  EXPECT_EQ(flat, expected);
  EXPECT_THROW_MSG(plan.rebind({{1001, nullptr}}), "segment 1001 out of range");
}

TEST(Plan, IntegerAndBoolCopiesAreExact) {
  std::vector<int64_t> i64 = {1, -2, 3, std::numeric_limits<int64_t>::min()};
  std::vector<uint8_t> flags = {1, 0, 1};
  Plan p64 = Plan::build({ref(i64.data(), DType::Int64, {4}, "i")});
  std::vector<int64_t> out(4, 5);
  p64.gather(out.data(), 4);
  EXPECT_EQ(out, i64);
  Plan pb = Plan::build({ref(flags.data(), DType::Bool, {3}, "mask")});
  std::vector<uint8_t> ob(3, 0x5A);
  pb.gather(ob.data(), 3);
  EXPECT_EQ(ob, flags);
  EXPECT_THROW_MSG(p64.scatter_add(out.data(), 4, 1.0), "'i'", "not floating point");
}

TEST(Plan, ManyTinyAndOneHugeMatchWithOneTwoAndFourThreads) {
  std::mt19937 rng(10);
  std::vector<std::vector<float>> store;
  std::vector<TensorRef> refs;
  std::vector<float> expected;
  for (int i = 0; i < 5000; ++i) {
    store.push_back(random_floats(1 + rng() % 300, 100 + i));
  }
  store.push_back(random_floats(3'000'000, 99));
  for (std::size_t i = 0; i < store.size(); ++i) {
    refs.push_back(
        ref(store[i].data(), DType::Float32, {int64_t(store[i].size())}, "t" + std::to_string(i)));
    expected.insert(expected.end(), store[i].begin(), store[i].end());
  }
  for (int threads : {1, 2, 4}) {
    PlanOptions o;
    o.num_threads = threads;
    Plan plan = Plan::build(refs, o);
    std::vector<float> flat(expected.size(), -1.0f);
    plan.gather(flat.data(), static_cast<int64_t>(flat.size()));
    EXPECT_EQ(flat, expected) << threads << " threads";
    EXPECT_NE(plan.describe().find("threads=" + std::to_string(threads)), std::string::npos);
  }
}

TEST(Plan, ConcurrentGathersFromThreads) {
  auto a = random_floats(400'000, 11);
  auto b = random_floats(123, 12);
  Plan plan = Plan::build(
      {ref(a.data(), DType::Float32, {400'000}, "a"), ref(b.data(), DType::Float32, {123}, "b")},
      PlanOptions{DType::Float64, 0, 2});
  std::vector<std::vector<double>> outs(4, std::vector<double>(400'123, -1.0));
  std::vector<std::thread> threads;
  for (auto& out : outs)
    threads.emplace_back([&] {
      for (int rep = 0; rep < 5; ++rep) plan.gather(out.data(), 400'123);
    });
  for (auto& t : threads) t.join();
  for (const auto& out : outs) {
    for (int i = 0; i < 400'000; i += 997) ASSERT_EQ(out[i], double(a[i]));
    for (int i = 0; i < 123; ++i) ASSERT_EQ(out[400'000 + i], double(b[i]));
  }
}

TEST(Plan, StrideZeroAndOverlapsRefuseScatterButGather) {
  std::vector<float> buf = random_floats(10, 13);
  Plan expanded = Plan::build({ref(buf.data(), DType::Float32, {3, 4}, "expanded", {0, 1})});
  EXPECT_FALSE(expanded.writable());
  std::vector<float> flat(12);
  expanded.gather(flat.data(), 12);
  EXPECT_EQ(flat[4], buf[0]);
  EXPECT_THROW_MSG(expanded.scatter(flat.data(), 12), "scatter", "'expanded'", "share memory");

  Plan overlapping = Plan::build({ref(buf.data(), DType::Float32, {6}, "first"),
                                  ref(buf.data() + 4, DType::Float32, {6}, "second")});
  std::vector<float> flat2(12, 1.0f);
  overlapping.gather(flat2.data(), 12);
  const auto before = buf;
  EXPECT_THROW_MSG(overlapping.scatter(flat2.data(), 12), "'first'", "'second'", "overlap");
  EXPECT_THROW_MSG(overlapping.scatter_add(flat2.data(), 12, 1.0), "'first'", "'second'");
  EXPECT_EQ(buf, before) << "a refused scatter must leave the destinations untouched";
}

TEST(Plan, ErrorsNameTheTensorAndWhatIsValid) {
  std::vector<float> f(8, 1.0f);
  std::vector<uint16_t> h(8, 0x3C00);
  std::vector<int32_t> i32(8, 3);
  EXPECT_THROW_MSG(Plan::build({}), "empty selection");
  EXPECT_THROW_MSG(Plan::build({ref(f.data(), DType::Float32, {8}, "w"),
                                ref(h.data(), DType::Float16, {8}, "h")}),
                   "mixed dtypes", "'h'", "float16", "'w'", "flat dtype");
  EXPECT_THROW_MSG(
      Plan::build({ref(i32.data(), DType::Int32, {8}, "steps")}, PlanOptions{DType::Float32, 0, 0}),
      "'steps'", "int32", "cannot be cast", "float32, float16, bfloat16 and float64");
  TensorRef on_gpu = ref(h.data(), DType::Float32, {4}, "g");
  on_gpu.device = Device::cuda(1);
  EXPECT_THROW_MSG(Plan::build({ref(f.data(), DType::Float32, {8}, "w"), on_gpu}), "'g'", "cuda:1",
                   "'w'", "cpu", "one device");
  EXPECT_THROW_MSG(Plan::build({ref(nullptr, DType::Float32, {8}, "ghost")}), "'ghost'",
                   "null pointer");
  EXPECT_THROW_MSG(Plan::build({ref(f.data(), DType::Float32, {-1}, "neg")}), "'neg'",
                   "negative size");
  EXPECT_THROW_MSG(
      Plan::build({ref(f.data(), DType::Float32, {int64_t(1) << 40, int64_t(1) << 30}, "huge")}),
      "'huge'", "overflows");
  EXPECT_THROW_MSG(Plan::build({ref(f.data(), DType::Float32, {2, 4}, "s", {1})}), "'s'",
                   "1 strides for 2 sizes");
  EXPECT_THROW_MSG(Plan::build({ref(f.data(), DType::Float32, {8}, "w")}, PlanOptions{{}, 24, 0}),
                   "align_bytes", "power of two", "24");

  Plan plan = Plan::build({ref(f.data(), DType::Float32, {4}, "w")});
  std::vector<float> out(5);
  EXPECT_THROW_MSG(plan.gather(out.data(), 5), "gather", "5 elements", "needs 4");
  EXPECT_THROW_MSG(plan.gather(nullptr, 4), "null pointer");
  EXPECT_THROW_MSG(plan.gather(f.data() + 2, 4), "overlaps", "'w'", "alias");
  EXPECT_THROW_MSG(plan.scatter(f.data() + 3, 4), "overlaps", "'w'");
  EXPECT_NO_THROW(plan.gather(f.data() + 4, 4));  // adjacent, not overlapping

  Plan empty;
  EXPECT_THROW_MSG(empty.layout(), "empty", "Plan::build");
}

// Element offset of logical index i (row-major) of a view with these sizes and strides: the
// reference, written out with a division per dimension.
int64_t offset_of(int64_t i, const std::vector<int64_t>& sizes,
                  const std::vector<int64_t>& strides) {
  int64_t offset = 0;
  for (std::size_t d = sizes.size(); d-- > 0;) {
    offset += (i % sizes[d]) * strides[d];
    i /= sizes[d];
  }
  return offset;
}

// Negative strides in raw descriptors (the core API allows them; LibTorch never makes them):
// gather, scatter and scatter_add follow them, in one task and split across threads, and
// write nothing outside the view (guard elements on both sides).
TEST(Plan, NegativeStridesAreFollowed) {
  struct View {
    std::vector<int64_t> sizes, strides;
    int64_t first;   // buffer index of element [0, ..., 0]
    int64_t length;  // buffer elements (guards excluded)
  };
  const int64_t kGuard = 3;
  const std::vector<View> views = {
      {{3, 4}, {-4, -1}, 11, 12},         // fully reversed: merges to one dim of stride -1
      {{2, 3}, {-1, 2}, 1, 6},            // mixed signs
      {{5, 7}, {1, -5}, 30, 35},          // transposed and reversed
      {{300000}, {-1}, 299999, 300000}};  // several CPU tasks
  for (int threads : {1, 2}) {
    std::vector<std::vector<float>> bufs;
    std::vector<TensorRef> refs;
    int64_t total = 0;
    for (std::size_t v = 0; v < views.size(); ++v) {
      bufs.push_back(random_floats(views[v].length + 2 * kGuard, 40 + v));
      refs.push_back(ref(bufs[v].data() + kGuard + views[v].first, DType::Float32, views[v].sizes,
                         "neg" + std::to_string(v), views[v].strides));
      total += views[v].length;
    }
    PlanOptions o;
    o.num_threads = threads;
    Plan plan = Plan::build(refs, o);
    ASSERT_TRUE(plan.writable());
    auto element = [&](std::vector<std::vector<float>>& b, std::size_t v, int64_t i) -> float& {
      return b[v][kGuard + views[v].first + offset_of(i, views[v].sizes, views[v].strides)];
    };
    std::vector<float> expected;
    for (std::size_t v = 0; v < views.size(); ++v)
      for (int64_t i = 0; i < views[v].length; ++i) expected.push_back(element(bufs, v, i));
    std::vector<float> flat(total, -777.0f);
    plan.gather(flat.data(), total);
    ASSERT_EQ(flat, expected) << threads << " threads";

    const auto values = random_floats(total, 50);
    const auto original = bufs;
    for (auto& b : bufs)  // poison the views; the guards keep their values
      std::fill(b.begin() + kGuard, b.end() - kGuard, -999.0f);
    plan.scatter(values.data(), total);
    int64_t k = 0;
    for (std::size_t v = 0; v < views.size(); ++v) {
      for (int64_t i = 0; i < views[v].length; ++i, ++k) ASSERT_EQ(element(bufs, v, i), values[k]);
      for (int64_t g = 0; g < kGuard; ++g) {
        ASSERT_EQ(bufs[v][g], original[v][g]) << "scatter wrote before view " << v;
        ASSERT_EQ(bufs[v][bufs[v].size() - 1 - g], original[v][bufs[v].size() - 1 - g]);
      }
    }
    const auto update = random_floats(total, 51);
    plan.scatter_add(update.data(), total, -0.375);
    k = 0;
    for (std::size_t v = 0; v < views.size(); ++v)
      for (int64_t i = 0; i < views[v].length; ++i, ++k)
        ASSERT_EQ(element(bufs, v, i), std::fma(-0.375f, update[k], values[k])) << v << " " << i;
  }
}

// Dimensions that cannot be merged: 8 are followed, 9 are refused with the tensor's name.
TEST(Plan, MoreThanEightUnmergeableDimsAreRefusedByName) {
  std::vector<int64_t> strides;  // 3^8, ..., 3, 1 with sizes 2: no two dims merge
  for (int d = 8; d >= 0; --d) strides.push_back(static_cast<int64_t>(std::pow(3, d)));
  std::vector<float> buf = random_floats(9841 + 1, 60);  // reach: (3^9 - 1) / 2
  const std::vector<int64_t> sizes8(8, 2), strides8(strides.begin() + 1, strides.end());
  Plan eight = Plan::build({ref(buf.data(), DType::Float32, sizes8, "eight", strides8)});
  std::vector<float> flat(256, -777.0f);
  eight.gather(flat.data(), 256);
  for (int64_t i = 0; i < 256; ++i) ASSERT_EQ(flat[i], buf[offset_of(i, sizes8, strides8)]) << i;
  EXPECT_THROW_MSG(
      Plan::build({ref(buf.data(), DType::Float32, std::vector<int64_t>(9, 2), "deep", strides)}),
      "'deep'", "9 dimensions that cannot be merged", "at most 8", "contiguous()");
}

// Two views interleaved in one buffer (even and odd elements) share no element, but overlap is
// judged by byte ranges (docs/reliability.md, "Not detected"): gather follows both, scatter
// and scatter_add are refused naming both tensors, and write nothing.
TEST(Plan, InterleavedViewsGatherAndAreRefusedForScatter) {
  std::vector<float> buf = random_floats(2000, 70);
  Plan plan = Plan::build({ref(buf.data(), DType::Float32, {1000}, "even", {2}),
                           ref(buf.data() + 1, DType::Float32, {1000}, "odd", {2})});
  std::vector<float> flat(2000, -777.0f);
  plan.gather(flat.data(), 2000);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(flat[i], buf[2 * i]);
    ASSERT_EQ(flat[1000 + i], buf[2 * i + 1]);
  }
  EXPECT_FALSE(plan.writable());
  const auto before = buf;
  EXPECT_THROW_MSG(plan.scatter(flat.data(), 2000), "scatter", "'even'", "'odd'", "overlap");
  EXPECT_THROW_MSG(plan.scatter_add(flat.data(), 2000, 1.0), "scatter_add", "'even'", "'odd'");
  EXPECT_EQ(buf, before);
}

#if !defined(FLATGATHER_WITH_CUDA)
TEST(Plan, CudaTensorsWithoutCudaBuildSayHowToFix) {
  std::vector<float> f(8);
  TensorRef t = ref(f.data(), DType::Float32, {8}, "w");
  t.device = Device::cuda(0);
  EXPECT_FALSE(flatgather::cuda_available());
  EXPECT_THROW_MSG(Plan::build({t}), "cuda:0", "built without CUDA", "FLATGATHER_CUDA=ON");
}
#endif

TEST(CopyDesc, ElementOffsetFollowsRowMajorOrder) {
  flatgather::detail::CopyDesc d;
  d.contiguous = false;
  d.ndim = 3;
  const int64_t sizes[] = {2, 3, 4};
  const int64_t strides[] = {1, 8, 2};  // a permuted layout
  std::copy(sizes, sizes + 3, d.sizes);
  std::copy(strides, strides + 3, d.strides);
  int64_t i = 0;
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 3; ++b)
      for (int c = 0; c < 4; ++c)
        EXPECT_EQ(flatgather::detail::element_offset(d, i++), a * 1 + b * 8 + c * 2);
}

}  // namespace

namespace {

// Rebind re-analyses overlaps (NOTE: [rebind overlap]): moving a segment onto memory another
// segment uses refuses scatter and scatter_add with the build-time message, gather still runs,
// and moving it away again makes the plan writable.
TEST(PlanRebind, OverlapCreatedByRebindRefusesScatter) {
  // `a` holds 8 floats: "first" is a[0..6), and "second" rebound to a + 2 reads a[2..8).
  std::vector<float> a = random_floats(8, 31), b = random_floats(6, 32), c = random_floats(8, 33);
  Plan plan = Plan::build(
      {ref(a.data(), DType::Float32, {6}, "first"), ref(b.data(), DType::Float32, {6}, "second")});
  ASSERT_TRUE(plan.writable());
  Plan built_overlapping = Plan::build({ref(a.data(), DType::Float32, {6}, "first"),
                                        ref(a.data() + 2, DType::Float32, {6}, "second")});
  std::string build_message;
  std::vector<float> flat(12, 0.5f);
  try {
    built_overlapping.scatter(flat.data(), 12);
  } catch (const flatgather::Error& e) {
    build_message = e.what();
  }
  ASSERT_FALSE(build_message.empty());

  c.assign(a.begin(), a.begin() + 6);
  c.resize(8, 7.0f);
  plan.rebind(1, a.data() + 2);  // "second" now shares a[2..6) with "first"
  EXPECT_FALSE(plan.writable());
  const auto before = a;
  EXPECT_THROW_MSG(plan.scatter(flat.data(), 12), "'first'", "'second'", "overlap");
  EXPECT_THROW_MSG(plan.scatter_add(flat.data(), 12, 1.0), "'first'", "'second'", "overlap");
  try {
    plan.scatter(flat.data(), 12);
  } catch (const flatgather::Error& e) {
    EXPECT_EQ(std::string(e.what()), build_message) << "rebind and build must refuse alike";
  }
  EXPECT_EQ(a, before) << "a refused scatter must leave the destinations untouched";
  std::vector<float> gathered(12, -1.0f);
  plan.gather(gathered.data(), 12);  // gather of overlapping tensors is fine
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(gathered[i], a[i]);
    EXPECT_EQ(gathered[6 + i], a[2 + i]);
  }

  plan.rebind(1, c.data());  // disjoint again
  EXPECT_TRUE(plan.writable());
  EXPECT_NO_THROW(plan.scatter(flat.data(), 12));
  EXPECT_EQ(c[0], 0.5f);
  EXPECT_EQ(c[6], 7.0f) << "scatter wrote past the rebound segment";
}

TEST(PlanRebind, BatchedRebindOntoEachOtherRefusesScatter) {
  std::vector<float> a = random_floats(4, 41), b = random_floats(4, 42), d = random_floats(4, 43);
  Plan plan = Plan::build(
      {ref(a.data(), DType::Float32, {4}, "p0"), ref(b.data(), DType::Float32, {4}, "p1")});
  plan.rebind({{0, d.data()}, {1, d.data()}});  // two distinct segments, same memory
  std::vector<float> flat(8, 2.0f);
  EXPECT_THROW_MSG(plan.scatter(flat.data(), 8), "'p0'", "'p1'", "overlap");
  plan.rebind({{1, nullptr}});  // a zero-filled placeholder overlaps nothing
  EXPECT_TRUE(plan.writable());
  plan.scatter(flat.data(), 8);
  EXPECT_EQ(d, std::vector<float>(4, 2.0f));
}

// An internal overlap (stride 0) is fixed at build and survives any rebind.
TEST(PlanRebind, InternalOverlapSurvivesRebind) {
  std::vector<float> a = random_floats(4, 51), b = random_floats(4, 52);
  Plan plan = Plan::build({ref(a.data(), DType::Float32, {2, 4}, "expanded", {0, 1})});
  plan.rebind(0, b.data());
  std::vector<float> flat(8, 1.0f);
  EXPECT_THROW_MSG(plan.scatter(flat.data(), 8), "'expanded'", "share memory");
}

}  // namespace
