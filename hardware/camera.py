"""Cameras behind one small interface; the simulated twin is a moving test card.

Backends: :class:`TestCard` (here), the Pi camera through picamera2
(:mod:`hardware.picamera`, which alone imports picamera2), a USB camera
(:mod:`hardware.v4l2`), and the test card with a simulated hardware H.264
encoder (:class:`hardware.h264.EncodingTestCard`). :func:`make_camera` picks
one from ``[hardware] camera`` (``auto`` detects). A camera that has its own
H.264 encoder offers it as ``camera.encoder`` (:class:`EncodingCamera`,
:func:`encoder_of`); the call then sends that stream unchanged.

Frames are held in memory only, newest first and one at a time: nothing in
this module (or anywhere in the booth) writes an image anywhere.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

if TYPE_CHECKING:
    from hardware.h264 import EncodedVideo

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """One RGB picture, rows bottom-up (as OpenGL and Kivy textures want them)."""

    width: int
    height: int
    rgb: bytes = field(repr=False)


class Camera(Protocol):
    """What the booth needs from any camera: open, the newest frame, close."""

    def open(self) -> None: ...

    def latest(self) -> Frame | None: ...

    def close(self) -> None: ...


_BARS = [
    (235, 235, 235),
    (235, 235, 16),
    (16, 235, 235),
    (16, 235, 16),
    (235, 16, 235),
    (235, 16, 16),
    (16, 16, 235),
]


class TestCard:
    """Colour bars with a block sweeping across, so a self-view visibly moves.

    Drawn on demand from the clock, with no thread: the booth asks for a
    frame only while something shows it.
    """

    __test__ = False  # not a pytest class

    def __init__(self, width: int = 320, height: int = 240, clock: object = time.monotonic) -> None:
        self.width, self.height = width, height
        self._clock = clock
        self._open = False
        bar_w = math.ceil(width / len(_BARS))
        row = b"".join(bytes(_BARS[min(x // bar_w, len(_BARS) - 1)]) for x in range(width))
        self._row = row

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    def latest(self) -> Frame | None:
        if not self._open:
            return None
        now = float(self._clock())  # type: ignore[operator]
        return self.frame_at(now)

    def frame_at(self, t: float) -> Frame:
        """The card at time ``t``: bars, and a dark block at a position set by ``t``."""
        w, h = self.width, self.height
        size = max(8, h // 5)
        x0 = int((t * 80) % max(1, w - size))
        y0 = (h - size) // 2
        block = bytes((20, 20, 20)) * size
        rows = []
        for y in range(h):
            if y0 <= y < y0 + size:
                rows.append(self._row[: x0 * 3] + block + self._row[(x0 + size) * 3 :])
            else:
                rows.append(self._row)
        return Frame(w, h, b"".join(rows))


# ---------------------------------------------------------------- choosing a camera

CAMERA_CHOICES: Final = ("auto", "picamera", "usb", "test_card")
"""``[hardware] camera``: detect, the Pi (CSI) camera, a USB (UVC) camera, the test card."""

SYSFS_VIDEO: Final = Path("/sys/class/video4linux")
DEVICE_TREE_MODEL: Final = Path("/proc/device-tree/model")


@runtime_checkable
class EncodingCamera(Camera, Protocol):
    """A camera that may also hand out its own H.264 (a Pi 4's hardware encoder, the simulation).

    ``encoder`` is None when it has none (a Pi 5): the call then encodes the
    raw frames from :meth:`latest` itself.
    """

    @property
    def encoder(self) -> EncodedVideo | None: ...


def encoder_of(camera: object) -> EncodedVideo | None:
    """The camera's own H.264 encoder, or None (no camera, or one that only gives pictures)."""
    encoder = getattr(camera, "encoder", None)
    if encoder is None:
        return None
    from hardware.h264 import EncodedVideo

    return encoder if isinstance(encoder, EncodedVideo) else None


@dataclass(frozen=True)
class VideoDevice:
    """A ``/dev/videoN`` node as sysfs describes it."""

    node: str  # "/dev/video0"
    name: str  # the driver's or the product's name: "unicam-image", "HD Pro Webcam C920"
    index: int = 0  # 0: a device's first node (a UVC camera's capture node; 1 is its metadata)
    usb: bool = False  # on a USB bus


def list_video_devices(sysfs: Path = SYSFS_VIDEO) -> list[VideoDevice]:
    """The machine's video nodes, in number order; [] when there is no video4linux."""
    out = []
    try:
        entries = sorted(sysfs.glob("video[0-9]*"), key=lambda p: int(p.name[5:] or 0))
    except (OSError, ValueError):
        return []
    for entry in entries:
        try:
            name = (entry / "name").read_text(encoding="utf-8", errors="replace").strip()
            index_text = (entry / "index").read_text(encoding="ascii").strip()
            index = int(index_text) if index_text.isdigit() else 0
            device = str((entry / "device").resolve())
        except OSError:
            continue
        out.append(VideoDevice(f"/dev/{entry.name}", name, index, "/usb" in device))
    return out


def read_model(path: Path = DEVICE_TREE_MODEL) -> str | None:
    """The board's model ("Raspberry Pi 4 Model B Rev 1.4"), or None off a Pi (no device tree)."""
    try:
        return path.read_bytes().rstrip(b"\0").decode("utf-8", errors="replace").strip() or None
    except OSError:
        return None


def usb_camera_node(devices: Sequence[VideoDevice]) -> str | None:
    """A USB camera's capture node: the first node (index 0) of a device on a USB bus."""
    for device in devices:
        if device.usb and device.index == 0:
            return device.node
    return None


def detect_camera(csi_cameras: int, devices: Sequence[VideoDevice]) -> str | None:
    """``auto``: a Pi camera on the CSI connector first (libcamera found one), else a USB camera.

    None when there is neither: the booth then has no picture (calls send
    black) rather than a test card that a clinician could take for a fault.
    """
    if csi_cameras > 0:
        return "picamera"
    if usb_camera_node(devices) is not None:
        return "usb"
    return None


def make_camera(
    choice: str = "auto",
    *,
    devices: Sequence[VideoDevice] | None = None,
    csi_cameras: Callable[[], int] | None = None,
) -> Camera | None:
    """The camera ``[hardware] camera`` asks for, not yet opened; None when there is none.

    ``auto`` looks (libcamera's camera list, sysfs) and takes what
    :func:`detect_camera` says. The Pi backend decides for itself whether the
    board has a hardware H.264 encoder (see :mod:`hardware.picamera`).
    Backend modules are imported only when chosen: ``picamera2`` exists only
    on a Pi.
    """
    if choice not in CAMERA_CHOICES:
        raise ValueError(f"camera must be one of {', '.join(CAMERA_CHOICES)}, not {choice!r}")
    if choice == "test_card":
        return TestCard()
    if devices is None:
        devices = list_video_devices()
    if choice == "auto":
        if csi_cameras is None:
            from hardware.picamera import csi_camera_count

            csi_cameras = csi_camera_count
        found = detect_camera(csi_cameras(), devices)
        if found is None:
            return None
        choice = found
    if choice == "picamera":
        from hardware.picamera import PiCamera, choose_pipeline

        return PiCamera(pipeline=choose_pipeline(read_model(), devices))
    from hardware.v4l2 import UsbCamera

    node = usb_camera_node(devices)
    return UsbCamera(node or "/dev/video0")


# ---------------------------------------------------------------- hot-plug


class HotplugCamera:
    """A camera that can be unplugged and plugged back: USB cameras get knocked loose.

    ``make`` finds and builds the camera (``make_camera``, or the simulator's
    socket); :meth:`unplugged` drops the dead handle, :meth:`plugged` builds a
    fresh one and opens it if the camera is meant to be open, so video comes
    back without restarting the booth. Until then :meth:`latest` is None and
    the call sends black. :meth:`plugged` may block (opening a camera asks the
    driver); call it off the event loop.
    """

    reopen_on_plug: bool = True
    """Drop the dead handle and build a fresh one on hot-plug; off, the camera keeps its
    first handle as a plain camera would. Only the tests' twin turns this off."""

    def __init__(self, make: Callable[[], Camera | None], initial: Camera | None) -> None:
        self._make = make
        self._inner = initial
        self._want_open = False

    @property
    def present(self) -> bool:
        return self._inner is not None

    @property
    def encoder(self) -> EncodedVideo | None:
        """The plugged camera's own H.264, if it has one (the simulation's encoding card)."""
        return encoder_of(self._inner)

    def open(self) -> None:
        self._want_open = True
        inner = self._inner
        if inner is not None:
            self._open(inner)

    def _open(self, inner: Camera) -> None:
        from kiosk.errors import HardwareError

        try:
            inner.open()
        except HardwareError as exc:
            _log.warning("%s", exc)

    def latest(self) -> Frame | None:
        inner = self._inner
        return inner.latest() if inner is not None else None

    def close(self) -> None:
        self._want_open = False
        if self._inner is not None:
            self._inner.close()

    def unplugged(self) -> None:
        if not self.reopen_on_plug:
            return
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()

    def plugged(self) -> None:
        if not self.reopen_on_plug:
            return
        self.unplugged()
        inner = self._make()
        if inner is not None and self._want_open:
            self._open(inner)
        self._inner = inner


class CameraSocket:
    """The simulator's USB port with a camera in it (a test card), for hot-plug and faults.

    ``unplug`` kills every handle made so far, as pulling a real camera does
    (its file descriptor is dead even after it comes back); ``plug`` lets new
    handles work. ``freeze`` makes the camera keep giving its last picture, as
    a wedged driver does.
    """

    def __init__(self, make: Callable[[], Camera] = TestCard) -> None:
        self._make = make
        self.plugged_in = True
        self.frozen = False
        self.generation = 0

    def unplug(self) -> None:
        self.plugged_in = False
        self.generation += 1

    def plug(self) -> None:
        self.plugged_in = True

    def camera(self) -> Camera | None:
        """A new handle on the camera, or None when nothing is plugged in."""
        return _SocketCamera(self, self._make()) if self.plugged_in else None


class _SocketCamera:
    def __init__(self, socket: CameraSocket, inner: Camera) -> None:
        self._socket = socket
        self._inner = inner
        self._generation = socket.generation
        self._last: Frame | None = None

    @property
    def encoder(self) -> EncodedVideo | None:
        return encoder_of(self._inner)

    def open(self) -> None:
        self._inner.open()

    def close(self) -> None:
        self._inner.close()

    def latest(self) -> Frame | None:
        s = self._socket
        if self._generation != s.generation or not s.plugged_in:
            return None
        if s.frozen and self._last is not None:
            return self._last
        self._last = self._inner.latest()
        return self._last
