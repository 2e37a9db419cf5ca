"""The booth's side of a video visit: one WebRTC call at a time, signalled through the hub.

:class:`CallEngine` is the controller's :class:`~kiosk.controller.CallPort`.
It follows ``docs/calls.md``:

* ``call_started`` from the hub: remember the call and its ICE servers (TURN
  credentials minted for this call), post
  :class:`~kiosk.session.ClinicianAnswered`.
* :meth:`CallEngine.accept_call`: build an ``RTCPeerConnection`` with the
  booth's configured ICE servers plus the call's (always an explicit list:
  aiortc's default would send every booth's address to Google's STUN), add
  the microphone, the camera (unless the call is audio-only) and a data
  channel ``state``, and send the ``offer`` with every candidate in it.
  aiortc gathers all candidates before the offer exists, and waits up to
  5 s for a STUN or TURN server that does not answer; the engine bounds that
  wait (:data:`GATHER_TIMEOUT`) so a dead server costs half a second, not
  five. Re-offers wait longer (:data:`REGATHER_TIMEOUT`): by then getting a
  relay candidate matters more than speed.
* ``answer``: applied; the clinician's audio goes to the :class:`Speaker`,
  the newest video frame is kept for the screen (:meth:`remote_frame`).
* In the call: pausing (door open), muting and camera off switch the
  outgoing tracks to black and silence on the next frame. What the
  clinician should know (door, emergency, mute, camera) goes two ways at
  once: ``{"event": word}`` on the data channel and ``call_state`` through
  the hub, so an emergency gets through even when media is dead. The
  console's own words (muted, camera off) become :attr:`clinician_state`.
* Dead media (:mod:`kiosk.call.stall`): nothing inbound for 5 s posts
  :class:`~kiosk.session.NetworkLost` and re-offers (a new peer connection,
  the same call id) every few seconds until media flows, which posts
  :class:`~kiosk.session.NetworkRestored`. A shorter blip posts nothing. A
  connection that fails outright (ICE, or a DTLS certificate that does not
  match the answer's fingerprint) counts as dead at once.
* A poor link (:mod:`kiosk.call.adapt`): the far side's loss reports step
  the video down and back up; audio is never touched. So does a booth that
  cannot keep up (:mod:`kiosk.call.load`: pictures late or dropped, CPU over
  budget). A camera encoding H.264 itself gets the level's bitrate, lowered to
  the far side's estimate (REMB); aiortc's own encoders take REMB themselves.
* Codecs: a camera that encodes H.264 itself negotiates H.264 only; video the
  booth encodes itself offers :data:`SOFTWARE_VIDEO_CODECS` in that order
  (VP8 first: aiortc's libx264 settings cost about as much CPU, ``tests/perf/bench_media.py``).
* ``call_ended``, or ``error unknown_call`` in reply to one of this call's
  messages (the hub forgot it): post :class:`~kiosk.session.CallEnded`.

Logs carry call ids and fixed words only: never SDP, candidates or
credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Protocol

import av
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.exceptions import OperationError
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcicetransport import parse_stun_turn_uri
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import SessionDescription

from clinic import protocol
from clinic.protocol import (
    Answer,
    CallEnded,
    CallEvent,
    CallStarted,
    CallState,
    EndCall,
    ErrorCode,
    Message,
    Offer,
    new_id,
)
from hardware.audio import Microphone, Speaker
from hardware.camera import Camera, Frame, encoder_of
from kiosk import config, session
from kiosk.call.adapt import VideoLevel, VideoPolicy, video_bitrate
from kiosk.call.load import LoadMeter, watch_remb
from kiosk.call.passthrough import H264PassthroughTrack, add_passthrough
from kiosk.call.stall import RETRY_EVERY, STALL_AFTER, StallWatch, Verdict
from kiosk.call.tracks import CameraTrack, MicrophoneTrack, Outgoing, RemoteAudio, to_frame
from kiosk.controller import Visit

_log = logging.getLogger(__name__)

GATHER_TIMEOUT: Final = 0.5
"""Seconds the first offer waits for STUN/TURN answers (host candidates need none)."""
REGATHER_TIMEOUT: Final = 2.0
"""Seconds a re-offer waits: a relay candidate is worth more than speed by then."""
TICK: Final = 0.25
"""Seconds between looks at the call's media."""
STATS_EVERY: Final = 1.0
"""Seconds between looks at the far side's loss reports (they come about once a second)."""
REPORT_FRESH: Final = 3.0
"""A loss report older than this says nothing about the link now."""
MAX_CHANNEL_MESSAGE: Final = 1024
"""Bytes: a data channel message is one small JSON object; anything bigger is refused."""
ENDED_MEMORY: Final = 16
"""Calls this booth ended that it remembers, to end them again should the hub offer one back."""
SOFTWARE_VIDEO_CODECS: tuple[str, ...] = ("video/VP8", "video/H264")
"""What video the booth encodes itself offers, best first (RTX goes with them)."""

