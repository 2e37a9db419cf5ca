"""Hardware in the loop: the booth's sound and a USB camera's hot-plug. Skipped off a booth.

On an installed booth (``kiosk-provision install`` set up PipeWire's echo
cancellation), as the ``kiosk`` user in its session:

    .venv/bin/python -m pytest --hil -s tests/hardware/test_media_hil.py

``-s`` shows the prompts: the hot-plug and headset tests ask the technician
to unplug and plug devices back, and wait up to a minute for each.
"""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest

from hardware import udev
from hardware.audio import (
    EC_SINK,
    EC_SOURCE,
    SAMPLE_RATE,
    AudioRouter,
    PipeMicrophone,
    PipeSpeaker,
)
from hardware.camera import HotplugCamera
from hardware.events import DeviceAdded, DeviceKind, DeviceRemoved, HardwareEvent
from kiosk.app import _usb_camera

pytestmark = pytest.mark.hil

WAIT_FOR_PERSON = 60.0


def test_the_echo_cancelled_speaker_and_microphone_are_what_the_booth_uses() -> None:
    route = AudioRouter().route(None)
    assert (route.speaker, route.microphone) == (EC_SINK, EC_SOURCE), (
        "PipeWire has no echo-cancel nodes: run `kiosk-provision install` and log in again"
    )


def test_the_microphone_hears_the_room_and_is_never_digitally_silent() -> None:
    route = AudioRouter().route(None)
    mic = PipeMicrophone(route.microphone)
    mic.open()
    try:
        levels = []
        for _ in range(40):
            time.sleep(0.05)
            levels.append(mic.level())
        pcm = mic.read(SAMPLE_RATE // 10)
    finally:
        mic.close()
    assert max(levels) > 0.0, "exact silence for 2 s: the device watch would call it broken"
    assert np.frombuffer(pcm, dtype="<i2").any()


def test_the_speaker_plays_a_tone_through_the_route_without_dropping() -> None:
    route = AudioRouter().route(None)
    speaker = PipeSpeaker(route.speaker, volume=5)
    speaker.open()
    try:
        n = np.arange(960)
        for i in range(100):  # 2 s of 440 Hz, in 20 ms frames, in real time
            wave = np.sin(2 * math.pi * 440 * (n + 960 * i) / SAMPLE_RATE) * 8000
            speaker.play(wave.astype("<i2").tobytes())
            time.sleep(0.02)
        assert speaker.playing, "the player exited: see `journalctl --user -u pipewire`"
    finally:
        speaker.close()
    assert speaker.dropped < SAMPLE_RATE // 5 * 2


def _wait_for(kind: DeviceKind, added: bool, prompt: str) -> HardwareEvent:
    """Ask the technician to do something, and wait for udev to report it."""

    async def watch() -> HardwareEvent:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[HardwareEvent] = loop.create_future()

        def emit(event: HardwareEvent) -> None:
            want = DeviceAdded if added else DeviceRemoved
            if isinstance(event, want) and event.kind is kind and not got.done():
                got.set_result(event)

        watcher = udev.HotplugWatcher.for_system(emit, loop)
        watcher.start()
        print(f"\n>>> {prompt} (within {WAIT_FOR_PERSON:.0f} s)", flush=True)
        try:
            return await asyncio.wait_for(got, WAIT_FOR_PERSON)
        finally:
            watcher.stop()

    return asyncio.run(watch())


def test_a_usb_camera_unplugged_and_plugged_back_gives_pictures_within_5_s() -> None:
    camera = HotplugCamera(_usb_camera, _usb_camera())
    assert camera.present, "plug a USB camera in before this test"
    camera.open()
    try:
        _wait_for(DeviceKind.CAMERA, False, "Unplug the USB camera")
        camera.unplugged()
        _wait_for(DeviceKind.CAMERA, True, "Plug the USB camera back in")
        started = time.monotonic()
        camera.plugged()
        while camera.latest() is None and time.monotonic() - started < 5:
            time.sleep(0.05)
        assert camera.latest() is not None, "no picture within 5 s of the replug"
    finally:
        camera.close()


def test_a_headset_plugged_in_is_found_with_its_own_speaker_and_microphone() -> None:
    event = _wait_for(DeviceKind.HEADSET, True, "Plug a USB headset in")
    assert isinstance(event, DeviceAdded) and event.card is not None
    route = AudioRouter().route(event.card)
    assert route.headset and route.speaker and route.microphone, route
    assert EC_SINK not in route.speaker
    mic = PipeMicrophone(route.microphone)
    mic.open()
    try:
        time.sleep(1.0)
        assert mic.recording, "the headset's microphone could not be opened"
    finally:
        mic.close()
