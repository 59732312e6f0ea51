"""flatgather.adopt against plain PyTorch: the same training bits, the same Parameter objects,
views that break only where check() says so."""

import copy
import io
import os
import pathlib
import subprocess
import sys

import pytest
import torch
from torch import nn

import flatgather
from fg_helpers import ConvBN, TiedLM, assert_bitwise, mlp, reference_flat


def _storage_ptr(t):
    # untyped_storage() from PyTorch 2.0 on; storage() before (deprecated after).
    return (t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()).data_ptr()


def _inside(t, buffer):
    return t is not None and _storage_ptr(t) == _storage_ptr(buffer)


def _pair(seed=7, make=mlp):
    torch.manual_seed(seed)
    plain = make()
    return plain, copy.deepcopy(plain)


def _step(model, opt, x, set_to_none):
    opt.zero_grad(set_to_none=set_to_none)
    loss = model(x).pow(2).mean()
    loss.backward()
    opt.step()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("set_to_none", [False, True])
@pytest.mark.parametrize("grads", [False, True])
def test_training_gives_the_same_bits(optimizer, set_to_none, grads):
    plain, model = _pair()
    params = list(model.parameters())
    adopted = flatgather.adopt(model, grads=grads)
    assert all(p is q for p, q in zip(params, model.parameters()))  # the same objects

    def make(m):
        if optimizer == "sgd":
            return torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
        return torch.optim.Adam(m.parameters(), lr=1e-2)
    opt_plain, opt = make(plain), make(model)
    torch.manual_seed(1)
    for step in range(6):
        x = torch.randn(8, 32)
        _step(plain, opt_plain, x, set_to_none)
        _step(model, opt, x, set_to_none)
        for p, q in zip(plain.parameters(), model.parameters()):
            assert_bitwise(q.detach(), p.detach())
        # The parameters never left the buffer; the optimizer updated them in place.
        assert_bitwise(adopted.flat, reference_flat(plain.parameters()))
        broken = adopted.check()
        if grads and set_to_none:
            # Backward after set_to_none made fresh gradients: reported, and repaired.
            assert broken == [n + ".grad" for n, _ in model.named_parameters()]
            adopted.readopt()
            assert adopted.check() == []
        else:
            assert broken == []
        if grads:
            assert_bitwise(adopted.grad_flat, reference_flat([p.grad for p in plain.parameters()]))
    assert all(_inside(p, adopted.flat) for p in model.parameters())


def test_flat_is_the_plans_gather_and_the_manifest_the_plans():
    torch.manual_seed(2)
    model = TiedLM()
    plan = flatgather.Plan.from_module(model, align_bytes=64)
    expected, manifest = plan.gather(), plan.manifest()
    adopted = flatgather.adopt(model, align_bytes=64)
    assert_bitwise(adopted.flat, expected)
    assert adopted.manifest() == manifest
    assert adopted.grad_flat is None
    # Tied: one segment, and the module still ties them.
    assert model.out.weight is model.embed.weight
    assert adopted.names == ["embed.weight", "hidden.weight", "hidden.bias", "out.weight"]
    assert [s["name"] for s in manifest["segments"]] == ["embed.weight", "hidden.weight",
                                                         "hidden.bias"]
    for p in model.parameters():
        assert _inside(p, adopted.flat)
        assert p.data_ptr() % 64 == 0


def test_flat_and_parameters_are_one_memory():
    torch.manual_seed(3)
    model = mlp()
    adopted = flatgather.adopt(model)
    before = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        adopted.flat.mul_(0.5)
    for p, b in zip(model.parameters(), before):
        assert_bitwise(p.detach(), b * 0.5)
    with torch.no_grad():
        model[0].bias.fill_(3.0)
    n = model[0].weight.numel()
    assert_bitwise(adopted.flat[n:n + 64], torch.full((64,), 3.0))


