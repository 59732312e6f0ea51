"""safetensors files from a module's whole state or a plan's tensors, and back: one gather
and one write to save, one read and one scatter to load (the C++ side does the work:
src/torch/safetensors.cpp, NOTE: [safetensors packing])."""

import os

import torch

from ._plan import Plan


def _named(obj, what):
    """(names, tensors) of a module's state_dict() or of a plan's tensors."""
    if isinstance(obj, torch.nn.Module):
        state = obj.state_dict(keep_vars=True)
        return list(state.keys()), [t.detach() for t in state.values()]
    if isinstance(obj, Plan):
        script = obj._script
        pairs = [(n, t) for n, t in zip(script.tensor_names(), script.tensors())
                 if t is not None]
        return [n for n, _ in pairs], [t.detach() for _, t in pairs]
    raise TypeError("flatgather: {} must be a torch.nn.Module or a flatgather.Plan, got "
                    "{}".format(what, type(obj).__name__))


def save_safetensors(path, source, metadata=None):
    """Writes `source` (a module: its whole state_dict(), buffers included; or a Plan: its
    tensors) to `path` as a safetensors file. Every dtype is written as is; a tied tensor once,
    under its first name. `metadata`: a dict of strings stored in the header."""
    names, tensors = _named(source, "source")
    metadata = dict(metadata or {})
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("flatgather: safetensors metadata must map str to str, got "
                            "{!r}: {!r}".format(k, v))
    torch.ops.flatgather.save_safetensors(os.fspath(path), tensors, names,
                                          list(metadata.keys()), list(metadata.values()))


def load_safetensors(path, target, strict=True):
    """Reads `path` into `target` (a module: its state_dict() tensors, in place; or a Plan's
    tensors), matching by name. Shapes must match; dtypes must match or both be floating (the
    file's values are cast as by Tensor.to()). Everything is checked before anything is
    written. strict=True: names missing from the file or file tensors matching no name are
    errors. Returns (missing, unexpected): two lists of names."""
    names, tensors = _named(target, "target")
    with torch.no_grad():
        missing, unexpected = torch.ops.flatgather.load_safetensors(
            os.fspath(path), tensors, names, bool(strict))
    return list(missing), list(unexpected)
