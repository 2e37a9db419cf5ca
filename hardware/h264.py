"""Video that a camera has already encoded as H.264, ready to go out unchanged.

A Raspberry Pi 4 has an H.264 encoder in hardware. Re-encoding its output in
software would cost most of a CPU core for nothing, so a camera that has such
an encoder offers it as :class:`EncodedVideo`: a source of H.264 access units
(Annex-B bytes, one per picture, whether it is a keyframe, the capture time)
that the call sends as they are (:mod:`kiosk.call.passthrough`), and a
:meth:`~EncodedVideo.force_key_frame` for when the far side lost the picture.

The stream the call expects (what aiortc's SDP offers, ``profile-level-id``
``42001f``/``42e01f``): baseline profile, level :data:`WEBRTC_LEVEL`, SPS and
PPS repeated before every keyframe (a viewer that joins or loses packets
needs them), a short keyframe interval, no B-frames.

:class:`SimulatedH264Encoder` is the hardware encoder's stand-in on machines
without one: libx264 through PyAV on a thread of its own, fed from any
:class:`~hardware.camera.Camera` (the test card), at the camera's pace of
about 30 pictures a second. It makes real H.264, so everything after the
encoder runs here as it does on a booth. :class:`EncodingTestCard` is a test
card with one attached.

Frames live in memory only; nothing here writes a picture anywhere.
"""

from __future__ import annotations

import fractions
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

import av
import numpy as np

from hardware.camera import TestCard

if TYPE_CHECKING:
    from hardware.camera import Camera, Frame

_log = logging.getLogger(__name__)

WEBRTC_LEVEL: Final = "3.1"
"""The H.264 level aiortc offers (``profile-level-id`` ``42001f`` and ``42e01f``: 0x1f = 31).

Level 3.1 allows up to 1280x720 at 30 fps; the booth sends at most 640x480.
"""
WEBRTC_PROFILE: Final = "baseline"
"""Baseline (libx264 marks it constrained baseline too): no B-frames, what every browser decodes."""
KEYFRAME_INTERVAL: Final = 30
"""Pictures between keyframes: a second at 30 fps, so a lost picture mends within a second."""
DEFAULT_BITRATE: Final = 800_000
"""Bits a second for 640x480 at 30 fps: plenty for a face, modest on a booth's uplink."""
MIN_BITRATE: Final = 50_000
"""The least an encoder is asked for: below it x264 makes mush, and a poor link gets "off"."""

Sink = Callable[["EncodedFrame"], None]
"""Called on the encoder's own thread with every access unit; must not block."""


@dataclass(frozen=True)
class EncodedFrame:
    """One picture as H.264: an Annex-B access unit (start codes, SPS/PPS before keyframes)."""

    data: bytes = field(repr=False)
    keyframe: bool
    timestamp_us: int
    """When the picture was taken, in microseconds of a monotonic clock."""


@runtime_checkable
class EncodedVideo(Protocol):
    """An H.264 encoder the call can take pictures from unchanged.

    The encoder runs while anyone is subscribed: the first :meth:`subscribe`
    starts it, the last unsubscribe (the function it returned) stops it.
    """

    @property
    def size(self) -> tuple[int, int]:
        """Width and height of the pictures it encodes."""
        ...

    def subscribe(self, sink: Sink) -> Callable[[], None]: ...

    def force_key_frame(self) -> None:
        """Make the next picture (or the one after) a keyframe; safe from any thread."""
        ...


@runtime_checkable
class AdjustableBitrate(Protocol):
    """An encoder whose bitrate can change while it runs (the call's video level, the far
    side's estimate); one that cannot keep the rate it started with."""

    @property
    def bitrate(self) -> int:
        """Bits a second it encodes at now (or will, from the next picture)."""
        ...

    def set_bitrate(self, bitrate: int) -> None:
        """Encode at ``bitrate`` from the next picture on (within the encoder's limits);
        safe from any thread."""
        ...


