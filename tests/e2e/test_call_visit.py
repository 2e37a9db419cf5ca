"""A whole visit, end to end: a real booth process, the real hub, the console in Chromium.

The booth (``telehealth-kiosk --simulate --headless``) is in one network
namespace, the hub (``clinic-hub serve --dev``) and the clinician's Chromium in
another, joined by a veth; the clinician signs in through the form and
answers from the queue. Media goes booth ⇄ browser directly over the veth.
One stack serves the whole module: each test starts at the attract screen
and leaves the booth there.

What the clinician sees is read from the page (``window.consoleTest``, the
``data-testid`` elements, the remote ``<video>`` drawn on a canvas); what the
booth does, from its JSON lines and its ``call`` command.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import sync_playwright

from tests.browser import require_chromium
from tests.e2e.stack import ADDRESS, BOOTH_ID, ROOM, SITE, Stack, clinic_stack, dump_on_failure
from tests.netlab import require_root

pytestmark = pytest.mark.root

BRIGHT = 60.0
"""Mean brightness above which the console shows a picture (the test card averages ~130)."""
DARK = 25.0
"""Mean brightness below which the console shows black (decoded black is 0-16)."""
SILENT = 0.01
"""audioLevel below which the console hears nothing (the booth's tone never goes under ~0.05)."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_root()
    require_chromium()
    with (
        sync_playwright() as playwright,
        clinic_stack(tmp_path_factory.mktemp("call-visit"), playwright) as stack,
    ):
        yield stack


@pytest.fixture(autouse=True)
def tidy(stack: Stack) -> Iterator[None]:
    yield
    stack.tidy()
    assert stack.console.errors == [], stack.console.errors


def _until(check: object, timeout: float, what: str, poll: float = 0.05) -> float:
    """Poll ``check()`` until truthy; returns the seconds it took."""
    assert callable(check)
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(poll)
    return time.monotonic() - start


def test_a_whole_visit_from_attract_to_wipe(stack: Stack) -> None:
    booth, console = stack.booth, stack.console
    mark, call_id = stack.start_call()

    # The resident walked attract -> notice -> check_in -> device_check -> waiting, and the
    # clinician's answer put the booth in the call: the same call on both sides.
    assert booth.states(mark)[:5] == ["notice", "check_in", "device_check", "waiting", "in_call"]
    assert console.value("t.call.booth_id") == BOOTH_ID
    assert console.value("t.call.iceServers") == []  # no TURN configured, no public STUN either
    assert console.value("t.pc.getConfiguration().iceServers") == []

    stats, call = stack.media_both_ways()
    # The clinician sees and hears the booth's test card and tone ...
    assert stats["framesDecoded"] > 0 and stats["audioBytesReceived"] > 0, stats
    assert stats["codec"] in ("video/VP8", "video/H264"), stats
    _until(lambda: (console.brightness() or 0) > BRIGHT, 10, "the booth's picture on the console")
    # ... and the booth the clinician's fake camera and microphone.
    assert call["call_id"] == call_id
    assert call["status"] == "connected" and call["offers"] == 1
    assert call["video_frames"] > 0 and call["audio_frames"] > 0 and call["audio_samples"] > 0
    assert call["remote_video"] is True and call["remote_size"][0] >= 320
    assert console.value("t.dataChannel") == "open"
    assert console.testid("call-status").text_content() == "Connected to the booth."
    booth_row = console.booth_row_state()
    assert booth_row == "in_use", booth_row

    # The resident ends the call: the console says so, the booth wraps up and wipes itself.
    end = booth.send("touch end_call")
    booth.wait_state("wrap_up", since=end)
    assert console.until("t.state === 'lobby' && t.lastEnded") == "resident_ended"
    assert console.testid("notice").text_content() == "The resident ended the call."
    assert console.testid("lobby").is_visible() and console.testid("call").is_hidden()
    assert console.value("t.pc") is None
    booth.wait_effect("wipe", since=end, timeout=10)  # by itself, after wrap_up_seconds
    booth.wait_state("attract", since=end, timeout=10)
    booth.wait_effect("occupancy_light_off", since=end)
    assert booth.states(end) == ["wrap_up", "wiping", "attract"]
    after = booth.call()
    assert (after["status"], after["call_id"], after["remote_video"]) == ("idle", None, False)
    console.until(
        f"t.snapshot.booths.some((b) => b.booth_id === '{BOOTH_ID}' && b.state === 'idle')"
    )


def test_the_door_pause_reaches_the_clinician_within_a_second(stack: Stack) -> None:
    booth, console = stack.booth, stack.console
    stack.start_call()
    stack.media_both_ways()

    # Door shut: the clinician sees and hears the resident (the twin of what follows).
    _until(lambda: (console.brightness() or 0) > BRIGHT, 10, "a picture before the door opens")
    _until(lambda: (console.audio_level() or 0) > SILENT, 10, "sound before the door opens")
    assert console.testid("door-indicator").text_content().startswith("Door: closed")

    opened = booth.send("door open")
    took = _until(lambda: console.value("t.door") == "open", 1.0, "the console's door indicator")
    assert console.testid("door-indicator").text_content().startswith("Door: OPEN")
    booth.wait_state("privacy_pause", since=opened)
    assert {"pause_media", "tell_clinician"} <= set(booth.effects(opened))
    # Privacy: the picture the clinician receives goes black and the sound silent.
    _until(lambda: (console.brightness() or 255) < DARK, 5, "black video on the console")
    _until(lambda: (console.audio_level() or 1) < SILENT, 5, "silence on the console")
    frames = console.stats()["framesDecoded"]
    time.sleep(0.5)
    assert console.stats()["framesDecoded"] > frames  # black frames: the call is alive, paused
    assert console.value("t.state") == "in_call"

    closed = booth.send("door close")
    _until(lambda: console.value("t.door") == "closed", 1.0, "the door indicator back to closed")
    assert console.testid("door-indicator").text_content().startswith("Door: closed")
    booth.wait_state("in_call", since=closed)
    _until(lambda: (console.brightness() or 0) > BRIGHT, 5, "the picture back after the door")
    _until(lambda: (console.audio_level() or 0) > SILENT, 5, "the sound back after the door")
    print(f"door indicator on the console {took:.3f} s after `door open`")

    stack.end_from_booth(opened)


def test_a_camera_knocked_loose_mid_call_goes_audio_only_and_video_returns_when_replugged(
    stack: Stack,
) -> None:
    """Unplugged: the call carries on with sound, the resident is told; plugged back: video
    within 5 s, without restarting the booth (a fresh camera handle; the old one is dead)."""
    booth, console = stack.booth, stack.console
    stack.start_call()
    stack.media_both_ways()
    _until(lambda: (console.brightness() or 0) > BRIGHT, 10, "a picture before the unplug")

    pulled = booth.send("device remove camera")
    booth.wait_effect("camera_off", since=pulled)
    assert booth.status()["message"] == "camera_lost"
    assert booth.status()["missing"] == ["camera"]
    _until(lambda: (console.brightness() or 255) < DARK, 5, "black video once the camera is gone")
    _until(lambda: (console.audio_level() or 0) > SILENT, 5, "the resident still heard")
    assert console.value("t.state") == "in_call"

    plugged = booth.send("device add camera")
    took = _until(lambda: (console.brightness() or 0) > BRIGHT, 5, "video back after the replug")
    booth.wait_effect("camera_on", since=plugged)
    status = booth.status()
    assert (status["state"], status["message"], status["missing"]) == ("in_call", None, [])
    assert booth.process.poll() is None
    print(f"video back on the console {took:.2f} s after the camera was plugged in again")
    stack.end_from_booth(pulled)


def test_a_frozen_camera_mid_call_is_reported_and_the_call_goes_on_with_sound(
    stack: Stack,
) -> None:
    booth, console = stack.booth, stack.console
    stack.start_call()
    stack.media_both_ways()
    _until(lambda: (console.brightness() or 0) > BRIGHT, 10, "a picture before the freeze")

    frozen = booth.send("device fail camera")
    booth.wait_effect("camera_off", since=frozen, timeout=6)  # FROZEN_AFTER is 3 s
    status = booth.status()
    assert (status["broken"], status["message"]) == (["camera"], "camera_lost"), status
    _until(lambda: (console.brightness() or 255) < DARK, 5, "black instead of a frozen picture")
    assert "hardware_fault device=camera reason=frozen" in booth.log_text()

    fixed = booth.send("device fix camera")
    booth.wait_effect("camera_on", since=fixed, timeout=3)
    _until(lambda: (console.brightness() or 0) > BRIGHT, 5, "video back once the camera moves")
    assert booth.status()["broken"] == []
    stack.end_from_booth(frozen)


def test_an_emergency_in_a_call_alerts_the_console_and_its_acknowledgement_reaches_the_booth(
    stack: Stack,
) -> None:
    booth, console = stack.booth, stack.console
    stack.start_call()
    stack.media_both_ways()

    # Twin: a press shorter than the hold time is no emergency (a bump, not a call for help).
    tap = booth.send("emergency press", "wait 0.3", "emergency release")
    time.sleep(2.5)
    assert "alarm_on" not in booth.effects(tap)
    assert console.value("t.alerts.length") == 0 and console.value("t.emergency") is False
    assert console.testid("emergency-indicator").text_content() == "No emergency"

    held = booth.send("emergency press")
    alarm = booth.wait_effect("alarm_on", since=held, timeout=5)  # after the 1 s hold
    booth.send("emergency release")
    console.until("t.alerts.length === 1", timeout=5)
    shown_after = time.monotonic() - alarm.at
    assert shown_after < 2.0, f"the alert reached the console {shown_after:.2f} s after the alarm"
    console.until("t.emergency === true", timeout=2)

    item = console.page.locator('[data-testid="alert"]')
    assert item.locator('[data-testid="alert-kind"]').text_content() == "EMERGENCY:"
    # Where to send help, from the hub's record of the booth (not from the booth's word).
    assert item.locator('[data-testid="alert-site"]').text_content() == SITE
    assert item.locator('[data-testid="alert-address"]').text_content() == ADDRESS
    assert item.locator('[data-testid="alert-room"]').text_content() == ROOM
    assert console.testid("alarm-banner").is_visible()
    assert console.testid("emergency-indicator").text_content() == "EMERGENCY button pressed"
    assert console.testid("emergency-indicator").get_attribute("data-active") == "true"
    assert console.value("t.alarm.sounding") is True
    assert booth.status()["state"] == "emergency"

    # A staff member acknowledges it on the console; the booth hears so from the hub.
    alert_id = console.value("t.alerts[0].alert_id")
    item.locator('[data-testid="ack"]').click()
    console.until("t.alerts.length === 0 && !t.alarm.sounding", timeout=5)
    assert console.testid("alarm-banner").is_hidden()
    _until(
        lambda: f"alert {alert_id} acknowledged by staff" in booth.log_text(),
        5,
        "the acknowledgement in the booth's log",
        poll=0.1,
    )
    assert f"alert {alert_id} received by the hub" in booth.log_text()

    # Staff clear the emergency at the booth: back in the call, and the console hears it.
    cleared = booth.send("staff clear")
    booth.wait_state("in_call", since=cleared)
    console.until("t.emergency === false", timeout=2)
    assert console.testid("emergency-indicator").text_content() == "No emergency"
    stack.end_from_booth(cleared)


def test_no_process_crashed_or_logged_a_traceback(stack: Stack) -> None:
    """After every visit above, the booth and the hub are still the processes they were."""
    assert stack.booth.process.poll() is None, dump_on_failure(stack)
    assert stack.hub.process.poll() is None, dump_on_failure(stack)
    assert "Traceback" not in stack.booth.log_text(), dump_on_failure(stack)
    assert "Traceback" not in stack.hub.log_text(), dump_on_failure(stack)
