// The table of bad inputs (docs/reliability.md): each gets flatgather::Error with a message
// that names the offending tensor and says what would be valid, and a failing scatter writes
// nothing. Cases already covered by test_plan, test_torch, test_module and test_layout are
// not repeated here.
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "flatgather/torch.h"
#include "torch_util.h"

namespace {

namespace fgt = flatgather::torch;
using fgtest::bits_equal;
using fgtest::random_tensor;
using flatgather::Device;
using flatgather::DType;
using flatgather::Layout;
using flatgather::Plan;
using flatgather::PlanOptions;
using flatgather::TensorRef;

constexpr std::int64_t k2to61 = std::int64_t{1} << 61;

using fgtest::ref;

struct TwoLayerImpl : torch::nn::Module {
  TwoLayerImpl() {
    fc1 = register_module("fc1", torch::nn::Linear(4, 3));
    fc2 = register_module("fc2", torch::nn::Linear(3, 2));
  }
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::tanh(fc1(x))); }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(TwoLayer);

void backward_once(TwoLayer& net, double scale = 1.0) {
  (net->forward(at::randn({5, 4})).sum() * scale).backward();
}

std::vector<at::Tensor> grads_of(TwoLayer& net) {
  std::vector<at::Tensor> g;
  for (const auto& p : net->parameters()) g.push_back(p.grad());
  return g;
}

// Deep copies of the bytes of `tensors` (undefined stays undefined), to prove that a failing
// call left every destination untouched.
std::vector<at::Tensor> snapshot(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.defined() ? t.clone() : at::Tensor());
  return out;
}

::testing::AssertionResult untouched(const std::vector<at::Tensor>& now,
                                     const std::vector<at::Tensor>& before) {
  for (std::size_t i = 0; i < now.size(); ++i) {
    if (now[i].defined() != before[i].defined()) {
      return ::testing::AssertionFailure() << "tensor " << i << " changed definedness";
    }
    if (!now[i].defined()) continue;
    auto r = bits_equal(now[i], before[i]);
    if (!r) return r << " (tensor " << i << ")";
  }
  return ::testing::AssertionSuccess();
}

// ---- core (TensorRef) ----------------------------------------------------------------------

TEST(Errors, TensorsOnDifferentGpus) {
  // Descriptors only: the device check runs before anything touches the memory.
  std::vector<float> a(4), b(4);
  TensorRef ra = ref(a.data(), DType::Float32, {4}, "a");
  TensorRef rb = ref(b.data(), DType::Float32, {4}, "b");
  ra.device = Device::cuda(0);
  rb.device = Device::cuda(1);
  EXPECT_THROW_MSG(Plan::build({ra, rb}), "'b'", "cuda:1", "'a'", "cuda:0", "one device");
}

TEST(Errors, ByteSizesThatWouldOverflow) {
  // Nothing is read: each of these is refused while the plan is being built.
  alignas(16) static std::uint16_t cell[8];
  // Each tensor fits (2^61 float16 = 2^62 bytes) but their sum does not.
  EXPECT_THROW_MSG(Plan::build({ref(cell, DType::Float16, {k2to61}, "a", {0}),
                                ref(cell + 4, DType::Float16, {k2to61}, "b", {0})}),
                   "exceed 2^62 bytes", "'b'");
  // Fits as float16, not once widened to the flat float64.
  PlanOptions wide;
  wide.flat_dtype = DType::Float64;
  EXPECT_THROW_MSG(Plan::build({ref(cell, DType::Float16, {k2to61}, "h", {0})}, wide),
                   "exceed 2^62 bytes", "'h'", "float16");
  // Contiguous default strides are products of sizes: refused before they are computed.
  EXPECT_THROW_MSG(
      Plan::build(
          {ref(cell, DType::Float32,
               {std::int64_t{1} << 40, std::int64_t{1} << 30, std::int64_t{1} << 30}, "cube")}),
      "'cube'", "too large", "overflows 2^62");
  // An empty tensor does not hide huge sizes in its other dimensions.
  EXPECT_THROW_MSG(
      Plan::build({ref(cell, DType::Float32, {0, std::int64_t{1} << 62, 4}, "hidden")}), "'hidden'",
      "too large");
  // Strides whose reach overflows, including the most negative stride.
  EXPECT_THROW_MSG(Plan::build({ref(cell, DType::Float32, {3}, "far", {std::int64_t{1} << 61})}),
                   "'far'", "stride 2305843009213693952", "dimension 0", "beyond 2^62 bytes");
  EXPECT_THROW_MSG(Plan::build({ref(cell, DType::Float32, {2, 2}, "neg",
                                    {1, std::numeric_limits<std::int64_t>::min()})}),
                   "'neg'", "dimension 1", "beyond 2^62 bytes");
  // Through the adapter: an expanded (stride 0) view of one float with 2^62 elements.
  at::Tensor one = at::ones({1});
  at::Tensor huge = one.expand({std::int64_t{1} << 31, std::int64_t{1} << 31});
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({huge}, {"expanded"}), "'expanded'", "overflows 2^62");
}

