"""Shared by the provisioning tests: the booth's wheel, built once per session."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The booth's wheel, built from a copy of the source by setuptools' PEP 517 backend."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in ("kiosk", "hardware", "provisioning", "clinic", "systemd"):
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    # The test venv's setuptools predates built-in bdist_wheel: a small build venv.
    build = work / "build-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(build)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(build / "bin" / "python"), "install",
         "-q", "--disable-pip-version-check", "setuptools>=70.1"],
        check=True,
    )  # fmt: skip
    out = work / "dist"
    out.mkdir()
    subprocess.run(
        [str(build / "bin" / "python"), "-c",
         f"from setuptools import build_meta as b; b.build_wheel({str(out)!r})"],
        cwd=source, check=True, capture_output=True,
    )  # fmt: skip
    [built] = out.glob("telehealth_kiosk-*.whl")
    return built
