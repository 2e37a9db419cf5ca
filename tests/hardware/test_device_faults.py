"""Cameras knocked loose and plugged back, and devices that are there but deliver nothing."""

from __future__ import annotations

import time

import pytest

from hardware.camera import CameraSocket, Frame, HotplugCamera, TestCard
from hardware.events import HardwareFault, HardwareRestored
from hardware.health import FROZEN_AFTER, SILENT_AFTER, DeviceWatch

# ---------------------------------------------------------------- hot-plug


def _until_frame(camera: HotplugCamera, timeout: float = 2.0) -> Frame | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = camera.latest()
        if frame is not None:
            return frame
        time.sleep(0.01)
    return None


@pytest.mark.parametrize("reopen", [True, False], ids=["reopened", "twin-kept-dead-handle"])
def test_a_replugged_camera_gives_pictures_again_only_through_a_fresh_handle(
    reopen: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HotplugCamera, "reopen_on_plug", reopen)
    socket = CameraSocket(TestCard)
    camera = HotplugCamera(socket.camera, socket.camera())
    camera.open()
    assert _until_frame(camera) is not None

    socket.unplug()
    camera.unplugged()
    assert camera.latest() is None  # a pulled camera gives nothing: the call sends black

    socket.plug()
    camera.plugged()
    if reopen:
        assert _until_frame(camera) is not None
        assert camera.present
    else:
        # Without the rebuild the old handle stays dead, as a real /dev/videoN fd does.
        assert _until_frame(camera, 0.3) is None


def test_a_camera_plugged_while_closed_stays_closed_until_the_visit_opens_it() -> None:
    socket = CameraSocket(TestCard)
    camera = HotplugCamera(socket.camera, None)  # none at start
    assert not camera.present and camera.latest() is None
    camera.plugged()
    assert camera.present and camera.latest() is None  # not opened: no picture is taken
    camera.open()
    assert camera.latest() is not None
    camera.close()
    assert camera.latest() is None


def test_a_camera_that_cannot_be_found_on_plug_leaves_the_wrapper_empty_not_broken() -> None:
    camera = HotplugCamera(lambda: None, None)
    camera.open()
    camera.plugged()
    assert not camera.present and camera.latest() is None


# ---------------------------------------------------------------- the device watch


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0


def _run(
    watch: DeviceWatch, clock: _Clock, seconds: float, *, camera: bool = True, mic: bool = True
) -> list[HardwareFault | HardwareRestored]:
    out: list[HardwareFault | HardwareRestored] = []
    end = clock.now + seconds
    while clock.now < end:
        clock.now += 0.5
        out += watch.check(clock.now, camera_open=camera, microphone_open=mic)
    return out


def _frame(value: int) -> Frame:
    return Frame(4, 2, bytes([value]) * 24)


class _Devices:
    def __init__(self) -> None:
        self.frame: Frame | None = _frame(0)
        self.moving = True
        self.level = 0.2
        self._n = 0

    def latest(self) -> Frame | None:
        if self.moving and self.frame is not None:
            self._n += 1
            self.frame = _frame(self._n % 250)
        return self.frame


@pytest.mark.parametrize("enabled", [True, False], ids=["watched", "twin-unwatched"])
def test_a_frozen_camera_is_reported_after_three_seconds_and_restored_when_it_moves(
    enabled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DeviceWatch, "enabled", enabled)
    devices, clock = _Devices(), _Clock()
    watch = DeviceWatch(devices.latest, lambda: devices.level)
    assert _run(watch, clock, 10) == []  # a moving camera and a live microphone: nothing

    devices.moving = False  # the same picture object, over and over
    events = _run(watch, clock, FROZEN_AFTER + 1)
    if not enabled:
        assert events == []  # the twin: a frozen camera goes unnoticed
        return
    assert events == [HardwareFault("camera", "frozen")]
    assert _run(watch, clock, 10) == []  # reported once, not every half second

    devices.moving = True
    assert _run(watch, clock, 1) == [HardwareRestored("camera")]


def test_the_same_picture_in_new_objects_counts_as_frozen_and_no_picture_as_no_frames() -> None:
    devices, clock = _Devices(), _Clock()
    still = _frame(7)
    watch = DeviceWatch(lambda: Frame(still.width, still.height, still.rgb), None)
    assert _run(watch, clock, FROZEN_AFTER + 1) == [HardwareFault("camera", "frozen")]

    watch = DeviceWatch(lambda: None, None)
    assert _run(watch, clock, FROZEN_AFTER - 1) == []  # a camera still starting up
    assert _run(watch, clock, 1.5) == [HardwareFault("camera", "no_frames")]
    del devices


def test_a_silent_microphone_is_reported_after_five_seconds_a_quiet_one_never() -> None:
    devices, clock = _Devices(), _Clock()
    watch = DeviceWatch(devices.latest, lambda: devices.level)
    devices.level = 0.001  # a quiet room: the microphone's own noise
    assert _run(watch, clock, 30) == []
    devices.level = 0.0  # digital silence: a dead microphone or recorder
    assert _run(watch, clock, SILENT_AFTER - 1) == []
    assert _run(watch, clock, 1.5) == [HardwareFault("microphone", "silent")]
    devices.level = 0.3
    assert _run(watch, clock, 0.5) == [HardwareRestored("microphone")]


def test_closed_devices_are_not_judged_and_start_afresh_when_opened() -> None:
    devices, clock = _Devices(), _Clock()
    devices.moving, devices.level = False, 0.0
    watch = DeviceWatch(devices.latest, lambda: devices.level)
    assert _run(watch, clock, 2.5) == []
    assert _run(watch, clock, 60, camera=False, mic=False) == []  # between visits
    assert _run(watch, clock, 2.5) == []  # the clock started again at opening
    assert _run(watch, clock, 1.5) == [HardwareFault("camera", "frozen")]
