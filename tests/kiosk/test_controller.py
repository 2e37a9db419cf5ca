"""The controller on a real asyncio loop: effects reach their ports, timers, failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

import pytest

from hardware.events import DoorOpened, EmergencyHeld
from kiosk import config
from kiosk.controller import Controller, Visit
from kiosk.session import (
    ClinicianAnswered,
    Intent,
    State,
    Timeout,
    Timer,
    Touch,
)

MINIMAL = """
[booth]
id = "test-01"
name = "Test booth"
[site]
name = "Test library"
street_address = "1 Test Street"
room = "Room 1"
time_zone = "UTC"
[hub]
url = "wss://localhost:8443/booth"
certificate_sha256 = "%s"
[hardware]
backend = "sim"
[hardware.pins]
door = 17
emergency_button = 22
occupancy_light = 5
alarm_light = 6
buzzer = 13
""" % ("ab" * 32)


def make_config(**timeouts: float) -> config.BoothConfig:
    cfg = config.loads(MINIMAL)
    return replace(cfg, timeouts=replace(cfg.timeouts, **timeouts))


class RecordingOutputs:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def set_occupancy_light(self, on: bool) -> None:
        self.calls.append(("occupancy", on))

    def set_alarm(self, on: bool) -> None:
        self.calls.append(("alarm", on))


class RecordingCall:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.visits: list[Visit] = []
        self.fail = fail

    async def _note(self, name: str) -> None:
        self.calls.append(name)
        if self.fail:
            raise ConnectionError("hub unreachable")

    async def join_queue(self, visit: Visit) -> None:
        self.visits.append(visit)
        await self._note("join_queue")

    async def leave_queue(self) -> None:
        await self._note("leave_queue")

    async def accept_call(self) -> None:
        await self._note("accept_call")

    async def end_call(self) -> None:
        await self._note("end_call")

    async def rebuild_call(self) -> None:
        await self._note("rebuild_call")

    async def pause_media(self) -> None:
        await self._note("pause_media")

    async def resume_media(self) -> None:
        await self._note("resume_media")

    async def set_microphone(self, on: bool) -> None:
        await self._note(f"microphone {on}")

    async def set_camera(self, on: bool) -> None:
        await self._note(f"camera {on}")

    async def tell_clinician(self, what: str) -> None:
        await self._note(f"tell {what}")


async def _drive(controller: Controller, *events: object) -> None:
    task = asyncio.create_task(controller.run())
    await asyncio.sleep(0)
    for event in events:
        controller.post(event)  # type: ignore[arg-type]
        settled = asyncio.create_task(controller.settle())
        await asyncio.wait({settled, task}, timeout=2, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            settled.cancel()
            task.result()  # re-raises what killed the controller
            return
    controller.stop()
    await task


def test_a_visit_reaches_the_call_port_and_the_lights() -> None:
    outputs, call = RecordingOutputs(), RecordingCall()
    c = Controller(make_config(), outputs, call=call)
    asyncio.run(
        _drive(
            c,
            Touch(Intent.START),
            Touch(Intent.ACCEPT),
            Touch(Intent.APPOINTMENT, "4711"),
            Touch(Intent.DEVICES_OK),
            ClinicianAnswered(),
            DoorOpened(),
        )
    )
    assert c.booth.state is State.PRIVACY_PAUSE
    assert outputs.calls == [("occupancy", True)]
    assert call.calls == ["join_queue", "accept_call", "pause_media", "tell door_open"]
    assert call.visits[0].appointment_code == "4711"


def test_the_visit_object_is_dropped_when_the_visit_is_wiped() -> None:
    outputs = RecordingOutputs()
    c = Controller(make_config(), outputs)
    seen: list[Visit | None] = []

    async def scenario() -> None:
        task = asyncio.create_task(c.run())
        for e in (Touch(Intent.START), Touch(Intent.ACCEPT), Touch(Intent.APPOINTMENT, "4711")):
            c.post(e)
            await c.settle()
        seen.append(c.visit)
        c.post(Touch(Intent.CANCEL))
        await c.settle()
        await c.settle()
        c.stop()
        await task

    asyncio.run(scenario())
    assert seen[0] is not None and seen[0].appointment_code == "4711"
    assert c.visit is None
    assert c.booth.state is State.ATTRACT
    assert outputs.calls == [("occupancy", True), ("occupancy", False)]


def test_idle_timers_run_in_real_time_and_reset_the_visit() -> None:
    c = Controller(
        make_config(idle_warning_seconds=0.05, idle_reset_seconds=0.3), RecordingOutputs()
    )

    async def until(what: Callable[[], bool], timeout: float = 5.0) -> float:
        """Seconds until ``what`` holds (polled: a loaded machine only makes it later)."""
        start = loop.time()
        while not what():
            assert loop.time() - start < timeout, "never happened"
            await asyncio.sleep(0.01)
            await c.settle()
        return loop.time() - start

    async def scenario() -> None:
        task = asyncio.create_task(c.run())
        c.post(Touch(Intent.START))
        await c.settle()
        assert c.booth.state is State.NOTICE and not c.booth.idle_warning
        warned_after = await until(lambda: c.booth.idle_warning)
        assert c.booth.state is State.NOTICE, "a warning first, the visit still there"
        reset_after = await until(lambda: c.booth.state is State.ATTRACT)
        c.stop()
        await task
        assert warned_after >= 0.04, warned_after
        assert reset_after >= 0.25, f"the reset waits its own time after the warning: {reset_after}"

    loop = asyncio.new_event_loop()
    loop.run_until_complete(scenario())
    loop.close()


def test_a_timer_that_fired_after_it_was_restarted_is_ignored() -> None:
    c = Controller(make_config(idle_warning_seconds=60), RecordingOutputs())

    async def scenario() -> None:
        task = asyncio.create_task(c.run())
        c.post(Touch(Intent.START))
        await c.settle()
        stale = c._timers[Timer.IDLE_WARNING][1]
        c.post(Touch(Intent.ACTIVITY))  # restarts the idle timer: new generation
        await c.settle()
        from kiosk.controller import _TimerFired

        c.handle(_TimerFired(Timer.IDLE_WARNING, stale))
        assert not c.booth.idle_warning, "a stale time-out must not warn"
        c.handle(_TimerFired(Timer.IDLE_WARNING, c._timers[Timer.IDLE_WARNING][1]))
        assert c.booth.idle_warning
        c.stop()
        await task

    asyncio.run(scenario())


def test_emergency_auto_clear_off_by_default_means_no_timer() -> None:
    c = Controller(make_config(), RecordingOutputs())
    asyncio.run(_drive(c, EmergencyHeld()))
    assert c.booth.state is State.EMERGENCY
    assert Timer.EMERGENCY_AUTO_CLEAR not in c.armed_timers


def test_a_failing_call_engine_never_blocks_the_emergency(caplog: pytest.LogCaptureFixture) -> None:
    outputs, call = RecordingOutputs(), RecordingCall(fail=True)
    c = Controller(make_config(), outputs, call=call)
    with caplog.at_level(logging.ERROR):
        asyncio.run(
            _drive(
                c,
                Touch(Intent.START),
                Touch(Intent.ACCEPT),
                Touch(Intent.WALK_IN),
                Touch(Intent.DEVICES_OK),
                ClinicianAnswered(),
                EmergencyHeld(),
            )
        )
    assert ("alarm", True) in outputs.calls
    assert "tell emergency" in call.calls
    assert any("port call failed" in r.getMessage() for r in caplog.records)


class BrokenLight(RecordingOutputs):
    def set_occupancy_light(self, on: bool) -> None:
        raise OSError("GPIO 5 gone")


def test_a_failing_light_does_not_stop_the_alarm() -> None:
    outputs = BrokenLight()
    c = Controller(make_config(), outputs)
    asyncio.run(_drive(c, Touch(Intent.START), EmergencyHeld()))
    assert outputs.calls == [("alarm", True)]


def test_twin_without_the_effect_guard_a_failing_light_kills_the_emergency_path() -> None:
    """Twin of the test above: with the guard removed the same fault stops the alarm."""
    outputs = BrokenLight()
    c = Controller(make_config(), outputs)

    def unguarded(effect: object) -> None:
        c._do(effect)  # type: ignore[arg-type]

    c._carry_out = unguarded  # type: ignore[method-assign]
    with pytest.raises(OSError):
        asyncio.run(_drive(c, Touch(Intent.START), EmergencyHeld()))
    assert ("alarm", True) not in outputs.calls


def test_timeouts_map_to_config() -> None:
    cfg = make_config()
    c = Controller(cfg, RecordingOutputs())
    assert c.duration(Timer.WAIT_LIMIT) == cfg.timeouts.longest_wait_seconds
    assert c.duration(Timer.EMERGENCY_AUTO_CLEAR) == 0.0
    assert {t for t in Timer} == {Timeout(t).timer for t in Timer}
