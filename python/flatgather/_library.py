"""Finding and loading the compiled operators (libflatgather_torch.so)."""

import os
import pathlib

import torch

#: Environment variable naming the library to load, overriding the search.
LIBRARY_ENV = "FLATGATHER_LIBRARY"
_LIBRARY_NAME = "libflatgather_torch.so"
# python/flatgather/_library.py -> the repository root.
_REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

_BUILD_HINT = (
    "build it from the repository root with\n"
    "    cmake -S . -B build -G Ninja && ninja -C build flatgather_torch\n"
    "(the README's commands do this), or point {env} at a built {name}"
).format(env=LIBRARY_ENV, name=_LIBRARY_NAME)

_loaded_path = None


class LibraryNotFoundError(ImportError):
    """The compiled flatgather operators could not be found."""


def library_candidates():
    """The paths tried, in order: $FLATGATHER_LIBRARY alone when set, else <repo>/build/."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return [pathlib.Path(env)]
    return [_REPO_ROOT / "build" / _LIBRARY_NAME]


def find_library():
    """The path of the library to load; raises LibraryNotFoundError saying how to build it."""
    candidates = library_candidates()
    for path in candidates:
        if path.is_file():
            return path
    if os.environ.get(LIBRARY_ENV):
        raise LibraryNotFoundError(
            "flatgather: {env}={path} does not name a file; {hint}".format(
                env=LIBRARY_ENV, path=candidates[0], hint=_BUILD_HINT))
    raise LibraryNotFoundError(
        "flatgather: the compiled operators were not found at {path}; {hint}".format(
            path=candidates[0], hint=_BUILD_HINT))


def load_library():
    """Loads the operators into torch.ops.flatgather once; returns the path loaded."""
    global _loaded_path
    if _loaded_path is None:
        path = find_library()
        torch.ops.load_library(str(path))
        _loaded_path = path
    return _loaded_path


def library_path():
    """The path the operators were loaded from (None before loading)."""
    return _loaded_path
