"""A USB (UVC) camera through Video4Linux2, at the best mode it offers for a call.

The camera says what it can do (``v4l2-ctl --list-formats-ext``, from the
``v4l-utils`` package): formats (MJPG, YUYV, ...), sizes per format, frame
rates per size. :func:`parse_formats` turns that listing into :class:`Mode`
values and :func:`choose_mode`, a pure function, picks one (the rules are in
its docstring). :class:`UsbCamera` then reads that mode with PyAV's
``video4linux2`` input on a thread of its own and keeps only the newest
picture, in memory.

Without ``v4l2-ctl`` the camera is opened at :data:`FALLBACK` (what
nearly every UVC camera offers), and if that fails, at whatever mode the
driver gives by default.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import av
import numpy as np

from hardware.camera import Frame

_log = logging.getLogger(__name__)

PYAV_FORMATS: Final = {"MJPG": "mjpeg", "YUYV": "yuyv422"}
"""The formats read here, by V4L2 fourcc, with FFmpeg's name for each."""
FORMAT_PREFERENCE: Final = ("YUYV", "MJPG")
"""At an equal mode: raw YUYV costs no JPEG decoding on the booth's CPU; then MJPG."""
WANT_SIZE: Final = (640, 480)
"""The largest picture the call sends (``kiosk.call.tracks.MAX_SIZE``)."""
WANT_FPS: Final = 30.0
MAX_PIXELS: Final = 1280 * 720
"""Budget: bigger pictures are only decoded and scaled down again."""
MIN_FPS: Final = 10.0
"""Budget: slower than this is a slideshow."""
LIST_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, order=True)
class Mode:
    """One way the camera can deliver pictures."""

    fourcc: str  # "MJPG", "YUYV", ...
    width: int
    height: int
    fps: float

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def __str__(self) -> str:
        return f"{self.fourcc} {self.width}x{self.height}@{self.fps:g}"


_FORMAT = re.compile(r"(?:\[\d+\]:|Pixel Format\s*:)\s*'([^']{1,4})'")
_DISCRETE = re.compile(r"Size:\s*Discrete\s+(\d+)x(\d+)")
_STEPWISE = re.compile(
    r"Size:\s*(?:Stepwise|Continuous)\s+(\d+)x(\d+)\s*-\s*(\d+)x(\d+)"
    r"(?:\s+with step\s+(\d+)/(\d+))?"
)
_INTERVAL = re.compile(r"Interval:\s*Discrete\s+[\d.]+s\s*\(([\d.]+)\s*fps\)")
_INTERVAL_RANGE = re.compile(r"Interval:\s*(?:Stepwise|Continuous).*\(([\d.]+)-([\d.]+)\s*fps\)")
_COMMON_SIZES = ((320, 240), (640, 360), (640, 480), (800, 600), (960, 540), (1280, 720))


Size = tuple[int, int]


def _fits(size: Size, low: Size, high: Size, step: Size) -> bool:
    w, h = size
    return (
        low[0] <= w <= high[0]
        and low[1] <= h <= high[1]
        and (w - low[0]) % max(1, step[0]) == 0
        and (h - low[1]) % max(1, step[1]) == 0
    )


def parse_formats(listing: str) -> list[Mode]:
    """The modes in ``v4l2-ctl --list-formats-ext`` output, in listing order, without repeats.

    Discrete sizes and intervals are taken as listed. A stepwise or
    continuous size range stands for the common sizes it contains (and its
    largest); a stepwise interval range for its fastest rate and 30 fps if
    within it. Anything unreadable is skipped.
    """
    modes: list[Mode] = []
    seen: set[Mode] = set()
    fourcc: str | None = None
    sizes: list[tuple[int, int]] = []

    def add(rate: float) -> None:
        if fourcc is None:
            return
        for w, h in sizes:
            mode = Mode(fourcc, w, h, round(rate, 3))
            if mode not in seen and w > 0 and h > 0 and rate > 0:
                seen.add(mode)
                modes.append(mode)

    for line in listing.splitlines():
        if match := _FORMAT.search(line):
            fourcc, sizes = match[1].strip(), []
        elif match := _DISCRETE.search(line):
            sizes = [(int(match[1]), int(match[2]))]
        elif match := _STEPWISE.search(line):
            low, high = (int(match[1]), int(match[2])), (int(match[3]), int(match[4]))
            step = (int(match[5] or 1), int(match[6] or 1))
            sizes = [s for s in _COMMON_SIZES if _fits(s, low, high, step)] + [high]
        elif match := _INTERVAL.search(line):
            add(float(match[1]))
        elif match := _INTERVAL_RANGE.search(line):
            slow, fast = float(match[1]), float(match[2])
            add(fast)
            if slow <= WANT_FPS < fast:
                add(WANT_FPS)
    return modes


def useful(mode: Mode, want: tuple[int, int] = WANT_SIZE, fps: float = WANT_FPS) -> float:
    """Pixels a second the call can use of ``mode``.

    The call scales every picture to fit within ``want`` (aspect kept), so a
    bigger picture counts only as its fitted size, and a rate above ``fps``
    counts as ``fps``.
    """
    scale = min(1.0, want[0] / mode.width, want[1] / mode.height)
    return round(mode.width * scale) * round(mode.height * scale) * min(mode.fps, fps)


