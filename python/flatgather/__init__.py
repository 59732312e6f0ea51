"""flatgather: gather many tensors into one flat buffer in one pass, and scatter back.

Python front end of the C++ library: the work runs in the compiled operators
(torch.ops.flatgather), loaded from this package (`pip install --no-build-isolation .`),
$FLATGATHER_LIBRARY or <repo>/build/libflatgather_torch.so; see _library.py.

    import flatgather
    plan = flatgather.Plan.from_module(model)   # every parameter, named_parameters() order
    flat = plan.gather()                        # == parameters_to_vector(model.parameters())
    plan.scatter(flat)                          # copies back into the parameters' storage
"""

import re

import torch

from ._library import (LIBRARY_ENV, LibraryNotFoundError, TorchVersionMismatchError,
                       find_library, library_path, load_library)

load_library()

from ._plan import Plan, gather, scatter  # noqa: E402  (needs the operators loaded)
from ._adopt import Adopted, adopt  # noqa: E402
from ._safetensors import load_safetensors, save_safetensors  # noqa: E402
from ._stats import GatherStats  # noqa: E402

__all__ = ["Plan", "GatherStats", "gather", "scatter", "adopt", "Adopted", "save_safetensors",
           "load_safetensors", "build_info", "cuda_available", "library_path", "find_library",
           "load_library", "LibraryNotFoundError", "TorchVersionMismatchError", "LIBRARY_ENV",
           "__version__"]


def build_info():
    """'flatgather 0.1.0, LibTorch 1.13.0, cuda off': what the loaded library was built with."""
    return torch.ops.flatgather.build_info()


def cuda_available():
    """True when the library was built with CUDA and a device can be used."""
    return torch.ops.flatgather.cuda_available()


#: The loaded library's version, whose one home is project(VERSION) in CMakeLists.txt.
__version__ = re.match(r"flatgather (\S+),", build_info()).group(1)
