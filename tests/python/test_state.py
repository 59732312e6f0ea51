"""A module's whole state (parameters and buffers of every dtype) in one byte buffer, and
safetensors files: against each tensor's own bytes and the `safetensors` package."""

import importlib.util
import json
import os
import struct

import pytest
import torch
from torch import nn

import flatgather
from fg_helpers import assert_bitwise, train_step


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class TinyResNet(nn.Module):
    """ResNet-like: a stem, residual blocks with batch norm (int64 num_batches_tracked), and
    buffers of the other dtypes a state_dict holds."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.layer1 = Block(8)
        self.layer2 = Block(8)
        self.fc = nn.Linear(8, 5)
        self.register_buffer("mask", torch.rand(7) > 0.5)
        self.register_buffer("half_scale", torch.randn(3, 5).half())
        self.register_buffer("bf16_bias", torch.randn(5).bfloat16())
        self.register_buffer("steps", torch.randint(-100, 100, (3,), dtype=torch.int32))

    def forward(self, x):
        x = self.layer2(self.layer1(torch.relu(self.bn(self.stem(x)))))
        return self.fc(x.mean((2, 3)))


def trained(seed, channels_last=False):
    torch.manual_seed(seed)
    model = TinyResNet()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    for _ in range(2):
        train_step(model, torch.randn(2, 3, 6, 6))
    return model


def byte_bits(t):
    """The tensor's bytes in logical element order: an independent bit-exact view."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        assert sa[name].shape == sb[name].shape, name
        assert torch.equal(byte_bits(sa[name]), byte_bits(sb[name])), name


@pytest.mark.parametrize("align_bytes", [None, 16, 256])
@pytest.mark.parametrize("channels_last", [False, True])
def test_whole_state_in_a_byte_buffer(align_bytes, channels_last):
    model = trained(1, channels_last)
    state = model.state_dict()
    assert state["bn.num_batches_tracked"].item() == 2
    plan = flatgather.Plan.from_module(model, buffers=True, dtype=torch.uint8,
                                       align_bytes=align_bytes)
    assert plan.names == list(state)
    flat = torch.full((plan.numel,), 0x5A, dtype=torch.uint8)
    plan.gather(out=flat)
    views = plan.views(flat)
    for name, offset, view in zip(plan.names, plan.offsets, views):
        t = state[name]
        assert offset % t.element_size() == 0, name
        if align_bytes:
            assert offset % align_bytes == 0, name
        assert view.dtype == t.dtype and view.shape == t.shape, name
        assert torch.equal(byte_bits(view), byte_bits(t)), name
        n = t.numel() * t.element_size()
        assert torch.equal(flat[offset:offset + n], byte_bits(t)), name
    # gather() without out= (parameters require grad: no autograd for a byte buffer)
    again = plan.gather()
    assert again.dtype == torch.uint8 and not again.requires_grad
    assert torch.equal(again, flat)

    fresh = trained(2, channels_last)
    target = flatgather.Plan.from_module(fresh, buffers=True, dtype=torch.uint8,
                                         align_bytes=align_bytes)
    target.scatter(flat)
    assert_same_state(fresh, model)


def test_byte_buffer_refuses_scatter_add_and_the_mixed_hint_names_the_fixes():
    model = trained(3)
    plan = flatgather.Plan.from_module(model, buffers=True, dtype=torch.uint8)
    before = byte_bits(model.stem.weight).clone()
    with pytest.raises(RuntimeError, match="byte buffer"):
        plan.scatter_add(plan.gather())
    assert torch.equal(byte_bits(model.stem.weight), before)
    with pytest.raises(RuntimeError) as info:
        flatgather.Plan.from_module(model, buffers=True)
    message = str(info.value)
    assert "uint8" in message and "exclude" in message and "separately" in message
    with pytest.raises(RuntimeError, match="'1.num_batches_tracked'.*int64.*uint8"):
        conv_bn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        flatgather.Plan.from_module(conv_bn, buffers=True, dtype=torch.float32)


# ---- safetensors ------------------------------------------------------------------------

_HAVE_SAFETENSORS = importlib.util.find_spec("safetensors") is not None
_REQUIRE = os.environ.get("FLATGATHER_REQUIRE_SAFETENSORS") == "1"
if _REQUIRE and not _HAVE_SAFETENSORS:
    raise ImportError("FLATGATHER_REQUIRE_SAFETENSORS=1 but the safetensors package is not "
                      "importable (scripts/test-python-package.sh installs it)")
needs_safetensors = pytest.mark.skipif(
    not _HAVE_SAFETENSORS,
    reason="the safetensors package is not installed (a test-only package; "
           "scripts/test-python-package.sh installs it and runs these tests)")


def test_save_and_load_a_module_bit_for_bit(tmp_path):
    model = trained(4)
    path = tmp_path / "model.safetensors"
    flatgather.save_safetensors(path, model, metadata={"step": "2"})
    fresh = trained(5)
    missing, unexpected = flatgather.load_safetensors(path, fresh)
    assert missing == [] and unexpected == []
    assert_same_state(fresh, model)


def read_header(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), 8 + n, raw


def test_file_layout_is_packed_and_aligned(tmp_path):
    model = trained(6)
    path = tmp_path / "m.safetensors"
    flatgather.save_safetensors(path, model, metadata={"k": "v"})
    header, data_start, raw = read_header(path)
    assert data_start % 8 == 0
    assert header.pop("__metadata__") == {"k": "v"}
    state = model.state_dict()
    assert sorted(header) == sorted(state)
    ranges = sorted((e["data_offsets"][0], e["data_offsets"][1], name)
                    for name, e in header.items())
    pos = 0
    for begin, end, name in ranges:
        t = state[name]
        assert begin == pos, name  # no holes
        assert begin % t.element_size() == 0, name
        assert raw[data_start + begin:data_start + end] == bytes(byte_bits(t).tolist()), name
        pos = end
    assert data_start + pos == len(raw)


