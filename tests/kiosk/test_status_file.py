"""The status file the updater reads: idle or busy, and whether this release came up healthy."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from kiosk import __version__, config
from kiosk.app import HOLD_FILE, HOLD_MAX_AGE, STATUS_FILE, BoothRuntime
from kiosk.session import EmergencyCleared, Intent, State, Touch
from provisioning.update.booth_status import BoothStatus, read_status

ROOT = Path(__file__).resolve().parents[2]


async def _until(path: Path, want: BoothStatus, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if read_status(path) == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path}: {read_status(path)} is not {want}")


@pytest.mark.parametrize("safe_mode", [False, True], ids=["normal", "safe-mode"])
def test_the_booth_says_when_it_is_busy_and_whether_it_came_up_healthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, safe_mode: bool
) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    path = tmp_path / STATUS_FILE

    async def scenario() -> None:
        cfg = config.load(ROOT / "examples" / "demo-booth.toml")
        runtime = BoothRuntime(cfg, simulate=True, safe_mode=safe_mode)
        controller = await runtime.start()
        check = "fail" if safe_mode else "pass"
        try:
            await _until(path, BoothStatus(__version__, "idle", True, check))
            if safe_mode:
                return  # a release that starts in safe mode never passes the gate
            controller.post(Touch(Intent.START))
            await _until(path, BoothStatus(__version__, "visit", True, "pass"))
            assert runtime.simulation is not None
            runtime.simulation.wiring.press_emergency()
            await _until(path, BoothStatus(__version__, "emergency", True, "pass"))
        finally:
            await runtime.close()

    asyncio.run(scenario())


def test_without_systemd_no_status_file_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.chdir(tmp_path)

    async def scenario() -> BoothStatus:
        runtime = BoothRuntime(config.load(ROOT / "examples" / "demo-booth.toml"), simulate=True)
        await runtime.start()
        try:
            await asyncio.sleep(0.3)
            return runtime.status()
        finally:
            await runtime.close()

    assert asyncio.run(scenario()).activity == "idle"
    assert list(tmp_path.iterdir()) == []


def test_an_update_hold_takes_an_idle_booth_out_of_use_and_never_a_visit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The updater's handshake: it switches only once the booth says ``held``."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    path, hold = tmp_path / STATUS_FILE, tmp_path / HOLD_FILE

    async def scenario() -> None:
        runtime = BoothRuntime(config.load(ROOT / "examples" / "demo-booth.toml"), simulate=True)
        controller = await runtime.start()
        try:
            # A resident is in the booth: the hold is not granted, however long it stands.
            controller.post(Touch(Intent.START))
            await _until(path, BoothStatus(__version__, "visit", True, "pass"))
            hold.write_text('{"version": "9.9.9"}')
            await asyncio.sleep(2.5)
            assert read_status(path) == BoothStatus(__version__, "visit", True, "pass")
            assert controller.booth.state is State.NOTICE
            controller.post(Touch(Intent.CANCEL))  # the visit ends: now the booth holds
            await _until(path, BoothStatus(__version__, "held", True, "pass"))
            assert controller.booth.state is State.OUT_OF_SERVICE
            controller.post(Touch(Intent.START))  # nobody can start a visit while held
            await controller.settle()
            assert controller.booth.state is State.OUT_OF_SERVICE
            # An emergency still works, and the updater sees it.
            assert runtime.simulation is not None
            runtime.simulation.wiring.press_emergency()
            await _until(path, BoothStatus(__version__, "emergency", True, "pass"))
            controller.post(EmergencyCleared())
            await _until(path, BoothStatus(__version__, "held", True, "pass"))
            hold.unlink()  # the updater let go
            await _until(path, BoothStatus(__version__, "idle", True, "pass"))
            assert controller.booth.state is State.ATTRACT
            # A hold a crashed updater left behind long ago holds nothing.
            hold.write_text("{}")
            old = time.time() - HOLD_MAX_AGE - 60
            os.utime(hold, (old, old))
            await asyncio.sleep(2.5)
            assert read_status(path) == BoothStatus(__version__, "idle", True, "pass")
        finally:
            await runtime.close()

    asyncio.run(scenario())