def test_hooks_requires_grad_and_optimizer_references_survive():
    torch.manual_seed(4)
    model = mlp()
    model[2].bias.requires_grad_(False)
    seen = []
    model[0].weight.register_hook(lambda g: seen.append(g.shape))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    adopted = flatgather.adopt(model, grads=True)
    assert not model[2].bias.requires_grad and model[2].bias.grad is None  # no grad view
    model(torch.randn(4, 32)).sum().backward()
    assert seen == [model[0].weight.shape]
    before = adopted.flat.clone()
    opt.step()
    assert not torch.equal(adopted.flat, before)  # the optimizer's step wrote the buffer
    assert adopted.check() == []


def test_backward_through_values_saved_before_adopting_is_refused():
    # set_ bumps each parameter's version counter (NOTE: [adopting a parameter]).
    torch.manual_seed(13)
    model = mlp()
    out = model(torch.randn(2, 32, requires_grad=True)).sum()
    flatgather.adopt(model)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


def test_state_dict_round_trip():
    torch.manual_seed(5)
    model = ConvBN()
    adopted = flatgather.adopt(model, grads=True)
    saved = io.BytesIO()
    torch.save(model.state_dict(), saved)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        adopted.flat.normal_()
    model.load_state_dict(torch.load(io.BytesIO(saved.getvalue())))
    assert adopted.check() == []  # load_state_dict copies in place
    for k, v in model.state_dict().items():
        assert_bitwise(v, state[k])
    # A fresh model loads the adopted one's state dict.
    torch.manual_seed(6)
    other = ConvBN()
    other.load_state_dict(model.state_dict())
    assert_bitwise(reference_flat(other.parameters()), adopted.flat)


