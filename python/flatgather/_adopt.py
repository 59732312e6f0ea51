"""flatgather.adopt: a module's parameters (and gradients) as views of one flat buffer.

A thin wrapper over torch.classes.flatgather.Adoption (src/torch/adopt_ops.cpp, the adapter's
include/flatgather/adopt.h): the module is walked here, once per call, with the walk plans use
(_plan._walk_module), and the compiled library selects, checks and swaps the storages.
docs/adopt.md says when to adopt and when to keep a plan.
"""

import json

import torch

from ._plan import _align, _check_dtype, _patterns, _walk_module

__all__ = ["adopt", "Adopted"]


def _walk(module):
    """The module's parameters as the adopt operators take them (names, tensors, flags)."""
    return _walk_module(module, True, False)


class Adopted:
    """The handle flatgather.adopt returns. Keeps the module and the buffers alive.

    The parameters stay the same Parameter objects (identity, requires_grad, hooks, optimizer
    references); only their storage is a view of `flat`. Views break when something gives a
    parameter or gradient new storage: `module.to()` / `.half()`, `p.data = ...`,
    `zero_grad(set_to_none=True)` (the default of PyTorch 2) followed by backward, backward
    with create_graph=True, or assigning a new Parameter under an adopted name. `check()`
    names what broke; `readopt()` repairs it, keeping the values the model holds now.
    """

    def __init__(self, module, script):
        self._module = module
        self._script = script

    @property
    def flat(self):
        """The flat parameter buffer: 1-D, contiguous, on the parameters' device. Writing it
        writes the parameters (outside autograd: see docs/adopt.md)."""
        return self._script.flat()

    @property
    def grad_flat(self):
        """The flat gradient buffer (the layout of `flat`), or None unless grads=True."""
        return self._script.grad_flat()

    @property
    def names(self):
        """The adopted parameters' names in selection order, tied names included."""
        return list(self._script.names())

    @property
    def released(self):
        return self._script.released()

    def manifest(self):
        """The layout as a dict, the same as Plan.from_module(...).manifest() for this
        selection, dtype and align_bytes."""
        return json.loads(self._script.manifest(2))

    def check(self):
        """Names no longer viewing the buffers, in selection order: a parameter's name when
        the parameter has other storage (or the module holds another Parameter under that
        name), "<name>.grad" (with grads=True) when a trainable parameter's gradient is None
        or other storage. Empty when all is well. Raises after release()."""
        return list(self._script.check(*_walk(self._module)))

    def readopt(self):
        """Makes every adopted parameter (and gradient) a view of the buffers again, keeping
        the values the module holds now; a None gradient becomes zeros. `flat` and
        `grad_flat` stay the same tensors unless the module was moved or cast (then they are
        new, on the new device or in the new dtype: read them again). Also adopts again after
        release()."""
        self._script.readopt(*_walk(self._module))

    def release(self):
        """Gives every parameter (and gradient) still viewing the buffers its own contiguous
        storage, values kept. The buffers stay allocated while this handle lives."""
        self._script.release()

    def __repr__(self):
        flat = self.flat
        return "flatgather.Adopted({} parameters, {} x {} on {}{}{})".format(
            len(self.names), flat.numel(), str(flat.dtype).replace("torch.", ""), flat.device,
            ", with grads" if self.grad_flat is not None else "",
            ", released" if self.released else "")


def adopt(module, parameters=True, grads=False, dtype=None, align_bytes=None, include=None,
          exclude=None, trainable_only=False):
    """Moves the selected parameters of `module` into one flat buffer and returns the handle.

    The selection is Plan.from_module's (named_parameters() order, tied parameters once;
    include/exclude globs or "re:" regexes; trainable_only), and the buffer's layout is that
    plan's: `adopted.flat` equals what `Plan.from_module(module, ...).gather()` returned
    before. grads=True also keeps the gradients in `adopted.grad_flat`, with the same
    layout, as the parameters' `.grad` from now on (existing gradients are copied in, None
    ones become zeros), so backward accumulates straight into it. Clear gradients with
    `optimizer.zero_grad(set_to_none=False)` or `adopted.grad_flat.zero_()`; set_to_none=True
    drops the views (check() reports it, readopt() repairs it).

    Refused, naming the parameter: parameters on more than one device; a dtype other than the
    flat dtype (a view cannot cast); a non-contiguous parameter (channels_last included:
    convert with `module.to(memory_format=torch.contiguous_format)`); a parameter that is a
    view of a larger storage (or adopted already); two Parameters sharing one storage.

        adopted = flatgather.adopt(model, grads=True)
        loss.backward()
        torch.distributed.all_reduce(adopted.grad_flat)   # every gradient, one call
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError("flatgather: adopt needs a torch.nn.Module, got {}".format(
            type(module).__name__))
    if parameters is not True:
        raise ValueError("flatgather: adopt adopts parameters only; parameters must be True "
                         "(got {!r})".format(parameters))
    names, tensors, is_buffer = _walk(module)
    script = torch.ops.flatgather.adopt(
        names, tensors, is_buffer, _patterns(include, "include"), _patterns(exclude, "exclude"),
        bool(grads), bool(trainable_only), _check_dtype(dtype), _align(align_bytes))
    return Adopted(module, script)