class EncoderFanout(ABC):
    """Sink bookkeeping for an encoder: start on the first subscriber, stop after the last.

    Subclasses implement :meth:`_start`, :meth:`_stop` and call :meth:`_emit`
    from their encoder thread.
    """

    def __init__(self) -> None:
        self._sinks: list[Sink] = []
        self._sinks_lock = threading.RLock()
        self.frames_emitted = 0

    @property
    def running(self) -> bool:
        return bool(self._sinks)

    def subscribe(self, sink: Sink) -> Callable[[], None]:
        with self._sinks_lock:
            first = not self._sinks
            self._sinks.append(sink)
            if first:
                self._start()

        def unsubscribe() -> None:
            with self._sinks_lock:
                if sink not in self._sinks:
                    return  # twice is fine
                self._sinks.remove(sink)
                if not self._sinks:
                    self._stop()

        return unsubscribe

    def _emit(self, frame: EncodedFrame) -> None:
        self.frames_emitted += 1
        for sink in list(self._sinks):
            try:
                sink(frame)
            except Exception:
                _log.exception("an encoded video sink failed")

    @abstractmethod
    def _start(self) -> None:
        """Start encoding: the first sink subscribed."""

    @abstractmethod
    def _stop(self) -> None:
        """Stop encoding: the last sink left."""


def x264_context(
    width: int,
    height: int,
    fps: int,
    *,
    keyframe_interval: int = KEYFRAME_INTERVAL,
    bitrate: int = DEFAULT_BITRATE,
    level: str = WEBRTC_LEVEL,
) -> av.VideoCodecContext:
    """A libx264 encoder making the stream a WebRTC peer expects (see the module docstring).

    ``forced-idr``: a forced keyframe is an IDR (what a PLI asks for), and
    ``repeat-headers``: SPS and PPS before every keyframe. No global header,
    so they are in-band. One thread: a booth has few cores to spare. A VBV
    buffer of a second at ``bitrate``: x264 changes its rate while it runs
    (``context.bit_rate`` lowered between pictures) only with one.
    """
    context = av.CodecContext.create("libx264", "w")
    context.width, context.height = width, height
    context.pix_fmt = "yuv420p"
    context.time_base = fractions.Fraction(1, fps)
    context.framerate = fractions.Fraction(fps, 1)
    context.bit_rate = bitrate
    context.thread_count = 1
    context.options = {
        "profile": WEBRTC_PROFILE,
        "level": level,
        "preset": "ultrafast",
        "tune": "zerolatency",
        "forced-idr": "1",
        "maxrate": str(bitrate),
        "bufsize": str(bitrate),
        "x264-params": (
            f"keyint={keyframe_interval}:min-keyint={keyframe_interval}:scenecut=0:repeat-headers=1"
        ),
    }
    return context


def picture_to_video_frame(picture: Frame) -> av.VideoFrame:
    """A camera frame (RGB, rows bottom-up) as a PyAV frame (rows top-down)."""
    rows = np.frombuffer(picture.rgb, dtype=np.uint8).reshape(picture.height, picture.width, 3)
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rows[::-1]), format="rgb24")


def encode_black(
    width: int, height: int, frames: int, fps: int = 5, level: str = WEBRTC_LEVEL
) -> list[tuple[bytes, bool]]:
    """A black clip as H.264: a keyframe (with SPS/PPS), then ``frames - 1`` tiny P-frames.

    Played in a loop it is a valid stream (every loop starts at its IDR), so a
    paused booth can send black without its camera or its encoder. A few kB.
    """
    context = x264_context(
        width, height, fps, keyframe_interval=frames, bitrate=100_000, level=level
    )
    black = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), dtype=np.uint8), format="rgb24")
    black = black.reformat(format="yuv420p")
    out: list[tuple[bytes, bool]] = []
    for i in range(frames):
        black.pts = i
        out.extend((bytes(p), bool(p.is_keyframe)) for p in context.encode(black))
    out.extend((bytes(p), bool(p.is_keyframe)) for p in context.encode(None))
    if not out or not out[0][1]:
        raise RuntimeError("libx264 did not start the black clip with a keyframe")
    return out


