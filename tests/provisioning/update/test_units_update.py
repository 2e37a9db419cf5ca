"""The updater's units: valid to systemd, after time sync, hardened to S1 (≤ 1.5)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.needs import need

UNITS = Path(__file__).resolve().parents[3] / "systemd"
SERVICE = UNITS / "telehealth-kiosk-update.service"
TIMER = UNITS / "telehealth-kiosk-update.timer"
INSTALLED_PYTHON = "/opt/telehealth-kiosk/current/bin/python"
LIMIT = 1.5
ANALYZE = shutil.which("systemd-analyze")


@pytest.fixture
def needs_analyze() -> None:
    """systemd-analyze: a skip outside CI without it, a failure in CI (which installs it)."""
    need(ANALYZE is not None, "systemd-analyze not found: `apt-get install systemd`")


HARDENING = re.compile(
    r"^(NoNewPrivileges|CapabilityBoundingSet|AmbientCapabilities|Protect\w+|Private\w+|"
    r"Restrict\w+|LockPersonality|MemoryDenyWriteExecute|SystemCall\w+|UMask|RemoveIPC|"
    r"KeyringMode|DevicePolicy|ReadWritePaths|ProcSubset)="
)


def copies(tmp_path: Path, strip: bool = False) -> Path:
    """Both units in tmp_path, ExecStart pointed at a Python that exists (verify checks it)."""
    for unit in (SERVICE, TIMER):
        lines = unit.read_text().replace(INSTALLED_PYTHON, sys.executable).splitlines()
        if strip:
            lines = [ln for ln in lines if not HARDENING.match(ln)]
        (tmp_path / unit.name).write_text("\n".join(lines) + "\n")
    return tmp_path / SERVICE.name


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_runs_after_time_sync_as_a_oneshot_from_the_running_release() -> None:
    text = SERVICE.read_text()
    assert re.search(r"^After=.*time-sync\.target", text, re.M)
    assert re.search(r"^Wants=.*time-sync\.target", text, re.M)
    assert "Type=oneshot" in text
    assert f"ExecStart={INSTALLED_PYTHON} -m provisioning.update run" in text
    assert "StateDirectory=telehealth-kiosk-update" in text
    timer = TIMER.read_text()
    assert "OnUnitActiveSec=" in timer and "WantedBy=timers.target" in timer


@pytest.mark.usefixtures("needs_analyze")
@pytest.mark.parametrize("broken", [False, True], ids=["units", "twin-broken"])
def test_verify(tmp_path: Path, broken: bool) -> None:
    service = copies(tmp_path)
    if broken:
        service.write_text(service.read_text().replace("Type=oneshot", "Type=oneshoot"))
    done = analyze("verify", str(service), str(tmp_path / TIMER.name), cwd=tmp_path)
    problems = [ln for ln in done.stderr.splitlines() if "telehealth-kiosk-update" in ln]
    if broken:
        assert any("oneshoot" in p for p in problems)
    else:
        assert done.returncode == 0 and problems == [], done.stderr


@pytest.mark.usefixtures("needs_analyze")
@pytest.mark.parametrize("strip", [False, True], ids=["hardened", "twin-bare"])
def test_exposure(tmp_path: Path, strip: bool) -> None:
    service = copies(tmp_path, strip=strip)
    done = analyze(
        "security", "--offline=yes", f"--threshold={int(LIMIT * 10)}", str(service), cwd=tmp_path
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    score = float(match.group(1))
    if strip:
        assert done.returncode != 0 and score > LIMIT
    else:
        assert done.returncode == 0 and score <= LIMIT, score
