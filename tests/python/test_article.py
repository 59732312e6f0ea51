"""The three examples of ../shared/seeds/ (the article this project grew from), each computed
with the article's own code and with flatgather, bit for bit."""

import torch
import torch.nn as nn

import flatgather
from fg_helpers import assert_bitwise


# The article's models, as written there.
class SimpleModel(nn.Module):
    def __init__(self):
        super(SimpleModel, self).__init__()
        self.linear1 = nn.Linear(10, 5)
        self.linear2 = nn.Linear(5, 2)

    def forward(self, x):
        x = self.linear1(x)
        x = self.linear2(x)
        return x


class ConvModel(nn.Module):
    def __init__(self):
        super(ConvModel, self).__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        self.linear1 = nn.Linear(16 * 28 * 28, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = x.view(-1, 16 * 28 * 28)
        x = self.linear1(x)
        return x


def test_example_1_one_named_weight_flattened():
    torch.manual_seed(101)
    model = SimpleModel()
    # article
    weight1 = model.state_dict()['linear1.weight']
    weight1_flattened = weight1.reshape(-1)
    # flatgather
    flat = flatgather.Plan.from_module(model, include="linear1.weight").gather()
    assert_bitwise(flat.detach(), weight1_flattened)
    assert flat.shape == torch.Size([50])


def test_example_2_every_weight_concatenated():
    torch.manual_seed(102)
    model = SimpleModel()
    # article
    weights = []
    for param_name, param in model.state_dict().items():
        if 'weight' in param_name:
            weights.append(param.reshape(-1))
    all_weights = torch.cat(weights, dim=0)
    # flatgather: the same filter as a glob, and as the "weights" kind
    by_glob = flatgather.Plan.from_module(model, buffers=True, include="*weight*")
    by_kind = flatgather.Plan.from_module(model, kind="weights")
    with torch.no_grad():
        assert_bitwise(by_glob.gather(), all_weights)
        assert_bitwise(by_kind.gather(), all_weights)
    assert by_kind.names == ["linear1.weight", "linear2.weight"]
    assert all_weights.shape == torch.Size([60])


def test_example_3_weights_and_biases_separately():
    torch.manual_seed(103)
    model = ConvModel()
    # article
    weight_tensors = []
    bias_tensors = []
    for param_name, param in model.named_parameters():
        if 'weight' in param_name:
            weight_tensors.append(param)
        elif 'bias' in param_name:
            bias_tensors.append(param)
    all_weights = torch.cat([w.flatten() for w in weight_tensors], dim=0)
    all_biases = torch.cat(bias_tensors, dim=0)
    # flatgather
    weights = flatgather.Plan.from_module(model, kind="weights").gather()
    biases = flatgather.Plan.from_module(model, kind="biases").gather()
    assert_bitwise(weights.detach(), all_weights.detach())
    assert_bitwise(biases.detach(), all_biases.detach())
    assert weights.shape == torch.Size([16 * 3 * 3 * 3 + 10 * 16 * 28 * 28])
    assert biases.shape == torch.Size([26])
    # Both are differentiable, like the article's torch.cat results.
    (weights.sum() + biases.sum()).backward()
    assert torch.equal(model.conv1.bias.grad, torch.ones(16))
    assert torch.equal(model.linear1.weight.grad, torch.ones(10, 16 * 28 * 28))
