"""A model's whole state (parameters and batch-norm buffers: float32 and int64) saved to a
safetensors file with one gather and one write, and loaded into a fresh model with one read
and one scatter; the two models are then equal bit for bit, and the file is one a safetensors
reader understands (8-byte length, JSON header, packed data).

    python3 examples/python/checkpoint.py [PATH]
"""

import json
import os
import struct
import sys
import tempfile

import torch
from torch import nn

import flatgather


def make_model():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def main(path):
    torch.manual_seed(0)
    model = make_model()
    model.train()
    for _ in range(3):  # running statistics and num_batches_tracked move
        model(torch.randn(4, 3, 8, 8))

    flatgather.save_safetensors(path, model, metadata={"epoch": "3"})
    fresh = make_model()
    missing, unexpected = flatgather.load_safetensors(path, fresh)
    assert not missing and not unexpected, (missing, unexpected)

    state, loaded = model.state_dict(), fresh.state_dict()
    for name, t in state.items():  # bit for bit, whatever the dtype
        a = t.contiguous().reshape(-1).view(torch.uint8)
        b = loaded[name].contiguous().reshape(-1).view(torch.uint8)
        assert loaded[name].dtype == t.dtype and torch.equal(a, b), name
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    dtypes = sorted({e["dtype"] for k, e in header.items() if k != "__metadata__"})
    print("saved {} tensors ({}) in {} bytes, metadata {}; loaded bit for bit".format(
        len(state), ", ".join(dtypes), os.path.getsize(path), header["__metadata__"]))
    return model, fresh


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(os.path.join(tmp, "model.safetensors"))
