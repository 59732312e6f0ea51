"""Loading the library, the operators as torch.ops, TorchScript, and the quickstart example."""

import importlib.metadata
import json
import os
import pathlib
import re
import runpy
import shutil
import subprocess
import sys

import torch
from torch.nn.utils import parameters_to_vector

import flatgather
from fg_helpers import assert_bitwise, poison_

REPO = pathlib.Path(__file__).resolve().parents[2]


def _python(code_or_file, env_update, *args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "python"), env.get("PYTHONPATH", "")])
    env.update(env_update)
    return subprocess.run([sys.executable, *args, code_or_file], env=env, cwd=str(REPO),
                          capture_output=True, text=True, timeout=120)


def _package_copy(tmp_path, with_library):
    """A copy of the imported flatgather package (the .py files, and optionally the loaded
    library with its build record) in tmp_path/flatgather; returns tmp_path."""
    package = tmp_path / "flatgather"
    package.mkdir()
    for source in pathlib.Path(flatgather.__file__).parent.glob("*.py"):
        shutil.copy(source, package)
    if with_library:
        library = flatgather.library_path()
        shutil.copy(library, package)
        shutil.copy(library.with_name("flatgather_build_info.json"), package)
    return tmp_path


def _import_copy(root, env_update):
    env = dict(os.environ, PYTHONPATH=str(root), **env_update)
    code = "import flatgather; print(flatgather.library_path())"
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=str(root),
                          capture_output=True, text=True, timeout=120)


def _project_version():
    """project(VERSION) from CMakeLists.txt in a checkout, else the installed distribution's
    version (which pip took from the same line)."""
    cmake_lists = REPO / "CMakeLists.txt"
    if cmake_lists.is_file():
        return re.search(r"project\(flatgather VERSION ([0-9.]+)", cmake_lists.read_text())[1]
    return importlib.metadata.version("flatgather")


def test_library_was_loaded_and_reports_its_build():
    assert flatgather.library_path() is not None and flatgather.library_path().is_file()
    assert flatgather.__version__ == _project_version()
    info = flatgather.build_info()
    assert info.startswith("flatgather {}, LibTorch ".format(flatgather.__version__))
    assert isinstance(flatgather.cuda_available(), bool)
    # The record the loader checks before loading agrees with what the library says.
    record = flatgather._library.read_build_info(flatgather.library_path())
    assert record["version"] == flatgather.__version__
    assert info.endswith("cuda on" if record["cuda"] else "cuda off")
    libtorch = re.search(r"LibTorch ([^,]+),", info)[1]
    assert flatgather._library._release(record["torch_version"]) == \
        flatgather._library._release(libtorch)


def test_missing_library_says_how_to_build(tmp_path):
    root = _package_copy(tmp_path, with_library=False)
    result = _import_copy(root, {"FLATGATHER_LIBRARY": "/nonexistent/libx.so"})
    assert result.returncode != 0
    assert "LibraryNotFoundError" in result.stderr
    assert "FLATGATHER_LIBRARY=/nonexistent/libx.so does not name a file" in result.stderr
    assert "pip install --no-build-isolation ." in result.stderr
    assert "cmake -S . -B build" in result.stderr


