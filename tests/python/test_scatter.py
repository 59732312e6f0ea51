"""scatter round trips into the tensors' own storage; scatter_add == the L-BFGS _add_grad loop."""

import copy

import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

import flatgather
from fg_helpers import assert_bitwise, models, reference_flat, train_step

MODELS = models()
MODEL_IDS = [name for name, _, _ in MODELS]


def _snapshot(params):
    return [(p.data_ptr(), p.stride(), p._version) for p in params]


@pytest.mark.parametrize("case", MODELS, ids=MODEL_IDS)
def test_scatter_round_trip_in_place(case, device):
    model = copy.deepcopy(case[1]).to(device)
    params = list(model.parameters())
    plan = flatgather.Plan.from_module(model)
    before = _snapshot(params)
    gen = torch.Generator().manual_seed(99)
    new = torch.randn(plan.numel, generator=gen).to(plan.dtype).to(device)
    plan.scatter(new)
    off = 0
    for p, (ptr, stride, version) in zip(params, before):
        n = p.numel()
        assert_bitwise(p.detach(), new[off:off + n].view(p.shape))
        assert p.data_ptr() == ptr and p.stride() == stride  # same storage, same layout
        assert p._version > version  # autograd sees the in-place write
        off += n
    with torch.no_grad():
        assert_bitwise(plan.gather(), new)


