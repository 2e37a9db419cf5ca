"""What the video policy needs to know of the booth itself: is it keeping up, and what the far
side says it can receive.

:class:`LoadMeter` turns counters into one sample a look (about a second):
the fraction of the outgoing video track's pictures that went out late or
were dropped (:attr:`CameraTrack.late <kiosk.call.tracks.CameraTrack.late>`
for a picture aiortc asked for more than a picture's time after it was due,
because encoding the previous one took too long; :attr:`H264PassthroughTrack.late
<kiosk.call.passthrough.H264PassthroughTrack.late>` for camera pictures
dropped because the loop fell behind), and the cores the whole booth
process kept busy (``time.process_time()``: every thread, aiortc's encoder
threads included). :mod:`kiosk.call.adapt` decides what that means.

:func:`watch_remb` notes the far side's receiver estimated maximum bitrate
(REMB) as it reaches one sender. aiortc gives it to its own encoders (and
only to them); a camera that encodes H.264 itself needs the number from us.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiortc import RTCRtpSender
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, unpack_remb_fci


class CountsPictures(Protocol):
    """An outgoing video track that counts what it sent and what it could not send in time."""

    @property
    def sent(self) -> int: ...

    @property
    def late(self) -> int: ...


@dataclass
class Load:
    """One look at the booth: None where there was nothing to measure."""

    late: float | None  # pictures late or dropped per picture sent since the last look (<= 1)
    cpu: float | None  # cores the process kept busy since the last look


class LoadMeter:
    """Differences of the track's counters and of the process's CPU time between two looks."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        cpu_time: Callable[[], float] = time.process_time,
    ) -> None:
        self._clock = clock
        self._cpu_time = cpu_time
        self._last: tuple[float, float] | None = None
        self._counts: tuple[int, int] | None = None
        self._track: object = None

    def sample(self, track: CountsPictures | None) -> Load:
        now, cpu_now = self._clock(), self._cpu_time()
        cpu = None
        if self._last is not None and now > self._last[0]:
            cpu = (cpu_now - self._last[1]) / (now - self._last[0])
        self._last = (now, cpu_now)
        late = None
        if track is not None:
            counts = (track.sent, track.late)
            if self._counts is not None and self._track is track:
                sent = counts[0] - self._counts[0]
                missed = counts[1] - self._counts[1]
                if sent > 0:
                    late = min(1.0, missed / sent)
                elif missed > 0:
                    late = 1.0
            self._counts, self._track = counts, track
        return Load(late, cpu)

    def reset(self) -> None:
        self._last = self._counts = None
        self._track = None


class _RembHook:
    """Stands in for one sender's ``_handle_rtcp_packet``: notes REMB, then aiortc's own."""

    def __init__(self, sender: RTCRtpSender) -> None:
        self.sender = sender
        self.bitrate: int | None = None
        self.at: float | None = None

    async def __call__(self, packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                pass
            else:
                if self.sender._ssrc in ssrcs:
                    self.bitrate, self.at = bitrate, time.monotonic()
        await type(self.sender)._handle_rtcp_packet(self.sender, packet)


def watch_remb(sender: RTCRtpSender) -> Callable[[float], int | None]:
    """Note the REMB reaching ``sender``; returns a reader: the estimate if not older than the
    given seconds, else None.

    Per instance, like :func:`kiosk.call.passthrough.forward_keyframe_requests`:
    aiortc's ``RTCDtlsTransport`` calls ``recipient._handle_rtcp_packet`` for
    each RTCP packet, so an attribute of that name on this one sender comes
    first and then hands the packet on unchanged. Refuses (``RuntimeError``)
    if aiortc no longer has the method.
    """
    if not callable(getattr(RTCRtpSender, "_handle_rtcp_packet", None)):
        raise RuntimeError(
            "aiortc's RTCRtpSender has no _handle_rtcp_packet: the far side's bitrate "
            "estimate cannot be read (check the aiortc version)"
        )
    hook = sender.__dict__.get("_handle_rtcp_packet")
    if not isinstance(hook, _RembHook):
        hook = _RembHook(sender)
        sender._handle_rtcp_packet = hook  # type: ignore[method-assign]

    def estimate(fresh: float) -> int | None:
        if hook.at is None or time.monotonic() - hook.at > fresh:
            return None
        return hook.bitrate

    return estimate


__all__ = ["Load", "LoadMeter", "watch_remb"]
