"""flatgather.Plan and the one-off gather/scatter, over torch.ops.flatgather (src/torch/ops.cpp).

Everything that moves data runs in the compiled library; this module only turns Python
arguments into operator arguments, keeps the layout facts at hand, and adds autograd
(see _GatherFunction).
"""

import collections.abc
import json

import torch

from ._stats import factor, gather_with_stats

__all__ = ["Plan", "gather", "scatter"]

_KINDS = ("all", "weights", "biases")
# Python spellings of the adapter's MissingGrad policies -> the operator's names.
_MISSING_GRAD = {"error": "error", "zero": "zero", "zero_fill": "zero", "zerofill": "zero",
                 "skip": "skip"}


def _ops():
    return torch.ops.flatgather


def _tensor_list(tensors, names, what="tensors"):
    """(list of tensors, list of names) from a sequence, an iterable or a name -> tensor mapping."""
    if isinstance(tensors, torch.Tensor):
        raise TypeError("flatgather: {} must be a list of tensors, got a single tensor; "
                        "wrap it in a list: [t]".format(what))
    if isinstance(tensors, collections.abc.Mapping):
        if names is not None:
            raise TypeError("flatgather: names were given twice: as the keys of the {} "
                            "mapping and as names=".format(what))
        names = [str(k) for k in tensors.keys()]
        tensors = list(tensors.values())
    else:
        try:
            tensors = list(tensors)
        except TypeError:
            raise TypeError("flatgather: {} must be an iterable of tensors, got {}".format(
                what, type(tensors).__name__)) from None
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            label = names[i] if names is not None and i < len(names) else "{}[{}]".format(what, i)
            hint = (" (an undefined gradient? use Plan.from_module(..., grads=True, "
                    "missing_grad='zero' or 'skip'))" if t is None else "")
            raise TypeError("flatgather: {} is {}, not a tensor{}".format(
                label, "None" if t is None else type(t).__name__, hint))
    if names is None:
        names = []
    else:
        names = [str(n) for n in names]
        if len(names) != len(tensors):
            raise ValueError("flatgather: got {} names for {} tensors; give one name per tensor "
                             "or none".format(len(names), len(tensors)))
    return tensors, names


def _check_dtype(dtype):
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError("flatgather: dtype must be a torch.dtype or None, got {!r}".format(dtype))
    return dtype


def _align(align_bytes):
    if align_bytes is None:
        return 0
    if isinstance(align_bytes, bool) or not isinstance(align_bytes, int):
        raise TypeError("flatgather: align_bytes must be an int or None, got {!r}".format(
            align_bytes))
    return align_bytes


def _patterns(patterns, what):
    if patterns is None:
        return []
    if isinstance(patterns, str):
        return [patterns]
    patterns = list(patterns)
    for p in patterns:
        if not isinstance(p, str):
            raise TypeError("flatgather: {} must be a str or a list of str (globs, or 're:' "
                            "regexes), got an element {!r}".format(what, p))
    return patterns


def _walk_module(module, parameters, buffers):
    """Dotted names, tensors and buffer flags of every path through `module`, in the order
    torch::nn::Module enumerates them: for each submodule in pre-order, its own parameters,
    then its own buffers. Tied tensors and shared submodules appear under every name; the
    library keeps the first and records the others as aliases (Python's named_parameters()
    keeps the same first one).

    This is the module's only walk: the operator selects from this list itself
    (flatgather::torch::Plan::from_named), as the C++ from_module does from its own walk."""
    names, tensors, is_buffer = [], [], []
    on_path = set()

    def visit(m, prefix):
        if id(m) in on_path:  # a module containing itself: stop, as named_modules() would
            return
        on_path.add(id(m))
        if parameters:
            for key, p in m._parameters.items():
                if p is not None:
                    names.append(prefix + key)
                    tensors.append(p)
                    is_buffer.append(False)
        if buffers:
            for key, b in m._buffers.items():
                if b is not None:
                    names.append(prefix + key)
                    tensors.append(b)
                    is_buffer.append(True)
        for key, child in m._modules.items():
            if child is not None:
                visit(child, prefix + key + ".")
        on_path.discard(id(m))

    visit(module, "")
    return names, tensors, is_buffer


