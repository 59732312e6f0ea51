// Adopt mode (include/flatgather/adopt.h): parameters and gradients as views of flat buffers,
// against the same model trained without adoption.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "flatgather/adopt.h"
#include "flatgather/error.h"
#include "flatgather/torch.h"
#include "torch_util.h"

namespace {

namespace fgt = flatgather::torch;
using fgtest::bits_equal;
using fgtest::reference_gather;

struct NetImpl : torch::nn::Module {
  NetImpl() {
    a = register_module("a", torch::nn::Linear(7, 9));
    b = register_module("b", torch::nn::Linear(9, 3));
  }
  torch::Tensor forward(torch::Tensor x) { return b(torch::tanh(a(x))); }
  torch::nn::Linear a{nullptr}, b{nullptr};
};
TORCH_MODULE(Net);

std::vector<at::Tensor> clones(const std::vector<at::Tensor>& ts) {
  std::vector<at::Tensor> out;
  for (const auto& t : ts) out.push_back(t.detach().clone());
  return out;
}

bool inside(const at::Tensor& t, const at::Tensor& buffer) {
  return t.defined() &&
         t.storage().unsafeGetStorageImpl() == buffer.storage().unsafeGetStorageImpl();
}

void zero_grads(torch::nn::Module& m) {
  // Not Optimizer::zero_grad: its default set_to_none differs between LibTorch 1.x and 2.x.
  for (auto& p : m.parameters())
    if (p.grad().defined()) p.mutable_grad().zero_();
}

// One SGD step with momentum; returns nothing, the model is updated.
void train_step(Net& net, torch::optim::Optimizer& opt, const at::Tensor& x, const at::Tensor& y) {
  zero_grads(*net);
  at::Tensor loss = torch::mse_loss(net->forward(x), y);
  loss.backward();
  opt.step();
}

fgt::Adoption adopt_with_grads(torch::nn::Module& m) {
  fgt::AdoptOptions options;
  options.grads = true;
  return fgt::adopt(m, {}, options);
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const flatgather::Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Adopt, KeepsParameterObjectsValuesAndThePlansLayout) {
  torch::manual_seed(1);
  Net net;
  std::vector<at::Tensor> params = net->parameters();
  const std::vector<at::Tensor> before = clones(params);
  const std::string plan_manifest = fgt::Plan::from_module(*net).manifest();
  fgt::AdoptOptions options;
  options.align_bytes = 64;
  fgt::Adoption adopted = fgt::adopt(*net, {}, options);
  fgt::Options aligned;
  aligned.align_bytes = 64;
  EXPECT_TRUE(bits_equal(adopted.flat(), fgt::Plan::from_tensors(before, {}, aligned).gather()));
  EXPECT_NE(adopted.manifest(), plan_manifest);  // aligned: padding between segments
  std::vector<at::Tensor> now = net->parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(now[i].is_same(params[i])) << i;  // the same TensorImpl: identity kept
    EXPECT_TRUE(params[i].requires_grad());
    EXPECT_TRUE(inside(params[i], adopted.flat())) << i;
    EXPECT_TRUE(bits_equal(params[i], before[i])) << i;
    EXPECT_EQ(params[i].storage_offset() * 4 % 64, 0) << i;
  }
  EXPECT_TRUE(adopted.check().empty());
  // The buffer and the parameters are one memory, both ways.
  torch::NoGradGuard no_grad;
  adopted.flat().mul_(-3);
  EXPECT_TRUE(bits_equal(params[0], before[0] * -3));
  params[3].fill_(2.5);
  EXPECT_TRUE(
      bits_equal(adopted.flat().narrow(0, params[3].storage_offset(), 3), at::full({3}, 2.5)));
}

TEST(Adopt, ManifestEqualsThePlansWithoutAlignment) {
  torch::manual_seed(2);
  Net net;
  const std::string plan_manifest = fgt::Plan::from_module(*net).manifest();
  fgt::Adoption adopted = fgt::adopt(*net);
  EXPECT_EQ(adopted.manifest(), plan_manifest);
  EXPECT_FALSE(adopted.grad_flat().defined());
}

