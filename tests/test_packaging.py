"""The wheel installs one top-level package, `freshlake`, and imports beside mosaicml-streaming.

Databricks ML runtimes ship mosaicml-streaming, whose top-level package is `streaming`; the
layout's streaming/, training/, features/ and jobs/ folders must install under `freshlake`.
The slow tests build the wheel from a copy of the source tree, install it into a fresh
environment laid out like a GPU ML runtime (CUDA torch, torchvision, mosaicml-streaming), import
every module of both, and run a job file with that environment's spark-submit.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from freshlake.cli import COMMANDS

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _load_stage_layout():
    spec = importlib.util.spec_from_file_location(
        "stage_layout", REPO / "deploy" / "stage_layout.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stage_layout = _load_stage_layout()


def source_packages() -> set[str]:
    """Every folder of the source tree that holds Python files, named as it installs."""
    roots = {"freshlake": REPO / "freshlake"} | {
        package: REPO / folder
        for package, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items()
    }
    found = set()
    for package, root in roots.items():
        for path in root.rglob("*.py"):
            parts = path.parent.relative_to(root).parts
            if "__pycache__" not in parts:
                found.add(".".join((package, *parts)))
    return found


def test_every_source_folder_is_a_listed_package():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    missing = source_packages() - listed
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    for package, source in stage_layout.package_sources().items():
        assert (source / "__init__.py").is_file(), f"{package}: no {source}/__init__.py"


def test_import_contracts_name_every_command_module_as_an_entry_point():
    contracts = {c["name"]: c for c in PYPROJECT["tool"]["importlinter"]["contracts"]}
    entry = contracts["Only entry points import entry points"]
    commands = {m for m in COMMANDS.values() if not m.startswith("freshlake.jobs.")}
    listed = set(entry["protected_modules"])
    assert commands | {"freshlake.cli", "freshlake.jobs"} <= listed
    assert set(entry["allowed_importers"]) == listed


# --- the built wheel, installed beside mosaicml-streaming (slow: 6-8 min, 3 GB of wheels) ---

# An ML runtime's torch is the CUDA build: PyPI's torchvision wheels load only with its CUDA
# libraries, and `import streaming` imports torchvision. `===` takes PyPI's 2.13.0, not a local
# `2.13.0+cpu` wheel.
RUNTIME = ["torch===2.13.0", "torchvision==0.28.0", "mosaicml-streaming==0.13.0"]
# The registry's responses carry no cache headers, so pip's own cache keeps none of these ~3 GB
# of wheels: `pip download` keeps them here between runs and skips the files it already has.
WHEELHOUSE = Path(
    os.environ.get("FRESHLAKE_WHEELHOUSE", Path.home() / ".cache" / "freshlake" / "wheelhouse")
)

CHECK_IMPORTS = """
import importlib, importlib.metadata, json, pkgutil, sysconfig
from pathlib import Path
import freshlake
names = sorted(m.name for m in pkgutil.walk_packages(freshlake.__path__, "freshlake."))
files = {n: importlib.import_module(n).__file__ for n in ["freshlake", *names]}
import streaming
mosaic = importlib.metadata.distribution("mosaicml-streaming")
print(json.dumps({
    "site_packages": sysconfig.get_paths()["purelib"],
    "freshlake_files": files,
    "streaming_file": str(Path(streaming.__file__).resolve()),
    "mosaic_streaming_init": str(Path(mosaic.locate_file("streaming/__init__.py")).resolve()),
    "streaming_version": streaming.__version__,
    "has_streaming_dataset": hasattr(streaming, "StreamingDataset"),
    "freshlake_dist_files": [str(f) for f in importlib.metadata.distribution("freshlake").files],
}))
"""


def run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, (
        f"{cmd[:4]}... failed:\n{(result.stdout + result.stderr)[-4000:]}"
    )
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built with pip from a copy of the source tree (no build/ left in the checkout)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in {"freshlake", *PYPROJECT["tool"]["setuptools"]["package-dir"].values()}:
        shutil.copytree(REPO / folder, source / folder, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    dist = work / "dist"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), str(source)],
        timeout=600,
    )
    (built,) = dist.glob("freshlake-*.whl")
    return built


@pytest.fixture(scope="module")
def runtime_env(wheel, tmp_path_factory):
    """A fresh venv: the ML runtime's packages first, then the wheel with its dependencies."""
    work = tmp_path_factory.mktemp("runtime")
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip"]
    run([*pip, "download", "--quiet", "--dest", str(WHEELHOUSE), *RUNTIME], timeout=1800)
    run([*pip, "install", "--quiet", "--no-index", "--find-links", str(WHEELHOUSE), *RUNTIME], 1800)
    # Installing the wheel must not swap the runtime's torch. It does move numpy up to our pin
    # (mosaicml-streaming 0.13.0 asks for numpy < 2.2, freshlake for 2.4): pip warns and goes on,
    # as it does on a runtime; the imports below are what must still work.
    pin = work / "torch-pin.txt"
    pin.write_text("torch===2.13.0\n")
    run([*pip, "install", "--quiet", "--constraint", str(pin), str(wheel)], timeout=1800)
    yield python
    shutil.rmtree(venv)  # several GB: not left behind in pytest's kept temp folders


