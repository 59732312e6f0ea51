"""Models and comparisons shared by the Python tests (independent of flatgather)."""

import torch
from torch import nn

INT_VIEW = {torch.float64: torch.int64, torch.float32: torch.int32,
            torch.float16: torch.int16, torch.bfloat16: torch.int16}


def bits(t):
    """The tensor's bit patterns (floats viewed as same-width ints), contiguous."""
    t = t.contiguous()
    return t.view(INT_VIEW[t.dtype]) if t.dtype in INT_VIEW else t


def assert_bitwise(actual, expected):
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert torch.equal(bits(actual), bits(expected)), "bit patterns differ"


def reference_flat(tensors, dtype=None):
    """torch.cat of reshape(-1), cast with .to(): the definition of a gather."""
    parts = [t.detach().reshape(-1) for t in tensors]
    if dtype is not None:
        parts = [p.to(dtype) for p in parts]
    return torch.cat(parts)


def poisoned(n, dtype, device="cpu"):
    """A flat buffer full of a sentinel, so an element gather forgot to write shows up."""
    return poison_(torch.empty(n, dtype=dtype, device=device))


def poison_(t):
    """Fills `t` (any layout) in place with the sentinel and returns it: a scatter destination
    whose unwritten elements show up. Fresh torch.empty memory is often zero pages."""
    if t.dtype.is_floating_point:
        t.fill_(float("nan"))
    elif t.dtype == torch.bool:
        t.view(torch.uint8).fill_(0x5A)  # not a valid bool: an unwritten element differs in bits
    else:
        t.fill_(0x5A)
    return t


def train_step(model, x):
    """One SGD step so weights, batch-norm statistics and gradients are all non-trivial."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    loss = model(x).float().pow(2).mean()
    loss.backward()
    opt.step()


def mlp(bias=True):
    return nn.Sequential(nn.Linear(32, 64, bias=bias), nn.ReLU(), nn.Linear(64, 64, bias=bias),
                         nn.Tanh(), nn.Linear(64, 10, bias=bias))


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class TinyTransformer(nn.Module):
    def __init__(self, vocab=50, d_model=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.randn(16, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, nhead=4, dim_feedforward=64, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens):
        h = self.embed(tokens) + self.pos[: tokens.shape[1]]
        return self.head(self.norm(self.encoder(h)))


class TiedLM(nn.Module):
    """Embedding and output projection share one weight (counted once)."""

    def __init__(self, vocab=40, d_model=24):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.hidden = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, vocab, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, tokens):
        return self.out(torch.tanh(self.hidden(self.embed(tokens))))


def models():
    """(name, model, example input) for every model family the issue names, seeded."""
    torch.manual_seed(1234)
    cl = ConvBN().to(memory_format=torch.channels_last)
    half = mlp().half()
    bf16 = mlp().to(torch.bfloat16)
    out = [
        ("mlp", mlp(), torch.randn(8, 32)),
        ("mlp_nobias", mlp(bias=False), torch.randn(8, 32)),
        ("convbn", ConvBN(), torch.randn(4, 3, 12, 12)),
        ("transformer", TinyTransformer(), torch.randint(0, 50, (3, 10))),
        ("tied", TiedLM(), torch.randint(0, 40, (3, 7))),
        ("channels_last", cl, torch.randn(4, 3, 12, 12).to(memory_format=torch.channels_last)),
        ("half", half, torch.randn(8, 32).half()),
        ("bfloat16", bf16, torch.randn(8, 32).to(torch.bfloat16)),
    ]
    return out