TEST(Errors, MisalignedMemoryIsRefusedBeforeAnyAccess) {
  alignas(16) unsigned char bytes[64] = {};
  void* odd = bytes + 1;
  EXPECT_THROW_MSG(Plan::build({ref(odd, DType::Float32, {4}, "w")}), "'w'",
                   "not a multiple of its element size (4 bytes)");
  alignas(16) float w[4] = {1.5f, -2.0f, 3.25f, 4.0f};
  Plan plan = Plan::build({ref(w, DType::Float32, {4}, "w")});
  unsigned char flat[32];
  std::memset(flat, 0xA5, sizeof flat);
  void* misaligned_flat = flat + 2;
  EXPECT_THROW_MSG(plan.gather(misaligned_flat, 4), "gather", "not aligned", "4 bytes, float32");
  for (unsigned char c : flat) ASSERT_EQ(c, 0xA5) << "a refused gather wrote into the flat buffer";
  EXPECT_THROW_MSG(plan.scatter(misaligned_flat, 4), "scatter", "not aligned");
  EXPECT_EQ(w[0], 1.5f);
  EXPECT_EQ(w[3], 4.0f);
  EXPECT_THROW_MSG(plan.rebind(0, odd), "rebind", "'w'", "not aligned");
  EXPECT_THROW_MSG(plan.rebind(3, w), "rebind", "segment 3 out of range", "1 segments");
  EXPECT_THROW_MSG(plan.segment_of(1), "tensor index 1 out of range");
}

TEST(Errors, ZeroFillPlaceholderMustHaveNoData) {
  float w[2] = {1.0f, 2.0f};
  TensorRef t = ref(w, DType::Float32, {2}, "g");
  t.zero_fill = true;
  EXPECT_THROW_MSG(Plan::build({t}), "'g'", "zero_fill", "null data");
}

TEST(Errors, EmptyPlanSaysHowToBuildOne) {
  Plan core;
  float flat[1] = {0.0f};
  EXPECT_THROW_MSG(core.scatter(flat, 1), "empty", "Plan::build");
  EXPECT_THROW_MSG(core.rebind(0, nullptr), "empty plan");
  fgt::Plan adapter;
  EXPECT_THROW_MSG(adapter.gather(), "empty", "from_module");
  fgt::Plan moved = fgt::Plan::from_tensors({at::ones({2})});
  fgt::Plan taken = std::move(moved);
  EXPECT_THROW_MSG(moved.scatter(at::ones({2})), "moved from");  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(taken.numel(), 2);
}

// ---- manifests -----------------------------------------------------------------------------