@pytest.mark.slow
def test_wheel_installs_nothing_top_level_but_freshlake(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD"))
        top_level = archive.read(f"{dist_info}/top_level.txt").decode().split()
        record = archive.read(f"{dist_info}/RECORD").decode().splitlines()
    assert top_level == ["freshlake"]
    recorded = {line.rsplit(",", 2)[0] for line in record}
    assert {PurePosixPath(path).parts[0] for path in recorded} == {"freshlake", dist_info}
    modules = {path for path in recorded if path.endswith(".py")}
    # Every module of the source tree, as spark-submit's zip stages it, and nothing else.
    assert modules == set(stage_layout.layout_files())
    assert "freshlake/py.typed" in recorded


@pytest.mark.slow
def test_wheel_imports_beside_mosaicml_streaming(runtime_env, tmp_path):
    # -I: no current folder or PYTHON* variables on the path, only the installed packages.
    result = run([str(runtime_env), "-I", "-c", CHECK_IMPORTS], timeout=600, cwd=tmp_path)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    installed = {
        name: Path(path).relative_to(found["site_packages"]).as_posix()
        for name, path in found["freshlake_files"].items()
    }
    assert {"freshlake.features", "freshlake.jobs", "freshlake.streaming"} <= installed.keys()
    assert {"freshlake.training", "freshlake.streaming.joiner"} <= installed.keys()
    assert set(installed.values()) == set(stage_layout.layout_files())
    assert found["streaming_file"] == found["mosaic_streaming_init"]
    assert found["streaming_version"] == "0.13.0"
    assert found["has_streaming_dataset"]
    # Besides its package and metadata, pip put only the console script (../../../bin/freshlake).
    tops = {PurePosixPath(f).parts[0] for f in found["freshlake_dist_files"]}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"freshlake", ".."}


@pytest.mark.slow
def test_spark_submit_runs_a_job_file_with_freshlake_installed(runtime_env, tmp_path):
    bin_dir = runtime_env.parent
    env = {
        **os.environ,
        "PYSPARK_PYTHON": str(runtime_env),
        "PYSPARK_DRIVER_PYTHON": str(runtime_env),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    env.pop("SPARK_HOME", None)
    query = "SELECT 41 + 1 AS answer"
    lake = f"lake.root={tmp_path / 'lake'}"
    # The README's command, from the checkout: the script's folder is on the path, not the repo.
    result = run(
        [
            str(bin_dir / "spark-submit"),
            "--master",
            "local[1]",
            "jobs/sql.py",
            "--set",
            lake,
            query,
        ],
        timeout=600,
        cwd=REPO,
        env=env,
    )
    assert "answer" in result.stdout and "42" in result.stdout, result.stdout