def test_library_inside_the_package_is_loaded_first(tmp_path):
    root = _package_copy(tmp_path, with_library=True)
    result = _import_copy(root, {"FLATGATHER_LIBRARY": "/nonexistent/libx.so"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(root / "flatgather" / "libflatgather_torch.so")


def test_library_built_against_another_torch_is_refused(tmp_path):
    root = _package_copy(tmp_path, with_library=True)
    record_path = root / "flatgather" / "flatgather_build_info.json"
    record = json.loads(record_path.read_text())
    record["torch_version"] = "0.4.1"
    record_path.write_text(json.dumps(record))
    result = _import_copy(root, {})
    assert result.returncode != 0
    assert "TorchVersionMismatchError" in result.stderr
    assert "was built against PyTorch 0.4.1, but this process runs PyTorch {}".format(
        torch.__version__) in result.stderr
    assert "pip install --no-build-isolation --force-reinstall ." in result.stderr


def test_quickstart_example_runs():
    path = REPO / "examples" / "python_quickstart.py"
    assert len(path.read_text().strip().splitlines()) <= 10
    result = _python(str(path), {"FLATGATHER_LIBRARY": str(flatgather.library_path())})
    assert result.returncode == 0, result.stderr
    assert "gathered 4 parameters ['0.weight', '0.bias', '2.weight', '2.bias']" in result.stdout
    assert "at offsets [0, 50, 55, 65]" in result.stdout and "scattered" in result.stdout
    # In this process too, to check what it computed.
    torch.manual_seed(0)
    scope = runpy.run_path(str(path))
    model, plan, flat = scope["model"], scope["plan"], scope["flat"]
    assert plan.names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert plan.offsets == [0, 50, 55, 65] and flat.shape == torch.Size([67])
    halved = parameters_to_vector(model.parameters()).detach()
    assert torch.equal(halved, flat.detach() * 0.5)


def test_operators_are_registered_in_torch_ops():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 3, generator=gen), torch.randn(4, generator=gen).half()
    flat = torch.ops.flatgather.gather([a, b], torch.float32, 0)
    assert torch.equal(flat, torch.cat([a.reshape(-1), b.float()]))
    c, d = poison_(torch.empty(2, 3)), poison_(torch.empty(4, dtype=torch.half))
    torch.ops.flatgather.scatter(flat, [c, d], torch.float32)
    assert torch.equal(c, a) and torch.equal(d, b)
    plan = torch.ops.flatgather.plan_from_tensors([a, b], ["a", "b"], torch.float32)
    assert plan.names() == ["a", "b"] and plan.numel() == 10 and plan.dtype() == "float32"


def test_operators_work_in_torchscript():
    @torch.jit.script
    def flatten(ts: list[torch.Tensor]) -> torch.Tensor:
        return torch.ops.flatgather.gather(ts, None, 0)

    gen = torch.Generator().manual_seed(2)
    ts = [torch.randn(3, 3, generator=gen), torch.randn(2, generator=gen)]
    assert torch.equal(flatten(ts), torch.cat([t.reshape(-1) for t in ts]))


class _ScriptedUpdate(torch.nn.Module):
    """Scripted code that builds the TorchScript class and calls its methods: the plan lives
    only inside TorchScript, which must survive torch.jit.save / torch.jit.load."""

    def __init__(self, a, b):
        super().__init__()
        self.a = a
        self.b = b

    def forward(self, update: torch.Tensor, alpha: float) -> torch.Tensor:
        plan = torch.ops.flatgather.plan_from_tensors([self.a, self.b], ["a", "b"], None, 0, 0,
                                                     True)
        return _scripted_step(plan, update, alpha)


@torch.jit.script
def _scripted_step(plan: torch.classes.flatgather.Plan, update: torch.Tensor,
                   alpha: float) -> torch.Tensor:
    plan.scatter_add(update, alpha)
    return plan.gather()


def test_plan_class_used_from_scripted_code_saved_and_loaded(tmp_path):
    gen = torch.Generator().manual_seed(5)
    a, b = torch.randn(4, 3, generator=gen), torch.randn(5, generator=gen)
    module = torch.jit.script(_ScriptedUpdate(a.clone(), b.clone()))
    path = tmp_path / "scripted_update.pt"
    torch.jit.save(module, str(path))
    loaded = torch.jit.load(str(path))
    assert "flatgather" in loaded.code  # the loaded code still calls the library
    update = torch.randn(17, generator=gen)
    # alpha = 0.5 makes alpha * u exact, so torch's add rounds once, as scatter_add does.
    flat = loaded(update, 0.5)
    expected = torch.cat([a.reshape(-1), b]).add(update, alpha=0.5)
    assert_bitwise(flat, expected)
    assert_bitwise(torch.cat([loaded.a.reshape(-1), loaded.b]), expected)
    assert_bitwise(torch.cat([module.a.reshape(-1), module.b]), torch.cat([a.reshape(-1), b]))


def test_plan_repr_and_layout_properties():
    plan = flatgather.Plan({"w": torch.randn(2, 3), "b": torch.randn(3)}, align_bytes=16)
    assert plan.names == ["w", "b"] and plan.offsets == [0, 8]
    assert plan.numels == [6, 3] and plan.shapes == [torch.Size([2, 3]), torch.Size([3])]
    assert plan.align_bytes == 16 and plan.device == torch.device("cpu") and len(plan) == 2
    assert plan.numel == 12  # the end is padded to the alignment too
    assert repr(plan) == "flatgather.Plan(2 segments, 12 x float32 on cpu)"
    flat = torch.arange(12.0)
    w, b = plan.views(flat)
    assert w.data_ptr() == flat.data_ptr() and torch.equal(b, torch.tensor([8.0, 9.0, 10.0]))
    assert plan.empty_flat().shape == torch.Size([12])
    assert "cpu" in plan.describe()