TEST(Errors, ManifestNumbersThatWouldOverflowAreRefused) {
  const std::string head = R"({"format": "flatgather.layout/1", "flat_dtype": "float32", )";
  EXPECT_THROW_MSG(Layout::from_json(head + R"("numel": 4611686018427387904, "segments": []})"),
                   "\"numel\" 4611686018427387904 of float32", "overflows 2^62 bytes");
  EXPECT_THROW_MSG(Layout::from_json(head + R"("numel": 18446744073709551615, "segments": []})"),
                   "\"numel\"", "at most 2^62", "18446744073709551615");
  EXPECT_THROW_MSG(
      Layout::from_json(
          head +
          R"("numel": 8, "segments": [{"name": "a", "dtype": "float32", "shape": [4], "offset": 9223372036854775807, "numel": 4}]})"),
      "'a'", "\"offset\"", "at most 2^62");
  EXPECT_THROW_MSG(Layout::from_json(head + R"("numel": 4, "align_bytes": 24, "segments": []})"),
                   "align_bytes", "power of two", "24");
  EXPECT_THROW_MSG(Layout::from_json(head + R"("numel": 4.5, "segments": []})"), "\"numel\"",
                   "4.5");
  // nlohmann reports this one as out_of_range, not parse_error: still flatgather::Error.
  EXPECT_THROW_MSG(Layout::from_json(head + R"("numel": 1e400, "segments": []})"), "not valid JSON",
                   "number overflow");
  // A deeply nested value gets a short message (no recursive dump of the whole value).
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  try {
    Layout::from_json(R"({"format": )" + deep + "}");
    ADD_FAILURE() << "a nested format was accepted";
  } catch (const flatgather::Error& e) {
    EXPECT_NE(std::string(e.what()).find("a JSON array"), std::string::npos) << e.what();
    EXPECT_LT(std::string(e.what()).size(), 200u);
  }
}

TEST(Errors, ManifestOfANameThatIsNotUtf8) {
  float w[2] = {1.0f, 2.0f};
  Plan plan = Plan::build({ref(w, DType::Float32, {2}, "bad\xff name")});
  EXPECT_THROW_MSG(plan.layout().to_json(), "manifest", "valid UTF-8");
}

TEST(Errors, ManifestMismatchNamesTheFirstDifference) {
  torch::manual_seed(11);
  TwoLayer a, b;
  const std::string manifest = fgt::Plan::from_module(*a).manifest();
  b->to(at::kDouble);
  EXPECT_THROW_MSG(fgt::Plan::from_module(*b).check_manifest(manifest), "segment 0", "'fc1.weight'",
                   "dtype float64", "manifest says float32");
  TwoLayer c;
  fgt::Options aligned;
  aligned.align_bytes = 16;
  // fc1.weight (12 floats) and fc1.bias (3) end at 15: aligned to 4 floats, fc2.weight
  // starts at 16.
  EXPECT_THROW_MSG(fgt::Plan::from_module(*c, {}, aligned).check_manifest(manifest), "segment 2",
                   "'fc2.weight'", "starts at flat offset 16", "manifest says 15");
  // Padding only at the end: the segments agree, align_bytes does not.
  at::Tensor w = at::ones({4});
  fgt::Options pad16;
  pad16.align_bytes = 16;
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({w}, {"w"}, pad16)
                       .check_manifest(fgt::Plan::from_tensors({w}, {"w"}).manifest()),
                   "align_bytes is 16", "manifest says 0");
  // Tied tensors: the aliases differ.
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({w, w}, {"w", "w_tied"})
                       .check_manifest(fgt::Plan::from_tensors({w}, {"w"}).manifest()),
                   "segment 0", "'w'", "aliases");
  // Only the total length differs.
  const std::string longer =
      R"({"format": "flatgather.layout/1", "flat_dtype": "float32", "numel": 5,
      "segments": [{"name": "w", "dtype": "float32", "shape": [4], "offset": 0, "numel": 4}]})";
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({w}, {"w"}).check_manifest(longer), "flat length is 4",
                   "manifest says 5");
}

// ---- adapter -------------------------------------------------------------------------------

