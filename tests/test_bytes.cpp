// Byte plans (flat dtype uint8, NOTE: [byte plans]): a module's whole state of every dtype in
// one buffer, against references built independently from each tensor's own bytes.
#include <torch/torch.h>

#include <algorithm>

#include "flatgather/torch.h"
#include "torch_util.h"

namespace {

namespace fgt = flatgather::torch;
using fgtest::bits_equal;
using fgtest::bytes_of;
using fgtest::reference_bytes;

// A small ResNet-like network: conv, batch norm (int64 num_batches_tracked), residual
// blocks, plus buffers of the other dtypes a state_dict holds (float16, bfloat16, bool,
// int32, float64).
struct BlockImpl : torch::nn::Module {
  explicit BlockImpl(int64_t c) {
    conv1 = register_module(
        "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, c, 3).padding(1).bias(false)));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(c));
    conv2 = register_module(
        "conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, c, 3).padding(1).bias(false)));
    bn2 = register_module("bn2", torch::nn::BatchNorm2d(c));
  }
  torch::Tensor forward(torch::Tensor x) {
    return torch::relu(x + bn2(conv2(torch::relu(bn1(conv1(x))))));
  }
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
};
TORCH_MODULE(Block);

struct TinyResNetImpl : torch::nn::Module {
  TinyResNetImpl() {
    stem = register_module("stem", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)));
    bn = register_module("bn", torch::nn::BatchNorm2d(8));
    layer1 = register_module("layer1", Block(8));
    layer2 = register_module("layer2", Block(8));
    fc = register_module("fc", torch::nn::Linear(8, 5));
    mask = register_buffer("mask", fgtest::random_tensor({7}, at::kBool));
    half_scale = register_buffer("half_scale", fgtest::random_tensor({3, 5}, at::kHalf));
    bf16_bias = register_buffer("bf16_bias", fgtest::random_tensor({5}, at::kBFloat16));
    steps = register_buffer("steps", fgtest::random_tensor({3}, at::kInt));
    ema = register_buffer("ema", fgtest::random_tensor({2, 3}, at::kDouble));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = layer2(layer1(torch::relu(bn(stem(x)))));
    return fc(x.mean({2, 3}));
  }
  torch::nn::Conv2d stem{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  Block layer1{nullptr}, layer2{nullptr};
  torch::nn::Linear fc{nullptr};
  at::Tensor mask, half_scale, bf16_bias, steps, ema;
};
TORCH_MODULE(TinyResNet);

// A trained-looking network: random weights and running statistics updated by two forward
// passes in train mode (num_batches_tracked == 2).
TinyResNet trained_net(uint64_t seed) {
  torch::manual_seed(seed);
  TinyResNet net;
  net->train();
  for (int i = 0; i < 2; ++i) net->forward(torch::randn({2, 3, 6, 6}));
  return net;
}

fgt::Selection whole_state() {
  fgt::Selection s;
  s.buffers = true;
  return s;
}

std::vector<at::Tensor> state_tensors(const torch::nn::Module& m) {
  std::vector<at::Tensor> out;
  m.apply([&](const torch::nn::Module& sub) {
    for (const auto& p : sub.named_parameters(false)) out.push_back(p.value());
    for (const auto& b : sub.named_buffers(false)) out.push_back(b.value());
  });
  return out;
}

class BytePlan : public ::testing::TestWithParam<int64_t> {};

TEST_P(BytePlan, WholeModuleStateGathersByteForByteWithTypedViews) {
  const int64_t align = GetParam();
  TinyResNet net = trained_net(11);
  fgt::Options o;
  o.dtype = at::kByte;
  o.align_bytes = align;
  fgt::Plan plan = fgt::Plan::from_module(*net, whole_state(), o);
  const std::vector<at::Tensor> state = state_tensors(*net);
  ASSERT_EQ(plan.names().size(), state.size());
  // state_dict order: the root's own buffers, then each submodule's parameters and buffers
  ASSERT_EQ(plan.names()[0], "mask");
  ASSERT_EQ(plan.names()[5], "stem.weight");
  EXPECT_EQ(plan.dtype(), at::kByte);

  at::Tensor flat = fgtest::poisoned(plan.numel(), at::kByte);
  plan.gather(flat);
  EXPECT_TRUE(bits_equal(flat, reference_bytes(state, align)));

  const std::vector<at::Tensor> views = plan.views(flat);
  ASSERT_EQ(views.size(), state.size());
  for (std::size_t i = 0; i < state.size(); ++i) {
    const flatgather::Segment& seg = plan.layout().segments()[i];
    SCOPED_TRACE(seg.name);
    EXPECT_EQ(seg.offset % state[i].element_size(), 0);
    if (align > 1) {
      EXPECT_EQ(seg.offset % align, 0);
    }
    EXPECT_EQ(views[i].scalar_type(), state[i].scalar_type());
    EXPECT_EQ(views[i].sizes(), state[i].sizes());
    EXPECT_TRUE(bits_equal(views[i], state[i]));
    EXPECT_EQ(views[i].data_ptr(), static_cast<void*>(flat.data_ptr<uint8_t>() + seg.offset));
  }
  const flatgather::Segment* counter = plan.layout().find("bn.num_batches_tracked");
  ASSERT_NE(counter, nullptr);
  EXPECT_EQ(counter->dtype, flatgather::DType::Int64);
  EXPECT_EQ(views[counter - plan.layout().segments().data()].item<int64_t>(), 2);

  // Scattered into a fresh network of other values, its whole state is equal bit for bit.
  TinyResNet fresh = trained_net(12);
  fgt::Plan into = fgt::Plan::from_module(*fresh, whole_state(), o);
  const std::vector<at::Tensor> fresh_state = state_tensors(*fresh);
  ASSERT_FALSE(bits_equal(fresh_state[0], state[0]));
  into.scatter(flat);
  for (std::size_t i = 0; i < state.size(); ++i) {
    SCOPED_TRACE(plan.names()[i]);
    EXPECT_TRUE(bits_equal(fresh_state[i], state[i]));
  }
}

INSTANTIATE_TEST_SUITE_P(Align, BytePlan, ::testing::Values(0, 16, 256));

// Gathers `sources` (strided, of any dtypes) into a byte buffer, compares it with their own
// contiguous bytes, scatters it into zeroed tensors of the same strides and compares those bit
// for bit.
void check_strided_round_trip(const std::vector<at::Tensor>& sources) {
  fgt::Options o;
  o.dtype = at::kByte;
  fgt::Plan plan = fgt::Plan::from_tensors(sources, {}, o);
  at::Tensor flat = fgtest::poisoned(plan.numel(), at::kByte);
  plan.gather(flat);
  EXPECT_TRUE(bits_equal(flat, reference_bytes(sources, 0)));

  std::vector<at::Tensor> targets;
  for (const at::Tensor& t : sources) {
    at::Tensor z = at::empty_strided(t.sizes(), t.strides(), t.options());
    z.zero_();  // all-zero bits for every dtype
    targets.push_back(z);
  }
  for (std::size_t i = 0; i < targets.size(); ++i) {
    // an independent reading of every target, zeroed
    ASSERT_TRUE(bits_equal(bytes_of(targets[i]), at::zeros_like(bytes_of(sources[i]))));
  }
  fgt::Plan back = fgt::Plan::from_tensors(targets, {}, o);
  back.scatter(flat);
  for (std::size_t i = 0; i < targets.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(targets[i].strides(), sources[i].strides());
    EXPECT_TRUE(bits_equal(targets[i], sources[i]));
  }
}

TEST(BytePlanStrided, ChannelsLastTransposedAndSlicedSourcesRoundTrip) {
  torch::manual_seed(21);
  const std::vector<at::Tensor> sources = {
      fgtest::random_tensor({4, 3, 5, 5}, at::kFloat).contiguous(at::MemoryFormat::ChannelsLast),
      fgtest::random_tensor({7, 9}, at::kDouble).t(),
      fgtest::random_tensor({20}, at::kLong).slice(0, 1, 20, 3),
      fgtest::random_tensor({6, 4}, at::kBFloat16).t(),
      fgtest::random_tensor({3, 8}, at::kBool).slice(1, 0, 8, 2),
      fgtest::random_tensor({5, 6}, at::kHalf).narrow(1, 1, 3),
  };
  for (const at::Tensor& t : sources) ASSERT_FALSE(t.is_contiguous());
  check_strided_round_trip(sources);
}

// Strided tensors of every element size, large enough to be cut into several tasks and run on
// several threads, so the word copies (NOTE: [byte plan words]) meet piece bounds, transposed
// blocks and the carry walk.
TEST(BytePlanStrided, LargeStridedTensorsOfEveryElementSizeRoundTrip) {
  torch::manual_seed(22);
  const std::vector<at::Tensor> sources = {
      fgtest::random_tensor({3}, at::kBool),  // 3 bytes: the next tensor starts after padding
      fgtest::random_tensor({96, 64, 3, 3}, at::kFloat).contiguous(at::MemoryFormat::ChannelsLast),
      fgtest::random_tensor({301, 517}, at::kLong).t(),
      fgtest::random_tensor({257, 1031}, at::kHalf).t(),
      fgtest::random_tensor({64, 32, 5, 5}, at::kInt).contiguous(at::MemoryFormat::ChannelsLast),
      fgtest::random_tensor({800, 300}, at::kDouble).slice(1, 0, 300, 3),
      fgtest::random_tensor({700, 500}, at::kBFloat16).narrow(1, 3, 401),
      fgtest::random_tensor({513, 257}, at::kChar).t(),
  };
  for (std::size_t i = 1; i < sources.size(); ++i) ASSERT_FALSE(sources[i].is_contiguous()) << i;
  check_strided_round_trip(sources);
}

TEST(BytePlanErrors, ScatterAddRefusedAndMixedDtypeHintNamesTheFixes) {
  TinyResNet net = trained_net(31);
  fgt::Options o;
  o.dtype = at::kByte;
  fgt::Plan plan = fgt::Plan::from_module(*net, whole_state(), o);
  const at::Tensor flat = plan.gather();
  const at::Tensor before = bytes_of(net->stem->weight).clone();
  try {
    plan.scatter_add(flat, 1.0);
    FAIL() << "scatter_add into a byte plan must throw";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("byte buffer"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(bits_equal(bytes_of(net->stem->weight), before));

  try {
    fgt::Plan::from_module(*net, whole_state(), {});
    FAIL() << "mixed dtypes without a flat dtype must throw";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("uint8"), std::string::npos) << what;
    EXPECT_NE(what.find("exclude"), std::string::npos) << what;
    EXPECT_NE(what.find("separately"), std::string::npos) << what;
  }
  fgt::Options f32;
  f32.dtype = at::kFloat;
  try {
    fgt::Plan::from_module(*net, whole_state(), f32);
    FAIL() << "int64 into float32 must throw";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'mask' (shape [7], bool"), std::string::npos) << what;
    EXPECT_NE(what.find("uint8"), std::string::npos) << what;
  }
}

TEST(BytePlanManifest, ListsDtypeShapeAndByteOffsetAndRoundTrips) {
  TinyResNet net = trained_net(41);
  fgt::Options o;
  o.dtype = at::kByte;
  o.align_bytes = 16;
  fgt::Plan plan = fgt::Plan::from_module(*net, whole_state(), o);
  const std::string json = plan.manifest();
  EXPECT_NE(json.find("\"flat_dtype\": \"uint8\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"dtype\": \"int64\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"dtype\": \"bfloat16\""), std::string::npos) << json;
  const flatgather::Layout parsed = flatgather::Layout::from_json(json);
  EXPECT_EQ(parsed, plan.layout());
  plan.check_manifest(json);
  const flatgather::Segment* ema = parsed.find("ema");
  ASSERT_NE(ema, nullptr);
  EXPECT_EQ(ema->dtype, flatgather::DType::Float64);
  EXPECT_EQ(ema->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ema->offset % 16, 0);
}

TEST(BytePlanRebind, RebindPointsASegmentAtNewMemory) {
  torch::manual_seed(51);
  at::Tensor a = fgtest::random_tensor({5}, at::kLong);
  at::Tensor b = fgtest::random_tensor({3, 3}, at::kHalf);
  at::Tensor other = fgtest::random_tensor({3, 3}, at::kHalf);
  flatgather::PlanOptions o;
  o.flat_dtype = flatgather::DType::UInt8;
  flatgather::TensorRef ra{a.data_ptr(), flatgather::DType::Int64, {5}, {}, {}, "a"};
  flatgather::TensorRef rb{b.data_ptr(), flatgather::DType::Float16, {3, 3}, {}, {}, "b"};
  flatgather::Plan plan = flatgather::Plan::build({ra, rb}, o);
  plan.rebind(1, other.data_ptr());
  at::Tensor flat = fgtest::poisoned(plan.layout().numel(), at::kByte);
  plan.gather(flat.data_ptr(), flat.numel());
  EXPECT_TRUE(bits_equal(flat, reference_bytes({a, other}, 0)));
}

}  // namespace
