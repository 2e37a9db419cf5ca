"""The camera's own H.264 sent as it is: a video track of ``av.Packet``, never re-encoded.

On a Pi 4 the camera's hardware encoder makes H.264
(:class:`hardware.h264.EncodedVideo`); decoding it and encoding it again in
software would cost most of a CPU core and add delay for nothing.
:class:`H264PassthroughTrack` hands aiortc each access unit as an
``av.Packet`` (Annex-B, ``pts`` in a 1/90000 time base); aiortc then only
packs it into RTP (``H264Encoder.pack``), never ``encode``. For that the call
must negotiate H.264: :func:`add_passthrough` sets the transceiver's codec
preferences to H.264 then RTX, and no VP8 (this track cannot make VP8).

Keyframe requests. A clinician's browser that lost the picture sends a PLI
(or FIR) to the booth. aiortc honours those only when it encodes itself (it
sets a flag for its own encoder), so :func:`forward_keyframe_requests` makes
this one sender also tell the track, which asks the camera's encoder for a
keyframe (``force_key_frame()``). That is a per-instance attribute on the one
``RTCRtpSender`` object, not a change to the class: other senders (the
audio, any software-encoded video) are untouched, it is idempotent, and it
refuses to install (``RuntimeError``) if aiortc no longer has the method it
wraps. (aiortc 1.16 routes a FIR by its header's media SSRC; a FIR that
leaves it 0, as RFC 5104 says, never reaches any sender. Browsers ask with
PLI.)

Privacy first when the picture must not be seen (door open, camera off,
video off for a poor link; :class:`~kiosk.call.tracks.Outgoing`): the
camera's packets are dropped as they arrive (never queued, never sent) and
the track sends a black clip instead, encoded once by libx264 at the
camera's size (at :data:`~kiosk.call.tracks.OFF_SIZE` for the "off" video
level), :data:`BLACK_FPS` pictures a second, starting with its own keyframe.
Sending black rather than nothing keeps the call visibly alive and
"paused" for the clinician instead of a frozen last picture, and the black
comes from no camera byte at all. When the picture may be seen again, the
camera's stream resumes only at a keyframe that the track asks for: until
it comes (a picture or two), nothing is sent.

The same gate guards every start: the first picture sent is a keyframe
(``keyframe_on_start``), and after the loop fell behind (the queue
overflowed) the track drops pictures up to the next keyframe, since a
P-frame without the pictures it refers to is garbage to the decoder.

Not applied: the "reduced" video level's size and rate (a hardware encoder's
are fixed while it runs); "off" is, and so is every level's bitrate, lowered
further by the far side's estimate (REMB), through :meth:`set_bitrate` for an
encoder that can change it while running (:class:`hardware.h264.AdjustableBitrate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from hardware.h264 import AdjustableBitrate, EncodedFrame, EncodedVideo, encode_black
from kiosk.call.tracks import OFF_SIZE, VIDEO_CLOCK, Outgoing

if TYPE_CHECKING:
    from av.stream import Stream

    Packet = av.Packet[Stream]  # what recv() returns: one encoded picture

BLACK_FPS: Final = 5
"""Black pictures a second while the camera must not be seen: alive, and nearly free."""
OFF_FPS: Final = 1
"""Black pictures a second at the "off" video level (a poor link)."""
BLACK_CLIP: Final = 10
"""Pictures in the black clip: a keyframe every 2 s at 5 fps, for a viewer who lost one."""
QUEUE_SIZE: Final = 8
"""Camera pictures waiting to be sent (a quarter second at 30 fps); more means the loop lags."""
CAMERA_SILENT: Final = 1.0
"""Seconds without a camera picture after which a black one is sent (the far side sees why)."""
POLL: Final = 0.05
"""Seconds between looks at whether the picture may still be seen, while waiting for one."""
REASK_AFTER: Final = 1.0
"""Seconds to wait for a requested keyframe before asking the encoder again."""
TIME_BASE: Final = fractions.Fraction(1, VIDEO_CLOCK)

_black_clips: dict[tuple[int, int, int], list[tuple[bytes, bool]]] = {}


async def black_clip(size: tuple[int, int], fps: int) -> list[tuple[bytes, bool]]:
    """The black clip for ``size`` (encoded once, on a worker thread; then cached)."""
    key = (size[0], size[1], fps)
    clip = _black_clips.get(key)
    if clip is None:
        clip = await asyncio.to_thread(encode_black, size[0], size[1], BLACK_CLIP, fps)
        _black_clips[key] = clip
    return clip


class H264PassthroughTrack(MediaStreamTrack):
    """The camera's H.264 as WebRTC video: ``recv()`` gives ``av.Packet``s (see the module)."""

    kind = "video"

    def __init__(
        self,
        encoder: EncodedVideo,
        out: Outgoing,
        *,
        keyframe_on_start: bool = True,
        queue_size: int = QUEUE_SIZE,
        black_fps: int = BLACK_FPS,
        camera_silent: float = CAMERA_SILENT,
    ) -> None:
        super().__init__()
        self._encoder = encoder
        self._out = out
        self._queue: asyncio.Queue[EncodedFrame | None] = asyncio.Queue(queue_size)
        self._black_fps = black_fps
        self._camera_silent = camera_silent
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._t0 = 0.0
        self._need_key = keyframe_on_start
        self._asked_at: float | None = None
        self._showing: str | None = None  # "camera" or "black"
        self._clip: list[tuple[bytes, bool]] = []
        self._clip_key: tuple[tuple[int, int], int] | None = None
        self._clip_next = 0
        self._black_due = 0.0
        self._anchor: tuple[int, int] | None = None  # (camera timestamp_us, pts) of a picture
        self._last_pts = -1
        self.sent = 0
        """Camera pictures sent."""
        self.sent_black = 0
        """Black pictures sent."""
        self.dropped = 0
        """Camera pictures not sent: while the picture must not be seen, or before a keyframe."""
        self.keyframe_requests = 0
        """PLI/FIR from the far side that reached this track."""
        self.keyframes_asked = 0
        """Times this track asked the encoder for a keyframe (its own and forwarded ones)."""
        self.late = 0
        """Camera pictures dropped because the loop fell behind (:mod:`kiosk.call.load`)."""

    # ------------------------------------------------------------ the encoder's side

    def _subscribe(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._t0 = loop.time()
        self._unsubscribe = self._encoder.subscribe(self._from_encoder)

    def _from_encoder(self, frame: EncodedFrame) -> None:
        """On the encoder's thread: hand over to the loop."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(self._put, frame)

    def _put(self, frame: EncodedFrame) -> None:
        if self.readyState != "live":
            return
        if not self._out.picture:
            self.dropped += 1  # must not be seen: not even queued
            return
        if self._queue.full():  # the loop fell behind: skip to the next keyframe
            behind = self._drain()
            self.dropped += behind
            self.late += behind
            self._need_key, self._asked_at = True, None
        self._queue.put_nowait(frame)

    def _drain(self) -> int:
        n = 0
        while not self._queue.empty():
            if self._queue.get_nowait() is not None:
                n += 1
        return n

    def _ask_keyframe(self) -> None:
        self.keyframes_asked += 1
        self._encoder.force_key_frame()

    @property
    def size(self) -> tuple[int, int]:
        """The camera encoder's picture size."""
        return self._encoder.size

    def set_bitrate(self, bitrate: int) -> bool:
        """Ask the camera's encoder for ``bitrate`` bits a second (the video level, the far
        side's estimate); False when this encoder's rate is fixed while it runs."""
        if isinstance(self._encoder, AdjustableBitrate):
            self._encoder.set_bitrate(bitrate)
            return True
        return False

    def request_keyframe(self) -> None:
        """A PLI/FIR from the far side: ask the encoder, or restart the black clip."""
        self.keyframe_requests += 1
        if self._showing == "black":
            self._clip_next = 0  # the clip's first picture is its keyframe
        else:
            self._ask_keyframe()

    # ------------------------------------------------------------ the call's side

    async def recv(self) -> Packet:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._unsubscribe is None:
            self._subscribe(loop)
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._out.picture:
                if self._need_key and (
                    self._asked_at is None or loop.time() - self._asked_at > REASK_AFTER
                ):
                    self._asked_at = loop.time()
                    self._ask_keyframe()
                frame = await self._next_picture(loop)
                if frame is not None:
                    packet = self._camera_packet(frame, loop)
                    if packet is not None:
                        return packet
                    continue
                if self.readyState != "live":
                    raise MediaStreamError
                # None: the camera is silent (say so with black), or it must not be seen now.
            packet = await self._black_packet(loop, camera_silent=self._out.picture)
            if packet is not None:
                return packet

    async def _next_picture(self, loop: asyncio.AbstractEventLoop) -> EncodedFrame | None:
        """The camera's next picture; None after :data:`CAMERA_SILENT` s without one, or at once
        when the picture must not be seen any more (checked every :data:`POLL` s)."""
        deadline = loop.time() + self._camera_silent
        while self._out.picture and self.readyState == "live":
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                return await asyncio.wait_for(self._queue.get(), min(remaining, POLL))
            except TimeoutError:
                continue
        return None

    def _camera_packet(self, frame: EncodedFrame, loop: asyncio.AbstractEventLoop) -> Packet | None:
        if not self._out.picture:
            self.dropped += 1  # paused while it waited in the queue
            return None
        if self._need_key:
            if not frame.keyframe:
                self.dropped += 1
                return None
            self._need_key, self._asked_at = False, None
        if self._showing != "camera":
            self._showing = "camera"
            self._anchor = None
        if self._anchor is None:
            self._anchor = (frame.timestamp_us, max(self._clock_pts(loop), self._last_pts + 1))
        taken, at = self._anchor
        pts = self._next_pts(at + (frame.timestamp_us - taken) * VIDEO_CLOCK // 1_000_000)
        self.sent += 1
        return self._packet(frame.data, pts)

    async def _black_packet(
        self, loop: asyncio.AbstractEventLoop, *, camera_silent: bool
    ) -> Packet | None:
        """The next black picture, when due; None if the picture may be seen again meanwhile."""
        off = self._out.video.off
        size = OFF_SIZE if off else self._encoder.size
        fps = OFF_FPS if off else self._black_fps
        if self._showing != "black" or self._clip_key != (size, fps):
            if self._showing != "black":
                self.dropped += self._drain()
                self._need_key, self._asked_at = True, None  # the camera resumes at a keyframe
                self._showing = "black"
                self._black_due = loop.time()
            self._clip = await black_clip(size, fps)
            self._clip_key, self._clip_next = (size, fps), 0
        while (wait := self._black_due - loop.time()) > 0:
            await asyncio.sleep(min(wait, 0.05))
            if self._out.picture and not camera_silent:
                return None
            if self.readyState != "live":
                raise MediaStreamError
        data, _ = self._clip[self._clip_next]
        self._clip_next = (self._clip_next + 1) % len(self._clip)
        self._black_due = loop.time() + 1.0 / fps
        self.sent_black += 1
        return self._packet(data, self._next_pts(self._clock_pts(loop)))

    def _clock_pts(self, loop: asyncio.AbstractEventLoop) -> int:
        return int((loop.time() - self._t0) * VIDEO_CLOCK)

    def _next_pts(self, pts: int) -> int:
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        return pts

    @staticmethod
    def _packet(data: bytes, pts: int) -> Packet:
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = TIME_BASE
        return packet

    def stop(self) -> None:
        super().stop()
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        self._drain()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)  # wake a recv() waiting for the camera


# ---------------------------------------------------------------- wiring into aiortc


class _KeyframeHook:
    """Stands in for one sender's ``_send_keyframe``: aiortc's own, then the track's."""

    def __init__(self, sender: RTCRtpSender, on_request: Callable[[], None]) -> None:
        self.sender = sender
        self.on_request = on_request

    def __call__(self) -> None:
        type(self.sender)._send_keyframe(self.sender)  # aiortc's flag (used only if it encodes)
        self.on_request()


def forward_keyframe_requests(sender: RTCRtpSender, on_request: Callable[[], None]) -> None:
    """Make PLI and FIR reaching ``sender`` call ``on_request`` too (see the module docstring).

    aiortc's ``RTCRtpSender._handle_rtcp_packet`` calls ``self._send_keyframe()``
    on a PLI or FIR; an attribute of that name on this one instance comes first.
    Calling it again replaces the earlier hook rather than stacking.
    """
    original = getattr(RTCRtpSender, "_send_keyframe", None)
    if not callable(original):
        raise RuntimeError(
            "aiortc's RTCRtpSender has no _send_keyframe: keyframe requests cannot be "
            "forwarded to the camera's encoder (check the aiortc version)"
        )
    current = sender.__dict__.get("_send_keyframe")
    if isinstance(current, _KeyframeHook) and current.on_request == on_request:
        return
    sender._send_keyframe = _KeyframeHook(sender, on_request)  # type: ignore[method-assign]


def keyframe_forwarding(sender: RTCRtpSender) -> Callable[[], None] | None:
    """What ``sender`` forwards keyframe requests to, if anything (tests, diagnostics)."""
    current = sender.__dict__.get("_send_keyframe")
    return current.on_request if isinstance(current, _KeyframeHook) else None


def h264_codecs() -> list[RTCRtpCodecCapability]:
    """H.264 (each profile aiortc offers), then RTX: no VP8, which a pass-through cannot send."""
    codecs = RTCRtpSender.getCapabilities("video").codecs
    return [c for c in codecs if c.mimeType == "video/H264"] + [
        c for c in codecs if c.mimeType == "video/rtx"
    ]


def add_passthrough(
    pc: RTCPeerConnection,
    track: H264PassthroughTrack,
    *,
    direction: str = "sendrecv",
    forward_keyframes: bool = True,
) -> RTCRtpTransceiver:
    """Add ``track`` to ``pc`` negotiating H.264 only, with keyframe requests forwarded."""
    transceiver = pc.addTransceiver(track, direction=direction)
    transceiver.setCodecPreferences(h264_codecs())
    if forward_keyframes:
        forward_keyframe_requests(transceiver.sender, track.request_keyframe)
    return transceiver


__all__ = [
    "BLACK_FPS",
    "H264PassthroughTrack",
    "add_passthrough",
    "black_clip",
    "forward_keyframe_requests",
    "h264_codecs",
    "keyframe_forwarding",
]
