"""pescore_nb works installed from its wheel, not only from the checkout.

``python -m build --no-isolation`` makes an sdist and, from it, a wheel; the wheel is installed
into a fresh virtual environment that reuses this environment's installed dependencies (a ``.pth``
file names their folder, so nothing is downloaded) but not the checkout, and run from another folder.
"""
import json
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import pescore_nb

REPO = Path(__file__).resolve().parents[1]
# The 20-image evaluation, run by the installed wheel and by the checkout; prints what it found.
EVALUATE = """
import copy, json, sys, warnings
import torch
import pescore_nb
from pescore_nb import data, prune, zoo

torch.manual_seed(0)
reference = zoo.VGG(num_classes=6, config=(8, "M", 16)).eval()
images = data.shapes(20, size=32, split="test")
candidates = prune.sweep(reference, images[0][0][None], [0.5], pruner="l2", controls=False)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # an untrained model's maps may be degenerate; both runs see the same
    ds = pescore_nb.evaluate(reference, candidates, images, layers=reference.cam_layers, progress=False)
print(json.dumps({"file": pescore_nb.__file__, "images": ds.sizes["image"],
                  "pe": ds["pe"].values.ravel().tolist(), "accuracy": ds["accuracy"].values.tolist()}))
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The sdist and the wheel built from it: ``{"sdist": path, "wheel": path}``."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sdists, wheels = list(out.glob("*.tar.gz")), list(out.glob("*.whl"))
    assert len(sdists) == len(wheels) == 1, list(out.iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0]}


@pytest.fixture(scope="module")
def installed(dist, tmp_path_factory):
    """A fresh virtual environment with the wheel installed: ``(python, pescore, site-packages)``."""
    env = tmp_path_factory.mktemp("env")
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    # This environment's installed packages, after the new one's own (a .pth line adds a folder but
    # does not run the .pth files in it, so the checkout's editable install stays out).
    (purelib / "reused-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                             "--no-index", "--quiet", str(dist["wheel"])], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return python, env / "bin" / "pescore", purelib


def test_wheel_and_sdist_carry_the_version_and_the_typing_marker(dist):
    version = pescore_nb.__version__
    assert dist["wheel"].name.startswith(f"pescore_nb-{version}-py3-none-any")
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(f"pescore_nb-{version}.dist-info/METADATA").decode()
        entry_points = wheel.read(f"pescore_nb-{version}.dist-info/entry_points.txt").decode()
    assert "pescore_nb/py.typed" in names and "pescore_nb/prune/sweeping.py" in names
    assert not any(name.startswith(("tests/", "docs/", "benchmarks/")) for name in names)
    assert f"\nVersion: {version}\n" in metadata and "Provides-Extra: docs" in metadata
    assert "pescore = pescore_nb.cli:main" in entry_points
    with tarfile.open(dist["sdist"]) as sdist:
        root = f"pescore_nb-{version}/"
        members = set(sdist.getnames())
    for name in ("pyproject.toml", "README.md", "LICENSE", "pescore_nb/py.typed", "pescore_nb/__init__.py"):
        assert root + name in members, name


def test_the_version_lives_in_one_place():
    """Only ``pescore_nb/__init__.py`` writes the version; everything else reads it."""
    version = pescore_nb.__version__
    candidates = [REPO / "pyproject.toml", REPO / "CITATION.cff", REPO / "environment.yml",
                  *REPO.glob("pescore_nb/**/*.py")]
    written = [path.relative_to(REPO).as_posix() for path in candidates
               if f'"{version}"' in path.read_text() or f"version: {version}" in path.read_text()]
    assert written == ["pescore_nb/__init__.py"], written


def test_installed_command_prints_the_version(installed, tmp_path):
    python, pescore, _ = installed
    result = subprocess.run([str(pescore), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"pescore {pescore_nb.__version__}"
    module = subprocess.run([str(python), "-m", "pescore_nb", "--version"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert module.stdout.strip() == result.stdout.strip()


def test_installed_package_evaluates_20_images_like_the_checkout(installed, tmp_path):
    python, _, purelib = installed
    result = subprocess.run([str(python), "-c", EVALUATE], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(found["file"]).resolve().is_relative_to(purelib.resolve()), found["file"]
    assert not Path(found["file"]).resolve().is_relative_to(REPO), found["file"]
    assert (purelib / "pescore_nb" / "py.typed").is_file()
    assert found["images"] == 20
    checkout = subprocess.run([sys.executable, "-c", EVALUATE], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
    assert checkout.returncode == 0, checkout.stderr[-3000:]
    expected = json.loads(checkout.stdout.strip().splitlines()[-1])
    assert Path(expected["file"]).resolve().is_relative_to(REPO)
    assert found["pe"] == pytest.approx(expected["pe"], abs=1e-6) and found["accuracy"] == expected["accuracy"]
