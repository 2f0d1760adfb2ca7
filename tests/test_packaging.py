"""A non-editable install works anywhere: the wheel carries the shipped checkpoints and the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheels = list(out.glob("crystalframer-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(p.parent.name for p in (ROOT / "checkpoints").glob("*/model.safetensors"))
    assert shipped, "no shipped checkpoints in the checkout"
    for name in shipped:
        assert f"crystalframer/_shipped_checkpoints/{name}/model.safetensors" in names
        assert f"crystalframer/_shipped_checkpoints/{name}/card.md" in names
    assert "crystalframer/model/csrc/angle_grid.c" in names  # the kernels compile from the installed source
    assert not any(n.startswith(("tests/", "bench/", "app_pages/")) for n in names)
    metadata = next(n for n in names if n.endswith("METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist: torch")]
    assert requires and "==" not in requires[0], requires  # a range any CUDA/CPU build can satisfy


@pytest.mark.slow
def test_installed_wheel_predicts_from_another_folder(wheel, tmp_path):
    """Install the wheel into a folder of its own (no link to the checkout), put it first on the path, and run the
    command from a folder outside the checkout: ``load_model("mp-eform-max")`` must find the packaged weights."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=600)
    from pymatgen.io.cif import CifWriter

    from crystalframer.examples import get_example

    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "x.cif").write_text(str(CifWriter(get_example("TiO2 (rutile)"))))
    env = {k: v for k, v in os.environ.items() if k != "CRYSTALFRAMER_CHECKPOINTS"}
    env["PYTHONPATH"] = str(target)
    check = subprocess.run([sys.executable, "-c", "import crystalframer; print(crystalframer.__file__)"], cwd=work,
                           capture_output=True, text=True, env=env, timeout=120)
    assert check.stdout.strip().startswith(str(target)), check.stdout + check.stderr
    proc = subprocess.run([sys.executable, "-m", "crystalframer", "predict", "mp-eform-max", "x.cif", "--device",
                           "cpu"], cwd=work, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "megnet_e_form" in proc.stdout and proc.stdout.count("\n") >= 2
    listing = subprocess.run([sys.executable, "-m", "crystalframer", "checkpoints"], cwd=work, capture_output=True,
                             text=True, env=env, timeout=120)
    assert "mp-eform-max" in listing.stdout and str(target) in listing.stdout
