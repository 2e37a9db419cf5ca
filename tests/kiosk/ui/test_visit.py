"""Whole visits by touch on the real booth (simulated hardware), rendered offscreen."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from kiosk.session import ClinicianAnswered
from tests.kiosk.ui.harness import Pilot, booth_config, run_booth

DEMO_PIN = "2468"  # examples/demo-booth.toml's documented demo PIN


def test_a_whole_visit_by_touch_with_door_and_emergency_from_the_pins() -> None:
    seen: list[str] = []

    async def scenario(p: Pilot) -> None:
        seen.append(p.state)
        await p.press("start")
        seen.append(p.state)
        await p.press("language es")
        assert "Antes de empezar" in p.texts()
        await p.press("accept")
        seen.append(p.state)
        await p.press("walk_in")
        seen.append(p.state)
        await p.press("devices_ok")
        seen.append(p.state)
        p.controller.post(ClinicianAnswered())  # the clinician answers at the hub
        await p.settle()
        seen.append(p.state)
        # The door opens mid-call: the pause screen says why, in Spanish.
        p.wiring.open_door()
        await p.wait_for("privacy_pause")
        assert "La puerta está abierta" in p.texts(), p.texts()
        p.wiring.close_door()
        await p.wait_for("in_call")
        # The emergency button held past its hold time: 911/988 over the call.
        p.wiring.press_emergency()
        await p.wait_for("emergency", timeout=3)
        shown = " ".join(p.texts())
        assert "911" in shown and "988" in shown, shown
        assert not p.buttons().keys() - {"technician"}, "residents cannot dismiss it"
        p.wiring.release_emergency()
        await p.settle()
        assert p.state == "emergency"
        p.controller.post(__import__("kiosk.session", fromlist=["x"]).EmergencyCleared())
        await p.wait_for("in_call")
        seen.append(p.state)
        await p.press("ask_end")
        await p.press("end_call")
        seen.append(p.state)
        await p.press("done")
        await p.wait_for("attract")
        seen.append(p.state)

    asyncio.run(run_booth(scenario))
    assert seen == [
        "attract",
        "notice",
        "check_in",
        "device_check",
        "waiting",
        "in_call",
        "in_call",
        "wrap_up",
        "attract",
    ]


def test_appointment_code_on_the_keypad_reaches_the_visit_and_is_wiped() -> None:
    async def scenario(p: Pilot) -> None:
        await p.press("start")
        await p.press("accept")
        await p.press("show_keypad")
        for digit in "4711":
            await p.press(f"digit {digit}")
        assert "4711" in p.texts()
        await p.press("delete")
        await p.press("digit 2")
        await p.press("appointment")
        assert p.state == "device_check"
        assert p.controller.visit is not None and p.controller.visit.appointment_code == "4712"
        await p.press("cancel")
        await p.wait_for("attract")
        assert p.controller.visit is None
        assert "4712" not in " ".join(p.texts())

    asyncio.run(run_booth(scenario))


def test_idle_warning_counts_down_and_im_still_here_keeps_the_visit() -> None:
    cfg = booth_config()
    cfg = replace(
        cfg, timeouts=replace(cfg.timeouts, idle_warning_seconds=0.3, idle_reset_seconds=30)
    )

    async def scenario(p: Pilot) -> None:
        await p.press("start")
        for _ in range(100):
            await p.frames(2)
            if p.controller.booth.idle_warning:
                break
        await asyncio.sleep(1.2)  # the countdown ticks once a second
        await p.settle()
        shown = " ".join(p.texts())
        assert "Are you still there?" in shown, shown
        assert "The visit will end in" in shown
        # The warning comes back 0.3 s after it went: watch it go rather than race its return.
        cleared: list[bool] = []
        p.controller.state_listeners.append(
            lambda before, after: cleared.append(before.idle_warning and not after.idle_warning)
        )
        await p.press("still_here")
        assert any(cleared), "I'm still here takes the warning away"
        assert p.state == "notice", "and the visit goes on where it was"

    asyncio.run(run_booth(scenario, cfg))


def test_larger_text_and_high_contrast_change_the_screen() -> None:
    async def scenario(p: Pilot) -> None:
        await p.press("start")
        size_before = max(b.font_size for b in p.buttons().values())
        await p.press("larger_text")
        await p.press("high_contrast")
        assert p.app.look.large_text and p.app.look.high_contrast
        assert max(b.font_size for b in p.buttons().values()) > size_before
        assert p.app.root_widget.look.palette.name == "high contrast" or p.app.look.high_contrast

    asyncio.run(run_booth(scenario))


def test_technician_mode_behind_the_hidden_gesture_and_pin_with_lockout() -> None:
    async def scenario(p: Pilot) -> None:
        from kivy.core.window import Window

        for _ in range(5):  # five taps in the top-left corner
            await p.touch_at(5, Window.height - 5)
        await p.settle()
        assert "submit_pin" in p.buttons(), sorted(p.buttons())
        for digit in "1111":
            await p.press(f"digit {digit}")
        await p.press("submit_pin")
        await p.settle_tasks()
        assert "Wrong PIN. Try again." in p.texts()
        for digit in DEMO_PIN:
            await p.press(f"digit {digit}")
        await p.press("submit_pin")
        await p.settle_tasks()
        await p.wait_for("technician")
        await p.press("exit_technician")
        await p.wait_for("attract")

    asyncio.run(run_booth(scenario))


def test_the_hidden_gesture_does_nothing_during_a_visit() -> None:
    async def scenario(p: Pilot) -> None:
        from kivy.core.window import Window

        await p.press("start")
        for _ in range(5):
            await p.touch_at(5, Window.height - 5)
        assert "submit_pin" not in p.buttons()
        assert p.state == "notice"

    asyncio.run(run_booth(scenario))


class FakeSpeaker:
    """Records prompts instead of sounding them."""

    def __init__(self) -> None:
        self.said: list[tuple[str, str]] = []

    async def say(self, text: str, language: str) -> None:
        self.said.append((language, text))

    async def stop(self) -> None:
        self.said.append(("", "<stopped>"))


def test_read_aloud_speaks_each_screen_in_the_residents_language() -> None:
    speaker = FakeSpeaker()

    async def scenario(p: Pilot) -> None:
        await p.press("start")
        assert speaker.said == [], "silent until asked"
        await p.press("read_aloud")
        await p.press("language es")
        await p.press("accept")
        await p.press("walk_in")
        await p.press("play_sound")
        await p.press("devices_ok")
        p.controller.post(ClinicianAnswered())
        await p.wait_for("in_call")

    asyncio.run(run_booth(scenario, speaker=speaker))
    assert speaker.said[0][0] == "en", "turning it on reads the screen being shown"
    assert speaker.said[-1] == ("", "<stopped>"), "speech stops when the call starts"
    assert {lang for lang, _ in speaker.said[1:-1]} == {"es"}, speaker.said
    texts = [text for _, text in speaker.said]
    assert any("9 1 1" in t for t in texts), "the notice's numbers are spoken digit by digit"
    assert any("prueba" in t for t in texts), "the test sound is a spoken sentence"
    assert not any("Está conectado" in t for t in texts), "nothing is spoken into a live call"


def test_device_check_shows_the_camera_and_a_moving_microphone_bar() -> None:
    async def scenario(p: Pilot) -> None:
        await p.press("start")
        await p.press("accept")
        await p.press("walk_in")
        screen = p.app.root_widget.manager.current_screen
        levels = set()
        for _ in range(10):
            await asyncio.sleep(0.12)
            levels.add(round(screen.level, 2))
        assert screen.frame is not None and tuple(screen.frame.size) == (320, 240)
        assert len(levels) > 3, f"the bar should move: {levels}"
        first = p.runtime.media.preview()
        await asyncio.sleep(0.3)
        assert p.runtime.media.preview() != first, "the self-view moves"
        await p.press("cancel")
        await p.wait_for("attract")
        assert p.runtime.media.preview() is None, "the camera is closed after the visit"
        assert p.app._texture is None

    asyncio.run(run_booth(scenario))


def test_the_clinician_is_drawn_large_in_a_call_at_call_frame_rate() -> None:
    from kivy.clock import Clock

    from hardware.camera import TestCard
    from kiosk.ui.app import CALL_FPS

    clinician = TestCard(width=640, height=480)
    clinician.open()

    class Remote:
        def remote_frame(self) -> Any:
            return clinician.latest()

    async def scenario(p: Pilot) -> None:
        idle_fps = Clock._max_fps
        await p.press("start")
        await p.press("accept")
        await p.press("walk_in")
        await p.press("devices_ok")
        p.controller.post(ClinicianAnswered())
        await p.wait_for("in_call")
        await asyncio.sleep(0.2)
        screen = p.app.root_widget.manager.current_screen
        assert screen.remote is not None and tuple(screen.remote.size) == (640, 480)
        assert Clock._max_fps == max(CALL_FPS, idle_fps)
        first = bytes(screen.remote.pixels)
        await asyncio.sleep(0.3)
        assert bytes(screen.remote.pixels) != first, "the clinician's picture moves"
        await p.press("ask_end")
        await p.press("end_call")
        assert Clock._max_fps == idle_fps, "back to the idle frame rate after the call"
        assert p.app._remote_texture is None, "no picture of the clinician is kept"

    asyncio.run(run_booth(scenario, remote=Remote()))


def test_the_volume_buttons_set_the_speaker_and_a_new_visit_starts_at_the_usual_volume() -> None:
    volumes: list[int] = []

    async def scenario(p: Pilot) -> None:
        p.app.on_volume = volumes.append
        await p.press("start")
        await p.press("accept")
        await p.press("walk_in")
        await p.press("devices_ok")
        p.controller.post(ClinicianAnswered())
        await p.wait_for("in_call")
        await p.press("volume_up")
        await p.press("volume_up")
        await p.press("volume_down")
        assert volumes[-3:] == [7, 8, 7]
        await p.press("ask_end")
        await p.press("end_call")
        await p.press("done")
        await p.wait_for("attract")
        assert volumes[-1] == 6

    asyncio.run(run_booth(scenario))
