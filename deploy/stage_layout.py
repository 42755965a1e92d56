"""Stage the installed layout of the source tree: one `freshlake` package folder or zip.

pyproject.toml maps the layout's top-level folders into one namespace (features/ installs as
freshlake/features and so on, `[tool.setuptools.package-dir]`). Tools that read code from a
folder or a zip rather than from an installed wheel need that layout on disk: spark-submit's
`--py-files` zip (deploy/spark-submit.sh) and import-linter (`make lint`).

    python deploy/stage_layout.py OUT.zip | OUT_DIR
"""

from __future__ import annotations

import shutil
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def package_sources(repo: Path = REPO) -> dict[str, Path]:
    """Each package of pyproject's explicit `packages` list -> the source folder it installs from."""
    setuptools = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir: dict[str, str] = setuptools.get("package-dir", {})
    sources = {}
    for package in setuptools["packages"]:
        parts = package.split(".")
        # The longest mapped prefix wins, as in setuptools; unmapped packages sit at the root.
        for cut in range(len(parts), 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in package_dir:
                sources[package] = repo / package_dir[prefix] / Path(*parts[cut:])
                break
        else:
            sources[package] = repo / Path(*parts)
    return sources


def layout_files(repo: Path = REPO) -> dict[str, Path]:
    """Installed path (e.g. `freshlake/streaming/joiner.py`) -> source file, for every module."""
    files = {}
    for package, source in package_sources(repo).items():
        target = Path(*package.split("."))
        for path in sorted(source.glob("*.py")):
            files[(target / path.name).as_posix()] = path
    return files


def stage(out: Path, repo: Path = REPO) -> None:
    """Write the layout to `out`: a zip when it ends in .zip, else a fresh folder."""
    files = layout_files(repo)
    if out.suffix == ".zip":
        out.unlink(missing_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, path in files.items():
                archive.write(path, name)
        return
    shutil.rmtree(out, ignore_errors=True)
    for name, path in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out / name)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python deploy/stage_layout.py OUT.zip | OUT_DIR")
    stage(Path(sys.argv[1]).resolve())
