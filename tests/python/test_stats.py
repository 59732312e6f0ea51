"""Gradient statistics in the same pass as gather (norm, tensor_norms, found_inf, clip_coef),
scale on gather and scatter, and scatter_add with a tensor alpha, against PyTorch's own
clip_grad_norm_, _foreach_norm, vector_norm in float64 and the non-finite check of GradScaler."""

import inspect
import math

import pytest
import torch

import flatgather
from fg_helpers import assert_bitwise, poisoned, reference_flat

# Parameter shapes of torchvision's ResNet-18 (11.7M values), without torchvision.
def _resnet18_shapes():
    shapes = [(64, 3, 7, 7), (64,), (64,)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            first_in = cin if block == 0 else cout
            shapes += [(cout, first_in, 3, 3), (cout,), (cout,), (cout, cout, 3, 3), (cout,),
                       (cout,)]
            if block == 0 and (stride != 1 or cin != cout):
                shapes += [(cout, cin, 1, 1), (cout,), (cout,)]
        cin = cout
    return shapes + [(1000, 512), (1000,)]


def _grads(shapes, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(s, generator=g) * (1 + i % 7)).to(dtype) for i, s in enumerate(shapes)]


def _norm64(tensors):
    """The float64 reference: vector_norm of the concatenation."""
    return torch.linalg.vector_norm(torch.cat([t.double().reshape(-1) for t in tensors]))


def test_resnet18_norm_within_1e5_of_float64_and_clip_matches():
    grads = _grads(_resnet18_shapes())
    originals = [g.clone() for g in grads]
    assert sum(t.numel() for t in grads) > 11_000_000
    plan = flatgather.Plan(grads)
    flat, stats = plan.gather(out=poisoned(plan.numel, torch.float32), norm=True, max_norm=1.0)
    assert_bitwise(flat, reference_flat(grads))
    ref = _norm64(grads).item()
    assert abs(stats.norm.item() - ref) / ref < 1e-6  # NOTE: [gather statistics]: 1.3e-7 bound
    # clip_grad_norm_ (PyTorch's own float32 norm is looser: 2.5e-5 on this size).
    params = [torch.nn.Parameter(torch.empty_like(t)) for t in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(params, 1.0)
    assert abs(total.item() - ref) / ref < 5e-5
    assert abs(stats.clip_coef.item() - 1.0 / (total.item() + 1e-6)) / stats.clip_coef.item() < 5e-5
    # Clipped gradients: scatter with the device coefficient == g * coef in float32.
    plan.scatter(flat, scale=stats.clip_coef)
    for g, orig, p in zip(grads, originals, params):
        assert_bitwise(g, orig * stats.clip_coef)
        torch.testing.assert_close(g, p.grad, rtol=5e-5, atol=0)


@pytest.mark.parametrize("foreach", [False, True])
def test_same_total_norm_and_clipped_grads_as_clip_grad_norm(foreach):
    shapes = [(32, 16), (16,), (8, 4, 3, 3), (10,), (1,)]
    grads = _grads(shapes, seed=3)
    params = [torch.nn.Parameter(torch.empty_like(t)) for t in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    # The signature, not __code__: PyTorch 2.x wraps clip_grad_norm_ in a decorator, whose code
    # object has no `foreach` (the foreach case was skipped on the H200's PyTorch 2.11).
    has_foreach = "foreach" in inspect.signature(torch.nn.utils.clip_grad_norm_).parameters
    kwargs = {"foreach": foreach} if has_foreach else {}
    if foreach and not kwargs:
        pytest.skip("this PyTorch's clip_grad_norm_ has no foreach path (PyTorch < 2.0)")
    max_norm = 0.5
    total = torch.nn.utils.clip_grad_norm_(params, max_norm, **kwargs)
    plan = flatgather.Plan(grads)
    flat, stats = plan.gather(norm=True, max_norm=max_norm)
    assert math.isclose(stats.norm.item(), total.item(), rel_tol=1e-6)
    # Our coefficient is min(1, max_norm / (norm + 1e-6)) in float32, as clip_grad_norm_'s.
    expected_coef = torch.clamp(max_norm / (stats.norm + 1e-6), max=1.0)
    assert_bitwise(stats.clip_coef, expected_coef)
    plan.scatter(flat, scale=stats.clip_coef)
    for g, p in zip(grads, params):
        torch.testing.assert_close(g, p.grad, rtol=2e-6, atol=0)
    # and exactly g * coef with our coefficient:
    for g, orig in zip(grads, _grads(shapes, seed=3)):
        assert_bitwise(g, orig * stats.clip_coef)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), None])