class SimulatedH264Encoder(EncoderFanout):
    """A stand-in for the Pi's hardware H.264 encoder: libx264 on a thread, fed by a camera.

    Pictures are taken from ``camera.latest()`` (the camera must be open, as
    the booth opens it for the visit) at ``fps``, scaled to ``size`` if they
    differ, and encoded as the Pi encoder is configured (baseline, level 3.1,
    SPS/PPS on every keyframe, a keyframe every ``keyframe_interval``).
    Counters tell tests what happened.
    """

    def __init__(
        self,
        camera: Camera,
        size: tuple[int, int],
        *,
        fps: int = 30,
        keyframe_interval: int = KEYFRAME_INTERVAL,
        bitrate: int = DEFAULT_BITRATE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._camera = camera
        self._size = size
        self.fps = fps
        self.keyframe_interval = keyframe_interval
        self._bitrate = bitrate
        self._wanted = bitrate
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        self.key_frames_requested = 0
        self._key_frames_forced = 0
        self.frames_encoded = 0
        self.keyframes = 0
        self.starts = 0

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @property
    def bitrate(self) -> int:
        return self._wanted

    def set_bitrate(self, bitrate: int) -> None:
        """From the next picture on; never over the rate it was made with (its VBV ceiling)."""
        self._wanted = max(MIN_BITRATE, min(self._bitrate, int(bitrate)))

    @property
    def key_frames_forced(self) -> int:
        """Keyframes made because :meth:`force_key_frame` asked (not the periodic ones)."""
        return self._key_frames_forced

    def force_key_frame(self) -> None:
        self.key_frames_requested += 1  # an int under the GIL: the thread compares, as picamera2

    def _start(self) -> None:
        self._halt.clear()
        self.starts += 1
        self._thread = threading.Thread(target=self._run, name="sim-h264", daemon=True)
        self._thread.start()

    def _stop(self) -> None:
        self._halt.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    def _run(self) -> None:
        width, height = self._size
        context = x264_context(
            width,
            height,
            self.fps,
            keyframe_interval=self.keyframe_interval,
            bitrate=self._bitrate,
        )
        period = 1.0 / self.fps
        due = self._clock()
        index = 0
        while not self._halt.is_set():
            wait = due - self._clock()
            if wait > 0 and self._halt.wait(wait):
                break
            due = max(due + period, self._clock() - period)  # never burst to catch up
            picture = self._camera.latest()
            if picture is None:
                continue  # a closed camera gives nothing, as a stopped sensor would
            taken_us = int(self._clock() * 1_000_000)
            frame = picture_to_video_frame(picture)
            frame = frame.reformat(width=width, height=height, format="yuv420p")
            frame.pts = index
            index += 1
            if context.bit_rate != self._wanted:
                context.bit_rate = self._wanted  # libx264 reconfigures before this picture
            if self.key_frames_requested > self._key_frames_forced:
                self._key_frames_forced = self.key_frames_requested
                frame.pict_type = av.video.frame.PictureType.I
            for packet in context.encode(frame):
                self.frames_encoded += 1
                keyframe = bool(packet.is_keyframe)
                self.keyframes += keyframe
                self._emit(EncodedFrame(bytes(packet), keyframe, taken_us))


class EncodingTestCard(TestCard):
    """The test card with a simulated hardware H.264 encoder, as a Pi 4 camera has one."""

    __test__ = False

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        clock: Callable[[], float] = time.monotonic,
        *,
        fps: int = 30,
        keyframe_interval: int = KEYFRAME_INTERVAL,
    ) -> None:
        super().__init__(width, height, clock)
        self.encoder = SimulatedH264Encoder(
            self, (width, height), fps=fps, keyframe_interval=keyframe_interval
        )


def nal_types(access_unit: bytes) -> list[int]:
    """The NAL unit types in an Annex-B access unit, in order (7 SPS, 8 PPS, 5 IDR, 1 slice)."""
    types = []
    i = access_unit.find(b"\x00\x00\x01")
    while i != -1 and i + 3 < len(access_unit):
        types.append(access_unit[i + 3] & 0x1F)
        i = access_unit.find(b"\x00\x00\x01", i + 3)
    return types


def profile_level(profile_level_id: str) -> tuple[int, int, str]:
    """An SDP ``profile-level-id`` as (profile_idc, constraints, level).

    ``42e01f`` is (66, 0xE0, "3.1"): baseline, constrained, level 3.1.
    """
    if len(profile_level_id) != 6:
        raise ValueError(f"profile-level-id is six hex digits, not {profile_level_id!r}")
    profile, constraints, level_idc = (int(profile_level_id[i : i + 2], 16) for i in (0, 2, 4))
    if level_idc == 11 and constraints & 0x10:
        return profile, constraints, "1b"
    return profile, constraints, f"{level_idc // 10}.{level_idc % 10}"


__all__ = [
    "DEFAULT_BITRATE",
    "KEYFRAME_INTERVAL",
    "MIN_BITRATE",
    "WEBRTC_LEVEL",
    "WEBRTC_PROFILE",
    "AdjustableBitrate",
    "EncodedFrame",
    "EncodedVideo",
    "EncoderFanout",
    "EncodingTestCard",
    "SimulatedH264Encoder",
    "Sink",
    "encode_black",
    "nal_types",
    "picture_to_video_frame",
    "profile_level",
    "x264_context",
]
