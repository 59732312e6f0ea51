// Gather statistics on the core plan (raw host memory, no LibTorch; NOTE: [gather
// statistics] in src/stats.h). References are computed here in long double.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cast.h"
#include "flatgather/dtype.h"
#include "flatgather/plan.h"
#include "test_util.h"

namespace {

using fgtest::ref;
using flatgather::DType;
using flatgather::Factor;
using flatgather::GatherOptions;
using flatgather::Plan;
using flatgather::PlanOptions;

std::vector<float> random_floats(std::size_t n, unsigned seed, float sd = 3.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct Outputs {
  float norm = -1, found_inf = -1, clip_coef = -1;
  std::vector<float> tensor_norms;
};

GatherOptions ask_all(Outputs& o, std::size_t segments, double max_norm) {
  o.tensor_norms.assign(segments, -1.0f);
  GatherOptions g;
  g.d_norm = &o.norm;
  g.d_found_inf = &o.found_inf;
  g.d_clip_coef = &o.clip_coef;
  g.d_tensor_norms = o.tensor_norms.data();
  g.max_norm = max_norm;
  return g;
}

long double sumsq(const float* v, std::size_t n) {
  long double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += static_cast<long double>(v[i]) * v[i];
  return s;
}

TEST(Stats, NormsOfWrittenValuesWithScaleStridesAndPadding) {
  auto a = random_floats(12, 1);  // gathered transposed: a 4x3 view with strides {1, 4}
  auto b = random_floats(7, 2);
  auto c = random_floats(5000, 3);
  PlanOptions po;
  po.align_bytes = 64;
  Plan plan = Plan::build(
      {ref(a.data(), DType::Float32, {4, 3}, "a.t", {1, 4}),
       ref(b.data(), DType::Float32, {7}, "b"), ref(c.data(), DType::Float32, {5000}, "c")},
      po);
  const float scale = 0.125f;  // a power of two: the written values are exact
  std::vector<float> flat(plan.layout().numel(), std::nanf(""));
  Outputs out;
  GatherOptions g = ask_all(out, 3, 10.0);
  g.scale = Factor::device(&scale);
  plan.gather(flat.data(), static_cast<std::int64_t>(flat.size()), g);
  std::vector<float> sa(12), sb(7), sc(5000);
  for (int i = 0; i < 12; ++i) sa[i] = a[i] * scale;
  for (int i = 0; i < 7; ++i) sb[i] = b[i] * scale;
  for (int i = 0; i < 5000; ++i) sc[i] = c[i] * scale;
  const long double total = sumsq(sa.data(), 12) + sumsq(sb.data(), 7) + sumsq(sc.data(), 5000);
  EXPECT_NEAR(out.norm, std::sqrt(total), 2e-7 * std::sqrt(total));
  EXPECT_FLOAT_EQ(out.tensor_norms[0], static_cast<float>(std::sqrt(sumsq(sa.data(), 12))));
  EXPECT_FLOAT_EQ(out.tensor_norms[1], static_cast<float>(std::sqrt(sumsq(sb.data(), 7))));
  EXPECT_FLOAT_EQ(out.tensor_norms[2], static_cast<float>(std::sqrt(sumsq(sc.data(), 5000))));
  EXPECT_EQ(out.found_inf, 0.0f);
  EXPECT_EQ(out.clip_coef, std::min(1.0f, 10.0f / (out.norm + 1e-6f)));
  EXPECT_LT(out.clip_coef, 1.0f);  // the norm is about 27
  const auto& segs = plan.layout().segments();
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(flat[segs[0].offset + i * 3 + j], a[j * 4 + i] * scale);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(flat[segs[2].offset + i], sc[i]);
  for (std::int64_t i = segs[0].offset + 12; i < segs[1].offset; ++i) EXPECT_EQ(flat[i], 0.0f);
}

TEST(Stats, FoundInfForNanAndInfinitiesInHalfSources) {
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    std::vector<flatgather::Half> h(100);
    auto v = random_floats(100, 4, 1.0f);
    for (int i = 0; i < 100; ++i) h[i] = flatgather::convert<flatgather::Half>(v[i]);
    h[63] = flatgather::convert<flatgather::Half>(bad);
    PlanOptions po;
    po.flat_dtype = DType::Float32;
    Plan plan = Plan::build({ref(h.data(), DType::Float16, {100}, "h")}, po);
    std::vector<float> flat(100);
    float found = -1, norm = -1;
    GatherOptions g;
    g.d_found_inf = &found;
    g.d_norm = &norm;
    g.scale = 0.5;
    plan.gather(flat.data(), 100, g);
    EXPECT_EQ(found, 1.0f);
    EXPECT_FALSE(std::isfinite(norm));  // the written value is not finite either
    h[63] = flatgather::convert<flatgather::Half>(1.0f);
    plan.gather(flat.data(), 100, g);
    EXPECT_EQ(found, 0.0f);
    EXPECT_TRUE(std::isfinite(norm));
  }
}

TEST(Stats, SameBitsForEveryThreadCountAndCall) {
  // Large enough for many CPU tasks (NOTE: [cpu work split]), with transposed matrices among
  // them, whose pieces are cut at whole rows (every 8th tensor: rows x 50 stored column
  // by column, a few hundred rows, so no cut may depend on the thread count).
  std::vector<std::vector<float>> data;
  std::vector<flatgather::TensorRef> refs;
  for (int i = 0; i < 40; ++i) data.push_back(random_floats(20000 + 977 * i, 10 + i));
  for (int i = 0; i < 40; ++i) {
    const auto n = static_cast<std::int64_t>(data[i].size());
    if (i % 8 == 3) {  // rows x 50, transposed
      refs.push_back(
          ref(data[i].data(), DType::Float32, {n / 50, 50}, "t" + std::to_string(i), {1, n / 50}));
    } else {
      refs.push_back(ref(data[i].data(), DType::Float32, {n}, "t" + std::to_string(i)));
    }
  }
  Outputs first;
  for (int threads : {1, 2, 3, 4, 8}) {
    PlanOptions po;
    po.num_threads = threads;
    Plan plan = Plan::build(refs, po);
    std::vector<float> flat(plan.layout().numel());
    for (int call = 0; call < 2; ++call) {
      Outputs out;
      plan.gather(flat.data(), static_cast<std::int64_t>(flat.size()), ask_all(out, 40, 1.0));
      if (first.norm < 0) first = out;
      EXPECT_EQ(std::memcmp(&out.norm, &first.norm, 4), 0) << threads << " threads";
      EXPECT_EQ(std::memcmp(out.tensor_norms.data(), first.tensor_norms.data(), 160), 0);
    }
  }
}

TEST(Stats, ScatterScaleAndScatterAddDeviceAlpha) {
  auto t = random_floats(300, 5);
  auto flat = random_floats(300, 6);
  Plan plan = Plan::build({ref(t.data(), DType::Float32, {300}, "t")});
  const float alpha = -0.3f;
  auto expected = t;
  for (int i = 0; i < 300; ++i) expected[i] = std::fma(alpha, flat[i], t[i]);
  plan.scatter_add(flat.data(), 300, Factor::device(&alpha));
  EXPECT_EQ(t, expected);
  const float scale = 1.7f;
  plan.scatter(flat.data(), 300, Factor::device(&scale));
  for (int i = 0; i < 300; ++i) ASSERT_EQ(t[i], flat[i] * scale);
}

TEST(Stats, RefusesBadRequestsNamingThem) {
  auto t = random_floats(4, 7);
  std::vector<std::int32_t> ints(4, 3);
  Plan plan = Plan::build({ref(t.data(), DType::Float32, {4}, "t")});
  std::vector<float> flat(4);
  float coef = 0;
  GatherOptions g;
  g.d_clip_coef = &coef;
  EXPECT_THROW_MSG(plan.gather(flat.data(), 4, g), "max_norm > 0");
  Plan int_plan = Plan::build({ref(ints.data(), DType::Int32, {4}, "steps")});
  std::vector<std::int32_t> int_flat(4);
  float norm = 0;
  GatherOptions n;
  n.d_norm = &norm;
  EXPECT_THROW_MSG(int_plan.gather(int_flat.data(), 4, n), "'steps'", "not floating point");
  alignas(4) char bytes[8] = {};
  GatherOptions misaligned;
  misaligned.d_norm = reinterpret_cast<float*>(bytes + 1);
  EXPECT_THROW_MSG(plan.gather(flat.data(), 4, misaligned), "norm output", "aligned");
}

}  // namespace