TEST(Errors, UndefinedGradientsUnderEachPolicy) {
  torch::manual_seed(5);
  TwoLayer net;
  fgt::Selection grads;
  grads.grads = true;

  // Error (default): at build and at call time; a refused scatter writes nothing.
  backward_once(net);
  fgt::Plan strict = fgt::Plan::from_module(*net, grads);
  net->fc2->weight.mutable_grad() = at::Tensor();
  const auto before = snapshot(grads_of(net));
  const at::Tensor ones = at::ones({strict.numel()});
  EXPECT_THROW_MSG(strict.scatter(ones), "gradient of parameter 'fc2.weight' is undefined",
                   "ZeroFill");
  EXPECT_THROW_MSG(strict.scatter_add(ones, 2.0), "'fc2.weight'", "undefined");
  EXPECT_THROW_MSG(strict.gather(), "'fc2.weight'", "undefined");
  EXPECT_TRUE(untouched(grads_of(net), before)) << "fc1's gradients were written";

  // ZeroFill: scatter and scatter_add skip the missing gradient (it stays undefined) and
  // write the others; gather reads zeros for it; a gradient that goes missing after the
  // build reads as zeros too.
  fgt::Selection zero = grads;
  zero.missing_grad = fgt::MissingGrad::ZeroFill;
  fgt::Plan zp = fgt::Plan::from_module(*net, zero);
  const auto& seg = *zp.layout().find("fc2.weight");
  at::Tensor values = at::arange(zp.numel(), at::kFloat).add_(1);
  zp.scatter(values);
  EXPECT_FALSE(net->fc2->weight.grad().defined());
  EXPECT_TRUE(bits_equal(net->fc1->weight.grad().reshape(-1), values.narrow(0, 0, 12)));
  at::Tensor expected = values.clone();
  expected.narrow(0, seg.offset, seg.numel).zero_();
  EXPECT_TRUE(bits_equal(fgtest::gather_poisoned(zp), expected));
  zp.scatter_add(values, -1.0);
  EXPECT_TRUE(net->fc1->weight.grad().eq(0).all().item<bool>());
  EXPECT_FALSE(net->fc2->weight.grad().defined());
  net->fc1->bias.mutable_grad() = at::Tensor();  // after the build
  const auto& bias = *zp.layout().find("fc1.bias");
  EXPECT_TRUE(
      fgtest::gather_poisoned(zp).narrow(0, bias.offset, bias.numel).eq(0).all().item<bool>());

  // Skip: left out at build time; a gradient that was kept and then goes missing is an
  // error naming it (the plan has a segment for it); all gradients missing: empty selection.
  net->zero_grad();
  backward_once(net);
  net->fc1->bias.mutable_grad() = at::Tensor();
  fgt::Selection skip = grads;
  skip.missing_grad = fgt::MissingGrad::Skip;
  fgt::Plan sp = fgt::Plan::from_module(*net, skip);
  EXPECT_EQ(sp.layout().find("fc1.bias"), nullptr);
  net->fc2->bias.mutable_grad() = at::Tensor();
  EXPECT_THROW_MSG(sp.gather(), "gradient of parameter 'fc2.bias' is undefined",
                   "built with missing_grad = Skip", "rebuild the plan", "ZeroFill");
  for (auto& p : net->parameters()) p.mutable_grad() = at::Tensor();
  EXPECT_THROW_MSG(fgt::Plan::from_module(*net, skip), "empty selection", "gradient");
}

TEST(Errors, UnsupportedFlatDtypesAndCastsThroughTheAdapter) {
  at::Tensor steps = at::arange(6, at::kLong);
  at::Tensor w = random_tensor({2, 3}, at::kFloat);
  fgt::Options to_float;
  to_float.dtype = at::kFloat;
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({w, steps}, {"w", "steps"}, to_float), "'steps'",
                   "int64", "cannot be cast to the flat dtype float32", "float16, bfloat16");
  fgt::Options to_long;
  to_long.dtype = at::kLong;
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({w}, {"w"}, to_long), "'w'", "float32",
                   "cannot be cast to the flat dtype int64");
  fgt::Options to_bool;
  to_bool.dtype = at::kBool;
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({steps}, {"steps"}, to_bool), "'steps'", "bool");
  fgt::Options to_complex;
  to_complex.dtype = at::kComplexFloat;
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({w}, {"w"}, to_complex), "flat dtype option",
                   "ComplexFloat", "not supported", "bfloat16");
  // scatter_add needs floating tensors.
  fgt::Plan ints = fgt::Plan::from_tensors({steps}, {"steps"});
  const at::Tensor steps0 = steps.clone();
  EXPECT_THROW_MSG(ints.scatter_add(at::ones({6}, at::kLong), 1.0), "'steps'",
                   "not floating point");
  EXPECT_TRUE(bits_equal(steps, steps0));
}

