"""A GradScaler-style training step with no host sync inside the step, with flatgather.

The usual step reads every gradient several times and waits for the host twice: unscale
(`_amp_foreach_non_finite_check_and_unscale_`), `clip_grad_norm_` (norms, a stack, a norm, a
clamp, a multiply) and `if found_inf: skip` (`.item()`). Here one gather of the gradients
unscales them, checks them for NaN/inf and computes the clip coefficient in the same pass;
the update is one scatter_add into the parameters whose alpha (`-lr * clip_coef`) stays a
device tensor, and a step with non-finite gradients is skipped by zeroing the flat update with
a device-side mask. The loss scale backs off and grows with device-side `torch.where`.

    python3 examples/python/grad_scaler_step.py [--steps 40] [--device cuda]

Checks itself against the same loop written with per-parameter PyTorch calls and host
decisions (unscale, isfinite, clip_grad_norm_'s formula on a float64 norm, `p.add_`): the same
skipped steps, and parameters equal within 1e-6 relative at the end. Exits 1 on a mismatch.
"""

import argparse
import sys

import torch

import flatgather

LR = 0.05
MAX_NORM = 0.5
BACKOFF, GROWTH, GROWTH_INTERVAL = 0.5, 2.0, 5
BAD_STEPS = {7, 8, 21}  # a non-finite gradient is injected at these steps


DEVICE = torch.device("cpu")


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(),
                               torch.nn.Linear(32, 4)).to(DEVICE)


def data(step):
    g = torch.Generator().manual_seed(1000 + step)
    return (torch.randn(64, 16, generator=g).to(DEVICE),
            torch.randn(64, 4, generator=g).to(DEVICE))


def backward(model, step, scale):
    model.zero_grad(set_to_none=False)
    x, y = data(step)
    loss = torch.nn.functional.mse_loss(model(x), y)
    (loss * scale).backward()
    if step in BAD_STEPS:  # what an fp16 overflow looks like
        next(model.parameters()).grad.view(-1)[step] = float("inf") if step % 2 else float("nan")
    return loss.detach()


def run_flatgather(steps):
    model = make_model()
    for p in model.parameters():  # gradients exist before the plan is built
        p.grad = torch.zeros_like(p)
    grads = flatgather.Plan.from_module(model, grads=True)
    params = flatgather.Plan.from_module(model)
    flat = grads.empty_flat()
    scale = torch.tensor(2.0 ** 12, device=DEVICE)
    zero = torch.zeros((), device=DEVICE)
    good_steps = torch.zeros((), dtype=torch.int64, device=DEVICE)
    skipped = []
    for step in range(steps):
        backward(model, step, scale)
        # ---- the step: no .item(), no Python branch on a device value ----
        inv_scale = scale.reciprocal()
        _, stats = grads.gather(out=flat, scale=inv_scale, check_finite=True, max_norm=MAX_NORM)
        found = stats.found_inf > 0
        # Skip the step: a zero update and a zero alpha (the norm, hence clip_coef, is NaN or
        # 0 then, and 0 * inf is NaN).
        flat.masked_fill_(found, 0.0)
        params.scatter_add(flat, torch.where(found, zero, -LR * stats.clip_coef))
        good_steps = torch.where(found, torch.zeros_like(good_steps), good_steps + 1)
        grow = good_steps >= GROWTH_INTERVAL
        scale = torch.where(found, scale * BACKOFF, torch.where(grow, scale * GROWTH, scale))
        good_steps = torch.where(grow, torch.zeros_like(good_steps), good_steps)
        # ---- end of the step; the record below syncs, for the check only ----
        skipped.append(bool(found))
    return model, skipped


def run_reference(steps):
    model = make_model()
    scale, good_steps, skipped = 2.0 ** 12, 0, []
    for step in range(steps):
        backward(model, step, scale)
        inv_scale = torch.tensor(1.0 / scale, device=DEVICE)
        grads = [p.grad * inv_scale for p in model.parameters()]
        found = not all(bool(torch.isfinite(g).all()) for g in grads)
        skipped.append(found)
        if found:
            scale, good_steps = scale * BACKOFF, 0
            continue
        norm = torch.linalg.vector_norm(torch.cat([g.double().reshape(-1) for g in grads]))
        coef = torch.clamp(MAX_NORM / (norm.float() + 1e-6), max=1.0)
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads):
                p.add_(g * coef, alpha=-LR)
        good_steps += 1
        if good_steps >= GROWTH_INTERVAL:
            scale, good_steps = scale * GROWTH, 0
    return model, skipped


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    steps = args.steps
    ours, ours_skipped = run_flatgather(steps)
    ref, ref_skipped = run_reference(steps)
    ok = True
    print("skipped steps: flatgather {}, reference {}".format(
        [i for i, s in enumerate(ours_skipped) if s], [i for i, s in enumerate(ref_skipped) if s]))
    if ours_skipped != ref_skipped:
        print("FAIL  the skipped steps differ")
        ok = False
    for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
        if not torch.allclose(a, b, rtol=1e-6, atol=1e-7):
            print("FAIL  parameter {} differs: max |diff| {:.3g}".format(
                name, (a - b).abs().max().item()))
            ok = False
    print("ok    same skipped steps and parameters" if ok else "mismatch")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
