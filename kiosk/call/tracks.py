"""The booth's camera and microphone as WebRTC tracks, and the clinician's media coming back.

Both outgoing tracks read one :class:`Outgoing` switchboard on every frame,
so pausing (the door opened), muting or turning the camera off takes effect
on the very next frame (20 ms of audio, one video frame) without any
renegotiation: the tracks keep running and send black pictures and silence.
That is also what the clinician's console sees as "paused" rather than a
broken call.

Frames live in memory only and only as long as they are being sent or shown.
"""

from __future__ import annotations

import asyncio
import fractions
from dataclasses import dataclass, field
from typing import Final

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from hardware.audio import SAMPLE_RATE, Microphone, PcmMicrophone, Speaker
from hardware.camera import Camera, Frame
from kiosk.call.adapt import LEVELS, VideoLevel

VIDEO_CLOCK: Final = 90_000
AUDIO_PTIME: Final = 0.020
"""20 ms of audio a frame: Opus's usual packet."""
AUDIO_SAMPLES: Final = int(SAMPLE_RATE * AUDIO_PTIME)
MAX_SIZE: Final = (640, 480)
"""The largest picture sent, whatever the camera makes: a booth link is rarely generous."""
LATE: Final = 0.5
"""Seconds behind the frame clock after which a track skips ahead instead of catching up."""
OFF_SIZE: Final = (160, 120)
"""The tiny black picture sent while video is off for bandwidth."""


@dataclass
class Outgoing:
    """What the booth may send right now; the tracks read it on every frame."""

    paused: bool = False  # the door is open: privacy first
    microphone_on: bool = True
    camera_on: bool = True
    video: VideoLevel = field(default=LEVELS[0])

    @property
    def sound(self) -> bool:
        return self.microphone_on and not self.paused

    @property
    def picture(self) -> bool:
        return self.camera_on and not self.paused and not self.video.off

    def reset(self) -> None:
        self.paused, self.microphone_on, self.camera_on = False, True, True
        self.video = LEVELS[0]


def _even(n: float) -> int:
    return max(2, int(n) // 2 * 2)


def fit(width: int, height: int, scale: float = 1.0) -> tuple[int, int]:
    """The size to send for ``width`` x ``height``: within MAX_SIZE, aspect kept, even."""
    shrink = min(1.0, MAX_SIZE[0] / width, MAX_SIZE[1] / height) * scale
    return _even(width * shrink), _even(height * shrink)


def to_video_frame(picture: Frame) -> av.VideoFrame:
    """A camera frame (RGB, rows bottom-up) as a PyAV frame (rows top-down).

    The rows are turned over straight into the frame's own buffer: one copy, not two.
    """
    width, height = picture.width, picture.height
    frame = av.VideoFrame(width, height, "rgb24")
    plane = frame.planes[0]
    rows = np.frombuffer(picture.rgb, dtype=np.uint8).reshape(height, width * 3)
    into = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(height, plane.line_size)
    into[:, : width * 3] = rows[::-1]
    return frame


def to_frame(video: av.VideoFrame) -> Frame:
    """A decoded PyAV frame as the booth's :class:`Frame` (RGB, rows bottom-up)."""
    rows = video.to_ndarray(format="rgb24")
    return Frame(video.width, video.height, np.ascontiguousarray(rows[::-1]).tobytes())


class CameraTrack(MediaStreamTrack):
    """The camera, scaled to the current video level; black whenever it must not be seen.

    ``camera`` may be None (audio-only hardware): then only black frames are
    sent, at ``default_size``.
    """

    kind = "video"

    def __init__(
        self,
        camera: Camera | None,
        out: Outgoing,
        *,
        default_size: tuple[int, int] = MAX_SIZE,
    ) -> None:
        super().__init__()
        self._camera = camera
        self._out = out
        self._size = fit(*default_size)
        self._black: dict[tuple[int, int], np.ndarray] = {}
        self._start: float | None = None
        self._pts = 0
        self.sent = 0
        self.sent_black = 0
        self.late = 0
        """Pictures asked for over a picture's time after they were due: the encoder lags
        (:mod:`kiosk.call.load`)."""

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        level = self._out.video
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += VIDEO_CLOCK // max(1, level.fps)
            wait = self._start + self._pts / VIDEO_CLOCK - loop.time()
            if wait < -1.0 / max(1, level.fps):
                self.late += 1
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -LATE:  # the loop was busy: carry on from now rather than burst
                self._start -= wait
        frame = self._next(self._out.video)
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.sent += 1
        return frame

    def _next(self, level: VideoLevel) -> av.VideoFrame:
        if level.off:
            return self._blank(OFF_SIZE)
        # Not even read while it must not be seen: a paused booth's picture exists nowhere.
        picture = None
        if self._camera is not None and self._out.picture:
            picture = self._camera.latest()
        if picture is not None:
            self._size = fit(picture.width, picture.height)
        width, height = fit(*self._size, scale=level.scale)
        if picture is None:
            return self._blank((width, height))
        frame = to_video_frame(picture)
        if (frame.width, frame.height) != (width, height):
            frame = frame.reformat(width=width, height=height)
        return frame

    def _blank(self, size: tuple[int, int]) -> av.VideoFrame:
        self.sent_black += 1
        pixels = self._black.get(size)
        if pixels is None:
            pixels = self._black[size] = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        return av.VideoFrame.from_ndarray(pixels, format="rgb24")


class MicrophoneTrack(MediaStreamTrack):
    """The microphone in 20 ms frames of 48 kHz mono; silence whenever it must not be heard.

    The microphone is read even while muted, so a real one's buffer never
    fills up and unmuting does not play back stale sound.
    """

    kind = "audio"

    def __init__(self, microphone: Microphone | None, out: Outgoing) -> None:
        super().__init__()
        self._microphone = microphone if isinstance(microphone, PcmMicrophone) else None
        self._out = out
        self._start: float | None = None
        self._pts = 0
        self._silence = bytes(2 * AUDIO_SAMPLES)
        self.sent = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += AUDIO_SAMPLES
            wait = self._start + self._pts / SAMPLE_RATE - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -LATE:
                self._start -= wait
        pcm = self._microphone.read(AUDIO_SAMPLES) if self._microphone else self._silence
        if not self._out.sound:
            pcm = self._silence
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self.sent += 1
        return frame


class RemoteAudio:
    """Turns the clinician's decoded audio (any layout) into the speaker's mono PCM."""

    def __init__(self, speaker: Speaker | None) -> None:
        self._speaker = speaker
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)

    def play(self, frame: av.AudioFrame) -> None:
        if self._speaker is None:
            return
        for out in self._resampler.resample(frame):
            self._speaker.play(out.to_ndarray().tobytes())
