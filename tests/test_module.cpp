// Modules: selections, gradients and their policies, manifests, lifetime.
#include <torch/torch.h>

#include "flatgather/torch.h"
#include "torch_util.h"

namespace {

namespace fgt = flatgather::torch;
using fgtest::bits_equal;
using fgtest::reference_gather;

struct NetImpl : torch::nn::Module {
  NetImpl() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)));
    bn = register_module("bn", torch::nn::BatchNorm2d(8));
    fc = register_module("fc", torch::nn::Linear(8 * 4 * 4, 10));
    head = register_module("head", torch::nn::Linear(torch::nn::LinearOptions(10, 3).bias(false)));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(bn(conv(x)));
    return head(fc(x.flatten(1)));
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  torch::nn::Linear fc{nullptr}, head{nullptr};
};
TORCH_MODULE(Net);

// The hand-written reference selection: state_dict order, filtered by a predicate.
std::vector<at::Tensor> hand_selected(
    const torch::nn::Module& m, bool params, bool buffers,
    const std::function<bool(const std::string&, const at::Tensor&)>& keep) {
  std::vector<at::Tensor> out;
  m.apply([&](const std::string& prefix, const torch::nn::Module& sub) {
    const std::string dot = prefix.empty() ? "" : prefix + ".";
    if (params)
      for (const auto& p : sub.named_parameters(false))
        if (keep(dot + p.key(), p.value())) out.push_back(p.value());
    if (buffers)
      for (const auto& b : sub.named_buffers(false))
        if (keep(dot + b.key(), b.value())) out.push_back(b.value());
  });
  return out;
}

TEST(Module, DefaultSelectionEqualsParametersInOrder) {
  torch::manual_seed(1);
  Net net;
  fgt::Plan plan = fgt::Plan::from_module(*net);
  std::vector<at::Tensor> params = net->parameters();
  EXPECT_TRUE(bits_equal(plan.gather(), reference_gather(params, at::kFloat)));
  const std::vector<std::string> names = {"conv.weight", "conv.bias", "bn.weight",  "bn.bias",
                                          "fc.weight",   "fc.bias",   "head.weight"};
  EXPECT_EQ(plan.names(), names);
  // torch::nn::utils::parameters_to_vector is LibTorch's own peer.
  EXPECT_TRUE(bits_equal(plan.gather(), torch::nn::utils::parameters_to_vector(params)));
}

TEST(Module, SelectionsEqualHandWrittenFilters) {
  torch::manual_seed(2);
  Net net;
  net->conv->weight.set_requires_grad(false);
  struct Case {
    fgt::Selection sel;
    bool params, buffers;
    std::function<bool(const std::string&, const at::Tensor&)> keep;
  };
  auto leaf = [](const std::string& n) { return n.substr(n.rfind('.') + 1); };
  std::vector<Case> cases;
  {
    fgt::Selection s;
    s.buffers = true;
    cases.push_back({s, true, true, [](auto&, auto& t) { return t.is_floating_point(); }});
  }
  {
    fgt::Selection s;
    s.parameters = false;
    s.buffers = true;
    s.include = {"bn.running_*"};
    cases.push_back({s, false, true,
                     [](const std::string& n, auto&) { return n.rfind("bn.running_", 0) == 0; }});
  }
  {
    fgt::Selection s;
    s.kind = fgt::Selection::Kind::Weights;
    cases.push_back({s, true, false, [&](const std::string& n, auto&) {
                       return leaf(n).find("weight") != std::string::npos;
                     }});
  }
  {
    fgt::Selection s;
    s.kind = fgt::Selection::Kind::Biases;
    cases.push_back({s, true, false, [&](const std::string& n, auto&) {
                       return leaf(n).find("bias") != std::string::npos;
                     }});
  }
  {
    fgt::Selection s;
    s.trainable_only = true;
    cases.push_back({s, true, false, [](auto&, const at::Tensor& t) { return t.requires_grad(); }});
  }
  {
    fgt::Selection s;
    s.include = {"re:(conv|fc)\\..*"};
    s.exclude = {"*.bias"};
    cases.push_back({s, true, false, [](const std::string& n, auto&) {
                       return (n.rfind("conv.", 0) == 0 || n.rfind("fc.", 0) == 0) &&
                              n.find(".bias") == std::string::npos;
                     }});
  }
  for (std::size_t i = 0; i < cases.size(); ++i) {
    auto& c = cases[i];
    if (c.sel.buffers && c.sel.parameters) {
      // running stats are float, num_batches_tracked is int64: select floats by pattern
      c.sel.exclude = {"*num_batches_tracked"};
    }
    fgt::Plan plan = fgt::Plan::from_module(*net, c.sel);
    auto expected = hand_selected(*net, c.params, c.buffers, c.keep);
    ASSERT_EQ(plan.layout().segments().size(), expected.size()) << "case " << i;
    EXPECT_TRUE(bits_equal(plan.gather(), reference_gather(expected, at::kFloat))) << "case " << i;
  }
  fgt::Selection none;
  none.include = {"nothing.*"};
  EXPECT_THROW_MSG(fgt::Plan::from_module(*net, none), "empty selection");
  fgt::Selection bad;
  bad.include = {"re:(unclosed"};
  EXPECT_THROW_MSG(fgt::Plan::from_module(*net, bad), "re:(unclosed", "not a valid regex");
  fgt::Selection grads_and_buffers;
  grads_and_buffers.grads = true;
  grads_and_buffers.buffers = true;
  EXPECT_THROW_MSG(fgt::Plan::from_module(*net, grads_and_buffers), "buffers have no gradients");
}

