"""The project itself, end to end: the real booth's wheel (built once, by the install
tests' fixture) re-versioned as 1.0.0 and 2.0.0, bundled (``--no-deps``: the wheel
only), 1.0.0 installed into a temporary root, 2.0.0 published; the updater installs
it, the running booth holds, and the real 2.0.0 booth (``--simulate --headless``)
started by the restart hook writes the status that passes the health gate.

The release venvs see the test venv's installed dependencies through PYTHONPATH (a
folder of links to them, without the editable checkout of the booth itself), so
nothing is downloaded and the code that runs is the release's own.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.update.booth_status import read_status
from provisioning.update.bundle import make_bundle
from provisioning.update.updater import Result, read_state
from tests.provisioning.update.helpers import Clock, Publisher, install_booth, updater

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
DEMO = REPO / "examples" / "demo-booth.toml"


def reversion(built: Path, version: str, out: Path) -> Path:
    """The same wheel as another version: kiosk.__version__, dist-info and RECORD."""
    old = built.name.split("-")[1]
    out.mkdir(parents=True, exist_ok=True)
    target = out / built.name.replace(f"-{old}-", f"-{version}-")
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(built) as zf:
        for info in zf.infolist():
            name = info.filename.replace(f"telehealth_kiosk-{old}.", f"telehealth_kiosk-{version}.")
            data = zf.read(info)
            if name == "kiosk/__init__.py":
                data = data.replace(
                    f'__version__ = "{old}"'.encode(), f'__version__ = "{version}"'.encode()
                )
                assert version.encode() in data
            elif name.endswith(".dist-info/METADATA"):
                data = data.replace(
                    f"\nVersion: {old}\n".encode(), f"\nVersion: {version}\n".encode()
                )
            if not name.endswith(".dist-info/RECORD"):
                files[name] = data
    record = [
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for name, data in files.items()
    ]
    dist = f"telehealth_kiosk-{version}.dist-info/RECORD"
    files[dist] = ("\n".join([*record, f"{dist},,"]) + "\n").encode()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return target


def dependencies(folder: Path) -> Path:
    """Links to the test venv's installed packages, without the booth's own checkout."""
    folder.mkdir()
    site = SITE / "site-packages"
    for entry in site.iterdir():
        name = entry.name
        if name.startswith(("telehealth_kiosk", "__editable__", "_virtualenv")) or name.endswith(
            ".pth"
        ):
            continue
        os.symlink(entry, folder / name)
    return folder


@pytest.fixture
def booth_pid(tmp_path: Path) -> Iterator[Path]:
    pid_file = tmp_path / "booth" / "booth.pid"
    yield pid_file
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)


def test_the_project_updates_itself(
    wheel: Path,  # the session fixture in tests/provisioning/conftest.py
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    booth_pid: Path,
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(dependencies(tmp_path / "deps")))
    publisher = Publisher(tmp_path / "pub", Clock())
    root_json = (publisher.repo.metadata / "root.json").read_bytes()
    bundles = {}
    for version in ("1.0.0", "2.0.0"):
        built = reversion(wheel, version, tmp_path / f"wheels-{version}")
        out = publisher.root / f"telehealth-kiosk-{version}.tar"
        make_bundle([built], version, out, root_json, publisher.repo.source())
        bundles[version] = out
    layout = install_booth(tmp_path / "booth", bundles["1.0.0"])
    publisher.publish("2.0.0")

    restart = (sys.executable, str(HERE / "restart_real_booth.py"), str(layout.root), str(DEMO))
    outcome = updater(
        layout, publisher, publisher.clock, restart_command=restart, health_deadline_s=45.0,
        health_poll_s=0.2,
    ).run()  # fmt: skip
    log = layout.root / "booth.log"
    assert outcome.result is Result.UPDATED, (outcome, log.read_text() if log.exists() else "")
    assert os.readlink(layout.current) == "releases/2.0.0"
    status = read_status(layout.booth_status)
    assert status is not None and status.healthy_as("2.0.0") and status.activity == "idle"
    assert read_state(layout).floor_version == "2.0.0"
    publisher.server.stop()
