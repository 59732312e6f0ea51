// Layout and manifest: round trips, parse errors, and first-difference messages.
#include "flatgather/layout.h"
#include "flatgather/plan.h"
#include "test_util.h"

#include <vector>

namespace {

using flatgather::DType;
using flatgather::Layout;
using flatgather::Plan;
using flatgather::TensorRef;

struct Model {
  std::vector<float> w = std::vector<float>(50, 1.5f);
  std::vector<float> b = std::vector<float>(5, 2.5f);
  std::vector<float> w2 = std::vector<float>(10, 3.5f);
  std::vector<TensorRef> refs() {
    return {{w.data(), DType::Float32, {5, 10}, {}, {}, "linear1.weight"},
            {b.data(), DType::Float32, {5}, {}, {}, "linear1.bias"},
            {w2.data(), DType::Float32, {2, 5}, {}, {}, "linear2.weight"},
            {w.data(), DType::Float32, {5, 10}, {}, {}, "tied.weight"}};
  }
};

TEST(Layout, OffsetsPaddingAndAliases) {
  Model m;
  flatgather::PlanOptions o;
  o.align_bytes = 32;  // 8 floats
  Plan plan = Plan::build(m.refs(), o);
  const Layout& l = plan.layout();
  ASSERT_EQ(l.segments().size(), 3u);
  EXPECT_EQ(l.segments()[0].offset, 0);
  EXPECT_EQ(l.segments()[1].offset, 56);  // 50 rounded up to 8
  EXPECT_EQ(l.segments()[2].offset, 64);  // 61 rounded up to 8
  EXPECT_EQ(l.numel(), 80);               // 74 rounded up to 8
  EXPECT_EQ(l.segments()[0].aliases, std::vector<std::string>{"tied.weight"});
  EXPECT_EQ(l.find("tied.weight"), &l.segments()[0]);
  EXPECT_EQ(l.find("nope"), nullptr);
  EXPECT_EQ(plan.segment_of(3), 0u);
}

TEST(Layout, ManifestRoundTrip) {
  Model m;
  flatgather::PlanOptions o;
  o.align_bytes = 16;
  o.flat_dtype = DType::BFloat16;
  Plan plan = Plan::build(m.refs(), o);
  const std::string json = plan.layout().to_json();
  const Layout back = Layout::from_json(json);
  EXPECT_EQ(back, plan.layout());
  EXPECT_EQ(back.to_json(), json);
  EXPECT_NO_THROW(plan.layout().check_matches(back));
  EXPECT_NE(json.find("\"linear1.bias\""), std::string::npos);
  EXPECT_NE(json.find("\"flat_dtype\": \"bfloat16\""), std::string::npos);
}

TEST(Layout, CheckMatchesNamesTheFirstDifference) {
  Model m;
  Plan plan = Plan::build(m.refs());
  auto refs = m.refs();
  std::swap(refs[1], refs[2]);
  Plan swapped = Plan::build(refs);
  EXPECT_THROW_MSG(swapped.layout().check_matches(plan.layout()), "segment 1", "'linear2.weight'",
                   "'linear1.bias'", "order differs");
  refs = m.refs();
  refs[2].sizes = {5, 2};
  EXPECT_THROW_MSG(Plan::build(refs).layout().check_matches(plan.layout()), "segment 2",
                   "shape [5, 2]", "[2, 5]");
  refs = m.refs();
  refs.erase(refs.begin() + 2);
  EXPECT_THROW_MSG(Plan::build(refs).layout().check_matches(plan.layout()), "2 segments",
                   "manifest has 3", "'linear2.weight'");
  refs = m.refs();
  refs[1].name = "renamed.bias";
  EXPECT_THROW_MSG(Plan::build(refs).layout().check_matches(plan.layout()), "'renamed.bias'",
                   "not in the manifest");
  flatgather::PlanOptions half;
  half.flat_dtype = DType::Float16;
  EXPECT_THROW_MSG(Plan::build(m.refs(), half).layout().check_matches(plan.layout()),
                   "flat dtype is float16", "float32");
}

TEST(Layout, FromJsonRejectsBadManifests) {
  EXPECT_THROW_MSG(Layout::from_json("{not json"), "not valid JSON");
  EXPECT_THROW_MSG(Layout::from_json("[]"), "must be a JSON object");
  EXPECT_THROW_MSG(Layout::from_json(R"({"format": "other"})"), "unknown \"format\"");
  const std::string head = R"({"format": "flatgather.layout/1", "flat_dtype": "float32", )";
  EXPECT_THROW_MSG(
      Layout::from_json(
          head +
          R"("numel": 4, "segments": [{"name": "a", "dtype": "float9", "shape": [4], "offset": 0, "numel": 4}]})"),
      "unknown dtype 'float9'", "bfloat16");
  EXPECT_THROW_MSG(
      Layout::from_json(
          head +
          R"("numel": 4, "segments": [{"name": "a", "dtype": "float32", "shape": [2], "offset": 0, "numel": 4}]})"),
      "numel 4", "holds 2");
  EXPECT_THROW_MSG(
      Layout::from_json(
          head +
          R"("numel": 4, "segments": [{"name": "a", "dtype": "float32", "shape": [4], "offset": 0, "numel": 4}, {"name": "b", "dtype": "float32", "shape": [1], "offset": 2, "numel": 1}]})"),
      "'b'", "inside the previous segment");
  EXPECT_THROW_MSG(
      Layout::from_json(
          head +
          R"("numel": 3, "segments": [{"name": "a", "dtype": "float32", "shape": [4], "offset": 0, "numel": 4}]})"),
      "end at 4", "\"numel\" is 3");
  EXPECT_THROW_MSG(Layout::from_json(head + R"("numel": 4, "segments": [{"dtype": "float32"}]})"),
                   "segment 0", "no \"name\"");
  EXPECT_THROW_MSG(Layout::from_json(head + R"("numel": -1, "segments": []})"),
                   "non-negative integer");
}

}  // namespace
