"""Gradient statistics computed by Plan.gather in the same pass, and device-scalar factors
(NOTE: [gather statistics] in src/stats.h)."""

import collections

import torch

GatherStats = collections.namedtuple("GatherStats", ["norm", "tensor_norms", "found_inf",
                                                     "clip_coef"])
GatherStats.__doc__ = """Results of `plan.gather(..., norm=..., tensor_norms=..., check_finite=...,
max_norm=...)`: float32 tensors on the plan's device, None when not asked for.

norm: 0-dim, the L2 norm of the values as written to the flat buffer (after `scale` and the
cast to the flat dtype). tensor_norms: 1-D, one norm per segment (plan.names() order).
found_inf: 0-dim, 1.0 when any source value is NaN or infinite, else 0.0 (GradScaler's
convention). clip_coef: 0-dim, min(1, max_norm / (norm + 1e-6)) (clip_grad_norm_'s formula)."""


def factor(value, what):
    """(float, tensor or None) for the operators from a number or a one-element tensor."""
    if value is None:
        return 1.0, None
    if isinstance(value, torch.Tensor):
        return 1.0, value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), None
    raise TypeError("flatgather: {} must be a number or a one-element float32 tensor on the "
                    "plan's device, got {}".format(what, type(value).__name__))


def gather_with_stats(script, out, scale, norm, tensor_norms, check_finite, max_norm):
    """(flat, GatherStats) from the TorchScript plan `script`."""
    if max_norm is not None:
        max_norm = float(max_norm)
    scale_value, scale_tensor = factor(scale, "scale")
    stats = script.gather_stats(out, scale_value, scale_tensor, bool(norm), bool(tensor_norms),
                                bool(check_finite), max_norm)
    return out, GatherStats(*stats)