TEST(Errors, MetaTensorsAnywhere) {
  const auto meta = at::TensorOptions().device(at::kMeta);
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({at::empty({0}, meta)}, {"m0"}), "'m0'", "meta",
                   "only cpu and cuda");
  at::Tensor w = random_tensor({4}, at::kFloat);
  EXPECT_THROW_MSG(fgt::Plan::from_tensors({w, at::empty({2, 2}, meta)}, {"w", "m"}), "'m'",
                   "meta");
  fgt::Plan plan = fgt::Plan::from_tensors({w}, {"w"});
  EXPECT_THROW_MSG(plan.gather(at::empty({4}, meta)), "gather", "the flat tensor is on meta",
                   "cpu");
  EXPECT_THROW_MSG(plan.scatter(at::empty({4}, meta)), "scatter", "on meta");
}

TEST(Errors, FlatBuffersOfEveryWrongKind) {
  at::Tensor w = random_tensor({3, 4}, at::kFloat);
  fgt::Plan plan = fgt::Plan::from_tensors({w}, {"w"});
  EXPECT_THROW_MSG(plan.gather(at::empty({})), "gather", "1-D and contiguous", "shape []");
  EXPECT_THROW_MSG(plan.scatter(at::empty({24}).view({12, 2}).select(1, 0)), "scatter",
                   "not contiguous");
  EXPECT_THROW_MSG(plan.scatter_add(at::ones({12}, at::kHalf), 1.0), "scatter_add", "float32");
  EXPECT_THROW_MSG(plan.views(at::ones({13})), "views", "13 elements", "needs 12");
  EXPECT_THROW_MSG(plan.views(at::ones({12}, at::kDouble)), "views", "float32");
  // A flat buffer carved from the storage of a destination.
  at::Tensor storage = random_tensor({20}, at::kFloat);
  at::Tensor a = storage.narrow(0, 0, 12).view({3, 4});
  fgt::Plan on_a = fgt::Plan::from_tensors({a}, {"a"});
  const at::Tensor before = storage.clone();
  EXPECT_THROW_MSG(on_a.scatter(storage.narrow(0, 8, 12)), "scatter", "overlaps", "'a'");
  EXPECT_THROW_MSG(on_a.scatter_add(storage.narrow(0, 8, 12), 1.0), "scatter_add", "overlaps");
  EXPECT_THROW_MSG(on_a.gather(storage.narrow(0, 8, 12)), "gather", "overlaps");
  EXPECT_TRUE(bits_equal(storage, before));
}

TEST(Errors, PlanAfterItsTensorsMovedOrWereResized) {
  torch::manual_seed(6);
  TwoLayer net;
  fgt::Plan plan = fgt::Plan::from_module(*net);
  net->to(at::kDouble);  // set_data on every parameter: the same tensors, new dtype
  EXPECT_THROW_MSG(plan.gather(), "'fc1.weight'", "changed since the plan was built", "rebuild");
  EXPECT_THROW_MSG(plan.scatter(at::zeros({plan.numel()})), "'fc1.weight'", "changed");

  // Grown (reallocated) and shrunk back to the planned shape: the plan follows the new
  // storage; the old one is freed (AddressSanitizer would report a read of it).
  at::Tensor r = random_tensor({8}, at::kFloat);
  fgt::Plan rp = fgt::Plan::from_tensors({r}, {"r"});
  const void* old = r.data_ptr();
  r.resize_({1 << 20});
  r.resize_({8});
  r.copy_(random_tensor({8}, at::kFloat));
  EXPECT_NE(r.data_ptr(), old);
  EXPECT_TRUE(bits_equal(rp.gather(), r));
  rp.scatter(at::arange(1, 9, at::kFloat));
  EXPECT_TRUE(bits_equal(r, at::arange(1, 9, at::kFloat)));

  // A view whose base changed strides under it (as_strided_ in place) is detected too.
  at::Tensor v = random_tensor({4, 4}, at::kFloat);
  fgt::Plan vp = fgt::Plan::from_tensors({v}, {"v"});
  v.as_strided_({4, 4}, {1, 4});
  EXPECT_THROW_MSG(vp.gather(), "'v'", "changed since the plan was built");
}

