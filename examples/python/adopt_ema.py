"""An exponential moving average (EMA) of a model's weights, kept on one flat buffer.

flatgather.adopt moves the model's parameters into one flat tensor (`adopted.flat`) as views,
keeping the same Parameter objects, so the optimizer trains the model as usual and the EMA is
one in-place update over one tensor per step, instead of one per parameter. Evaluating with
the EMA weights is two flat copies (swap in, swap back).

    python3 examples/python/adopt_ema.py [--steps 40]

Checks, bit for bit, that training and the EMA equal the same loop on a model that was not
adopted (torch.optim.swa_utils.AveragedModel-style per-parameter EMA), and exits non-zero on
any difference.
"""

import argparse
import copy
import sys

import torch
from torch import nn

import flatgather


def make_model():
    return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                         nn.Linear(32, 4))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--decay", type=float, default=0.9)
    args = parser.parse_args()

    torch.manual_seed(0)
    reference = make_model()
    model = copy.deepcopy(reference)
    adopted = flatgather.adopt(model, grads=True)   # parameters and gradients: two flat tensors
    ema = adopted.flat.clone()                       # the EMA: one tensor, the flat layout

    ref_ema = [p.detach().clone() for p in reference.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ref_opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    data = torch.randn(args.steps, 8, 16)
    target = torch.randn(args.steps, 8, 4)
    for step in range(args.steps):
        # set_to_none=False keeps the gradients inside adopted.grad_flat (docs/adopt.md).
        opt.zero_grad(set_to_none=False)
        nn.functional.mse_loss(model(data[step]), target[step]).backward()
        opt.step()
        with torch.no_grad():
            ema.lerp_(adopted.flat, 1 - args.decay)  # the whole model's EMA, one operation

        ref_opt.zero_grad(set_to_none=False)
        nn.functional.mse_loss(reference(data[step]), target[step]).backward()
        ref_opt.step()
        with torch.no_grad():
            for e, p in zip(ref_ema, reference.parameters()):
                e.lerp_(p, 1 - args.decay)

    broken = adopted.check()
    if broken:
        sys.exit("views broke: {}".format(broken))

    ref_live = torch.cat([p.detach().reshape(-1) for p in reference.parameters()])
    # Evaluate with the EMA weights: swap them in, and back.
    x = torch.randn(5, 16)
    with torch.no_grad():
        live = adopted.flat.clone()
        adopted.flat.copy_(ema)
        out = model(x)
        adopted.flat.copy_(live)
        for p, e in zip(reference.parameters(), ref_ema):
            p.copy_(e)
        ref_out = reference(x)

    same = (torch.equal(live, ref_live)                      # training: the same bits
            and torch.equal(ema, torch.cat([e.reshape(-1) for e in ref_ema]))
            and torch.equal(out, ref_out)                     # the model saw the EMA
            and torch.equal(adopted.flat, live))              # and the live weights again
    print("adopted {} parameters ({} elements) into one buffer; EMA over {} steps; "
          "output with EMA weights {} the reference".format(
              len(adopted.names), adopted.flat.numel(), args.steps,
              "equals" if same else "DIFFERS FROM"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
