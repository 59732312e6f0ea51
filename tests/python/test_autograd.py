"""The differentiable gather: gradcheck, gradgradcheck, casts, aliases, create_graph."""

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.nn.utils import parameters_to_vector

import flatgather
from fg_helpers import assert_bitwise


def _inputs(dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(77)
    base = torch.randn(6, 5, generator=gen, dtype=dtype).to(device)
    return [torch.randn(3, 4, generator=gen, dtype=dtype).to(device).requires_grad_(),
            torch.randn((), generator=gen, dtype=dtype).to(device).requires_grad_(),
            base.t().requires_grad_(),  # non-contiguous leaf
            torch.randn(2, 3, 2, 2, generator=gen, dtype=dtype).to(device)
            .to(memory_format=torch.channels_last).requires_grad_()]


@pytest.mark.parametrize("align", [None, 64])
def test_gradcheck_and_gradgradcheck(align, device):
    tensors = _inputs(device=device)
    plan = flatgather.Plan(tensors, align_bytes=align)

    def f(*ts):
        return plan.gather()  # reads the plan's tensors, which are ts

    assert gradcheck(lambda *ts: flatgather.gather(ts, align_bytes=align), tensors)
    assert gradgradcheck(lambda *ts: flatgather.gather(ts, align_bytes=align), tensors)
    assert gradcheck(f, tensors)
    assert gradgradcheck(f, tensors)


def test_backward_hands_each_tensor_its_slice(device):
    tensors = _inputs(torch.float32, device)
    plan = flatgather.Plan(tensors, align_bytes=32)
    flat = plan.gather()
    assert flat.requires_grad and flat.grad_fn is not None
    gen = torch.Generator().manual_seed(5)
    g = torch.randn(plan.numel, generator=gen).to(device)
    flat.backward(g)
    for t, off in zip(tensors, plan.offsets):
        assert t.grad.shape == t.shape
        assert_bitwise(t.grad.reshape(-1).contiguous(), g[off:off + t.numel()])


def test_grads_are_cast_back_to_each_dtype():
    gen = torch.Generator().manual_seed(9)
    a = torch.randn(4, 3, generator=gen).to(torch.bfloat16).requires_grad_()
    b = torch.randn(5, generator=gen).half().requires_grad_()
    flat = flatgather.Plan([a, b], dtype=torch.float32).gather()
    assert flat.dtype == torch.float32
    g = torch.randn(17, generator=gen)
    flat.backward(g)
    assert a.grad.dtype == torch.bfloat16 and b.grad.dtype == torch.float16
    assert_bitwise(a.grad, g[:12].view(4, 3).to(torch.bfloat16))
    assert_bitwise(b.grad, g[12:].to(torch.float16))


def test_tied_tensor_gets_its_gradient_once():
    w = torch.randn(3, 3, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    flat = flatgather.Plan([w, b, w]).gather()
    assert flat.numel() == 12
    flat.backward(torch.arange(12.0))
    assert torch.equal(w.grad, torch.arange(9.0).view(3, 3))
    assert torch.equal(b.grad, torch.arange(9.0, 12.0))


def test_matches_parameters_to_vector_gradients_with_create_graph():
    torch.manual_seed(8)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
    x = torch.randn(10, 4)
    params = list(model.parameters())
    plan = flatgather.Plan.from_module(model)
    v = torch.randn(plan.numel)

    def hvp(flatten):
        loss = model(x).pow(2).mean()
        grads = torch.autograd.grad(loss, params, create_graph=True)
        flat_grad = flatten(grads)
        return torch.autograd.grad(flat_grad @ v, params)

    ours = hvp(lambda gs: flatgather.gather(gs))  # TRPO-style flat gradient
    ref = hvp(parameters_to_vector)
    for a, b in zip(ours, ref):
        assert_bitwise(a, b)

    # The flat parameters themselves, differentiated through a function of the flat vector.
    flat = plan.gather()
    (g,) = torch.autograd.grad((flat ** 3).sum(), flat, create_graph=True)
    ref_flat = parameters_to_vector(params)
    (g_ref,) = torch.autograd.grad((ref_flat ** 3).sum(), ref_flat, create_graph=True)
    assert_bitwise(g, g_ref)
    second = torch.autograd.grad((flat ** 3).sum(), params, create_graph=True)
    second_ref = torch.autograd.grad((ref_flat ** 3).sum(), params, create_graph=True)
    for a, b in zip(second, second_ref):
        assert_bitwise(a, b)


@pytest.mark.filterwarnings(r"ignore:Using backward\(\) with create_graph=True")
def test_gradient_plan_is_differentiable_after_create_graph_backward():
    torch.manual_seed(10)
    w = torch.nn.Parameter(torch.randn(3))
    model = torch.nn.Module()
    model.w = w
    (w ** 3).sum().backward(create_graph=True)  # w.grad = 3 w^2, with history
    plan = flatgather.Plan.from_module(model, grads=True)
    flat = plan.gather()
    assert flat.requires_grad
    (h,) = torch.autograd.grad(flat.sum(), w)
    assert torch.allclose(h, 6 * w.detach())
    w.grad = None  # break the parameter <-> gradient cycle backward(create_graph) made


def test_no_graph_when_nothing_requires_grad_or_under_no_grad():
    t = [torch.randn(3), torch.randn(2)]
    assert flatgather.Plan(t).gather().grad_fn is None
    p = [torch.randn(3, requires_grad=True)]
    with torch.no_grad():
        assert flatgather.Plan(p).gather().grad_fn is None
        assert flatgather.gather(p).grad_fn is None


def test_gather_out_never_records_history():
    p = [torch.randn(3, requires_grad=True)]
    out = torch.full((3,), float("nan"))
    flatgather.Plan(p).gather(out=out)
    assert out.grad_fn is None and torch.equal(out, p[0].detach())
    with pytest.raises(RuntimeError, match="out. requires grad"):
        flatgather.Plan(p).gather(out=torch.zeros(3, requires_grad=True))


def test_scatter_bumps_version_so_stale_saved_values_are_caught():
    w = torch.randn(3, requires_grad=True)
    y = (w * w).sum()  # saves w for backward
    with torch.no_grad():
        flatgather.Plan([w]).scatter(torch.ones(3))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()