_CONSOLE_WORDS: Final = frozenset(
    {CallEvent.MUTED, CallEvent.UNMUTED, CallEvent.CAMERA_OFF, CallEvent.CAMERA_ON}
)
_TOPIC: Final = {
    CallEvent.DOOR_OPEN: "door",
    CallEvent.DOOR_CLOSED: "door",
    CallEvent.EMERGENCY: "emergency",
    CallEvent.EMERGENCY_CLEARED: "emergency",
    CallEvent.MUTED: "microphone",
    CallEvent.UNMUTED: "microphone",
    CallEvent.CAMERA_OFF: "camera",
    CallEvent.CAMERA_ON: "camera",
}

CallHandler = Callable[[Message], Awaitable[None]]
EventSink = Callable[[session.Event], None]


class HubPort(Protocol):
    """What the engine needs of the hub link (:class:`~kiosk.call.hub_link.HubLink` is one)."""

    on_call: CallHandler | None

    @property
    def connected(self) -> bool: ...

    @property
    def in_call(self) -> bool: ...

    @in_call.setter
    def in_call(self, value: bool) -> None: ...

    async def send(self, message: Message) -> bool: ...

    async def join_queue(self, visit: Visit) -> None: ...

    async def leave_queue(self) -> None: ...


class CallStatus(StrEnum):
    IDLE = "idle"  # no call
    ANSWERED = "answered"  # call_started came; the visit has not accepted yet
    CONNECTING = "connecting"  # an offer is out, no media yet
    CONNECTED = "connected"  # the clinician's media is arriving
    STALLED = "stalled"  # no media for a while, or the connection failed: re-offering


@dataclass(frozen=True)
class ClinicianState:
    """What the clinician's console says of itself, for the screen."""

    muted: bool = False
    camera_off: bool = False


@dataclass
class _Call:
    call_id: str
    ice_servers: tuple[protocol.IceServer, ...]
    audio_only: bool
    accepted: bool = False
    offers: int = 0
    sent_ids: set[str] = field(default_factory=set)  # to match an unknown_call error to us
    h264_refused: bool = False  # the far side takes no H.264: the camera's pictures, encoded here


@dataclass
class _Leg:
    """One peer connection of a call; a re-offer replaces the whole leg."""

    pc: RTCPeerConnection
    channel: RTCDataChannel
    audio: MicrophoneTrack
    video: CameraTrack | H264PassthroughTrack | None
    connections: list[Any] = field(default_factory=list)  # aioice's, for seal()
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    offered_at: float | None = None  # loop time the offer went to the hub
    answered: bool = False
    remb: Callable[[float], int | None] | None = None  # the far side's estimate for the video


def _usable(url: str, *, credentials: bool) -> bool:
    """Whether aiortc can use ``url``: it parses, names a real port (aioice would fail
    sending to port 99999 inside the event loop), and a TURN server comes with credentials."""
    try:
        parsed = parse_stun_turn_uri(url)
    except ValueError:
        return False
    port = parsed.get("port")
    if port is not None and not 0 < int(port) <= 65535:
        return False
    return parsed["scheme"] == "stun" or (parsed["scheme"] in ("turn", "turns") and credentials)


def ice_servers(
    configured: Sequence[config.IceServer], call: Sequence[protocol.IceServer]
) -> list[RTCIceServer]:
    """The booth's configured servers, then the call's: always a list, never aiortc's default.

    aiortc uses the first STUN and the first TURN server it finds. A
    configured ``turn:`` address has no credentials (those come with each
    call), so it is left out rather than tried without them.
    """
    out: list[RTCIceServer] = []
    for server in configured:
        urls = [u for u in server.urls if _usable(u, credentials=False)]
        if urls:
            out.append(RTCIceServer(urls=urls))
    for s in call:
        has = s.username is not None and s.credential is not None
        urls = [u for u in s.urls if _usable(u, credentials=has)]
        if urls:
            out.append(RTCIceServer(urls=urls, username=s.username, credential=s.credential))
    return out


