"""Finding and loading the compiled operators (libflatgather_torch.so).

The library is a plain shared library that registers torch.ops.flatgather (TORCH_LIBRARY);
it is loaded with torch.ops.load_library, not imported as an extension module. It is looked
for, in order:
  1. inside this package (where `pip install --no-build-isolation .` puts it);
  2. $FLATGATHER_LIBRARY;
  3. <repo>/build/, when this package is the repository's python/flatgather (developers).

NOTE: [torch version check]
LibTorch has no stable C++ ABI: a library built against one PyTorch and loaded by another
fails with undefined symbols, or worse. The build writes flatgather_build_info.json next to
the library (cmake/FlatgatherPython.cmake) with the PyTorch version it compiled against;
the loader compares it with the running torch before loading and says how to rebuild.
"""

import json
import os
import pathlib
import re

import torch

#: Environment variable naming the library to load when the package holds none.
LIBRARY_ENV = "FLATGATHER_LIBRARY"
_LIBRARY_NAME = "libflatgather_torch.so"
_BUILD_INFO_NAME = "flatgather_build_info.json"
_PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
# python/flatgather/_library.py -> the repository root, when run from a source checkout.
_REPO_ROOT = _PACKAGE_DIR.parents[1]
_IN_SOURCE_TREE = (_PACKAGE_DIR.parent.name == "python"
                   and (_REPO_ROOT / "CMakeLists.txt").is_file())

_BUILD_HINT = (
    "install the package from the repository root with\n"
    "    pip install --no-build-isolation .\n"
    "or build it there with\n"
    "    cmake -S . -B build -G Ninja && ninja -C build flatgather_torch\n"
    "(the README's commands do this), or point {env} at a built {name}"
).format(env=LIBRARY_ENV, name=_LIBRARY_NAME)

_loaded_path = None


class LibraryNotFoundError(ImportError):
    """The compiled flatgather operators could not be found."""


class TorchVersionMismatchError(ImportError):
    """The library was built against another PyTorch than the one running."""


def library_candidates():
    """The paths tried, in order: the package's own library, $FLATGATHER_LIBRARY, build/."""
    candidates = [_PACKAGE_DIR / _LIBRARY_NAME]
    env = os.environ.get(LIBRARY_ENV)
    if env:
        candidates.append(pathlib.Path(env))
    elif _IN_SOURCE_TREE:
        candidates.append(_REPO_ROOT / "build" / _LIBRARY_NAME)
    return candidates


def find_library():
    """The path of the library to load; raises LibraryNotFoundError saying how to build it."""
    candidates = library_candidates()
    for path in candidates:
        if path.is_file():
            return path
    env = os.environ.get(LIBRARY_ENV)
    if env:
        raise LibraryNotFoundError(
            "flatgather: {env}={path} does not name a file; {hint}".format(
                env=LIBRARY_ENV, path=env, hint=_BUILD_HINT))
    raise LibraryNotFoundError(
        "flatgather: the compiled operators were not found (tried {paths}); {hint}".format(
            paths=", ".join(str(p) for p in candidates), hint=_BUILD_HINT))


def _release(version):
    """'2.11.0+cu130' or '1.13.0a0+gitunknown' -> (2, 11, 0) / (1, 13, 0)."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    return tuple(int(part or 0) for part in match.groups()) if match else None


def read_build_info(path):
    """The build record next to the library at `path` (a dict), or None when there is none."""
    info_path = pathlib.Path(path).with_name(_BUILD_INFO_NAME)
    if not info_path.is_file():
        return None
    with open(info_path, encoding="utf-8") as f:
        return json.load(f)


def check_torch_version(path):
    """Raises TorchVersionMismatchError unless the library at `path` was built against the
    running PyTorch (see NOTE: [torch version check]); a library without a record passes."""
    info = read_build_info(path)
    if info is None:
        return
    built = info.get("torch_version", "")
    if _release(built) == _release(torch.__version__):
        return
    raise TorchVersionMismatchError(
        "flatgather: {path} was built against PyTorch {built}, but this process runs PyTorch "
        "{running} (from {where}); the operators must be compiled against the PyTorch that "
        "loads them. Rebuild flatgather with this PyTorch: from the repository root run\n"
        "    pip install --no-build-isolation --force-reinstall .\n"
        "(or, for a CMake build, reconfigure build/ against this PyTorch and rebuild)".format(
            path=path, built=built or "(unknown)", running=torch.__version__,
            where=pathlib.Path(torch.__file__).parent))


def load_library():
    """Loads the operators into torch.ops.flatgather once; returns the path loaded."""
    global _loaded_path
    if _loaded_path is None:
        path = find_library()
        check_torch_version(path)
        torch.ops.load_library(str(path))
        _loaded_path = path
    return _loaded_path


def library_path():
    """The path the operators were loaded from (None before loading)."""
    return _loaded_path