TEST(Module, GradientsFollowReallocationAndPolicies) {
  torch::manual_seed(3);
  Net net;
  const at::Tensor x = at::randn({2, 3, 4, 4});
  fgt::Selection grads;
  grads.grads = true;
  EXPECT_THROW_MSG(fgt::Plan::from_module(*net, grads), "gradient of parameter", "'conv.weight'",
                   "ZeroFill");

  net->forward(x).sum().backward();
  fgt::Plan plan = fgt::Plan::from_module(*net, grads);
  auto grad_list = [&] {
    std::vector<at::Tensor> g;
    for (const auto& p : net->parameters()) g.push_back(p.grad());
    return g;
  };
  EXPECT_TRUE(bits_equal(plan.gather(), reference_gather(grad_list(), at::kFloat)));

  // zero_grad with set_to_none, then a new backward: new gradient tensors, new pointers.
  for (auto& p : net->parameters()) p.mutable_grad() = at::Tensor();
  EXPECT_THROW_MSG(plan.gather(), "gradient of parameter 'conv.weight' is undefined");
  (net->forward(x) * 3).sum().backward();
  EXPECT_TRUE(bits_equal(plan.gather(), reference_gather(grad_list(), at::kFloat)));

  // scatter into gradients (e.g. after an all-reduce) writes their own storage.
  const at::Tensor averaged = plan.gather() * 0.5f;
  plan.scatter(averaged);
  EXPECT_TRUE(bits_equal(reference_gather(grad_list(), at::kFloat), averaged));

  // ZeroFill: a missing gradient reads as zeros and comes back when it exists again.
  fgt::Selection zero = grads;
  zero.missing_grad = fgt::MissingGrad::ZeroFill;
  net->head->weight.mutable_grad() = at::Tensor();
  fgt::Plan zp = fgt::Plan::from_module(*net, zero);
  at::Tensor with_zeros = fgtest::gather_poisoned(zp);
  const auto& head = *zp.layout().find("head.weight");
  EXPECT_TRUE(with_zeros.narrow(0, head.offset, head.numel).eq(0).all().item<bool>());
  net->zero_grad();
  net->forward(x).sum().backward();
  EXPECT_TRUE(bits_equal(fgtest::gather_poisoned(zp), reference_gather(grad_list(), at::kFloat)));

  // Skip: the parameter is left out.
  fgt::Selection skip = grads;
  skip.missing_grad = fgt::MissingGrad::Skip;
  net->fc->bias.mutable_grad() = at::Tensor();
  fgt::Plan sp = fgt::Plan::from_module(*net, skip);
  EXPECT_EQ(sp.layout().find("fc.bias"), nullptr);
  EXPECT_EQ(sp.layout().segments().size(), 6u);
}