def ice_connections(pc: RTCPeerConnection) -> list[Any]:
    """The aioice connections under ``pc``'s transports, once each (aiortc keeps them private)."""
    transports = [t.sender.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    out: list[Any] = []
    for dtls in transports:
        connection = dtls.transport.iceGatherer._connection
        if all(connection is not c for c in out):
            out.append(connection)
    return out


def bound_gathering(pc: RTCPeerConnection, timeout: float) -> None:
    """Make every ICE gatherer of ``pc`` wait at most ``timeout`` s for STUN/TURN answers.

    aioice's ``get_component_candidates`` waits up to 5 s (its default) for
    server-reflexive and relay candidates, and aiortc cannot pass a shorter
    wait; host candidates are ready at once whatever the wait.
    """
    for connection in ice_connections(pc):
        connection.get_component_candidates = functools.partial(
            connection.get_component_candidates, timeout=timeout
        )


async def add_bundled_candidates(pc: RTCPeerConnection, description: str) -> int:
    """Give ``pc`` the far side's candidates from every m-section of ``description``.

    With max-bundle, aiortc (1.16) passes on only the candidates of the *last*
    m-section that shares the transport, and a browser lists them in the
    *first* one alone: the booth then has no remote candidate at all. It never
    checks a pair of its own and connects only if the far side's checks reach
    it first, which through TURN never happens (our relay lets in only peers we
    have sent to), so a call that needs a relay never connects. aioice ignores
    a candidate it already has, and aiortc any after end-of-candidates.
    Returns how many candidates were handed over.
    """
    parsed = SessionDescription.parse(description)
    if not parsed.media:
        return 0
    first = parsed.media[0]
    given = 0
    for media in parsed.media:
        for candidate in media.ice_candidates:
            candidate.sdpMid = first.rtp.muxId  # the transport every bundled section shares
            candidate.sdpMLineIndex = 0
            try:
                await pc.addIceCandidate(candidate)
            except ValueError:
                continue
            given += 1
    return given


async def _no_consent() -> None:
    return None


def seal(connections: Sequence[Any]) -> None:
    """Keep closed ICE connections closed (aioice 0.13 race).

    A connection closed in the ~20 ms between ICE completing and aioice's
    ``connect()`` noticing starts its consent checks anyway, after the close,
    in a task that then sleeps and wakes forever. Called before closing: a
    connection about to be closed needs no consent checks.
    """
    for connection in connections:
        connection.query_consent = _no_consent


class CallEngine:
    """The whole call port: queue place (through the link), the call, what the clinician hears.

    ``link`` carries signaling; the engine sets ``link.on_call`` to its own
    :meth:`on_hub_message`. ``configured_ice`` is ``[[ice_servers]]``
    (addresses only). ``camera`` and ``microphone`` are the booth's devices
    (the same objects :class:`~kiosk.media.LocalMedia` opens and closes),
    ``speaker`` plays the clinician, ``post`` takes session events
    (``Controller.post``). The rest are for tests and tuning.
    """

    fallback_to_software: bool = True
    """Send the camera's raw pictures encoded here when the far side refuses its H.264.
    Only the tests' twin turns this off."""

    def __init__(
        self,
        link: HubPort,
        configured_ice: Sequence[config.IceServer],
        *,
        camera: Camera | None,
        microphone: Microphone | None,
        speaker: Speaker | None,
        post: EventSink,
        gather_timeout: float | None = GATHER_TIMEOUT,
        regather_timeout: float | None = REGATHER_TIMEOUT,
        stall_after: float = STALL_AFTER,
        retry_every: float = RETRY_EVERY,
        policy: VideoPolicy | None = None,
        tick: float = TICK,
        stats_every: float = STATS_EVERY,
    ) -> None:
        self._link = link
        self._configured = tuple(configured_ice)
        self._camera = camera
        self._microphone = microphone
        self._speaker = speaker
        self._post = post
        self._gather_timeout = gather_timeout
        self._regather_timeout = regather_timeout
        self._tick = tick
        self._stats_every = stats_every
        self._watch = StallWatch(stall_after, retry_every)
        self._policy = policy or VideoPolicy()
        self._load = LoadMeter()
        self._out = Outgoing()
        self._call: _Call | None = None
        self._leg: _Leg | None = None
        self._lock = asyncio.Lock()
        self._reoffer_wanted = False
        self._told: dict[str, CallEvent] = {}  # the latest booth word per topic, for new legs
        self._remote_video: av.VideoFrame | None = None
        self._remote_cache: tuple[av.VideoFrame, Frame] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_stats = 0.0
        self._closed = False
        self._ended: deque[str] = deque(maxlen=ENDED_MEMORY)  # call ids this booth ended
        self.status = CallStatus.IDLE
        self.clinician_state = ClinicianState()
        """The console's mute and camera, as it last told the booth."""
        self.failures = 0
        """Peer connections that failed outright (ICE, or DTLS refused the far certificate)."""
        self.offers = 0
        """Offers sent, first and re-offers."""
        self.video_frames_received = 0
        """The clinician's video frames decoded, over every call (diagnostics, the simulator)."""
        self.audio_frames_received = 0
        """The clinician's audio frames decoded, over every call."""
        self.status_listeners: list[Callable[[CallStatus], None]] = []
        self.clinician_listeners: list[Callable[[ClinicianState], None]] = []
        link.on_call = self.on_hub_message

    # ------------------------------------------------------------ reading

    @property
    def call_id(self) -> str | None:
        return self._call.call_id if self._call is not None else None

    @property
    def outgoing(self) -> Outgoing:
        """What the booth is sending now (paused, muted, camera, video level)."""
        return self._out

    @property
    def video_level(self) -> VideoLevel:
        return self._out.video

    def remote_frame(self) -> Frame | None:
        """The clinician's newest picture (RGB, rows bottom-up, like the camera's), or None."""
        video = self._remote_video
        if video is None:
            return None
        cached = self._remote_cache
        if cached is not None and cached[0] is video:
            return cached[1]
        frame = to_frame(video)
        self._remote_cache = (video, frame)
        return frame

    def peer_connection(self) -> RTCPeerConnection | None:
        """The current peer connection (tests and diagnostics)."""
        return self._leg.pc if self._leg is not None else None

    # ------------------------------------------------------------ the hub

    async def on_hub_message(self, message: Message) -> None:
        """Everything the hub says about calls; the link routes it here. Never raises."""
        try:
            await self._on_hub_message(message)
        except Exception as exc:  # by type only: an error's text may quote what it parsed
            _log.error("call: handling %s failed (%s)", message.TYPE, type(exc).__name__)

    async def _on_hub_message(self, message: Message) -> None:
        call = self._call
        if isinstance(message, CallStarted):
            await self._call_started(message)
        elif isinstance(message, Answer):
            if call is not None and message.call_id == call.call_id:
                await self._apply_answer(call, message.sdp)
        elif isinstance(message, Offer):
            if call is not None and message.call_id == call.call_id and call.accepted:
                self._spawn(self._answer_offer(call, message.sdp))
        elif isinstance(message, CallState):
            if call is not None and message.call_id == call.call_id:
                self._clinician_word(message.event)
        elif isinstance(message, CallEnded):
            if message.call_id is None and call is None:
                self._post(session.CallEnded())  # our queue place ended before any call
            elif call is not None and message.call_id == call.call_id:
                _log.info("call %s: ended by the hub (%s)", call.call_id, message.reason.value)
                await self._finish()
                self._post(session.CallEnded())
        elif (
            isinstance(message, protocol.Error)
            and message.code is ErrorCode.UNKNOWN_CALL
            and call is not None
            and message.in_reply_to in call.sent_ids
        ):
            _log.warning("call %s: the hub no longer knows it; ending", call.call_id)
            await self._finish()
            self._post(session.CallEnded())

    async def _call_started(self, message: CallStarted) -> None:
        if message.call_id in self._ended:
            # Our end_call went down with the hub link, so the hub kept the call and gives it
            # back after the reconnect. The visit is over: end it there too, or the clinician
            # waits in a dead call and the hub refuses this booth's next queue place (busy).
            _log.info("call %s: already ended here; ending it at the hub", message.call_id)
            await self._link.send(EndCall(id=new_id(), call_id=message.call_id))
            return
        call = self._call
        if call is not None and call.call_id == message.call_id:
            # The hub after our link came back: fresh TURN credentials, re-offer with them.
            call.ice_servers = message.ice_servers
            _log.info("call %s: started again by the hub", call.call_id)
            if call.accepted:
                self._spawn(self._offer("call_started"))
            return
        if call is not None:
            _log.warning("call %s: replaced by call %s", call.call_id, message.call_id)
            if await self._finish():
                self._post(session.NetworkRestored())  # the new call's media is watched afresh
        self._call = _Call(message.call_id, message.ice_servers, message.audio_only)
        self._link.in_call = True
        self._policy.reset()
        self._out.video = self._policy.current
        _log.info("call %s: a clinician answered", message.call_id)
        self._set_status(CallStatus.ANSWERED)
        self._post(session.ClinicianAnswered())

    async def _send(self, call: _Call, message: Message) -> bool:
        call.sent_ids.add(message.id)
        return await self._link.send(message)

    # ------------------------------------------------------------ CallPort

    async def join_queue(self, visit: Visit) -> None:
        await self._link.join_queue(visit)

    async def leave_queue(self) -> None:
        await self._link.leave_queue()

    async def accept_call(self) -> None:
        """The visit takes the call: build the peer connection and offer."""
        call = self._call
        if call is None:
            _log.warning("accept_call: no call to accept")
            return
        if call.accepted:
            return  # the visit may say it again (a re-answer): the call is already under way
        call.accepted = True
        self._watch.stop()
        self._monitor = asyncio.get_running_loop().create_task(
            self._watch_media(call), name="call-monitor"
        )
        await self._offer("accept")
        if not self._out.microphone_on:  # muted before the call: the console should know
            await self.tell_clinician(CallEvent.MUTED)
        await self._tell_camera()

    async def end_call(self) -> None:
        """The resident hung up (or the visit is being wiped): tell the hub, drop the call."""
        call = self._call
        if call is None:
            return
        self._ended.append(call.call_id)
        await self._send(call, EndCall(id=new_id(), call_id=call.call_id))
        _log.info("call %s: ended by the booth", call.call_id)
        if await self._finish():
            # The visit heard NetworkLost for this call's media; with no call there is no
            # media to miss. Unsaid, the booth would stay "offline" (out of service) for good.
            self._post(session.NetworkRestored())

    async def rebuild_call(self) -> None:
        """The network came back: re-offer, unless media is already flowing fine."""
        call = self._call
        if call is None or not call.accepted:
            return
        if self._watch.flowing(asyncio.get_running_loop().time()):
            return
        await self._offer("rebuild")

    async def pause_media(self) -> None:
        self._out.paused = True

    async def resume_media(self) -> None:
        self._out.paused = False

    async def set_microphone(self, on: bool) -> None:
        self._out.microphone_on = on
        await self.tell_clinician(CallEvent.UNMUTED if on else CallEvent.MUTED)

    async def set_camera(self, on: bool) -> None:
        self._out.camera_on = on
        call, leg = self._call, self._leg
        if on and call is not None and call.audio_only:
            call.audio_only = False  # video was never negotiated: offer again with it
            if leg is not None:
                self._spawn(self._offer("camera_on"))
        await self._tell_camera()

    async def tell_clinician(self, what: str) -> None:
        """Say ``what`` (a :class:`CallEvent` word) on the data channel and through the hub."""
        try:
            event = CallEvent(what)
        except ValueError:
            _log.error("tell_clinician: not a call event word")
            return
        call = self._call
        if call is None:
            return
        self._told[_TOPIC.get(event, event.value)] = event
        leg = self._leg
        if leg is not None:
            self._channel_send(leg, event)
        await self._send(call, CallState(id=new_id(), call_id=call.call_id, event=event))

    async def _tell_camera(self) -> None:
        on = self._out.camera_on and not self._out.video.off
        want = CallEvent.CAMERA_ON if on else CallEvent.CAMERA_OFF
        if self._call is not None and self._told.get("camera", CallEvent.CAMERA_ON) is not want:
            await self.tell_clinician(want)

    # ------------------------------------------------------------ legs

    def _build_leg(self, call: _Call) -> _Leg:
        pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=ice_servers(self._configured, call.ice_servers),
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
            )
        )
        audio = MicrophoneTrack(self._microphone, self._out)
        pc.addTransceiver(audio, direction="sendrecv")
        video: CameraTrack | H264PassthroughTrack | None = None
        encoder = encoder_of(self._camera)
        if call.audio_only:
            # Audio-only is about the resident's picture: the clinician is still seen.
            pc.addTransceiver("video", direction="recvonly")
        elif encoder is not None and not (call.h264_refused and self.fallback_to_software):
            # The camera encodes H.264 itself (a Pi 4): sent as it is, H.264 negotiated.
            video = H264PassthroughTrack(encoder, self._out)
            sender = add_passthrough(pc, video, direction="sendrecv").sender
        else:
            video = CameraTrack(self._camera, self._out)
            transceiver = pc.addTransceiver(video, direction="sendrecv")
            transceiver.setCodecPreferences(video_codecs(SOFTWARE_VIDEO_CODECS))
            sender = transceiver.sender
        channel = pc.createDataChannel("state")
        leg = _Leg(pc, channel, audio, video, ice_connections(pc))
        if video is not None:
            leg.remb = watch_remb(sender)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            task = asyncio.get_running_loop().create_task(self._consume(leg, track))
            leg.tasks.add(task)
            task.add_done_callback(leg.tasks.discard)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "failed" and self._leg is leg:
                self._failed(leg)

        @channel.on("open")
        def on_open() -> None:
            for event in list(self._told.values()):  # a new leg: bring the console up to date
                self._channel_send(leg, event)

        @channel.on("message")
        def on_message(data: object) -> None:
            if self._leg is leg:
                self._channel_message(data)

        return leg

    async def _offer(self, why: str) -> None:
        """Send an offer on a new leg; at most one offer waits for its answer at a time."""
        async with self._lock:
            call = self._call
            if call is None or not call.accepted or self._closed:
                return
            if why == "pending" and not self._reoffer_wanted:
                return  # another step already made the offer that was waiting
            loop = asyncio.get_running_loop()
            old = self._leg
            if (
                old is not None
                and old.offered_at is not None
                and not old.answered
                and loop.time() - old.offered_at < self._watch.retry_every
            ):
                self._reoffer_wanted = True  # after this answer: answers carry no offer id
                return
            self._reoffer_wanted = False
            first = call.offers == 0
            await self._drop_leg()
            leg = self._build_leg(call)
            self._leg = leg
            timeout = self._gather_timeout if first else self._regather_timeout
            if timeout is not None:
                bound_gathering(leg.pc, timeout)
            try:
                await leg.pc.setLocalDescription(await leg.pc.createOffer())
            except Exception as exc:
                _log.error("call %s: no offer made (%s)", call.call_id, type(exc).__name__)
                await self._drop_leg()
                return
            if self._call is not call or self._leg is not leg:
                return
            offer = Offer(id=new_id(), call_id=call.call_id, sdp=leg.pc.localDescription.sdp)
            sent = await self._send(call, offer)
            call.offers += 1
            self.offers += 1
            leg.offered_at = loop.time() if sent else None
            self._watch.expect(loop.time())
            if self.status is not CallStatus.STALLED:
                self._set_status(CallStatus.CONNECTING)
            outcome = "sent" if sent else "not sent (hub down)"
            _log.info("call %s: offer %s (%s)", call.call_id, outcome, why)

    async def _apply_answer(self, call: _Call, sdp: str) -> None:
        async with self._lock:
            leg = self._leg
            if leg is None or leg.answered or leg.pc.signalingState != "have-local-offer":
                _log.info("call %s: an answer to no open offer; ignored", call.call_id)
                return
            leg.answered = True
            try:
                await leg.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
                await add_bundled_candidates(leg.pc, sdp)
            except Exception as exc:
                if self._refuses_h264(call, leg, exc):
                    self._reoffer_wanted = True  # at once, with video encoded here
                else:
                    _log.error(
                        "call %s: the answer was refused (%s)", call.call_id, type(exc).__name__
                    )
                    self._failed(leg)
            else:
                if _video_rejected(sdp) and self._refuses_h264(call, leg, None):
                    self._reoffer_wanted = True  # accepted, but without the video: again
                else:
                    _log.info("call %s: answer applied", call.call_id)
            wanted = self._reoffer_wanted
        if wanted:
            self._spawn(self._offer("pending"))

    def _refuses_h264(self, call: _Call, leg: _Leg, exc: Exception | None) -> bool:
        """Whether the far side just refused the camera's H.264 (a browser without it).

        A browser that cannot take H.264 rejects the video of an offer that has
        nothing else; aiortc then finds no video codec in common. The camera's
        raw pictures can still go out encoded here (VP8), which beats no picture.
        """
        if not self.fallback_to_software or call.h264_refused:
            return False
        if not isinstance(leg.video, H264PassthroughTrack):
            return False
        if exc is not None and not (isinstance(exc, OperationError) and "video" in str(exc)):
            return False
        call.h264_refused = True
        _log.warning(
            "call %s: the clinician's browser takes no H.264; the camera's pictures are "
            "encoded here instead",
            call.call_id,
        )
        return True

    async def _answer_offer(self, call: _Call, sdp: str) -> None:
        """The console re-offered: answer on a new leg of our own."""
        async with self._lock:
            if self._call is not call or self._closed:
                return
            for _attempt in range(2):  # the second with video encoded here (_refuses_h264)
                await self._drop_leg()
                leg = self._build_leg(call)
                self._leg = leg
                try:
                    await leg.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                    await add_bundled_candidates(leg.pc, sdp)
                    await leg.pc.setLocalDescription(await leg.pc.createAnswer())
                except Exception as exc:
                    if self._refuses_h264(call, leg, exc):
                        continue
                    _log.error(
                        "call %s: could not answer the console's offer (%s)",
                        call.call_id,
                        type(exc).__name__,
                    )
                    await self._drop_leg()
                    return
                break
            else:
                await self._drop_leg()
                return
            leg.answered = True
            loop = asyncio.get_running_loop()
            leg.offered_at = loop.time()
            self._watch.expect(loop.time())
            answer = Answer(id=new_id(), call_id=call.call_id, sdp=leg.pc.localDescription.sdp)
            await self._send(call, answer)
            _log.info("call %s: answered the console's offer", call.call_id)

    async def _drop_leg(self) -> None:
        leg, self._leg = self._leg, None
        if leg is None:
            return
        self._remote_video = None
        self._remote_cache = None
        for track in (leg.audio, leg.video):
            if track is not None:
                track.stop()
        seal(leg.connections)
        with contextlib.suppress(Exception):
            await leg.pc.close()
        for task in list(leg.tasks):
            task.cancel()
        if leg.tasks:
            await asyncio.gather(*leg.tasks, return_exceptions=True)

    def _failed(self, leg: _Leg) -> None:
        call = self._call
        self.failures += 1
        _log.warning("call %s: the media connection failed", call.call_id if call else "-")
        if self._watch.failed(asyncio.get_running_loop().time()):
            self._lost()

    def _lost(self) -> None:
        _log.warning("call %s: no media; re-offering", self.call_id or "-")
        self._set_status(CallStatus.STALLED)
        self._post(session.NetworkLost())

    # ------------------------------------------------------------ media in

    async def _consume(self, leg: _Leg, track: MediaStreamTrack) -> None:
        audio = RemoteAudio(self._speaker) if track.kind == "audio" else None
        if audio is not None and self._speaker is not None:
            self._speaker.open()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if self._leg is not leg:
                return
            self._media_arrived()
            if audio is not None:
                assert isinstance(frame, av.AudioFrame)
                self.audio_frames_received += 1
                audio.play(frame)
            elif isinstance(frame, av.VideoFrame):
                self.video_frames_received += 1
                self._remote_video = frame

    def _media_arrived(self) -> None:
        if self._watch.media(asyncio.get_running_loop().time()):
            _log.info("call %s: media flows again", self.call_id or "-")
            self._post(session.NetworkRestored())
        if self.status is not CallStatus.CONNECTED:
            self._set_status(CallStatus.CONNECTED)

    # ------------------------------------------------------------ the monitor

    async def _watch_media(self, call: _Call) -> None:
        """Every tick: stalled media, then (each second) the far side's loss reports."""
        loop = asyncio.get_running_loop()
        while self._call is call:
            await asyncio.sleep(self._tick)
            now = loop.time()
            leg = self._leg
            if not self._link.connected and leg is not None and not leg.answered:
                leg.offered_at = None  # its answer died with the hub link: offer again freely
            verdict = self._watch.tick(now)
            if verdict is Verdict.LOST:
                self._lost()
            if verdict is not None and self._link.connected:
                await self._offer("stalled")
            elif self._reoffer_wanted and self._link.connected:
                await self._offer("pending")
            if now >= self._next_stats:
                self._next_stats = now + self._stats_every
                await self._check_link()

    async def _check_link(self) -> None:
        leg = self._leg
        if leg is None or leg.video is None or self._watch.stalled:
            return
        loss, rtt = await link_quality(leg.pc)
        load = self._load.sample(leg.video)
        level = self._policy.observe(
            asyncio.get_running_loop().time(), loss, rtt, late=load.late, cpu=load.cpu
        )
        if level is not None and self._leg is leg:
            why = "the CPU" if self._policy.cause == "cpu" else "the link"
            _log.info("call %s: video %s for %s", self.call_id or "-", level.name, why)
            self._out.video = level
            await self._tell_camera()
        if isinstance(leg.video, H264PassthroughTrack) and self._leg is leg:
            remb = leg.remb(REPORT_FRESH) if leg.remb is not None else None
            leg.video.set_bitrate(video_bitrate(self._out.video, remb, leg.video.size))

    # ------------------------------------------------------------ data channel

    def _channel_send(self, leg: _Leg, event: CallEvent) -> None:
        if leg.channel.readyState == "open":
            with contextlib.suppress(Exception):
                leg.channel.send(json.dumps({"event": event.value}))

    def _channel_message(self, data: object) -> None:
        """A word from the console; anything but ``{"event": word}`` is dropped unread."""
        if not isinstance(data, str) or len(data) > MAX_CHANNEL_MESSAGE:
            return
        try:
            body = json.loads(data)
            event = CallEvent(body["event"])
        except (ValueError, TypeError, KeyError, RecursionError):  # "[" * 1000 is within the cap
            _log.info("call %s: a data channel message was not a call event", self.call_id or "-")
            return
        self._clinician_word(event)

    def _clinician_word(self, event: CallEvent) -> None:
        if event not in _CONSOLE_WORDS:
            return  # door and emergency words are the booth's own
        state = self.clinician_state
        if event in (CallEvent.MUTED, CallEvent.UNMUTED):
            state = ClinicianState(event is CallEvent.MUTED, state.camera_off)
        else:
            state = ClinicianState(state.muted, event is CallEvent.CAMERA_OFF)
        if state == self.clinician_state:
            return
        self.clinician_state = state
        for listener in list(self.clinician_listeners):
            try:
                listener(state)
            except Exception:
                _log.exception("clinician state listener failed")

    # ------------------------------------------------------------ ending

    async def _finish(self) -> bool:
        """Forget the call: no leg, no monitor, booth switches back to their defaults.

        True when the call was stalled: the visit was told NetworkLost for it.
        """
        stalled = self._watch.stalled
        self._call = None
        monitor, self._monitor = self._monitor, None
        async with self._lock:  # never cancel the monitor mid re-offer: a half-closed leg leaks
            if monitor is not None and monitor is not asyncio.current_task():
                monitor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await monitor
            await self._drop_leg()
        self._watch.stop()
        self._reoffer_wanted = False
        self._told.clear()
        self._out.reset()
        self._link.in_call = False
        if self._speaker is not None:
            self._speaker.close()  # let go of the sound device until the next call
        if self.clinician_state != ClinicianState():
            self._clinician_word(CallEvent.UNMUTED)
            self._clinician_word(CallEvent.CAMERA_ON)
        self._set_status(CallStatus.IDLE)
        return stalled

    async def close(self) -> None:
        """Drop any call without a word to the hub (the booth is stopping); no task is left."""
        self._closed = True
        await self._finish()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ helpers

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:
                _log.error("call: a background step failed (%s)", type(exc).__name__)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _set_status(self, status: CallStatus) -> None:
        if status is self.status:
            return
        self.status = status
        for listener in list(self.status_listeners):
            try:
                listener(status)
            except Exception:
                _log.exception("call status listener failed")