class _GatherFunction(torch.autograd.Function):
    """flat = plan.gather() as an autograd node.

    Backward splits the incoming flat gradient into one piece per segment, reshapes it like
    the tensor and casts it to the tensor's dtype, all with differentiable torch ops, so
    create_graph=True (double backward) works. A tensor given twice (an alias) gets the
    gradient once, on its first occurrence, because the flat buffer holds it once."""

    @staticmethod
    def forward(ctx, plan, *tensors):
        ctx.plan = plan
        return plan._script.gather()

    @staticmethod
    def backward(ctx, grad_flat):
        return (None,) + ctx.plan._grads_from_flat(grad_flat, ctx.needs_input_grad[1:])


class Plan:
    """A plan over a fixed list of tensors: built once, then gather/scatter/scatter_add as
    often as needed, each one pass over the data with no per-call planning.

    Order: the order of `tensors` (for a mapping, its iteration order). A tensor's elements
    appear in its logical row-major order (`t.reshape(-1)`) whatever its strides. With the
    default options `plan.gather()` equals `torch.cat([t.reshape(-1) for t in tensors])` bit
    for bit. `dtype` casts on gather (round to nearest even, the bits of `Tensor.to()`) and
    back on scatter. `align_bytes` pads each segment's start; padding is written as zeros.
    A tensor given twice (tied) is stored once; its later names are aliases.

    The plan keeps its tensors alive and checks before each call that they still have the
    planned shape, strides, dtype and device (check_tensors=False skips that host-side check).

        plan = flatgather.Plan(model.parameters())
        flat = plan.gather()           # == parameters_to_vector(model.parameters())
        plan.scatter(flat * 0.5)       # copies into the parameters' own storage
    """

    def __init__(self, tensors, dtype=None, align_bytes=None, names=None, num_threads=0,
                 check_tensors=True):
        tensors, names = _tensor_list(tensors, names)
        script = _ops().plan_from_tensors(tensors, names, _check_dtype(dtype),
                                          _align(align_bytes), int(num_threads),
                                          bool(check_tensors))
        self._setup(script, inputs=tensors, grad_params=None)

    @classmethod
    def from_module(cls, module, parameters=True, buffers=False, grads=False,
                    trainable_only=False, include=None, exclude=None, dtype=None,
                    align_bytes=None, kind="all", missing_grad="error", num_threads=0,
                    check_tensors=True):
        """A plan over a module's selected parameters, buffers, or parameters' gradients.

        Order: for each submodule in pre-order its own parameters, then its own buffers, i.e.
        `named_parameters()` order, and `state_dict()` order when buffers are included.
        kind: "all", "weights" or "biases" (the last name component contains "weight" or
        "bias"). include/exclude: a name pattern or a list of them, each a glob ("*", "?",
        e.g. "encoder.*.weight") or "re:<regex>", matched against the whole dotted name.
        grads=True: the parameters' .grad; a gradient reallocated later (zero_grad with
        set_to_none, then backward) is picked up on the next call. missing_grad: what to do
        with an undefined gradient: "error", "zero" (gather writes zeros, scatter skips it)
        or "skip" (leave the parameter out).

            plan = flatgather.Plan.from_module(model, grads=True, trainable_only=True)
            g = plan.gather()
        """
        if not isinstance(module, torch.nn.Module):
            raise TypeError("flatgather: from_module needs a torch.nn.Module, got {}".format(
                type(module).__name__))
        if kind not in _KINDS:
            raise ValueError("flatgather: kind={!r} is not valid; use 'all', 'weights' or "
                             "'biases'".format(kind))
        policy = _MISSING_GRAD.get(str(missing_grad).lower())
        if policy is None:
            raise ValueError("flatgather: missing_grad={!r} is not valid; use 'error', 'zero' "
                             "or 'skip'".format(missing_grad))
        names, tensors, is_buffer = _walk_module(module, bool(parameters), bool(buffers))
        script = _ops().plan_from_module(
            names, tensors, is_buffer, _patterns(include, "include"),
            _patterns(exclude, "exclude"), bool(parameters), bool(buffers), bool(grads), kind,
            bool(trainable_only), policy, _check_dtype(dtype), _align(align_bytes),
            int(num_threads), bool(check_tensors))
        plan = cls.__new__(cls)
        if grads:
            by_name = {n: t for n, t, b in zip(names, tensors, is_buffer) if not b}
            plan._setup(script, inputs=None,
                        grad_params=[by_name[n] for n in script.tensor_names()])
        else:
            plan._setup(script, inputs=list(script.tensors()), grad_params=None)
        return plan

    # ---- construction helpers -----------------------------------------------------------
    def _setup(self, script, inputs, grad_params):
        self._script = script
        self._inputs = inputs
        self._grad_params = grad_params
        self._numel = script.numel()
        self._dtype = getattr(torch, script.dtype())
        self._device = torch.device(script.device())
        self._names = list(script.names())
        self._offsets = list(script.offsets())
        self._numels = list(script.segment_numels())
        self._shapes = [torch.Size(s) for s in script.segment_shapes()]
        self._segment_dtypes = [getattr(torch, d) for d in script.segment_dtypes()]
        self._aliases = [list(a) for a in script.segment_aliases()]
        self._tensor_segments = list(script.tensor_segments())
        # The flat buffer cut into segments and the padding between them, for backward.
        sizes, piece_of_segment, pos = [], [], 0
        for offset, n in zip(self._offsets, self._numels):
            if offset > pos:
                sizes.append(offset - pos)
            piece_of_segment.append(len(sizes))
            sizes.append(n)
            pos = offset + n
        if self._numel > pos:
            sizes.append(self._numel - pos)
        self._split_sizes = sizes
        self._piece_of_segment = piece_of_segment

    def _current_inputs(self):
        if self._grad_params is not None:
            return [p.grad for p in self._grad_params]
        return self._inputs

    def _grads_from_flat(self, grad_flat, needs_grad):
        pieces = grad_flat.split(self._split_sizes)
        grads, done = [], set()
        for needs, seg in zip(needs_grad, self._tensor_segments):
            if not needs or seg in done:
                grads.append(None)
                continue
            done.add(seg)
            g = pieces[self._piece_of_segment[seg]].reshape(self._shapes[seg])
            if g.dtype != self._segment_dtypes[seg]:
                g = g.to(self._segment_dtypes[seg])
            grads.append(g)
        return tuple(grads)

    # ---- data movement ------------------------------------------------------------------
    def gather(self, out=None, *, scale=None, norm=False, tensor_norms=False,
               check_finite=False, max_norm=None):
        """The flat tensor (a new one, or `out`: 1-D, contiguous, numel elements of dtype on
        device, not overlapping any source).

        With `scale` (a number or a one-element float32 tensor on the plan's device, e.g.
        1 / loss_scale) every value is written as cast(value * scale). Asking for `norm`,
        `tensor_norms`, `check_finite` or `max_norm` computes them in the same pass and returns
        `(flat, stats)` (a GatherStats of device tensors; nothing waits for the host), with the
        same bits on every call. A gather with a scale or statistics records no autograd.

        Without `out`, the result is differentiable when grad mode is on and a tensor requires
        grad: its backward hands each tensor its slice of the incoming gradient, cast to the
        tensor's dtype (create_graph=True works). Under torch.no_grad() nothing is recorded.
        `out=` is written like a copy under no_grad: it never records autograd history."""
        if norm or tensor_norms or check_finite or max_norm is not None:
            if out is None:
                out = self._script.empty_flat()
            return gather_with_stats(self._script, out, scale, norm, tensor_norms,
                                     check_finite, max_norm)
        if scale is not None:
            flat = self._script.empty_flat() if out is None else out
            return gather_with_stats(self._script, flat, scale, False, False, False, None)[0]
        if out is not None:
            if out.requires_grad and torch.is_grad_enabled():
                raise RuntimeError(
                    "flatgather: gather(out=...) writes without recording autograd, but `out` "
                    "requires grad; pass an out tensor that does not require grad, or call "
                    "gather() without out= for a differentiable result")
            self._script.gather_into(out)
            return out
        if torch.is_grad_enabled() and self._dtype.is_floating_point:  # a byte buffer: no grad
            inputs = self._current_inputs()
            if any(t is not None and t.requires_grad for t in inputs):
                return _GatherFunction.apply(self, *inputs)
        return self._script.gather()

    def scatter(self, flat, scale=None):
        """Copies `flat` (times `scale`, a number or a one-element float32 tensor on the plan's
        device, when given) back into the tensors' own storage (cast to each tensor's dtype).
        Unlike torch.nn.utils.vector_to_parameters it never rebinds `.data`: tensors keep
        their storage, so optimizers, hooks and CUDA graphs holding them keep working. Each
        written tensor's version counter is bumped, as by an in-place copy_."""
        if scale is None:
            self._script.scatter(flat)
        else:
            self._script.scatter_scaled(flat, *factor(scale, "scale"))

    def scatter_add(self, flat, alpha=1.0):
        """`t += alpha * segment` for every tensor (the L-BFGS `_add_grad` update), computed in
        float32 (float64 when the tensor or the flat buffer is float64), rounded once. `alpha`
        is a number or a one-element float32 tensor on the plan's device (read when the call
        runs: `-lr * stats.clip_coef` needs no host sync)."""
        if isinstance(alpha, torch.Tensor):
            self._script.scatter_add_factor(flat, *factor(alpha, "alpha"))
        else:
            self._script.scatter_add(flat, float(alpha))

    def views(self, flat):
        """One view into `flat` per segment, shaped like its tensor. The flat dtype must equal
        every tensor's dtype, or be torch.uint8 (a byte buffer: views of each tensor's own
        dtype)."""
        return list(self._script.views(flat))

    def empty_flat(self):
        """An uninitialized flat tensor of the right dtype, length and device."""
        return self._script.empty_flat()

    # ---- layout -------------------------------------------------------------------------
    @property
    def numel(self):
        """Elements of the flat buffer, padding included."""
        return self._numel

    @property
    def dtype(self):
        """The flat buffer's torch.dtype."""
        return self._dtype

    @property
    def device(self):
        return self._device

    @property
    def names(self):
        """Segment names in flat order (aliases not repeated)."""
        return list(self._names)

    @property
    def offsets(self):
        """First flat element of each segment, in flat order."""
        return list(self._offsets)

    @property
    def shapes(self):
        return list(self._shapes)

    @property
    def numels(self):
        return list(self._numels)

    @property
    def aliases(self):
        """{segment name: [alias names]} for segments with aliases (tied tensors)."""
        return {n: list(a) for n, a in zip(self._names, self._aliases) if a}

    @property
    def align_bytes(self):
        return self._script.align_bytes()

    @property
    def tensors(self):
        """The tensors the plan reads (for gradient plans: as of the last call)."""
        return list(self._script.tensors())

    def manifest(self):
        """The layout as a JSON-serializable dict: flat dtype, numel, align_bytes, and per
        segment name, aliases, dtype, shape, offset, numel."""
        return json.loads(self._script.manifest(2))

    def manifest_json(self, indent=2):
        return self._script.manifest(int(indent))

    def check_manifest(self, manifest):
        """Raises RuntimeError naming the first difference from a manifest (dict or JSON text)
        saved earlier; returns None when this plan's layout equals it."""
        if not isinstance(manifest, str):
            manifest = json.dumps(manifest)
        self._script.check_manifest(manifest)

    def describe(self):
        """The executor and its tuning, e.g. 'cpu (threads=2, ...)'."""
        return self._script.describe()

    def __len__(self):
        return len(self._names)

    def __repr__(self):
        return "flatgather.Plan({} segments, {} x {} on {})".format(
            len(self._names), self._numel, str(self._dtype).replace("torch.", ""),
            self._device)


def gather(tensors, dtype=None, align_bytes=None):
    """One-off gather: `torch.cat([t.reshape(-1) for t in tensors])`, cast to `dtype`, in one
    pass. Differentiable like Plan.gather. For repeated use build a Plan once."""
    tensors, _ = _tensor_list(tensors, None)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return Plan(tensors, dtype=dtype, align_bytes=align_bytes, check_tensors=False).gather()
    return _ops().gather(tensors, _check_dtype(dtype), _align(align_bytes))


def scatter(flat, tensors, dtype=None, align_bytes=None):
    """One-off scatter: copies `flat` into `tensors`' own storage, the inverse of
    gather(tensors, dtype, align_bytes). `dtype` is the flat dtype those tensors were gathered
    with (default: their common dtype); a flat tensor of another dtype is an error."""
    tensors, _ = _tensor_list(tensors, None)
    _ops().scatter(flat, tensors, _check_dtype(dtype), _align(align_bytes))