TEST(Adopt, TrainingGivesTheSameBitsAndGradientsAccumulateIntoGradFlat) {
  torch::manual_seed(3);
  Net plain, adopted_net;
  {
    torch::NoGradGuard no_grad;
    auto src = plain->parameters(), dst = adopted_net->parameters();
    for (std::size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
  }
  fgt::AdoptOptions options;
  options.grads = true;
  fgt::Adoption adopted = fgt::adopt(*adopted_net, {}, options);
  ASSERT_TRUE(adopted.grad_flat().defined());
  torch::optim::SGD sgd_plain(plain->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  torch::optim::SGD sgd_adopted(adopted_net->parameters(),
                                torch::optim::SGDOptions(0.05).momentum(0.9));
  for (int step = 0; step < 5; ++step) {
    const at::Tensor x = at::randn({4, 7}), y = at::randn({4, 3});
    train_step(plain, sgd_plain, x, y);
    train_step(adopted_net, sgd_adopted, x, y);
    std::vector<at::Tensor> grads;
    for (const auto& p : plain->parameters()) grads.push_back(p.grad());
    EXPECT_TRUE(bits_equal(adopted.grad_flat(), reference_gather(grads, at::kFloat))) << step;
    EXPECT_TRUE(bits_equal(adopted.flat(), reference_gather(plain->parameters(), at::kFloat)))
        << step;
    EXPECT_TRUE(adopted.check().empty()) << step;
  }
  for (const auto& p : adopted_net->parameters()) {
    EXPECT_TRUE(inside(p, adopted.flat()));
    EXPECT_TRUE(inside(p.grad(), adopted.grad_flat()));
  }
}

TEST(Adopt, HooksStillFire) {
  torch::manual_seed(4);
  Net net;
  int calls = 0;
  net->a->weight.register_hook([&](const at::Tensor& g) {
    ++calls;
    return g * 2;
  });
  fgt::Adoption adopted = fgt::adopt(*net);
  net->forward(at::randn({2, 7})).sum().backward();
  EXPECT_EQ(calls, 1);
}

TEST(Adopt, TiedParametersShareOneSegment) {
  torch::manual_seed(5);
  // Tied: the same tensor under two names.
  Net net;
  net->register_parameter("tied", net->a->weight);
  const at::Tensor before = net->a->weight.detach().clone();
  fgt::Adoption adopted = fgt::adopt(*net);
  // The root's own parameters come first (state_dict order): "a.weight" is the alias.
  EXPECT_EQ(adopted.names(),
            (std::vector<std::string>{"tied", "a.weight", "a.bias", "b.weight", "b.bias"}));
  EXPECT_EQ(adopted.manifest(), fgt::Plan::from_module(*net).manifest());
  EXPECT_EQ(adopted.flat().numel(), 7 * 9 + 9 + 9 * 3 + 3);
  EXPECT_TRUE(net->named_parameters()["tied"].is_same(net->a->weight));
  EXPECT_TRUE(bits_equal(net->a->weight, before));
  EXPECT_TRUE(adopted.check().empty());
  adopted.release();
  EXPECT_TRUE(bits_equal(net->named_parameters()["tied"], before));
  EXPECT_FALSE(inside(net->a->weight, adopted.flat()));
}

TEST(Adopt, CheckNamesEachWayOfBreakingTheViewsAndReadoptRepairs) {
  torch::manual_seed(6);
  Net net;
  fgt::Adoption adopted = adopt_with_grads(*net);
  const at::Tensor flat = adopted.flat(), grad_flat = adopted.grad_flat();
  net->forward(at::randn({3, 7})).sum().backward();
  ASSERT_TRUE(adopted.check().empty());
  const std::vector<at::Tensor> grads = clones({net->a->weight.grad(), net->b->bias.grad()});

  // p.set_data(...) (Python: p.data = ...) and a gradient set to None.
  const at::Tensor new_value = at::randn({9});
  net->a->bias.set_data(new_value);
  net->b->weight.mutable_grad().reset();
  EXPECT_EQ(adopted.check(), (std::vector<std::string>{"a.bias", "b.weight.grad"}));
  adopted.readopt();
  EXPECT_TRUE(adopted.check().empty());
  EXPECT_TRUE(adopted.flat().is_same(flat));  // the same buffers, refilled
  EXPECT_TRUE(adopted.grad_flat().is_same(grad_flat));
  EXPECT_TRUE(inside(net->a->bias, flat));
  EXPECT_TRUE(bits_equal(net->a->bias, new_value));
  EXPECT_TRUE(bits_equal(net->b->weight.grad(), at::zeros({3, 9})));  // None became zeros
  EXPECT_TRUE(bits_equal(net->a->weight.grad(), grads[0]));
  EXPECT_TRUE(bits_equal(net->b->bias.grad(), grads[1]));

  // Backward with create_graph replaces the gradients.
  net->forward(at::randn({3, 7})).sum().backward({}, /*retain_graph=*/true, /*create_graph=*/true);
  EXPECT_EQ(adopted.check(), (std::vector<std::string>{"a.weight.grad", "a.bias.grad",
                                                       "b.weight.grad", "b.bias.grad"}));
  adopted.readopt();
  // A new gradient tensor over the same memory still counts as in the buffer; a copy does not.
  for (auto& p : net->parameters()) p.mutable_grad() = p.grad().detach();
  EXPECT_TRUE(adopted.check().empty());
  for (auto& p : net->parameters()) p.mutable_grad() = p.grad().clone();
  EXPECT_EQ(adopted.check().size(), 4u);
  adopted.readopt();
  EXPECT_TRUE(adopted.check().empty());

  // module->to(dtype): every parameter gets new storage; readopt makes new buffers.
  const std::vector<at::Tensor> values = clones(net->parameters());
  net->to(at::kDouble);  // LibTorch's Module::to leaves the gradients alone
  EXPECT_EQ(adopted.check(),
            (std::vector<std::string>{"a.weight", "a.bias", "b.weight", "b.bias"}));
  adopted.readopt();
  EXPECT_TRUE(adopted.check().empty());
  EXPECT_EQ(adopted.flat().scalar_type(), at::kDouble);
  EXPECT_EQ(adopted.grad_flat().scalar_type(), at::kDouble);
  EXPECT_TRUE(bits_equal(adopted.flat(), reference_gather(values, at::kDouble)));

  // A parameter object replaced under its name: only a fresh walk can see it.
  // (LibTorch cannot re-register a name: the walk is edited as Python's would change.)
  const at::Tensor replacement = at::randn({3}, at::kDouble).requires_grad_();
  std::vector<fgt::NamedTensor> walk;
  for (const auto& item : net->named_parameters())
    walk.push_back({item.key(), item.key() == "b.bias" ? replacement : item.value(), false});
  EXPECT_TRUE(adopted.check().empty());  // the adopted tensors themselves still hold
  EXPECT_EQ(adopted.check(walk), (std::vector<std::string>{"b.bias", "b.bias.grad"}));
  adopted.readopt(walk);
  EXPECT_TRUE(adopted.check(walk).empty());
  EXPECT_TRUE(inside(replacement, adopted.flat()));
  EXPECT_TRUE(inside(replacement.grad(), adopted.grad_flat()));
  EXPECT_TRUE(adopted.check().empty());
}

TEST(Adopt, ReleaseGivesOwnStorageAndKeepsValues) {
  torch::manual_seed(7);
  Net net;
  fgt::Adoption adopted = adopt_with_grads(*net);
  net->forward(at::randn({3, 7})).sum().backward();
  const std::vector<at::Tensor> values = clones(net->parameters());
  std::vector<at::Tensor> grads;
  for (const auto& p : net->parameters()) grads.push_back(p.grad().clone());
  adopted.release();
  EXPECT_TRUE(adopted.released());
  {
    torch::NoGradGuard no_grad;
    adopted.flat().fill_(7);
    adopted.grad_flat().fill_(7);
  }
  auto params = net->parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(bits_equal(params[i], values[i])) << i;
    EXPECT_TRUE(bits_equal(params[i].grad(), grads[i])) << i;
    EXPECT_EQ(params[i].storage_offset(), 0);
  }
  EXPECT_NE(message_of([&] { adopted.check(); }).find("after release()"), std::string::npos);
  adopted.readopt();
  EXPECT_TRUE(adopted.check().empty());
  EXPECT_TRUE(bits_equal(adopted.flat(), reference_gather(values, at::kFloat)));
}

TEST(Adopt, SelectionIsFromModules) {
  torch::manual_seed(8);
  Net net;
  net->b->bias.requires_grad_(false);
  fgt::Selection selection;
  selection.exclude = {"a.*"};
  selection.trainable_only = true;
  fgt::Adoption adopted = fgt::adopt(*net, selection);
  EXPECT_EQ(adopted.names(), (std::vector<std::string>{"b.weight"}));
  EXPECT_EQ(adopted.manifest(), fgt::Plan::from_module(*net, selection).manifest());
  EXPECT_FALSE(inside(net->a->weight, adopted.flat()));
  EXPECT_TRUE(inside(net->b->weight, adopted.flat()));
}

TEST(Adopt, Refusals) {
  torch::manual_seed(9);
  {  // a dtype other than the flat dtype
    Net net;
    net->b->bias.set_data(net->b->bias.to(at::kDouble));
    const std::string msg = message_of([&] { fgt::adopt(*net); });
    EXPECT_NE(msg.find("'b.bias'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("a view cannot cast"), std::string::npos) << msg;
    fgt::AdoptOptions half;
    half.dtype = at::kHalf;
    Net other;
    const std::string msg2 = message_of([&] { fgt::adopt(*other, {}, half); });
    EXPECT_NE(msg2.find("does not have the flat dtype float16"), std::string::npos) << msg2;
  }
  {  // channels_last
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 4, 3));
    conv->weight.set_data(conv->weight.contiguous(at::MemoryFormat::ChannelsLast));
    const std::string msg = message_of([&] { fgt::adopt(*conv); });
    EXPECT_NE(msg.find("'weight'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("channels_last"), std::string::npos) << msg;
    EXPECT_NE(msg.find("p.set_data(p.contiguous())"), std::string::npos) << msg;
  }
  {  // already a view of another tensor
    Net net;
    const at::Tensor big = at::randn({100});
    net->a->bias.set_data(big.narrow(0, 10, 9));
    const std::string msg = message_of([&] { fgt::adopt(*net); });
    EXPECT_NE(msg.find("'a.bias'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("view of a larger storage"), std::string::npos) << msg;
  }
  {  // adopted twice
    Net net;
    fgt::Adoption first = fgt::adopt(*net);
    const std::string msg = message_of([&] { fgt::adopt(*net); });
    EXPECT_NE(msg.find("adopted already"), std::string::npos) << msg;
  }
  {  // two parameters sharing one storage
    Net net;
    net->register_parameter("alias", net->a->bias.detach());
    const std::string msg = message_of([&] { fgt::adopt(*net); });
    EXPECT_NE(msg.find("'alias' and 'a.bias' are different tensors sharing one storage"),
              std::string::npos)
        << msg;
  }
  {  // selections adopt does not take
    Net net;
    fgt::Selection grads;
    grads.grads = true;
    EXPECT_NE(message_of([&] { fgt::adopt(*net, grads); }).find("AdoptOptions::grads"),
              std::string::npos);
    fgt::Adoption empty;
    EXPECT_NE(message_of([&] { empty.flat(); }).find("this adoption is empty"), std::string::npos);
  }
}

}  // namespace