// ZeroFill and Skip with channels_last parameters (and so channels_last gradients): gathers
// follow the logical order, scatters write each gradient in its own layout.
TEST(Module, MissingGradPoliciesWithChannelsLastParameters) {
  torch::manual_seed(11);
  Net net;
  net->conv->weight.set_data(net->conv->weight.contiguous(at::MemoryFormat::ChannelsLast));
  const at::Tensor x = at::randn({2, 3, 4, 4}).contiguous(at::MemoryFormat::ChannelsLast);
  net->forward(x).sum().backward();
  const at::Tensor conv_grad = net->conv->weight.grad();
  ASSERT_TRUE(conv_grad.is_contiguous(at::MemoryFormat::ChannelsLast) && !conv_grad.is_contiguous())
      << "the conv gradient should be channels_last, strides " << conv_grad.strides();
  auto grads_or_zeros = [&] {
    std::vector<at::Tensor> g;
    for (const auto& p : net->parameters())
      g.push_back(p.grad().defined() ? p.grad() : at::zeros_like(p));
    return g;
  };

  fgt::Selection zero;
  zero.grads = true;
  zero.missing_grad = fgt::MissingGrad::ZeroFill;
  net->head->weight.mutable_grad() = at::Tensor();
  fgt::Plan zp = fgt::Plan::from_module(*net, zero);
  EXPECT_TRUE(
      bits_equal(fgtest::gather_poisoned(zp), reference_gather(grads_or_zeros(), at::kFloat)));
  const at::Tensor values = at::randn({zp.numel()});
  zp.scatter(values);
  EXPECT_FALSE(net->head->weight.grad().defined()) << "scatter must skip the missing gradient";
  EXPECT_EQ(net->conv->weight.grad().data_ptr(), conv_grad.data_ptr());
  EXPECT_TRUE(net->conv->weight.grad().is_contiguous(at::MemoryFormat::ChannelsLast));
  at::Tensor expected = values.clone();
  const auto& head = *zp.layout().find("head.weight");
  expected.narrow(0, head.offset, head.numel).zero_();
  EXPECT_TRUE(bits_equal(reference_gather(grads_or_zeros(), at::kFloat), expected));
  const at::Tensor update = at::randn({zp.numel()});
  zp.scatter_add(update, 0.625);
  at::Tensor added = fgtest::reference_add_scaled(values, update, 0.625);
  added.narrow(0, head.offset, head.numel).zero_();
  EXPECT_TRUE(bits_equal(reference_gather(grads_or_zeros(), at::kFloat), added));

  fgt::Selection skip = zero;
  skip.missing_grad = fgt::MissingGrad::Skip;
  fgt::Plan sp = fgt::Plan::from_module(*net, skip);
  EXPECT_EQ(sp.layout().find("head.weight"), nullptr);
  std::vector<at::Tensor> present;
  for (const auto& p : net->parameters())
    if (p.grad().defined()) present.push_back(p.grad());
  EXPECT_TRUE(bits_equal(fgtest::gather_poisoned(sp), reference_gather(present, at::kFloat)));
  const at::Tensor skip_values = at::randn({sp.numel()});
  sp.scatter(skip_values);
  EXPECT_TRUE(bits_equal(reference_gather(present, at::kFloat), skip_values));
  EXPECT_TRUE(net->conv->weight.grad().is_contiguous(at::MemoryFormat::ChannelsLast));
}

TEST(Module, ManifestChecksAgainstAnotherModule) {
  Net a, b;
  fgt::Plan pa = fgt::Plan::from_module(*a);
  EXPECT_NO_THROW(fgt::Plan::from_module(*b).check_manifest(pa.manifest()));
  fgt::Selection weights;
  weights.kind = fgt::Selection::Kind::Weights;
  EXPECT_THROW_MSG(fgt::Plan::from_module(*b, weights).check_manifest(pa.manifest()), "segment 1",
                   "'bn.weight'", "'conv.bias'");
  const flatgather::Layout loaded = flatgather::Layout::from_json(pa.manifest());
  EXPECT_EQ(loaded, pa.layout());
}