def test_found_inf_matches_gradscaler_check(dtype, bad):
    grads = _grads([(7, 5), (33,), (4, 4)], dtype=dtype, seed=5)
    if bad is not None:
        grads[1][17] = bad
    inv_scale = torch.tensor(1.0 / 1024)
    plan = flatgather.Plan(grads, dtype=torch.float32)
    flat, stats = plan.gather(scale=inv_scale, check_finite=True)
    # Reference: GradScaler's unscale (on CPU where this PyTorch has it), else isfinite.
    ref_grads = [g.float() for g in grads]
    found = torch.zeros(())
    try:
        torch._amp_foreach_non_finite_check_and_unscale_(ref_grads, found, inv_scale)
    except (NotImplementedError, RuntimeError):
        found = torch.tensor(0.0 if all(torch.isfinite(g).all() for g in grads) else 1.0)
        ref_grads = [g * inv_scale for g in ref_grads]
    assert stats.found_inf.dtype == torch.float32 and stats.found_inf.dim() == 0
    assert stats.found_inf.item() == found.item() == (0.0 if bad is None else 1.0)
    assert_bitwise(flat, torch.cat([g.reshape(-1) for g in ref_grads]))
    assert stats.norm is None and stats.tensor_norms is None and stats.clip_coef is None


def test_tensor_norms_match_foreach_norm_and_float64():
    shapes = [(3, 4), (0,), (100,), (2, 0, 3), (1,), (64, 65)]
    grads = _grads(shapes, seed=7)
    plan = flatgather.Plan(grads, align_bytes=64)
    _, stats = plan.gather(tensor_norms=True, norm=True)
    ref = torch.stack(torch._foreach_norm(grads))
    torch.testing.assert_close(stats.tensor_norms, ref, rtol=1e-6, atol=0)
    ref64 = torch.stack([torch.linalg.vector_norm(g.double()) for g in grads]).float()
    torch.testing.assert_close(stats.tensor_norms, ref64, rtol=2e-7, atol=0)
    assert stats.tensor_norms[1].item() == 0.0 and stats.tensor_norms[3].item() == 0.0
    assert math.isclose(stats.norm.item(), _norm64(grads).item(), rel_tol=2e-7)


def test_norm_is_of_the_written_values_after_scale_and_cast():
    grads = _grads([(1000,), (77, 3)], seed=11)
    plan = flatgather.Plan(grads, dtype=torch.bfloat16)
    flat, stats = plan.gather(scale=0.37, norm=True, tensor_norms=True)
    written = torch.cat([(g * 0.37).to(torch.bfloat16).reshape(-1) for g in grads])
    assert_bitwise(flat, written)
    assert math.isclose(stats.norm.item(), torch.linalg.vector_norm(written.double()).item(),
                        rel_tol=2e-7)


