"""The far end of a booth's call, in-process: a fake hub and an aiortc "clinician".

:class:`FakeHub` relays protocol messages between the booth's engine (through
:class:`BoothLink`, the engine's hub port) and :class:`Clinician`, in order,
each direction through a queue like a WebSocket. Every message goes through
``protocol.encode`` and ``protocol.parse`` with its real sender, so nothing
the engine sends could not also cross the real hub. The hub can be told to
tamper with answers (a man in the middle) or to have forgotten the call.

:class:`Clinician` answers offers as the browser console does (its own
camera and microphone, the ``state`` data channel from the booth) and
replaces its peer connection whenever a new offer comes. It measures what
arrives from the booth: per video frame its brightness and size, per audio
frame its loudness, each with the time it came.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from clinic import protocol
from clinic.protocol import (
    Answer,
    CallEnded,
    CallEvent,
    CallStarted,
    CallState,
    EndCall,
    EndReason,
    ErrorCode,
    Message,
    Offer,
    new_id,
)
from hardware.audio import SimulatedMicrophone, SimulatedSpeaker
from hardware.camera import TestCard
from kiosk import config, session
from kiosk.call.engine import CallEngine, CallHandler, ice_connections, seal
from kiosk.controller import Visit

CLINICIAN_COLOUR = (40, 160, 220)
"""The clinician's picture: one flat colour, easy to recognise after VP8."""
CLINICIAN_TONE = 660.0


async def eventually(check: Callable[[], bool], timeout: float = 5.0, what: str = "") -> float:
    """Wait until ``check()``; returns the seconds it took. AssertionError on timeout."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not check():
        if loop.time() - start > timeout:
            raise AssertionError(f"not reached within {timeout} s: {what or 'condition'}")
        await asyncio.sleep(0.01)
    return loop.time() - start


# ---------------------------------------------------------------- the hub


class BoothLink:
    """The engine's hub port: what HubLink offers, minus the WebSocket."""

    def __init__(self, hub: FakeHub) -> None:
        self._hub = hub
        self.on_call: CallHandler | None = None
        self.connected = True
        self.in_call = False
        self.sent: list[tuple[float, Message]] = []
        self.queue_requests: list[str] = []

    async def send(self, message: Message) -> bool:
        if not self.connected:
            return False
        checked = protocol.parse(protocol.encode(message), sender="booth")
        self.sent.append((asyncio.get_running_loop().time(), checked))
        self._hub.from_booth.put_nowait(checked)
        return True

    async def join_queue(self, visit: Visit) -> None:
        self.queue_requests.append("join")

    async def leave_queue(self) -> None:
        self.queue_requests.append("leave")

    def of_type(self, kind: type[Message]) -> list[Message]:
        return [m for _, m in self.sent if isinstance(m, kind)]


class FakeHub:
    """Relays between one booth and one clinician for one call."""

    def __init__(self) -> None:
        self.booth = BoothLink(self)
        self.clinician = Clinician(self)
        self.call_id = new_id()
        self.from_booth: asyncio.Queue[Message] = asyncio.Queue()
        self.to_booth: asyncio.Queue[Message] = asyncio.Queue()
        self.tamper_answer: Callable[[str], str] | None = None
        self.forgot_call = False
        self.relayed_offers = 0
        self._tasks = [
            asyncio.get_running_loop().create_task(self._pump_booth()),
            asyncio.get_running_loop().create_task(self._pump_to_booth()),
        ]

    def say_to_booth(self, message: Message) -> None:
        self.to_booth.put_nowait(protocol.parse(protocol.encode(message), sender="hub"))

    def start_call(
        self, *, audio_only: bool = False, ice: tuple[protocol.IceServer, ...] = ()
    ) -> None:
        self.say_to_booth(
            CallStarted(
                id=new_id(),
                call_id=self.call_id,
                booth_id="booth-1",
                audio_only=audio_only,
                ice_servers=ice,
            )
        )

    def end_call(self, reason: EndReason = EndReason.CLINICIAN_ENDED) -> None:
        self.say_to_booth(CallEnded(id=new_id(), call_id=self.call_id, reason=reason))

    async def _pump_to_booth(self) -> None:
        while True:
            message = await self.to_booth.get()
            if self.booth.on_call is not None:
                await self.booth.on_call(message)

    async def _pump_booth(self) -> None:
        while True:
            message = await self.from_booth.get()
            call_id = getattr(message, "call_id", None)
            if self.forgot_call or call_id != self.call_id:
                self.say_to_booth(
                    protocol.Error(
                        id=new_id(),
                        code=ErrorCode.UNKNOWN_CALL,
                        message=f"{message.TYPE}: no such call",
                        in_reply_to=message.id,
                    )
                )
            elif isinstance(message, Offer):
                self.relayed_offers += 1
                await self.clinician.on_offer(message.sdp)
            elif isinstance(message, Answer):
                await self.clinician.on_answer(message.sdp)
            elif isinstance(message, CallState):
                self.clinician.hub_events.append(message.event)
            elif isinstance(message, EndCall):
                reason = EndReason.RESIDENT_ENDED
                self.say_to_booth(CallEnded(id=new_id(), call_id=self.call_id, reason=reason))
                self.clinician.ended = True

    def console_says(self, message: Message) -> None:
        """A console message for the booth, checked as the console's, relayed as the hub's."""
        checked = protocol.parse(protocol.encode(message), sender="console")
        if isinstance(checked, Answer) and self.tamper_answer is not None:
            checked = Answer(
                id=checked.id, call_id=checked.call_id, sdp=self.tamper_answer(checked.sdp)
            )
        self.say_to_booth(checked)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.clinician.close()