TEST(Module, PlanOutlivesItsModuleAndScattersIntoParameters) {
  torch::manual_seed(4);
  std::unique_ptr<fgt::Plan> plan;
  at::Tensor expected;
  {
    Net net;
    plan = std::make_unique<fgt::Plan>(fgt::Plan::from_module(*net));
    expected = reference_gather(net->parameters(), at::kFloat);
  }
  EXPECT_TRUE(bits_equal(plan->gather(), expected));

  Net net;
  fgt::Plan p = fgt::Plan::from_module(*net);
  const at::Tensor w = net->fc->weight;  // the parameter object, as an optimizer holds it
  const void* storage = w.data_ptr();
  p.scatter(at::arange(p.numel(), at::kFloat).add_(1));
  EXPECT_EQ(w.data_ptr(), storage) << "scatter must copy, not rebind";
  const auto& seg = *p.layout().find("fc.weight");
  EXPECT_TRUE(bits_equal(w.reshape(-1),
                         at::arange(seg.offset + 1, seg.offset + seg.numel + 1, at::kFloat)));
}

// from_named selects from the caller's own walk (Python's, through the operators): the same
// plans as from_module over the walk it would make, in the order of the list it is given.
TEST(Module, FromNamedSelectsFromTheCallersWalk) {
  torch::manual_seed(6);
  Net net;
  net->fc->weight.set_requires_grad(false);
  net->forward(at::randn({2, 3, 4, 4})).sum().backward();
  net->conv->bias.mutable_grad() = at::Tensor();  // a missing gradient for the grads cases
  // A walk written out by hand: each submodule's parameters, then its buffers.
  std::vector<fgt::NamedTensor> walk;
  for (const auto& m : net->named_modules("", /*include_self=*/false)) {
    for (const auto& p : m.value()->named_parameters(false))
      walk.push_back({m.key() + "." + p.key(), p.value(), false});
    for (const auto& b : m.value()->named_buffers(false))
      walk.push_back({m.key() + "." + b.key(), b.value(), true});
  }
  std::vector<fgt::Selection> selections(6);
  selections[1].buffers = true;
  selections[1].exclude = {"*num_batches_tracked"};
  selections[2].kind = fgt::Selection::Kind::Weights;
  selections[2].trainable_only = true;
  selections[3].parameters = false;
  selections[3].buffers = true;
  selections[3].include = {"re:bn\\.running_.*"};
  selections[4].grads = true;
  selections[4].missing_grad = fgt::MissingGrad::ZeroFill;
  selections[5].grads = true;
  selections[5].missing_grad = fgt::MissingGrad::Skip;
  selections[5].include = {"conv.*", "fc.*"};
  for (std::size_t i = 0; i < selections.size(); ++i) {
    fgt::Plan named = fgt::Plan::from_named(walk, selections[i]);
    fgt::Plan walked = fgt::Plan::from_module(*net, selections[i]);
    EXPECT_EQ(named.names(), walked.names()) << "selection " << i;
    at::Tensor a = at::full({named.numel()}, -7.0f), b = at::full({walked.numel()}, 7.0f);
    named.gather(a);
    walked.gather(b);
    EXPECT_TRUE(bits_equal(a, b)) << "selection " << i;
  }
  // The hand-written reference for one of them: trainable weights.
  auto leaf = [](const std::string& n) { return n.substr(n.rfind('.') + 1); };
  EXPECT_TRUE(bits_equal(fgt::Plan::from_named(walk, selections[2]).gather(),
                         reference_gather(hand_selected(
                                              *net, true, false,
                                              [&](const std::string& n, const at::Tensor& t) {
    return t.requires_grad() && leaf(n).find("weight") != std::string::npos;
                                              }),
                                          at::kFloat)));
  // The list's order is the plan's order; a name listed twice for one tensor is an alias.
  std::vector<fgt::NamedTensor> reversed(walk.rbegin(), walk.rend());
  reversed.push_back({"tied", net->head->weight, false});
  fgt::Plan back = fgt::Plan::from_named(reversed);
  const std::vector<std::string> order = {"head.weight", "fc.bias",   "fc.weight",  "bn.bias",
                                          "bn.weight",   "conv.bias", "conv.weight"};
  EXPECT_EQ(back.names(), order);
  EXPECT_EQ(back.layout().find("head.weight")->aliases, std::vector<std::string>{"tied"});
  EXPECT_THROW_MSG(fgt::Plan::from_named({}), "empty selection", "parameters=true");
}

}  // namespace