def _video_rejected(sdp: str) -> bool:
    """Whether an answer rejects its video section (port 0, as JSEP rejects a section)."""
    return any(line.startswith("m=video 0 ") for line in sdp.splitlines())


def video_codecs(mime_types: Sequence[str]) -> list[RTCRtpCodecCapability]:
    """aiortc's video codecs of ``mime_types``, in that order, then RTX."""
    codecs = RTCRtpSender.getCapabilities("video").codecs
    ordered = [c for mime in mime_types for c in codecs if c.mimeType.lower() == mime.lower()]
    return ordered + [c for c in codecs if c.mimeType == "video/rtx"]


async def link_quality(pc: RTCPeerConnection) -> tuple[float | None, float | None]:
    """The worst fresh loss fraction and round trip the far side reported for our senders."""
    now = datetime.now(UTC)
    losses: list[float] = []
    rtts: list[float] = []
    for sender in pc.getSenders():
        if sender.track is None:
            continue
        try:
            report: Any = await sender.getStats()
        except Exception:
            continue
        for stats in report.values():
            if getattr(stats, "type", None) != "remote-inbound-rtp":
                continue
            if (now - stats.timestamp).total_seconds() > REPORT_FRESH:
                continue
            if stats.fractionLost is not None:
                losses.append(stats.fractionLost / 256.0)  # RTCP's 8-bit fixed point
            if stats.roundTripTime is not None:
                rtts.append(stats.roundTripTime)
    return (max(losses) if losses else None), (max(rtts) if rtts else None)


__all__ = [
    "GATHER_TIMEOUT",
    "REGATHER_TIMEOUT",
    "SOFTWARE_VIDEO_CODECS",
    "CallEngine",
    "CallStatus",
    "ClinicianState",
    "HubPort",
    "add_bundled_candidates",
    "bound_gathering",
    "ice_connections",
    "ice_servers",
    "link_quality",
    "seal",
    "video_codecs",
]