def test_check_names_each_way_of_breaking_and_readopt_repairs():
    torch.manual_seed(8)
    model = mlp()
    adopted = flatgather.adopt(model, grads=True)
    flat, grad_flat = adopted.flat, adopted.grad_flat
    model(torch.randn(4, 32)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    assert adopted.check() == []

    new = torch.randn(64)
    model[0].bias.data = new.clone()                 # p.data = ...
    model[2].weight.grad = None                      # a gradient set to None
    assert adopted.check() == ["0.bias", "2.weight.grad"]
    adopted.readopt()
    assert adopted.check() == [] and adopted.flat is flat and adopted.grad_flat is grad_flat
    assert _inside(model[0].bias, flat)
    assert_bitwise(model[0].bias.detach(), new)
    assert_bitwise(model[2].weight.grad, torch.zeros(64, 64))
    assert_bitwise(model[0].weight.grad, grads[0])

    model.zero_grad(set_to_none=True)                # Module.zero_grad too
    assert adopted.check() == [n + ".grad" for n, _ in model.named_parameters()]
    adopted.readopt()
    model.zero_grad(set_to_none=False)
    assert adopted.check() == []

    model[4].bias = nn.Parameter(torch.randn(10))   # a new Parameter under an adopted name
    assert adopted.check() == ["4.bias", "4.bias.grad"]
    adopted.readopt()
    assert adopted.check() == [] and _inside(model[4].bias, flat)

    values = [p.detach().clone() for p in model.parameters()]
    model.double()                                   # module.to(dtype): values and grads
    assert adopted.check() == [x for n, _ in model.named_parameters() for x in (n, n + ".grad")]
    adopted.readopt()
    assert adopted.check() == []
    assert adopted.flat.dtype == torch.float64 and adopted.grad_flat.dtype == torch.float64
    assert_bitwise(adopted.flat, reference_flat(values, torch.float64))


def test_release_gives_own_storage_and_keeps_values():
    torch.manual_seed(9)
    model = mlp()
    adopted = flatgather.adopt(model, grads=True)
    model(torch.randn(4, 32)).sum().backward()
    values = [p.detach().clone() for p in model.parameters()]
    grads = [p.grad.clone() for p in model.parameters()]
    adopted.release()
    assert adopted.released
    with torch.no_grad():
        adopted.flat.fill_(7.0)
        adopted.grad_flat.fill_(7.0)
    for p, v, g in zip(model.parameters(), values, grads):
        assert not _inside(p, adopted.flat)
        assert_bitwise(p.detach(), v)
        assert_bitwise(p.grad, g)
    with pytest.raises(RuntimeError, match=r"after release\(\)"):
        adopted.check()
    adopted.readopt()
    assert adopted.check() == []
    assert_bitwise(adopted.flat, reference_flat(values))


def test_selection_is_from_modules():
    torch.manual_seed(10)
    model = mlp()
    model[4].bias.requires_grad_(False)
    adopted = flatgather.adopt(model, exclude="0.*", trainable_only=True)
    assert adopted.names == ["2.weight", "2.bias", "4.weight"]
    assert adopted.manifest() == flatgather.Plan.from_module(
        model, exclude="0.*", trainable_only=True).manifest()
    assert not _inside(model[0].weight, adopted.flat)


def test_refusals_name_the_parameter():
    torch.manual_seed(11)
    cl = ConvBN().to(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match=r"'features.0.weight'.*not contiguous.*"
                                           r"memory_format=torch.contiguous_format"):
        flatgather.adopt(cl)
    mixed = mlp()
    mixed[2].bias.data = mixed[2].bias.data.double()
    with pytest.raises(RuntimeError, match=r"'2.bias'.*float64.*a view cannot cast"):
        flatgather.adopt(mixed)
    with pytest.raises(RuntimeError, match=r"does not have the flat dtype float16"):
        flatgather.adopt(mlp(), dtype=torch.float16)
    viewed = mlp()
    viewed[0].bias.data = torch.randn(200)[10:74]
    with pytest.raises(RuntimeError, match=r"'0.bias'.*view of a larger storage.*p.data = "
                                           r"p.clone\(\)"):
        flatgather.adopt(viewed)
    twice = mlp()
    flatgather.adopt(twice)
    with pytest.raises(RuntimeError, match=r"adopted already"):
        flatgather.adopt(twice)
    shared = mlp()
    shared.extra = nn.Parameter(shared[0].bias.data)
    with pytest.raises(RuntimeError, match=r"'extra' and '0.bias' are different tensors"):
        flatgather.adopt(shared)
    with pytest.raises(ValueError, match=r"parameters only"):
        flatgather.adopt(mlp(), parameters=False)
    with pytest.raises(TypeError, match=r"torch.nn.Module"):
        flatgather.adopt([torch.randn(3)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device for PyTorch")
def test_cuda_training_and_mixed_devices():
    plain, model = _pair(seed=12)
    plain.cuda()
    model.cuda()
    adopted = flatgather.adopt(model, grads=True)
    assert adopted.flat.is_cuda and adopted.grad_flat.is_cuda
    opt_plain = torch.optim.Adam(plain.parameters(), lr=1e-2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        x = torch.randn(8, 32, device="cuda")
        _step(plain, opt_plain, x, False)
        _step(model, opt, x, False)
    assert_bitwise(adopted.flat, reference_flat(plain.parameters()))
    assert adopted.check() == []
    model.cpu()
    assert len(adopted.check()) == 2 * len(list(model.parameters()))
    adopted.readopt()
    assert adopted.flat.device.type == "cpu" and adopted.check() == []
    split = mlp()
    split[0].cuda()
    with pytest.raises(RuntimeError, match=r"one flat buffer lives on one device"):
        flatgather.adopt(split)


def test_ema_example_runs():
    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "python" / "adopt_ema.py"
    # The flatgather this test imported, installed or from a checkout's python/.
    package_root = str(pathlib.Path(flatgather.__file__).resolve().parents[1])
    env = dict(os.environ, FLATGATHER_LIBRARY=str(flatgather.library_path()),
               PYTHONPATH=os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, str(path), "--steps", "20"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "EMA over 20 steps; output with EMA weights equals the reference" in result.stdout