def choose_mode(
    modes: Iterable[Mode],
    *,
    want: tuple[int, int] = WANT_SIZE,
    fps: float = WANT_FPS,
    max_pixels: int = MAX_PIXELS,
    min_fps: float = MIN_FPS,
) -> Mode | None:
    """The offered mode that serves the call best, or None when no offered format is readable.

    1. Only formats this module reads (:data:`PYAV_FORMATS`).
    2. Within budget: at most ``max_pixels`` and at least ``min_fps``; when no
       mode is within budget, all readable modes are considered.
    3. Most :func:`useful` pixels a second (size as the call will send it,
       fitted within ``want``; rate up to ``fps``): 640x480@30 is ideal,
       640x480@15 beats 320x240@30, and a bigger or faster mode gains
       nothing over it (1280x720 is sent as 640x360, like 640x360 itself).
    4. Among equals, the closest above the wish: the smallest picture, then
       the lowest rate (less to move over USB, decode and scale), then YUYV
       before MJPG (no JPEG decoding).

    Whatever it returns is one of ``modes``.
    """
    readable = [m for m in modes if m.fourcc in PYAV_FORMATS]
    if not readable:
        return None
    budget = [m for m in readable if m.pixels <= max_pixels and m.fps >= min_fps]
    pool = budget or readable

    def key(m: Mode) -> tuple[float, int, float, int, int, int]:
        return (
            -useful(m, want, fps),
            m.pixels,
            m.fps,
            FORMAT_PREFERENCE.index(m.fourcc),
            m.width,
            m.height,
        )

    return min(pool, key=key)


def list_modes(device: str) -> list[Mode] | None:
    """What ``device`` offers, from ``v4l2-ctl``; None when v4l2-ctl is missing or fails."""
    tool = shutil.which("v4l2-ctl")
    if tool is None:
        return None
    try:
        result = subprocess.run(
            [tool, "--device", device, "--list-formats-ext"],
            capture_output=True,
            text=True,
            timeout=LIST_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _log.warning("usb camera: v4l2-ctl failed (%s)", type(exc).__name__)
        return None
    if result.returncode != 0:
        _log.warning("usb camera: v4l2-ctl exited %d", result.returncode)
        return None
    return parse_formats(result.stdout)


def input_options(mode: Mode | None) -> dict[str, str]:
    """PyAV ``video4linux2`` input options for ``mode`` (none: the driver's default)."""
    if mode is None:
        return {}
    return {
        "input_format": PYAV_FORMATS[mode.fourcc],
        "video_size": f"{mode.width}x{mode.height}",
        "framerate": f"{mode.fps:g}",
    }


class UsbCamera:
    """A UVC camera at ``device``, read on a thread; :meth:`latest` is the newest picture."""

    def __init__(self, device: str = "/dev/video0", *, modes: Sequence[Mode] | None = None) -> None:
        self.device = device
        self._modes = modes
        self.mode: Mode | None = None
        self._newest: Frame | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._container: Any = None

    @property
    def encoder(self) -> None:
        """A USB camera's own H.264 (some have it) is not used: the call encodes raw frames."""
        return None

    def open(self) -> None:
        if self._thread is not None:
            return
        modes = self._modes if self._modes is not None else list_modes(self.device)
        chosen = choose_mode(modes) if modes else FALLBACK
        container = None
        for attempt in (chosen, None) if chosen is not None else (None,):
            try:
                options = input_options(attempt)
                container = av.open(self.device, format="video4linux2", options=options)
            except (av.FFmpegError, OSError) as exc:
                what = attempt or "default mode"
                _log.warning("usb camera: %s would not open (%s)", what, type(exc).__name__)
                continue
            self.mode = attempt
            break
        if container is None:
            from kiosk.errors import HardwareError

            raise HardwareError(f"camera: {self.device} could not be opened")
        _log.info("usb camera: %s at %s", self.device, self.mode or "the driver's default mode")
        self._container = container
        self._halt.clear()
        self._thread = threading.Thread(target=self._run, name="usb-camera", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        container = self._container
        try:
            for video in container.decode(video=0):
                if self._halt.is_set():
                    break
                rows = video.to_ndarray(format="rgb24")
                frame = Frame(video.width, video.height, np.ascontiguousarray(rows[::-1]).tobytes())
                with self._lock:
                    self._newest = frame
        except (av.FFmpegError, OSError) as exc:
            if not self._halt.is_set():
                _log.warning("usb camera: reading stopped (%s)", type(exc).__name__)

    def latest(self) -> Frame | None:
        with self._lock:
            return self._newest

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._halt.set()
        container, self._container = self._container, None
        thread.join(timeout=2.0)
        if container is not None:
            container.close()
        with self._lock:
            self._newest = None


FALLBACK: Final = Mode("MJPG", 640, 480, 30.0)
"""Tried first when the camera's modes are unknown (no v4l2-ctl)."""

__all__ = [
    "FALLBACK",
    "MAX_PIXELS",
    "MIN_FPS",
    "PYAV_FORMATS",
    "WANT_FPS",
    "WANT_SIZE",
    "Mode",
    "UsbCamera",
    "choose_mode",
    "input_options",
    "list_modes",
    "parse_formats",
    "useful",
]
