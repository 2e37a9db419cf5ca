"""The status file the updater reads: idle or busy, and whether this release came up healthy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kiosk import __version__, config
from kiosk.app import STATUS_FILE, BoothRuntime
from kiosk.session import Intent, Touch
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