# ---------------------------------------------------------------- the clinician


class FlatVideo(MediaStreamTrack):
    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.sending = True
        self._pts = 0
        self._start: float | None = None
        pixels = np.zeros((240, 320, 3), dtype=np.uint8)
        pixels[:, :] = CLINICIAN_COLOUR
        self._pixels = pixels

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += 3000  # 30 fps
            await asyncio.sleep(max(0.0, self._start + self._pts / 90000 - loop.time()))
        while not self.sending:
            await asyncio.sleep(0.02)
        frame = av.VideoFrame.from_ndarray(self._pixels, format="rgb24")
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, 90000)
        return frame


class Tone(MediaStreamTrack):
    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.sending = True
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += 960
            await asyncio.sleep(max(0.0, self._start + self._pts / 48000 - loop.time()))
        while not self.sending:
            await asyncio.sleep(0.02)
        n = np.arange(self._pts, self._pts + 960)
        wave = (np.sin(2 * math.pi * CLINICIAN_TONE * n / 48000) * 8000).astype("<i2")
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(wave.tobytes())
        frame.sample_rate = 48000
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, 48000)
        return frame


@dataclass
class Received:
    """What reached the clinician from the booth, with loop times."""

    video: list[tuple[float, float, int, int]] = field(default_factory=list)  # t, luma, w, h
    audio: list[tuple[float, float]] = field(default_factory=list)  # t, RMS 0-1

    def video_since(self, t: float) -> list[tuple[float, float, int, int]]:
        return [v for v in self.video if v[0] >= t]

    def audio_since(self, t: float) -> list[tuple[float, float]]:
        return [a for a in self.audio if a[0] >= t]


BLACK_LUMA = 30.0  # limited-range black is 16; the test card averages well over 100
SILENT_RMS = 0.01  # Opus silence decodes to (near) zero; the booth's tone is over 0.07


