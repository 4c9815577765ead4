"""sozo as a package: the metadata in pyproject.toml, and (slow) a wheel and an sdist built with
``python -m build`` that install into a clean virtual environment and run as a user types the commands.

The install needs no network and takes seconds. The new venv is made without ``--system-site-packages``
and sozo goes into it from the wheel only. Its dependencies (torch, numpy, matplotlib…: over 1 GB) are not
downloaded again: a ``.pth`` file puts a folder of links to this interpreter's installed packages, every sozo
entry (the editable install, its dist-info) left out, after the venv's own site-packages, and
``pip install --no-index WHEEL`` checks that each requirement the wheel declares is satisfied (with no index
pip fails rather than fetching one that is missing). Installing torch and the rest from PyPI into the venv
would test the same metadata at the price of the network and minutes.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "sozo"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _package_data_files() -> list[str]:
    """Every file under src/sozo that is not Python source: what the code reads beside itself."""
    return sorted(p.relative_to(ROOT).as_posix() for p in SRC.rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts)


def test_metadata_torch_unpinned_font_in_core_and_typed():
    deps = PYPROJECT["project"]["dependencies"]
    (torch,) = [d for d in deps if re.match(r"torch\b", d)]
    assert not re.search(r"==|<|~=", torch), f"torch must stay unpinned in the package: {torch}"
    assert any(d.startswith("matplotlib-fontja") for d in deps), "a Japanese font on a default install"
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"test", "docs", "tensorboard", "ja"} <= set(extras)
    assert any(d.startswith("build") for d in extras["test"])
    assert (SRC / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["sozo"]
    assert "src/sozo/viz/templates/report.html.j2" in _package_data_files()


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: none of the test run's PYTHONPATH (it points at src/)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE"))}
    env.update(extra)
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _dependency_links(dest: Path) -> Path:
    """A folder of links to this interpreter's site-packages entries, sozo's own (its editable install,
    its dist-info) and the .pth files left out: the dependencies without a second sozo."""
    dest.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("sozo", "__editable__")) or name.endswith(".pth") or name == "__pycache__":
            continue
        (dest / entry.name).symlink_to(entry)
    return dest


@pytest.mark.slow
def test_wheel_and_sdist_install_into_a_clean_venv_and_train(tmp_path):
    started = time.perf_counter()
    # build from a copy of what the sdist is made of, so the worktree gets no build/ or egg-info
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (tree / name).write_bytes((ROOT / name).read_bytes())
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    dist = tmp_path / "dist"
    # as `python -m build` always does, the wheel is built from the unpacked sdist (so the sdist is complete);
    # --no-isolation: the build backend (setuptools) of this environment, no download of it
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(tree)], tmp_path,
         _clean_env())
    (wheel,) = dist.glob("sozo-*.whl")
    (sdist,) = dist.glob("sozo-*.tar.gz")

    names = set(zipfile.ZipFile(wheel).namelist())
    data = _package_data_files()
    missing = [f for f in data if f.removeprefix("src/") not in names]
    assert not missing, f"package data missing from {wheel.name}: {missing}"
    assert "sozo/py.typed" in names and "sozo/viz/templates/style.css" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "src/"))], sorted(names)
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = re.findall(r"^Requires-Dist: (.+)$", meta, re.M)
    torch = [r for r in requires if re.match(r"torch\b", r)]
    assert torch == ["torch>=2.1"], torch  # unpinned: a user's CUDA build is kept
    assert "matplotlib-fontja>=1.0" in requires
    assert {"ja", "tensorboard", "test", "docs"} <= set(re.findall(r"^Provides-Extra: (.+)$", meta, re.M))
    top = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as tar:
        members = set(tar.getnames())
    assert not [f for f in data if f"{top}/{f}" not in members], "package data missing from the sdist"

    venv = tmp_path / "venv"
    # no --system-site-packages; --without-pip: the pip among the linked packages runs (ensurepip's would bring
    # an old setuptools that shadows the one torch requires)
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, _clean_env())
    py = venv / "bin" / "python"
    own_site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         tmp_path, _clean_env()).strip())
    (own_site / "zz-sozo-test-deps.pth").write_text(str(_dependency_links(tmp_path / "deps")) + "\n")
    env = _clean_env(SOZO_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run([str(py), "-c", "import sozo"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "No module named 'sozo'" in proc.stderr, "sozo is there before the install"

    _run([str(py), "-m", "pip", "install", "--no-index", "--no-cache-dir", str(wheel)], tmp_path, env)
    where = _run([str(py), "-c", "import sozo, sozo.viz.report as r; print(sozo.__file__); "
                  "print(sorted(p.name for p in r.TEMPLATES.iterdir()))"], tmp_path, env)
    assert where.splitlines()[0].startswith(str(own_site / "sozo")), where
    assert "report.html.j2" in where
    sozo = str(venv / "bin" / "sozo")
    out = _run([sozo, "models"], tmp_path, env)
    assert "dcgan" in out and "seq2seq" in out
    run = tmp_path / "run"
    _run([sozo, "train", "dcgan", "--set", "width=8", "--set", "latent_dim=8", "--set", "limit=64",
          "--batch-size", "16", "--epochs", "1", "--no-progress", "--device", "cpu", "--out", str(run)],
         tmp_path, env, timeout=600)
    assert (run / "model" / "config.json").is_file() and (run / "samples" / "epoch-0001.png").is_file()
    report = _run([sozo, "report", str(run)], tmp_path, env).strip().splitlines()[-1]
    assert Path(report).is_file() and "<html" in Path(report).read_text(encoding="utf-8")  # the wheel's templates
    print(f"wheel {wheel.stat().st_size / 1e3:.0f} kB, sdist {sdist.stat().st_size / 1e3:.0f} kB; "
          f"build + venv + install + train in {time.perf_counter() - started:.1f} s")