def test_scatter_keeps_optimizer_and_hooks_working_unlike_vector_to_parameters():
    torch.manual_seed(5)
    model = torch.nn.Linear(6, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    plan = flatgather.Plan.from_module(model)
    ptrs = [p.data_ptr() for p in model.parameters()]
    vec = torch.randn(plan.numel)

    plan.scatter(vec)
    assert [p.data_ptr() for p in model.parameters()] == ptrs
    assert opt.param_groups[0]["params"][0] is model.weight
    model(torch.randn(2, 6)).sum().backward()
    expected = vec - 0.5 * parameters_to_vector(p.grad for p in model.parameters())
    opt.step()  # updates the very tensors the plan reads
    with torch.no_grad():
        assert_bitwise(plan.gather(), expected)

    # vector_to_parameters rebinds .data to slices of the vector: the parameters now alias it.
    other = torch.nn.Linear(6, 3)
    vector_to_parameters(vec, other.parameters())
    assert other.weight.data_ptr() == vec.data_ptr()
    plan_other = flatgather.Plan.from_module(torch.nn.Linear(6, 3))
    kept = vec.clone()
    plan_other.scatter(vec)
    vec.add_(1.0)  # our scatter copied: the module does not follow the vector
    assert_bitwise(plan_other.gather().detach(), kept)


@pytest.mark.parametrize("src", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("flat_dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_scatter_casts_back_like_to(src, flat_dtype):
    gen = torch.Generator().manual_seed(17)
    tensors = [torch.empty(5, 7, dtype=src).t(), torch.empty(13, dtype=src)]
    plan = flatgather.Plan(tensors, dtype=flat_dtype)
    flat = (torch.randn(plan.numel, generator=gen, dtype=torch.float64) * 300).to(flat_dtype)
    plan.scatter(flat)
    assert_bitwise(tensors[0].contiguous(), flat[:35].view(7, 5).to(src))
    assert_bitwise(tensors[1], flat[35:].to(src))
    # one-off scatter with the same dtype
    fresh = [torch.empty(7, 5, dtype=src), torch.empty(13, dtype=src)]
    flatgather.scatter(flat, fresh, dtype=flat_dtype)
    assert_bitwise(torch.cat([t.reshape(-1) for t in fresh]), flat.to(src))


def test_scatter_skips_padding_and_round_trips_with_alignment():
    gen = torch.Generator().manual_seed(4)
    tensors = [torch.randn(s, generator=gen) for s in [(3,), (4, 5), (1,)]]
    plan = flatgather.Plan(tensors, align_bytes=64)
    flat = torch.randn(plan.numel, generator=gen)
    plan.scatter(flat)
    for t, off in zip(tensors, plan.offsets):
        assert_bitwise(t.reshape(-1), flat[off:off + t.numel()])


def _add_grad(params, update, step):
    """torch.optim.LBFGS._add_grad, verbatim apart from the parameter list."""
    offset = 0
    for p in params:
        numel = p.numel()
        p.add_(update[offset:offset + numel].view_as(p), alpha=step)
        offset += numel


@pytest.mark.parametrize("case", [m for m in MODELS if m[0] not in ("half", "bfloat16")],
                         ids=[n for n in MODEL_IDS if n not in ("half", "bfloat16")])
@pytest.mark.parametrize("alpha", [1.0, 0.1, -0.375, 1e-3])
def test_scatter_add_equals_lbfgs_add_grad(case, alpha):
    _, model, x = case
    train_step(model, x)
    params = list(model.parameters())
    reference = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(8)
    update = torch.randn(sum(p.numel() for p in params), generator=gen)
    plan = flatgather.Plan.from_module(model)
    plan.scatter_add(update, alpha=alpha)
    with torch.no_grad():
        _add_grad(reference, update, alpha)
    for p, r in zip(params, reference):
        assert_bitwise(p.detach(), r)  # float32: bit for bit


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("flat_dtype", [None, torch.float32])
@pytest.mark.parametrize("alpha", [1.0, 0.1, -0.375])
def test_scatter_add_reduced_precision(dtype, flat_dtype, alpha):
    gen = torch.Generator().manual_seed(21)
    params = [torch.randn(s, generator=gen).to(dtype) for s in [(37, 13), (5,), (300, 3)]]
    numel = sum(p.numel() for p in params)
    update = torch.randn(numel, generator=gen).to(flat_dtype or dtype)
    originals = [p.clone() for p in params]
    lbfgs = [p.clone() for p in params]
    plan = flatgather.Plan(params, dtype=flat_dtype)
    plan.scatter_add(update, alpha=alpha)
    _add_grad(lbfgs, update, alpha)

    # The library's definition, computed independently: a + alpha*u with alpha in float32,
    # exact in float64 (11- or 8-bit a and u, 24-bit alpha), rounded to float32 as one FMA
    # would, then to the tensor's dtype.
    alpha32 = float(torch.tensor(alpha, dtype=torch.float32))
    offset = 0
    for p, a in zip(params, originals):
        u = update[offset:offset + p.numel()].view_as(p)
        fma = (a.double() + alpha32 * u.double()).float().to(dtype)
        assert_bitwise(p, fma)
        offset += p.numel()

    if flat_dtype == torch.float32 or alpha == 1.0:
        # torch promotes to float32 and rounds once (and alpha == 1 makes alpha*u exact):
        # the L-BFGS loop and scatter_add agree bit for bit.
        for p, r in zip(params, lbfgs):
            assert_bitwise(p, r)
    else:
        # Same-dtype half/bfloat16 with alpha != 1: LibTorch 1.13's CPU add_ rounds alpha
        # and alpha*u to the tensor's dtype before adding; the library rounds once. Each of
        # torch's extra roundings errs by at most half a unit in the last place (ulp) of
        # alpha*u, so the two results differ by at most ulp(alpha*u) + ulp(result): a few ulps
        # of the result only where a + alpha*u cancels.
        offset = 0
        for p, r in zip(params, lbfgs):
            u = update[offset:offset + p.numel()].view_as(p).double()
            bound = _ulp(alpha * u, dtype) + torch.maximum(_ulp(p.double(), dtype),
                                                          _ulp(r.double(), dtype))
            assert ((p.double() - r.double()).abs() <= bound).all()
            offset += p.numel()


def _ulp(x, dtype):
    """One unit in the last place, in `dtype` (float16 or bfloat16), of each value of x."""
    mant, min_exp = (10, -14) if dtype == torch.float16 else (7, -126)
    e = torch.floor(torch.log2(x.abs().clamp_min(2.0 ** min_exp)))
    return torch.exp2(e - mant)