TEST(Errors, GradientPlanOutlivesItsModule) {
  torch::manual_seed(7);
  std::unique_ptr<fgt::Plan> plan;
  at::Tensor expected;
  {
    TwoLayer net;
    backward_once(net);
    fgt::Selection grads;
    grads.grads = true;
    plan = std::make_unique<fgt::Plan>(fgt::Plan::from_module(*net, grads));
    expected = fgtest::reference_gather(grads_of(net), at::kFloat);
  }
  EXPECT_TRUE(bits_equal(plan->gather(), expected));
  const at::Tensor values = at::arange(plan->numel(), at::kFloat).add_(1);
  plan->scatter(values);  // into gradients that only the plan keeps alive
  EXPECT_TRUE(bits_equal(fgtest::gather_poisoned(*plan), values));
  EXPECT_TRUE(bits_equal(fgtest::reference_gather(plan->tensors(), at::kFloat), values));
}

TEST(Errors, FailingScatterWritesNothing) {
  // Each failure is detected after the first tensor passed its own checks, so a scatter that
  // wrote as it validated would leave the first tensor modified.
  auto make = [] {
    return std::vector<at::Tensor>{random_tensor({5, 3}, at::kFloat),
                                   random_tensor({7}, at::kFloat)};
  };
  const at::Tensor values = at::arange(22, at::kFloat);

  // The second tensor changed shape: found by the per-call check, after the first moved.
  auto t = make();
  fgt::Plan plan = fgt::Plan::from_tensors(t, {"first", "second"});
  t[0].set_(random_tensor({5, 3}, at::kFloat));  // new storage, same shape: would be rebound
  t[1].resize_({8});
  auto before = snapshot(t);
  EXPECT_THROW_MSG(plan.scatter(values), "'second'", "changed");
  EXPECT_THROW_MSG(plan.scatter_add(values, 1.0), "'second'", "changed");
  EXPECT_TRUE(untouched(t, before));

  // The flat buffer overlaps the second tensor only.
  auto u = make();
  fgt::Plan up = fgt::Plan::from_tensors(u, {"first", "second"});
  at::Tensor big = random_tensor({40}, at::kFloat);
  u[1].set_(big.narrow(0, 0, 7));  // rebound at the next call
  before = snapshot(u);
  EXPECT_THROW_MSG(up.scatter(big.narrow(0, 3, 22)), "overlaps", "'second'");
  EXPECT_TRUE(untouched(u, before));

  // Wrong length, wrong dtype, not contiguous: refused before the tensors are looked at.
  auto v = make();
  fgt::Plan vp = fgt::Plan::from_tensors(v, {"first", "second"});
  before = snapshot(v);
  EXPECT_THROW_MSG(vp.scatter(at::ones({23})), "23 elements");
  EXPECT_THROW_MSG(vp.scatter(at::ones({22}, at::kDouble)), "float32");
  EXPECT_THROW_MSG(vp.scatter(at::ones({44}).slice(0, 0, 44, 2)), "not contiguous");
  EXPECT_TRUE(untouched(v, before));

  // The one-off free function on overlapping destinations.
  at::Tensor base = random_tensor({10}, at::kFloat);
  const at::Tensor base0 = base.clone();
  EXPECT_THROW_MSG(fgt::scatter(at::ones({12}), {base.narrow(0, 0, 6), base.narrow(0, 4, 6)}),
                   "overlap");
  EXPECT_TRUE(bits_equal(base, base0));
}

