"""The unit files: valid to systemd, hardened to the S1 target, wired for R1/R2."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNITS = sorted(UNITS_DIR.glob("*.service"))
BOOTH = UNITS_DIR / "telehealth-kiosk.service"
SAFE_MODE = UNITS_DIR / "telehealth-kiosk-safe-mode.service"
INSTALLED_BINARY = "/opt/telehealth-kiosk/current/bin/telehealth-kiosk"
S1_LIMIT = 2.0  # booth UI unit, displayed scale

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None,
    reason="systemd-analyze not found: `apt-get install systemd` (works without systemd as PID 1)",
)

# [Service] keys that make the booth work; everything else there is hardening.
FUNCTIONAL = {
    "Type",
    "NotifyAccess",
    "ExecStart",
    "Restart",
    "RestartSec",
    "TimeoutStartSec",
    "TimeoutStopSec",
    "WatchdogSec",
    "User",
    "Group",
    "Environment",
    "RuntimeDirectory",
    "StateDirectory",
}


def sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), ...]}, keeping repeated keys."""
    out: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            out.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        out[current].append((key.strip(), value.strip()))
    return out


def setting(unit: Path, section: str, key: str) -> list[str]:
    return [v for k, v in sections(unit.read_text())[section] if k == key]


def runnable_copy(unit: Path, directory: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointed at an executable that exists here (verify checks it)."""
    text = unit.read_text() if text is None else text
    copy = directory / unit.name
    copy.write_text(text.replace(INSTALLED_BINARY, sys.executable))
    return copy


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def verify_problems(copy: Path) -> list[str]:
    """What `systemd-analyze verify` says about this file (other units' noise is ignored)."""
    done = analyze("verify", str(copy), cwd=copy.parent)
    lines = [ln for ln in done.stderr.splitlines() if copy.name in ln]
    if done.returncode != 0:
        lines.append(f"exit status {done.returncode}: {done.stderr.strip()}")
    return lines


def exposure(copy: Path, threshold: int) -> tuple[int, float]:
    """(exit status with --threshold, overall exposure as displayed)."""
    done = analyze(
        "security", "--offline=yes", f"--threshold={threshold}", str(copy), cwd=copy.parent
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    return done.returncode, float(match.group(1))


def strip_hardening(text: str) -> str:
    """The unit with every non-functional [Service] line removed."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped
        key = stripped.partition("=")[0].strip()
        if current == "[Service]" and "=" in stripped and key not in FUNCTIONAL:
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def test_there_are_units() -> None:
    assert {BOOTH, SAFE_MODE} <= set(UNITS)


# ---------------------------------------------------------------- systemd-analyze


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_verify_is_clean(unit: Path, tmp_path: Path) -> None:
    assert verify_problems(runnable_copy(unit, tmp_path)) == []


@needs_analyze
def test_twin_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    broken = (
        BOOTH.read_text()
        .replace("Type=notify", "Type=notfy")
        .replace("ProtectSystem=strict", "ProtectSystm=strict")
    )
    problems = verify_problems(runnable_copy(BOOTH, tmp_path, broken))
    assert any("notfy" in p for p in problems)
    assert any("ProtectSystm" in p for p in problems)


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_exposure_within_s1(unit: Path, tmp_path: Path) -> None:
    status, score = exposure(runnable_copy(unit, tmp_path), threshold=int(S1_LIMIT * 10))
    assert status == 0, f"{unit.name}: exposure {score} over {S1_LIMIT}"
    assert score <= S1_LIMIT


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_twin_without_hardening_the_threshold_fails(unit: Path, tmp_path: Path) -> None:
    bare = strip_hardening(unit.read_text())
    assert "NoNewPrivileges" not in bare and "ExecStart" in bare
    status, score = exposure(runnable_copy(unit, tmp_path, bare), threshold=int(S1_LIMIT * 10))
    assert status != 0
    assert score > S1_LIMIT


# ---------------------------------------------------------------- what the booth relies on


def test_booth_unit_notifies_and_is_watched() -> None:
    service = dict(sections(BOOTH.read_text())["Service"])
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["ExecStart"] == f"{INSTALLED_BINARY} --config /etc/telehealth-kiosk/booth.toml"
    assert service["WatchdogSec"] == "20"
    assert service["Restart"] == "always"
    assert service["RestartSec"] == "2"  # R1: back within 5 s of a SIGKILL
    assert service["TimeoutStopSec"] == "5"
    assert service["User"] == "kiosk"
    assert service["LimitCORE"] == "0"


def test_crash_loop_is_bounded_and_ends_in_safe_mode() -> None:
    unit = dict(sections(BOOTH.read_text())["Unit"])
    # Start limits belong in [Unit]; in [Service] systemd ignores them.
    assert 0 < int(unit["StartLimitIntervalSec"]) <= 600
    assert 1 < int(unit["StartLimitBurst"]) <= 10
    assert "StartLimitBurst" not in dict(sections(BOOTH.read_text())["Service"])
    [target] = setting(BOOTH, "Unit", "OnFailure")
    assert (UNITS_DIR / target).is_file()
    assert target == SAFE_MODE.name


def test_safe_mode_runs_the_booth_in_safe_mode_and_never_beside_it() -> None:
    [exec_start] = setting(SAFE_MODE, "Service", "ExecStart")
    assert exec_start.split()[:2] == [INSTALLED_BINARY, "--safe-mode"]
    assert BOOTH.name in setting(SAFE_MODE, "Unit", "Conflicts")
    assert setting(SAFE_MODE, "Service", "Restart") == ["always"]
    assert setting(SAFE_MODE, "Service", "User") == ["kiosk"]
    assert "Install" not in sections(SAFE_MODE.read_text())  # started only by OnFailure=
    devices = " ".join(setting(SAFE_MODE, "Service", "DeviceAllow"))
    assert "video4linux" not in devices and "media" not in devices  # no camera in safe mode


def test_safe_mode_has_the_booths_hardening() -> None:
    def hardening(unit: Path) -> set[tuple[str, str]]:
        pairs = set(sections(unit.read_text())["Service"])
        return {(k, v) for k, v in pairs if k not in FUNCTIONAL and k != "DeviceAllow"}

    assert hardening(BOOTH) == hardening(SAFE_MODE)


def test_journal_is_volatile_and_core_dumps_are_off() -> None:
    journald = dict(sections((UNITS_DIR / "journald-telehealth.conf").read_text())["Journal"])
    assert journald["Storage"] == "volatile"
    assert journald["ForwardToSyslog"] == "no"
    coredump = dict(sections((UNITS_DIR / "coredump-telehealth.conf").read_text())["Coredump"])
    assert coredump["Storage"] == "none"
    assert coredump["ProcessSizeMax"] == "0"


def test_readme_lists_every_file() -> None:
    readme = (UNITS_DIR / "README.md").read_text()
    for path in UNITS_DIR.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in readme, path.name
