"""Plan.from_module selections == hand-written filters over named_parameters / state_dict."""

import re

import pytest
import torch

import flatgather
from fg_helpers import ConvBN, TinyTransformer, assert_bitwise, models, reference_flat


def _check(plan, named):
    """The plan holds exactly `named` (name, tensor) pairs, in order, bit for bit."""
    assert plan.names == [n for n, _ in named]
    with torch.no_grad():
        assert_bitwise(plan.gather(), reference_flat([t for _, t in named]))


@pytest.fixture
def transformer():
    torch.manual_seed(31)
    model = TinyTransformer()
    model.encoder.layers[0].requires_grad_(False)  # a frozen block
    return model


def test_all_parameters(transformer):
    _check(flatgather.Plan.from_module(transformer), list(transformer.named_parameters()))


def test_trainable_only(transformer):
    _check(flatgather.Plan.from_module(transformer, trainable_only=True),
           [(n, p) for n, p in transformer.named_parameters() if p.requires_grad])


def test_weights_and_biases_by_last_component(transformer):
    _check(flatgather.Plan.from_module(transformer, kind="weights"),
           [(n, p) for n, p in transformer.named_parameters()
            if "weight" in n.rsplit(".", 1)[-1]])
    _check(flatgather.Plan.from_module(transformer, kind="biases"),
           [(n, p) for n, p in transformer.named_parameters() if "bias" in n.rsplit(".", 1)[-1]])


def test_include_exclude_globs_and_regex(transformer):
    named = list(transformer.named_parameters())
    _check(flatgather.Plan.from_module(transformer, include="encoder.layers.*.linear?.weight"),
           [(n, p) for n, p in named
            if re.fullmatch(r"encoder\.layers\..*\.linear.\.weight", n)])
    _check(flatgather.Plan.from_module(transformer, include=["embed.*", "head.*"],
                                       exclude="*.bias"),
           [(n, p) for n, p in named
            if (n.startswith("embed.") or n.startswith("head.")) and not n.endswith(".bias")])
    _check(flatgather.Plan.from_module(transformer, include=r"re:encoder\.layers\.1\..*norm.*"),
           [(n, p) for n, p in named if re.fullmatch(r"encoder\.layers\.1\..*norm.*", n)])
    _check(flatgather.Plan.from_module(transformer, exclude=["re:.*self_attn.*", "pos"]),
           [(n, p) for n, p in named if "self_attn" not in n and n != "pos"])


def test_buffers_only_and_with_parameters():
    torch.manual_seed(2)
    model = ConvBN()
    model(torch.randn(2, 3, 8, 8))  # training mode: running stats move
    float_buffers = [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
    _check(flatgather.Plan.from_module(model, parameters=False, buffers=True,
                                       include=["*running_*"]), float_buffers)
    counters = flatgather.Plan.from_module(model, parameters=False, buffers=True,
                                           include="*num_batches_tracked")
    assert counters.dtype == torch.int64
    assert torch.equal(counters.gather(), torch.tensor([1, 1]))
    state = [(n, t) for n, t in model.state_dict(keep_vars=True).items()
             if not n.endswith("num_batches_tracked")]
    _check(flatgather.Plan.from_module(model, buffers=True, exclude="*num_batches_tracked"),
           state)


def test_mixed_precision_selection_cast():
    torch.manual_seed(6)
    model = TinyTransformer().to(torch.bfloat16)
    plan = flatgather.Plan.from_module(model, dtype=torch.float32, kind="weights")
    with torch.no_grad():
        assert_bitwise(plan.gather(), reference_flat(
            [p for n, p in model.named_parameters() if "weight" in n.rsplit(".", 1)[-1]],
            torch.float32))


def test_grads_follow_reallocation_and_missing_policies():
    torch.manual_seed(12)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    model[2].bias.requires_grad_(False)  # never gets a gradient
    x = torch.randn(3, 5)
    model(x).pow(2).sum().backward()
    with pytest.raises(RuntimeError, match=r"gradient of parameter '2\.bias'.*undefined"):
        flatgather.Plan.from_module(model, grads=True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    plan = flatgather.Plan.from_module(model, grads=True, trainable_only=True)
    assert_bitwise(plan.gather(), reference_flat([p.grad for p in trainable]))

    zero = flatgather.Plan.from_module(model, grads=True, missing_grad="zero")
    flat = zero.gather()
    assert_bitwise(flat, reference_flat([p.grad if p.grad is not None else torch.zeros_like(p)
                                         for p in model.parameters()]))
    skip = flatgather.Plan.from_module(model, grads=True, missing_grad="skip")
    assert skip.names == ["0.weight", "0.bias", "2.weight"]

    # zero_grad(set_to_none=True) then backward reallocates every .grad: the plan follows.
    model.zero_grad(set_to_none=True)
    with pytest.raises(RuntimeError, match="zero_grad"):
        plan.gather()
    model(x * 2).pow(2).sum().backward()
    assert_bitwise(plan.gather(), reference_flat([p.grad for p in trainable]))
    # scatter writes into the current gradients
    new = torch.randn(plan.numel)
    plan.scatter(new)
    assert_bitwise(reference_flat([p.grad for p in trainable]), new)


def test_tied_and_shared_modules_keep_named_parameters_order():
    torch.manual_seed(3)
    shared = torch.nn.Linear(4, 4)
    model = torch.nn.Sequential(shared, torch.nn.Tanh(), shared, torch.nn.Linear(4, 2))
    plan = flatgather.Plan.from_module(model)
    _check(plan, list(model.named_parameters()))
    assert plan.aliases == {"0.weight": ["2.weight"], "0.bias": ["2.bias"]}
    for name, model, _ in models():
        if name == "tied":
            _check(flatgather.Plan.from_module(model), list(model.named_parameters()))


def test_plan_keeps_tensors_alive_after_module_is_gone():
    torch.manual_seed(4)
    model = torch.nn.Linear(3, 3)
    expected = reference_flat(model.parameters())
    plan = flatgather.Plan.from_module(model)
    del model
    with torch.no_grad():
        assert_bitwise(plan.gather(), expected)


def test_operator_selects_from_the_walk_it_is_given():
    """The operator selects from the (name, tensor, is_buffer) list of Python's walk itself;
    no module is rebuilt, so any list the walk could produce works, in its order."""
    torch.manual_seed(7)
    w, b, mean = torch.randn(3, 2), torch.randn(3), torch.randn(3)
    ops = torch.ops.flatgather
    names, tensors, is_buffer = ["blk.w", "blk.b", "blk.mean"], [w, b, mean], [False, False, True]
    plan = ops.plan_from_module(names, tensors, is_buffer, [], ["*.b"], buffers=True)
    assert list(plan.names()) == ["blk.w", "blk.mean"]
    assert_bitwise(plan.gather(), reference_flat([w, mean]))
    params_only = ops.plan_from_module(names[::-1], tensors[::-1], is_buffer[::-1], [], [])
    assert list(params_only.names()) == ["blk.b", "blk.w"]
    assert_bitwise(params_only.gather(), reference_flat([b, w]))
