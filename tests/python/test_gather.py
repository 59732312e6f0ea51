"""gather == parameters_to_vector / torch.cat of reshape(-1), bit for bit; casts == .to()."""

import copy

import pytest
import torch
from torch.nn.utils import parameters_to_vector

import flatgather
from fg_helpers import (assert_bitwise, models, poisoned, reference_flat, train_step)

MODELS = models()
MODEL_IDS = [name for name, _, _ in MODELS]


@pytest.fixture(params=MODELS, ids=MODEL_IDS)
def model_case(request, device):
    name, model, x = request.param
    model, x = copy.deepcopy(model).to(device), x.to(device)  # the shared model stays as it is
    if name not in ("half", "bfloat16"):
        train_step(model, x)  # non-trivial weights, running stats and gradients
    return name, model


def test_gather_equals_parameters_to_vector(model_case):
    name, model = model_case
    params = list(model.parameters())
    expected = reference_flat(params)
    if name != "channels_last":
        assert_bitwise(parameters_to_vector(params).detach(), expected)
    else:
        # parameters_to_vector uses view(-1), which fails on channels_last conv weights;
        # flatgather follows reshape(-1) there.
        with pytest.raises(RuntimeError):
            parameters_to_vector(params)
    plan = flatgather.Plan.from_module(model)
    with torch.no_grad():
        assert_bitwise(plan.gather(), expected)
    assert_bitwise(flatgather.Plan(model.parameters()).gather().detach(), expected)
    with torch.no_grad():
        assert_bitwise(flatgather.gather(model.parameters()), expected)
    assert plan.numel == expected.numel()
    assert plan.dtype == expected.dtype


def test_gather_into_poisoned_out(model_case):
    _, model = model_case
    plan = flatgather.Plan.from_module(model)
    out = poisoned(plan.numel, plan.dtype, plan.device)
    result = plan.gather(out=out)
    assert result is out
    assert not torch.isnan(out).any()
    assert_bitwise(out, reference_flat(model.parameters()))


def test_gather_buffers_in_state_dict_order(model_case):
    _, model = model_case
    state = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    plan = flatgather.Plan.from_module(model, buffers=True, exclude="*num_batches_tracked")
    assert plan.names == [k for k in state if k not in _tied_aliases(model)]
    with torch.no_grad():
        assert_bitwise(plan.gather(), reference_flat(
            [v for k, v in state.items() if k not in _tied_aliases(model)]))


def _tied_aliases(model):
    """state_dict keys that name a tensor already listed under an earlier key."""
    seen, aliases = set(), set()
    for k, v in model.state_dict(keep_vars=True).items():
        if id(v) in seen:
            aliases.add(k)
        seen.add(id(v))
    return aliases


@pytest.mark.parametrize("src", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("dst", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_casts_equal_to(src, dst):
    gen = torch.Generator().manual_seed(7)
    # Random values over a wide range plus the edge cases of every rounding: NaN, +-inf,
    # +-0, subnormals, overflow, ties.
    wide = torch.randn(4099, generator=gen, dtype=torch.float64) * torch.exp2(
        torch.randint(-30, 30, (4099,), generator=gen).double())
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 65504.0,
                            65520.0, 70000.0, -1e6, 6e-8, 3e-8, 1e-40, 1.0 + 2.0 ** -11,
                            1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -8, 3.3895e38, 1e300],
                           dtype=torch.float64)
    tensors = [wide[:1000].reshape(10, 100).to(src), special.to(src),
               wide[1000:].reshape(3, 1033).t().to(src)]  # a transposed view
    expected = reference_flat(tensors, dst)
    with torch.no_grad():
        got = flatgather.gather(tensors, dtype=dst)
    plan = flatgather.Plan(tensors, dtype=dst)
    out = torch.full((plan.numel,), 12345.0, dtype=dst)  # NaN is an expected value here
    plan.gather(out=out)
    for actual in (got, out):
        if dst != src:
            # NaN bits: see test_nan_bits_match_to. LibTorch's own differ between versions:
            # 1.13 writes bfloat16 NaN 0xffff as float16 0xfe00 (a canonical quiet NaN), 2.11
            # as 0xfff8 (the payload's top bits, through float32).
            nan = torch.isnan(expected)
            assert torch.equal(torch.isnan(actual), nan)
            assert_bitwise(actual[~nan], expected[~nan])
        else:
            assert_bitwise(actual, expected)


def test_nan_bits_match_to():
    # NaN bits as Tensor.to() writes them on the CPU (include/flatgather/dtype.h NOTE: [rounding]);
    # float64 -> bfloat16 is left out: LibTorch's own NaN bits depend on the length there.
    x = torch.tensor([float("nan"), 1.0, -float("nan")] * 11)
    with torch.no_grad():
        for source in (torch.float32, torch.float64, torch.float16):
            for target in (torch.bfloat16, torch.float16):
                if source != target and (source, target) != (torch.float64, torch.bfloat16):
                    s = x.to(source)
                    assert_bitwise(flatgather.gather([s], dtype=target), s.to(target))


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16, torch.int32,
                                   torch.int64, torch.bool])
