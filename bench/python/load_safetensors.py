"""Loading a safetensors file into a model: flatgather against the safetensors package.

    ours    flatgather.load_safetensors(path, model)   one read, one byte-plan scatter
    theirs  model.load_state_dict(safetensors.torch.load_file(path))
                                                       a tensor per entry, then a copy_ each

The file is written by the safetensors package itself (save_file of the source model's
state_dict), so neither side reads a file of its own making. The model is a ResNet-18-shaped
network built from torch.nn (basic blocks [2, 2, 2, 2], batch norms with float32 running
statistics and int64 num_batches_tracked; about 47 MB) or, with --tiny, a few kilobytes for a
smoke run. Before every run the target's state is overwritten with other values (untimed);
after every run it must equal the source model's state_dict bit for bit, on both sides.
Prints each side's median over --reps runs (after one untimed warm-up each, so the file is
in the page cache for both) and the ratio; exits non-zero on any difference.

    scripts/bench-python.sh [--tiny] [--reps N] [--threads N]

Needs the safetensors package (test-only, PyPI): scripts/bench-python.sh installs it into
build-pip/venv, the virtual environment of scripts/test-python-package.sh.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

try:
    import safetensors.torch
except ImportError:
    sys.exit("load_safetensors.py: the safetensors package is not installed in {}; run "
             "scripts/bench-python.sh, which installs it into build-pip/venv (or pip install "
             "safetensors in a virtual environment made with --system-site-packages)".format(
                 sys.executable))

import torch
from torch import nn

import flatgather


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """ResNet-18's layout (He et al. 2016) with base width `width` (64 for ResNet-18)."""

    def __init__(self, width=64, classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, cin = [], width
        for i in range(4):
            cout = width << i
            layers.append(nn.Sequential(BasicBlock(cin, cout, 1 if i == 0 else 2),
                                        BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean((2, 3)))


def make_model(tiny, seed, steps):
    """A model whose weights come from `seed` and whose running statistics and
    num_batches_tracked moved during `steps` forward passes in train mode."""
    torch.manual_seed(seed)
    model = ResNet(width=4, classes=10) if tiny else ResNet()
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(2, 3, 32, 32))
    return model


def state_bytes(model):
    """Every state_dict tensor's dtype, shape and bytes: the bit-for-bit reference."""
    return {name: (t.dtype, tuple(t.shape), t.detach().contiguous().reshape(-1).view(torch.uint8))
            for name, t in model.state_dict().items()}


def differences(model, reference):
    got = state_bytes(model)
    if got.keys() != reference.keys():
        return ["names differ: {}".format(sorted(got.keys() ^ reference.keys()))]
    return [name for name, (dtype, shape, data) in reference.items()
            if got[name][0] != dtype or got[name][1] != shape or not torch.equal(got[name][2], data)]


def poison(model, value):
    with torch.no_grad():
        for t in model.state_dict().values():
            t.fill_(value if t.is_floating_point() else -value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a model of a few kB (smoke run)")
    parser.add_argument("--reps", type=int, default=7, help="timed runs per side (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    source = make_model(args.tiny, seed=0, steps=3)
    reference = state_bytes(source)
    nbytes = sum(data.numel() for _, _, data in reference.values())
    dtypes = sorted({str(dtype)[6:] for dtype, _, _ in reference.values()})
    ours_model = make_model(args.tiny, seed=1, steps=1)
    their_model = make_model(args.tiny, seed=1, steps=1)

    sides = {
        "flatgather.load_safetensors": (ours_model,
                                        lambda path: flatgather.load_safetensors(path, ours_model)),
        "load_file + load_state_dict": (their_model,
                                        lambda path: their_model.load_state_dict(
                                            safetensors.torch.load_file(path))),
    }
    times = {name: [] for name in sides}
    failures = []
    with tempfile.TemporaryDirectory(prefix="flatgather-bench-") as tmp:
        path = os.path.join(tmp, "model.safetensors")
        safetensors.torch.save_file(source.state_dict(), path)
        for rep in range(args.reps + 1):  # run 0: the untimed warm-up
            order = list(sides.items())
            if rep % 2:
                order.reverse()  # neither side always goes first
            for name, (model, load) in order:
                poison(model, 7.0 + rep)
                start = time.perf_counter()
                load(path)
                elapsed = time.perf_counter() - start
                if rep > 0:
                    times[name].append(elapsed)
                wrong = differences(model, reference)
                if wrong:
                    failures.append("{} (run {}): {} differ, e.g. {}".format(
                        name, rep, len(wrong), wrong[:3]))

    print("load_safetensors: {} tensors ({}), {:.1f} MB, {} run{} per side, torch {} threads, {}"
          .format(len(reference), ", ".join(dtypes), nbytes / 1e6, args.reps,
                  "s" if args.reps > 1 else "", torch.get_num_threads(), flatgather.build_info()))
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, t in medians.items():
        print("  {:<30} median {:9.3f} ms  {:7.2f} GB/s".format(name, t * 1e3, nbytes / t / 1e9))
    ours, theirs = medians["flatgather.load_safetensors"], medians["load_file + load_state_dict"]
    print("  ours/theirs time: {:.2f} (below 1: ours faster); both equal the source state_dict "
          "bit for bit after every run: {}".format(ours / theirs, "yes" if not failures else "NO"))
    if failures:
        sys.exit("load_safetensors.py: FAILED\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    main()
