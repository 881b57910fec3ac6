"""resablate as a user installs it: the wheel built from this checkout, installed without `-e` into a fresh virtual
environment, run by its console scripts from a folder outside the repository (configs and sweep files come from the
package itself; no top-level `analysis` module is installed)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import needs_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv with the wheel installed (no -e). Its dependencies are this interpreter's: a path line in a .pth file
    puts the site-packages folder on sys.path without running that folder's own .pth hooks, so the editable install
    of this checkout stays out of the venv."""
    root = tmp_path_factory.mktemp("install")
    run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w",
         str(root / "dist")], cwd=root)
    (wheel,) = (root / "dist").glob("resablate-*.whl")
    run([sys.executable, "-m", "venv", str(root / "venv")], cwd=root)
    python = root / "venv" / "bin" / "python"
    venv_site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root)
    (Path(venv_site.stdout.strip()) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=root)
    return root / "venv" / "bin"


def env_without_checkout() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WANDB_API_KEY")}
    return {**env, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


@pytest.mark.slow
def test_the_wheel_imports_from_the_venv_and_installs_no_top_level_analysis(installed, tmp_path):
    found = run([str(installed / "python"), "-c", "import resablate, resablate.analysis; print(resablate.__file__)"],
                cwd=tmp_path, env=env_without_checkout()).stdout.strip()
    assert found.startswith(str(installed.parent)), found  # the wheel's copy, not this checkout
    missing = subprocess.run([str(installed / "python"), "-c", "import analysis"], cwd=tmp_path, capture_output=True,
                             text=True, env=env_without_checkout())
    assert missing.returncode == 1 and "No module named 'analysis'" in missing.stderr


@pytest.mark.slow
def test_the_installed_console_script_composes_a_sweep_file(installed, tmp_path):
    out = run([str(installed / "resablate"), "+sweep=table6", "--cfg", "job"], cwd=tmp_path,
              env=env_without_checkout()).stdout
    assert "depth:" in out and "name: zero_pad" in out  # sweeps/table6.yaml: option A
    helped = run([str(installed / "resablate"), "--help"], cwd=tmp_path, env=env_without_checkout()).stdout
    assert "== Examples ==" in helped and "== Exit status ==" in helped
    assert "sweep: arch_search, constructed, degradation" in helped  # the packaged sweep files


@pytest.mark.slow
@needs_fashion_mnist
def test_the_installed_console_script_trains_from_a_scratch_folder(installed, tmp_path):
    out = run([str(installed / "resablate"), "data=fashion_mnist", "recipe=quick", "depth=8", "trainer.max_steps=20",
               "logger=csv"], cwd=tmp_path, env=env_without_checkout()).stdout
    assert "completed" in out
    (summary,) = (tmp_path / "outputs").rglob("summary.json")
    import json

    record = json.loads(summary.read_text())
    assert record["status"] == "completed" and record["steps"] == 20
    assert record["code"]["commit"] is None and record["code"]["note"].startswith("not a git checkout")
    listed = run([str(installed / "resablate-analysis"), "runs", "--runs", "outputs"], cwd=tmp_path,
                 env=env_without_checkout()).stdout
    assert "1 completed" in listed