def test_load_casts_floating_and_checks_before_writing(tmp_path):
    torch.manual_seed(7)
    src = nn.Linear(4, 3)
    half = nn.Linear(4, 3).bfloat16()
    half.load_state_dict({k: v.bfloat16() for k, v in src.state_dict().items()})
    path = tmp_path / "bf16.safetensors"
    flatgather.save_safetensors(path, half)
    target = nn.Linear(4, 3)
    flatgather.load_safetensors(path, target)
    for name, t in target.state_dict().items():
        assert_bitwise(t, half.state_dict()[name].to(torch.float32))

    # Wrong shape, missing and unexpected names: errors, and nothing written.
    wrong = nn.Linear(5, 3)
    before = {k: v.clone() for k, v in wrong.state_dict().items()}
    with pytest.raises(RuntimeError, match="'weight' has shape"):
        flatgather.load_safetensors(path, wrong)
    for k, v in wrong.state_dict().items():
        assert torch.equal(v, before[k])
    bigger = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(RuntimeError, match="has no tensor '0.weight'"):
        flatgather.load_safetensors(path, bigger)
    missing, unexpected = flatgather.load_safetensors(path, bigger, strict=False)
    assert missing == ["0.weight", "0.bias"] and sorted(unexpected) == ["bias", "weight"]


def write_raw(path, header, data):
    body = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(body)) + body + data)


@pytest.mark.parametrize("header,data,message", [
    ({"weight": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]}}, b"\0" * 40,
     "outside the data section"),
    ({"weight": {"dtype": "F8_E4M3", "shape": [3, 4], "data_offsets": [0, 12]}}, b"\0" * 12,
     "does not support"),
    ({"weight": {"dtype": "F32", "shape": [3, 4], "data_offsets": [4, 52]},
      "bias": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}}, b"\0" * 52,
     "overlap"),
    ({"weight": {"dtype": "F32", "shape": [3, 4], "data_offsets": [16, 64]},
      "bias": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}}, b"\0" * 64,
     "hole"),
    ({"weight": {"dtype": "F32", "shape": [3, 4]}}, b"", "no \"data_offsets\""),
    ({"weight": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 40]}}, b"\0" * 40,
     "by its shape"),
])
def test_malformed_files_are_clear_errors_and_write_nothing(tmp_path, header, data, message):
    path = tmp_path / "bad.safetensors"
    write_raw(path, header, data)
    torch.manual_seed(8)
    model = nn.Linear(4, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match=message):
        flatgather.load_safetensors(path, model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_truncated_and_non_json_files(tmp_path):
    model = nn.Linear(4, 3)
    good = tmp_path / "good.safetensors"
    flatgather.save_safetensors(good, model)
    raw = good.read_bytes()
    for cut, message in [(5, "fewer than the 8-byte"), (20, "truncated"),
                         (len(raw) - 4, "outside the data section")]:
        bad = tmp_path / "cut{}.safetensors".format(cut)
        bad.write_bytes(raw[:cut])
        with pytest.raises(RuntimeError, match=message):
            flatgather.load_safetensors(bad, model)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(struct.pack("<Q", 4) + b"nope")
    with pytest.raises(RuntimeError, match="not valid JSON"):
        flatgather.load_safetensors(junk, model)


def test_a_plan_is_a_source_and_a_target(tmp_path):
    model = trained(9)
    plan = flatgather.Plan.from_module(model, dtype=torch.float32)  # parameters only
    path = tmp_path / "params.safetensors"
    flatgather.save_safetensors(path, plan)
    header, _, _ = read_header(path)
    assert sorted(header) == sorted(plan.names)
    fresh = trained(10)
    flatgather.load_safetensors(path, flatgather.Plan.from_module(fresh))
    for (n, p), (_, q) in zip(model.named_parameters(), fresh.named_parameters()):
        assert torch.equal(byte_bits(p), byte_bits(q)), n


@needs_safetensors
def test_files_we_write_are_read_by_the_safetensors_package(tmp_path):
    from safetensors.torch import load_file
    model = trained(11)
    path = tmp_path / "ours.safetensors"
    flatgather.save_safetensors(path, model)
    loaded = load_file(str(path))
    state = model.state_dict()
    assert sorted(loaded) == sorted(state)
    for name, t in state.items():
        assert loaded[name].dtype == t.dtype and loaded[name].shape == t.shape, name
        assert torch.equal(byte_bits(loaded[name]), byte_bits(t)), name


@needs_safetensors
def test_files_of_the_safetensors_package_are_loaded(tmp_path):
    from safetensors.torch import save_file
    model = trained(12)
    path = tmp_path / "theirs.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"format": "pt"})
    fresh = trained(13)
    flatgather.load_safetensors(path, fresh)
    assert_same_state(fresh, model)


def test_checkpoint_example_runs(tmp_path):
    import pathlib
    import runpy
    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "python" / "checkpoint.py"
    scope = runpy.run_path(str(path))
    model, fresh = scope["main"](str(tmp_path / "ckpt.safetensors"))
    assert_same_state(fresh, model)
    assert model.state_dict()["1.num_batches_tracked"].item() == 3
