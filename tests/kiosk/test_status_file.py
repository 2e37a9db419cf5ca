"""The status file the updater reads: idle or busy, and whether this release came up healthy."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from kiosk import __version__, config
from kiosk.app import HOLD_MAX_AGE, STATUS_FILE, BoothRuntime
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
    path, hold = tmp_path / STATUS_FILE, tmp_path / "update-hold"
    monkeypatch.setenv("UPDATE_HOLD_FILE", str(hold))

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


class _Link:
    """Stands in for the hub link: the alerts the booth raised."""

    connected = False

    def __init__(self) -> None:
        self.alerts: list[str] = []

    def alert(self, kind: str) -> None:
        self.alerts.append(kind)


@pytest.mark.parametrize("blocked", [True, False], ids=["blocked-for-days", "twin-updating-fine"])
def test_updates_impossible_for_days_alert_staff_once_per_run_of_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blocked: bool
) -> None:
    import kiosk.app

    state = tmp_path / "update-state.json"
    monkeypatch.setenv("UPDATE_STATE_FILE", str(state))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    monkeypatch.setattr(kiosk.app, "UPDATES_CHECK", 0.05)

    def updater_says(alert: bool, since: str) -> None:
        state.write_text(json.dumps({"alert": alert, "impossible_since": since, "bad": []}))

    async def booth_for(seconds: float) -> list[str]:
        runtime = BoothRuntime(config.load(ROOT / "examples" / "demo-booth.toml"), simulate=True)
        await runtime.start()
        link = _Link()
        runtime.link = link  # type: ignore[assignment]
        watching = asyncio.create_task(runtime._watch_updates(first=0.0))
        try:
            await asyncio.sleep(seconds)
        finally:
            watching.cancel()
            runtime.link = None
            await runtime.close()
        return link.alerts

    updater_says(blocked, "2026-11-20T03:00:00+00:00")
    first = asyncio.run(booth_for(0.4))
    assert first == (["updates_blocked"] if blocked else [])
    assert asyncio.run(booth_for(0.3)) == []  # restarted: the same run of failures, told already
    updater_says(blocked, "2026-11-25T03:00:00+00:00")  # it worked once, then failed again
    assert asyncio.run(booth_for(0.3)) == (["updates_blocked"] if blocked else [])