class Clinician:
    """The console's side of the call, driven by the fake hub."""

    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub
        self.pc: RTCPeerConnection | None = None
        self.channel: RTCDataChannel | None = None
        self.video = FlatVideo()
        self.audio = Tone()
        self.got = Received()
        self.channel_events: list[str] = []
        self.hub_events: list[CallEvent] = []
        self.offers = 0
        self.ended = False
        self.takes_h264 = True
        """False: answer like a browser without H.264 (video with nothing else is rejected)."""
        self.rejected_keeps_codec = False
        """How the rejected video section looks: no codec at all, or the offered one kept."""
        self._tasks: set[asyncio.Task[None]] = set()

    async def on_offer(self, sdp: str) -> None:
        """Replace the peer connection and answer, as the console does on every offer."""
        await self._drop()
        self.offers += 1
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc = pc
        self.video = FlatVideo()
        self.audio = Tone()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            task = asyncio.get_running_loop().create_task(self._consume(pc, track))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            self.channel = channel

            @channel.on("message")
            def on_message(data: Any) -> None:
                self.channel_events.append(json.loads(data)["event"])

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        kinds = {t.kind for t in pc.getTransceivers()}
        pc.addTrack(self.audio)  # takes the offered transceiver of its kind: sendrecv
        if "video" in kinds:
            pc.addTrack(self.video)
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
        if not self.takes_h264 and _video_is_only_h264(sdp):
            answer = _reject_video(answer, keep_codec=self.rejected_keeps_codec)
        self.hub.console_says(Answer(id=new_id(), call_id=self.hub.call_id, sdp=answer))

    async def on_answer(self, sdp: str) -> None:
        assert self.pc is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def reoffer(self) -> None:
        """The console starts a new peer connection of its own and offers it."""
        await self._drop()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc = pc
        self.video, self.audio = FlatVideo(), Tone()
        pc.addTrack(self.audio)
        pc.addTrack(self.video)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            task = asyncio.get_running_loop().create_task(self._consume(pc, track))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        await pc.setLocalDescription(await pc.createOffer())
        self.hub.console_says(
            Offer(id=new_id(), call_id=self.hub.call_id, sdp=pc.localDescription.sdp)
        )

    def say(self, event: CallEvent) -> None:
        """A word on the data channel."""
        assert self.channel is not None and self.channel.readyState == "open"
        self.channel.send(json.dumps({"event": event.value}))

    async def _consume(self, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if pc is not self.pc:
                return
            now = loop.time()
            if isinstance(frame, av.VideoFrame):
                luma = float(frame.to_ndarray(format="gray").mean())
                self.got.video.append((now, luma, frame.width, frame.height))
            elif isinstance(frame, av.AudioFrame):
                samples = frame.to_ndarray().astype(np.float64)
                self.got.audio.append((now, float(np.sqrt(np.mean(samples**2))) / 32768.0))

    async def _drop(self) -> None:
        pc, self.pc = self.pc, None
        self.channel = None
        if pc is not None:
            seal(ice_connections(pc))  # as the booth does: aioice can leak a task otherwise
            await pc.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        await self._drop()


# ---------------------------------------------------------------- the booth


@dataclass
class Booth:
    engine: CallEngine
    hub: FakeHub
    events: list[session.Event]
    camera: TestCard
    microphone: SimulatedMicrophone
    speaker: SimulatedSpeaker

    @property
    def clinician(self) -> Clinician:
        return self.hub.clinician

    def posted(self, kind: type) -> int:
        return sum(isinstance(e, kind) for e in self.events)

    async def connected(self, timeout: float = 5.0) -> float:
        """Start a call, accept it, wait until media flows both ways; returns the seconds."""
        self.hub.start_call()
        await eventually(lambda: self.posted(session.ClinicianAnswered) == 1, 2.0, "answered")
        loop = asyncio.get_running_loop()
        start = loop.time()
        await self.engine.accept_call()
        await eventually(self.flowing, timeout, "media both ways")
        return loop.time() - start

    def flowing(self, since: float | None = None) -> bool:
        """Booth media is reaching the clinician and the clinician's the booth, right now."""
        loop = asyncio.get_running_loop()
        t = loop.time() - 0.3 if since is None else since
        got = self.clinician.got
        return (
            len(got.video_since(t)) > 0
            and len(got.audio_since(t)) > 0
            and self.engine._watch.flowing(loop.time(), 0.3)
        )


@contextlib.asynccontextmanager
async def booth_call(
    ice: tuple[config.IceServer, ...] = (),
    engine_class: type[CallEngine] = CallEngine,
    **engine_options: Any,
) -> AsyncIterator[Booth]:
    """A booth engine wired to a fake hub and clinician; everything closed afterwards."""
    hub = FakeHub()
    camera, microphone, speaker = TestCard(320, 240), SimulatedMicrophone(), SimulatedSpeaker()
    camera.open()
    microphone.open()
    events: list[session.Event] = []
    engine = engine_class(
        hub.booth,
        ice,
        camera=camera,
        microphone=microphone,
        speaker=speaker,
        post=events.append,
        **engine_options,
    )
    try:
        yield Booth(engine, hub, events, camera, microphone, speaker)
    finally:
        await engine.close()
        await hub.close()


def _video_section(sdp: str) -> tuple[int, int]:
    """Where the video m-section starts and ends in ``sdp`` (line indexes)."""
    lines = sdp.split("\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("m=video"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("m=")), len(lines))
    return start, end


def _video_is_only_h264(sdp: str) -> bool:
    lines = sdp.split("\r\n")
    start, end = _video_section(sdp)
    codecs = {
        ln.split(" ", 1)[1].split("/")[0] for ln in lines[start:end] if ln.startswith("a=rtpmap:")
    }
    return codecs <= {"H264", "rtx"}


def _reject_video(answer: str, *, keep_codec: bool = False) -> str:
    """The answer of a browser that has no H.264: the video m-section rejected (port 0,
    no codecs), as JSEP says a rejected section is."""
    lines = answer.split("\r\n")
    start, end = _video_section(answer)
    m = lines[start].split(" ")
    section = [" ".join([m[0], "0", *m[2:]])]
    drop: tuple[str, ...] = ("a=ssrc", "a=msid", "a=sendrecv", "a=recvonly", "a=sendonly")
    if not keep_codec:
        drop += ("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")
    section += [ln for ln in lines[start + 1 : end] if not ln.startswith(drop)]
    section.append("a=inactive")
    return "\r\n".join([*lines[:start], *section, *lines[end:]])