@pytest.mark.parametrize("count", [1, 100_000])
def test_one_tensor_and_many_tensors(count):
    g = torch.Generator().manual_seed(count)
    grads = [torch.randn(1 + i % 5, generator=g) for i in range(count)]
    plan = flatgather.Plan(grads)
    flat, stats = plan.gather(norm=True, tensor_norms=True, check_finite=True)
    assert_bitwise(flat, reference_flat(grads))
    assert math.isclose(stats.norm.item(), _norm64(grads).item(), rel_tol=2e-7)
    ref = torch.stack([torch.linalg.vector_norm(t.double()) for t in grads]).float()
    torch.testing.assert_close(stats.tensor_norms, ref, rtol=2e-7, atol=0)
    assert stats.found_inf.item() == 0.0


def test_only_empty_tensors_give_zero_statistics():
    plan = flatgather.Plan([torch.empty(0), torch.empty(2, 0)])
    flat, stats = plan.gather(norm=True, tensor_norms=True, check_finite=True, max_norm=1.0)
    assert flat.numel() == 0
    assert stats.norm.item() == 0.0 and stats.found_inf.item() == 0.0
    assert stats.tensor_norms.tolist() == [0.0, 0.0] and stats.clip_coef.item() == 1.0


def test_same_bits_on_repeated_calls_and_every_thread_count():
    grads = _grads(_resnet18_shapes()[:30], seed=13)
    results = []
    for threads in (1, 2, 3, 4, 7):
        plan = flatgather.Plan(grads, num_threads=threads)
        for _ in range(2):
            _, stats = plan.gather(norm=True, tensor_norms=True)
            results.append((stats.norm, stats.tensor_norms))
    for norm, tensor_norms in results[1:]:
        assert_bitwise(norm, results[0][0])
        assert_bitwise(tensor_norms, results[0][1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_scatter_scale_and_scatter_add_tensor_alpha(dtype):
    grads = _grads([(9, 4), (31,)], dtype=dtype, seed=17)
    params = _grads([(9, 4), (31,)], dtype=dtype, seed=19)
    plan = flatgather.Plan(params, dtype=torch.float32)
    flat = torch.randn(plan.numel, generator=torch.Generator().manual_seed(23))
    alpha = torch.tensor(-0.25)
    expected_add = [p.clone() for p in params]
    flatgather.Plan(expected_add, dtype=torch.float32).scatter_add(flat, -0.25)
    plan.scatter_add(flat, alpha)
    for p, e in zip(params, expected_add):
        assert_bitwise(p, e)
    scale = torch.tensor(3.0)
    plan.scatter(flat, scale=scale)
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    for p, part in zip(params, flat.split([36, 31])):
        assert_bitwise(p, (part.to(compute) * 3.0).to(dtype).view_as(p))
    del grads


def test_bad_statistics_arguments_name_the_problem():
    plan = flatgather.Plan([torch.ones(3)])
    with pytest.raises(RuntimeError, match="max_norm > 0"):
        plan.gather(max_norm=0.0)
    with pytest.raises(RuntimeError, match="one-element float32 tensor"):
        plan.gather(scale=torch.tensor(2.0, dtype=torch.float64), norm=True)
    with pytest.raises(RuntimeError, match="one-element float32 tensor"):
        plan.scatter_add(torch.ones(3), torch.ones(2))
    with pytest.raises(TypeError, match="scale must be a number"):
        plan.gather(scale="2", norm=True)
    ints = flatgather.Plan([torch.arange(4)])
    with pytest.raises(RuntimeError, match="not floating point"):
        ints.gather(norm=True)


def test_grad_scaler_example_checks_itself():
    """examples/python/grad_scaler_step.py: a GradScaler-style step with fused statistics
    against the per-parameter loop (same skipped steps, same parameters)."""
    import os
    import pathlib
    import subprocess
    import sys
    root = pathlib.Path(__file__).resolve().parents[2]
    example = root / "examples" / "python" / "grad_scaler_step.py"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(pathlib.Path(flatgather.__file__).resolve().parents[1])]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    done = subprocess.run([sys.executable, str(example), "--steps", "30"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped steps: flatgather [7, 8, 21], reference [7, 8, 21]" in done.stdout
