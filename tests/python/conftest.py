"""Python tests of flatgather's operators.

The whole directory is skipped, with the reason, when the compiled library is absent and
FLATGATHER_REQUIRE_LIBRARY is not set; with it set (CI), an absent library fails the run.
A library that exists but does not load always fails.

In a checkout the tests use the repository's python/ when no flatgather is importable
otherwise; copied elsewhere (scripts/test-python-package.sh) they test the installed package.
"""

import importlib.util
import os
import pathlib
import sys

import pytest

_REPO = pathlib.Path(__file__).resolve().parents[2]
if (importlib.util.find_spec("flatgather") is None
        and (_REPO / "python" / "flatgather").is_dir()):
    sys.path.insert(0, str(_REPO / "python"))

# The package loads the library on import, so probe with its locator module on its own.
_found = importlib.util.find_spec("flatgather")
if _found is None:
    raise ImportError("flatgather is neither installed nor in a checkout's python/ ({})".format(
        _REPO / "python"))
_package = pathlib.Path(_found.submodule_search_locations[0])
_spec = importlib.util.spec_from_file_location(
    "_flatgather_library_probe", str(_package / "_library.py"))
_probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_probe)

_MISSING = None
try:
    _probe.find_library()
except _probe.LibraryNotFoundError as error:
    if os.environ.get("FLATGATHER_REQUIRE_LIBRARY"):
        raise _probe.LibraryNotFoundError(
            "FLATGATHER_REQUIRE_LIBRARY is set but the library is missing: {}".format(error)
        ) from None
    _MISSING = "flatgather's Python tests need the compiled operators: {}".format(error)


if _MISSING is not None:
    class _SkippedModule(pytest.Module):
        """A test module reported as skipped, with the reason, without importing it."""

        def collect(self):
            pytest.skip(_MISSING)

    def pytest_pycollect_makemodule(module_path, parent):
        return _SkippedModule.from_parent(parent, path=module_path)

    def pytest_sessionfinish(session, exitstatus):
        # Every module skipped counts as "no tests collected" (exit code 5): report success.
        if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK


# Devices the suites run on: the CPU, and CUDA where torch sees a device.
# FLATGATHER_REQUIRE_GPU=1 (scripts/gpu-check.sh on a GPU machine) makes a missing device an
# error instead of a CPU-only run.
import torch  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pytest_configure(config):
    if os.environ.get("FLATGATHER_REQUIRE_GPU") == "1" and "cuda" not in DEVICES:
        raise pytest.UsageError("FLATGATHER_REQUIRE_GPU=1 but torch.cuda.is_available() is False")


@pytest.fixture(params=DEVICES)
def device(request):
    """Each device present, in turn ('cpu', then 'cuda' where available)."""
    return torch.device(request.param)