def test_byte_copies_of_integer_dtypes(dtype):
    gen = torch.Generator().manual_seed(11)
    if dtype == torch.bool:
        make = lambda *s: torch.randint(0, 2, s, generator=gen).bool()  # noqa: E731
    else:
        info = torch.iinfo(dtype)
        make = lambda *s: torch.randint(max(info.min, -2**40), min(info.max, 2**40), s,  # noqa: E731
                                        generator=gen, dtype=torch.int64).to(dtype)
    tensors = [make(5, 7), make(3), make(4, 6)[:, 1:4], make()]
    plan = flatgather.Plan(tensors)
    out = poisoned(plan.numel, dtype)
    plan.gather(out=out)
    assert torch.equal(out, reference_flat(tensors))


def test_random_shapes_and_strides():
    gen = torch.Generator().manual_seed(2024)
    tensors = [torch.randn((), generator=gen),                      # 0-d scalar
               torch.randn(0, 5, generator=gen),                    # empty
               torch.randn(6, 9, generator=gen).t(),                # transposed
               torch.randn(4, 10, generator=gen)[::2, 3:8],         # sliced, strided
               torch.randn(2, 3, 5, 7, generator=gen).to(memory_format=torch.channels_last),
               torch.randn(3, 1, 4, generator=gen).expand(3, 6, 4),  # stride 0
               torch.randn(1_000_003, generator=gen)]               # big enough for threads
    expected = reference_flat(tensors)
    plan = flatgather.Plan(tensors)
    out = poisoned(plan.numel, torch.float32)
    plan.gather(out=out)
    assert_bitwise(out, expected)
    assert plan.offsets == [0, 1, 1, 55, 65, 275, 347]
    assert plan.shapes == [t.shape for t in tensors]


@pytest.mark.parametrize("align", [16, 128, 256])
def test_alignment_pads_with_zeros(align):
    gen = torch.Generator().manual_seed(3)
    tensors = [torch.randn(s, generator=gen) for s in [(3, 3), (5,), (1,), (70,), (2, 2)]]
    plan = flatgather.Plan(tensors, align_bytes=align)
    per = align // 4
    offsets, pos = [], 0
    for t in tensors:
        pos = -(-pos // per) * per
        offsets.append(pos)
        pos += t.numel()
    assert plan.offsets == offsets
    assert plan.numel >= pos
    out = poisoned(plan.numel, torch.float32)
    plan.gather(out=out)
    expected = torch.zeros(plan.numel)
    for t, off in zip(tensors, offsets):
        expected[off:off + t.numel()] = t.reshape(-1)
    assert_bitwise(out, expected)  # padding written as +0.0, never left as the NaN poison
    # The one-off gather honours the same option.
    with torch.no_grad():
        assert_bitwise(flatgather.gather(tensors, align_bytes=align), expected)


def test_tied_weights_counted_once():
    name, model, _ = [m for m in models() if m[0] == "tied"][0]
    plan = flatgather.Plan.from_module(model)
    assert plan.names == ["embed.weight", "hidden.weight", "hidden.bias"]
    assert plan.aliases == {"embed.weight": ["out.weight"]}
    assert plan.manifest()["segments"][0]["aliases"] == ["out.weight"]
    with torch.no_grad():
        assert_bitwise(plan.gather(), parameters_to_vector(model.parameters()))
    # A list that repeats a tensor stores it once, too.
    w = model.embed.weight
    listed = flatgather.Plan([w, model.hidden.bias, w], names=["a", "b", "c"])
    assert listed.names == ["a", "b"]
    assert listed.numel == w.numel() + model.hidden.bias.numel()


def test_manifest_is_json_and_round_trips():
    import json
    _, model, _ = models()[2]
    plan = flatgather.Plan.from_module(model, dtype=torch.bfloat16, align_bytes=128)
    m = plan.manifest()
    assert json.loads(json.dumps(m)) == m
    assert m["flat_dtype"] == "bfloat16" and m["numel"] == plan.numel
    assert m["align_bytes"] == 128
    assert [s["name"] for s in m["segments"]] == [n for n, _ in model.named_parameters()]
    assert [s["offset"] for s in m["segments"]] == plan.offsets
    assert [s["shape"] for s in m["segments"]] == [list(p.shape) for p in model.parameters()]
    assert all(s["dtype"] == "float32" for s in m["segments"])
    plan.check_manifest(m)
    plan.check_manifest(plan.manifest_json())
    other = flatgather.Plan.from_module(model, dtype=torch.bfloat16, align_bytes=128,
                                        exclude="head.bias")
    with pytest.raises(RuntimeError, match="flatgather: .*"):
        other.check_manifest(m)


def test_no_grad_returns_plain_tensor():
    _, model, _ = models()[0]
    plan = flatgather.Plan.from_module(model)
    with torch.no_grad():
        flat = plan.gather()
    assert flat.grad_fn is None and not flat.requires_grad
    with torch.inference_mode():
        assert not plan.gather().requires_grad