// NOTE: [spelling] (src/torch/spelling.h): the same failures, spelled for a C++ caller (the
// default) and for a Python caller (Options::spelling = Python, what the operators set). Each
// message holds its own caller's spelling and none of the other's.
TEST(Errors, MessagesSpellOptionsAsTheCallerWritesThem) {
  struct Case {
    const char* what;
    std::function<void(const fgt::Options&)> call;
    std::vector<const char*> cpp, python;
  };
  torch::manual_seed(9);
  TwoLayer net;  // no backward yet: every gradient is undefined
  fgt::Selection grads;
  grads.grads = true;
  fgt::Selection none;
  none.include = {"nothing*"};
  at::Tensor w = random_tensor({4}, at::kFloat);
  const std::vector<Case> cases =
      {
          {"missing gradient at build",
           [&](const fgt::Options& o) { fgt::Plan::from_module(*net, grads, o); },
           {"missing_grad = ZeroFill or Skip", "set_to_none=true"},
           {"missing_grad='zero' or 'skip'", "set_to_none=True"}},
          {"missing gradient at call, Error",
           [&](const fgt::Options& o) {
    TwoLayer trained;
    backward_once(trained);
    fgt::Plan p = fgt::Plan::from_module(*trained, grads, o);
    trained->fc1->bias.mutable_grad() = at::Tensor();
    p.gather();
           },
           {"build the plan with missing_grad = ZeroFill or Skip"},
           {"build the plan with missing_grad='zero' or 'skip'"}},
          {"missing gradient at call, Skip",
           [&](const fgt::Options& o) {
    TwoLayer trained;
    backward_once(trained);
    fgt::Selection skip = grads;
    skip.missing_grad = fgt::MissingGrad::Skip;
    fgt::Plan p = fgt::Plan::from_module(*trained, skip, o);
    trained->fc1->bias.mutable_grad() = at::Tensor();
    p.gather();
           },
           {"built with missing_grad = Skip,", "or use missing_grad = ZeroFill"},
           {"built with missing_grad='skip',", "or use missing_grad='zero'"}},
                          {"empty selection",
                           [&](const fgt::Options& o) { fgt::Plan::from_module(*net, none, o); },
                           {"parameters=true, buffers=false, trainable_only=false"},
                           {"parameters=True, buffers=False, trainable_only=False"}},
                          {"unsupported flat dtype option",
                           [&](const fgt::Options& o) {
    fgt::Options complex = o;
    complex.dtype = at::kComplexFloat;
    fgt::Plan::from_tensors({w}, {"w"}, complex);
                           },
                           {"the flat dtype option is ComplexFloat,"},
                           {"the flat dtype option is complex64,"}},
      {"complex tensor",
       [&](const fgt::Options& o) {
    fgt::Plan::from_tensors({at::randn({3}, at::kComplexDouble)}, {"z"}, o);
       },
       {"'z' (shape [3], ComplexDouble, cpu) is complex"},
       {"'z' (shape [3], complex128, cpu) is complex"}},
      {"sparse tensor",
       [&](const fgt::Options& o) { fgt::Plan::from_tensors({w.to_sparse()}, {"s"}, o); },
       {"has layout Sparse;"},
       {"has layout torch.sparse_coo;"}},
      {"flat tensor of an unsupported dtype",
       [&](const fgt::Options& o) {
    fgt::Plan::from_tensors({w}, {"w"}, o).gather(at::empty({4}, at::kComplexFloat));
       },
       {"has dtype ComplexFloat but the layout is float32"},
       {"has dtype complex64 but the layout is float32"}},
      };
  for (const Case& c : cases) {
    for (const fgt::Spelling spelling : {fgt::Spelling::Cpp, fgt::Spelling::Python}) {
      fgt::Options options;
      options.spelling = spelling;
      const bool py = spelling == fgt::Spelling::Python;
      std::string message;
      try {
        c.call(options);
      } catch (const flatgather::Error& e) {
        message = e.what();
      }
      ASSERT_FALSE(message.empty()) << c.what << ": did not throw flatgather::Error";
      for (const char* part : py ? c.python : c.cpp) {
        EXPECT_NE(message.find(part), std::string::npos)
            << c.what << ": \"" << message << "\" lacks \"" << part << "\"";
      }
      for (const char* part : py ? c.cpp : c.python) {
        EXPECT_EQ(message.find(part), std::string::npos)
            << c.what << ": \"" << message << "\" has the other caller's \"" << part << "\"";
      }
      for (const char* cpp_only : {"ZeroFill", "MissingGrad", "ComplexFloat", "=true"}) {
        if (py) {
          EXPECT_EQ(message.find(cpp_only), std::string::npos)
              << c.what << ": \"" << message << "\" spells \"" << cpp_only << "\" for Python";
        }
      }
    }
  }
}

}  // namespace
