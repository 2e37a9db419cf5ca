"""The camera's own H.264 through aiortc unchanged: decoded far away, never re-encoded here.

The camera is :class:`~hardware.h264.EncodingTestCard` (the test card with a
simulated hardware encoder: real H.264 from libx264 on its own thread).
aiortc's encoders are counted per instance (:class:`EncoderCalls`), so "zero
re-encodes" is about the booth's video sender, while the clinician's own
video, which aiortc does encode, proves the counting works. Keyframe
requests come as real RTCP from the far peer's receiver; their twin runs with
forwarding off and must not reach the encoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.codecs import h264 as aiortc_h264
from aiortc.codecs import vpx as aiortc_vpx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RTCP_PSFB_FIR, RtcpPsfbPacket

from hardware.audio import SimulatedMicrophone, SimulatedSpeaker
from hardware.camera import TestCard
from hardware.h264 import EncodedFrame, EncodingTestCard, nal_types
from kiosk import session
from kiosk.call import passthrough
from kiosk.call.adapt import LEVELS
from kiosk.call.engine import CallEngine
from kiosk.call.passthrough import (
    TIME_BASE,
    H264PassthroughTrack,
    add_passthrough,
    black_clip,
    forward_keyframe_requests,
    h264_codecs,
    keyframe_forwarding,
)
from kiosk.call.tracks import OFF_SIZE, CameraTrack, Outgoing
from tests.kiosk.call.peers import BLACK_LUMA, Booth, FakeHub, eventually

BRIGHT_LUMA = 60.0  # the test card averages well over 100


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (fixtures as for any test)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


# ---------------------------------------------------------------- counting aiortc's encoders


@dataclass
class EncoderCalls:
    """aiortc's ``encode`` (a picture re-encoded) and ``pack`` (H.264 packed as it is) calls."""

    encode: Counter[int] = field(default_factory=Counter)  # by id() of the encoder object
    pack: Counter[int] = field(default_factory=Counter)
    packed: list[bytes] = field(default_factory=list)

    def of(self, sender: RTCRtpSender) -> tuple[int, int]:
        encoder = sender._RTCRtpSender__encoder  # type: ignore[attr-defined]
        return self.encode[id(encoder)], self.pack[id(encoder)]

    @property
    def encodes(self) -> int:
        return sum(self.encode.values())


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> EncoderCalls:
    counts = EncoderCalls()
    h264_encode, h264_pack = aiortc_h264.H264Encoder.encode, aiortc_h264.H264Encoder.pack
    vp8_encode = aiortc_vpx.Vp8Encoder.encode

    def count_h264(self: Any, frame: Any, force_keyframe: bool = False) -> Any:
        counts.encode[id(self)] += 1
        return h264_encode(self, frame, force_keyframe)

    def count_vp8(self: Any, frame: Any, force_keyframe: bool = False) -> Any:
        counts.encode[id(self)] += 1
        return vp8_encode(self, frame, force_keyframe)

    def count_pack(self: Any, packet: Any) -> Any:
        counts.pack[id(self)] += 1
        counts.packed.append(bytes(packet))
        return h264_pack(self, packet)

    monkeypatch.setattr(aiortc_h264.H264Encoder, "encode", count_h264)
    monkeypatch.setattr(aiortc_h264.H264Encoder, "pack", count_pack)
    monkeypatch.setattr(aiortc_vpx.Vp8Encoder, "encode", count_vp8)
    return counts


# ---------------------------------------------------------------- a bare aiortc pair


@dataclass
class FarSide:
    """What the far peer decoded: (time, luma, width, keyframe) per picture."""

    pc: RTCPeerConnection
    frames: list[tuple[float, float, int, bool]] = field(default_factory=list)

    def keyframes_since(self, t: float) -> int:
        return sum(1 for when, _, _, key in self.frames if when >= t and key)


@contextlib.asynccontextmanager
async def passthrough_call(
    track: H264PassthroughTrack, *, forward: bool = True
) -> AsyncIterator[tuple[RTCRtpSender, FarSide]]:
    """``track`` from a sending aiortc peer to a receiving one, on loopback."""
    booth = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    far = FarSide(RTCPeerConnection(RTCConfiguration(iceServers=[])))
    transceiver = add_passthrough(booth, track, direction="sendonly", forward_keyframes=forward)
    tasks: list[asyncio.Task[None]] = []

    async def consume(remote: MediaStreamTrack) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await remote.recv()
                assert isinstance(frame, av.VideoFrame)
                luma = float(frame.to_ndarray(format="gray").mean())
                far.frames.append((loop.time(), luma, frame.width, bool(frame.key_frame)))

    far.pc.on("track", lambda remote: tasks.append(asyncio.ensure_future(consume(remote))))
    try:
        await booth.setLocalDescription(await booth.createOffer())
        await far.pc.setRemoteDescription(booth.localDescription)
        await far.pc.setLocalDescription(await far.pc.createAnswer())
        await booth.setRemoteDescription(far.pc.localDescription)
        yield transceiver.sender, far
    finally:
        track.stop()
        await booth.close()
        await far.pc.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def camera(keyframe_interval: int = 30) -> EncodingTestCard:
    card = EncodingTestCard(320, 240, keyframe_interval=keyframe_interval)
    card.open()
    return card


# ---------------------------------------------------------------- (a) never re-encoded


@in_loop
async def test_far_side_decodes_the_cameras_h264_and_aiortc_encodes_nothing(
    calls: EncoderCalls,
) -> None:
    card = camera()
    emitted: list[bytes] = []
    watch = card.encoder.subscribe(lambda frame: emitted.append(frame.data))
    track = H264PassthroughTrack(card.encoder, Outgoing())
    async with passthrough_call(track) as (sender, far):
        await eventually(lambda: len(far.frames) >= 30, 10.0, "30 pictures decoded")
        codec = sender._RTCRtpSender__encoder  # type: ignore[attr-defined]
        encodes, packs = calls.of(sender)
    watch()

    assert isinstance(codec, aiortc_h264.H264Encoder)  # H.264 negotiated, not VP8
    assert calls.encodes == 0 and encodes == 0  # not one picture re-encoded
    assert packs >= 30 and track.sent >= 30
    # Byte for byte what the encoder made: packed, never decoded and re-encoded.
    assert set(calls.packed) <= set(emitted)
    assert {width for _, _, width, _ in far.frames} == {320}
    assert min(luma for _, luma, _, _ in far.frames) > BRIGHT_LUMA
    assert far.frames[0][3]  # the first picture the far side saw was a keyframe


# ---------------------------------------------------------------- (b) keyframe requests


async def _send_fir(far: FarSide, media_ssrc: int, seq: int = 1) -> None:
    receiver = far.pc.getTransceivers()[0].receiver
    rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
    fci = struct.pack("!LBBH", media_ssrc, seq, 0, 0)  # RFC 5104: target SSRC, sequence number
    await receiver._send_rtcp(
        RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=rtcp_ssrc, media_ssrc=media_ssrc, fci=fci)
    )


async def _send_pli(far: FarSide, media_ssrc: int) -> None:
    await far.pc.getTransceivers()[0].receiver._send_rtcp_pli(media_ssrc)


@pytest.mark.parametrize("request_kind", ["pli", "fir"])
@pytest.mark.parametrize("forward", [True, False], ids=["forwarded", "twin-not-forwarded"])
@in_loop
async def test_keyframe_request_from_the_far_side_reaches_force_key_frame(
    calls: EncoderCalls, request_kind: str, forward: bool
) -> None:
    card = camera(keyframe_interval=600)  # no periodic keyframe during the test
    encoder = card.encoder
    track = H264PassthroughTrack(encoder, Outgoing())
    async with passthrough_call(track, forward=forward) as (sender, far):
        await eventually(lambda: len(far.frames) >= 10, 10.0, "pictures decoded")
        await asyncio.sleep(0.2)
        asked, forced = encoder.key_frames_requested, encoder.key_frames_forced
        assert track.keyframe_requests == 0
        sent_at = asyncio.get_running_loop().time()
        if request_kind == "pli":
            await _send_pli(far, sender._ssrc)
        else:
            await _send_fir(far, sender._ssrc)
        # aiortc's own flag shows the request reached the sender either way.
        await eventually(lambda: sender._RTCRtpSender__force_keyframe, 2.0, "request arrived")  # type: ignore[attr-defined]
        if forward:
            await eventually(lambda: far.keyframes_since(sent_at) >= 1, 3.0, "a keyframe decoded")
            assert track.keyframe_requests == 1
            assert encoder.key_frames_requested == asked + 1
            assert encoder.key_frames_forced == forced + 1
        else:
            await asyncio.sleep(0.5)
            assert track.keyframe_requests == 0
            assert encoder.key_frames_requested == asked
            assert far.keyframes_since(sent_at) == 0
    assert calls.encodes == 0


def test_forwarding_is_per_sender_idempotent_and_guarded(monkeypatch: pytest.MonkeyPatch) -> None:
    original = RTCRtpSender.__dict__["_send_keyframe"]

    async def scenario() -> None:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        video = H264PassthroughTrack(EncodingTestCard().encoder, Outgoing())
        other = pc.addTransceiver("video").sender
        sender = add_passthrough(pc, video).sender
        requests: list[int] = []
        forward_keyframe_requests(sender, lambda: requests.append(1))
        forward_keyframe_requests(sender, video.request_keyframe)
        forward_keyframe_requests(sender, video.request_keyframe)  # no stacking
        assert keyframe_forwarding(sender) == video.request_keyframe
        assert keyframe_forwarding(other) is None  # another sender: untouched
        assert RTCRtpSender.__dict__["_send_keyframe"] is original  # the class: untouched
        sender._send_keyframe()
        assert requests == [] and video.keyframe_requests == 1
        assert sender._RTCRtpSender__force_keyframe  # type: ignore[attr-defined]
        video.stop()
        await pc.close()

    asyncio.run(scenario())
    monkeypatch.delattr(RTCRtpSender, "_send_keyframe")
    with pytest.raises(RuntimeError, match="keyframe requests cannot be forwarded"):
        forward_keyframe_requests(object(), lambda: None)  # type: ignore[arg-type]


def test_only_h264_and_rtx_are_offered_for_a_passthrough() -> None:
    assert [c.mimeType for c in h264_codecs()] == ["video/H264", "video/H264", "video/rtx"]


# ---------------------------------------------------------------- the engine uses it


@contextlib.asynccontextmanager
async def booth_with(card: TestCard) -> AsyncIterator[Booth]:
    """As ``peers.booth_call``, with this camera."""
    hub = FakeHub()
    microphone, speaker = SimulatedMicrophone(), SimulatedSpeaker()
    card.open()
    microphone.open()
    events: list[session.Event] = []
    engine = CallEngine(
        hub.booth,
        (),
        camera=card,
        microphone=microphone,
        speaker=speaker,
        post=events.append,
    )
    try:
        yield Booth(engine, hub, events, card, microphone, speaker)
    finally:
        await engine.close()
        await hub.close()


def video_sender(pc: RTCPeerConnection | None) -> RTCRtpSender:
    assert pc is not None
    return next(t.sender for t in pc.getTransceivers() if t.kind == "video")


def video_section(sdp: str) -> str:
    return sdp.split("m=video", 1)[1].split("m=", 1)[0]


@in_loop
async def test_engine_sends_a_cameras_h264_unchanged(calls: EncoderCalls) -> None:
    async with booth_with(EncodingTestCard(320, 240)) as booth:
        await booth.connected(timeout=10.0)
        await eventually(lambda: len(booth.clinician.got.video) >= 20, 5.0, "booth video")
        leg = booth.engine._leg
        assert leg is not None and isinstance(leg.video, H264PassthroughTrack)
        pc = booth.engine.peer_connection()
        sender = video_sender(pc)
        assert keyframe_forwarding(sender) == leg.video.request_keyframe
        offer = video_section(pc.localDescription.sdp)  # type: ignore[union-attr]
        assert "H264/90000" in offer and "VP8" not in offer
        booth_encodes, booth_packs = calls.of(sender)
        clinician_sender = video_sender(booth.clinician.pc)
        clinician_encodes, _ = calls.of(clinician_sender)
    assert booth_encodes == 0 and booth_packs >= 20
    assert clinician_encodes > 0  # aiortc does encode the clinician's raw video: counted
    assert all(luma > BRIGHT_LUMA for _, luma, _, _ in booth.clinician.got.video)
    assert {(w, h) for _, _, w, h in booth.clinician.got.video} == {(320, 240)}


@pytest.mark.parametrize("fallback", [True, False], ids=["falls-back", "twin-no-fallback"])
@pytest.mark.parametrize("keeps_codec", [False, True], ids=["no-codec", "codec-kept"])
@in_loop
async def test_a_browser_without_h264_gets_the_cameras_pictures_encoded_here(
    fallback: bool, keeps_codec: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clinician whose browser has no H.264 still sees the resident: VP8 from raw frames.

    Browsers write a rejected section with no codec (aiortc then refuses the
    answer) or with the offered one kept (aiortc takes it, without video)."""
    monkeypatch.setattr(CallEngine, "fallback_to_software", fallback)
    async with booth_with(EncodingTestCard(320, 240)) as booth:
        booth.clinician.takes_h264 = False
        booth.clinician.rejected_keeps_codec = keeps_codec
        if not fallback:
            booth.hub.start_call()
            await eventually(lambda: booth.posted(session.ClinicianAnswered) == 1, 2.0, "asked")
            await booth.engine.accept_call()
            await asyncio.sleep(3.0)
            assert booth.clinician.got.video == []  # the twin: no picture ...
            if not keeps_codec:
                assert booth.clinician.got.audio == []  # ... and no call at all
            return
        await booth.connected(timeout=10.0)
        await eventually(lambda: len(booth.clinician.got.video) >= 10, 5.0, "booth video")
        leg = booth.engine._leg
        assert leg is not None and isinstance(leg.video, CameraTrack)
        pc = booth.engine.peer_connection()
        assert pc is not None and pc.localDescription is not None
        assert "VP8/90000" in video_section(pc.localDescription.sdp)
        assert booth.clinician.offers == 2  # H.264 refused, then VP8 taken
    assert all(luma > BRIGHT_LUMA for _, luma, _, _ in booth.clinician.got.video)


@in_loop
async def test_engine_pause_sends_black_from_no_camera_byte_then_resumes_at_a_keyframe(
    calls: EncoderCalls,
) -> None:
    card = EncodingTestCard(320, 240)
    async with booth_with(card) as booth:
        await booth.connected(timeout=10.0)
        leg = booth.engine._leg
        assert leg is not None and isinstance(leg.video, H264PassthroughTrack)
        track = leg.video
        loop = asyncio.get_running_loop()

        await booth.engine.pause_media()  # the door opened
        paused_at = loop.time()
        sent = track.sent
        await eventually(
            lambda: any(luma < BLACK_LUMA for _, luma, _, _ in booth.clinician.got.video),
            3.0,
            "black at the clinician",
        )
        await asyncio.sleep(0.8)
        assert track.sent == sent  # not one camera picture while paused
        after = booth.clinician.got.video_since(paused_at + 0.3)
        assert after and all(luma < BLACK_LUMA for _, luma, _, _ in after)
        assert track.sent_black >= 3 and track.dropped >= 20
        asked = track.keyframes_asked

        await booth.engine.resume_media()
        resumed_at = loop.time()
        await eventually(
            lambda: any(
                luma > BRIGHT_LUMA for _, luma, _, _ in booth.clinician.got.video_since(resumed_at)
            ),
            3.0,
            "the picture back",
        )
        assert track.keyframes_asked == asked + 1
        assert booth.engine.status.value == "connected"
        encodes, _ = calls.of(video_sender(booth.engine.peer_connection()))
    assert encodes == 0


@in_loop
async def test_engine_without_an_encoder_keeps_encoding_raw_frames(calls: EncoderCalls) -> None:
    async with booth_with(TestCard(320, 240)) as booth:
        await booth.connected(timeout=10.0)
        leg = booth.engine._leg
        assert leg is not None and isinstance(leg.video, CameraTrack)
        sender = video_sender(booth.engine.peer_connection())
        await eventually(lambda: calls.of(sender)[0] > 0, 3.0, "aiortc encoding")
        assert isinstance(sender._RTCRtpSender__encoder, aiortc_vpx.Vp8Encoder)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the track on its own


class FakeEncoder:
    """An EncodedVideo the test feeds by hand."""

    def __init__(self, size: tuple[int, int] = (320, 240)) -> None:
        self._size = size
        self.sinks: list[Callable[[EncodedFrame], None]] = []
        self.forced = 0

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def subscribe(self, sink: Callable[[EncodedFrame], None]) -> Callable[[], None]:
        self.sinks.append(sink)
        return lambda: self.sinks.remove(sink) if sink in self.sinks else None

    def force_key_frame(self) -> None:
        self.forced += 1

    def push(self, data: bytes, keyframe: bool, timestamp_us: int) -> None:
        for sink in list(self.sinks):
            sink(EncodedFrame(data, keyframe, timestamp_us))


def decode_one(data: bytes) -> av.VideoFrame:
    decoder = av.CodecContext.create("h264", "r")
    frames = decoder.decode(av.Packet(data))  # type: ignore[arg-type]
    assert len(frames) == 1
    frame = frames[0]
    assert isinstance(frame, av.VideoFrame)
    return frame


async def started(track: H264PassthroughTrack) -> asyncio.Future[Any]:
    """A recv() under way (subscribed, waiting)."""
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.01)
    return pending


@in_loop
async def test_track_starts_at_a_keyframe_with_pts_from_capture_times() -> None:
    encoder, out = FakeEncoder(), Outgoing()
    track = H264PassthroughTrack(encoder, out)
    pending = await started(track)
    assert len(encoder.sinks) == 1 and encoder.forced == 1  # asked for a keyframe to start
    encoder.push(b"delta", False, 0)  # mid-stream: useless without its keyframe
    encoder.push(b"key", True, 1_000_000)
    encoder.push(b"next", False, 1_033_333)
    first = await asyncio.wait_for(pending, 1.0)
    second = await asyncio.wait_for(track.recv(), 1.0)
    assert (bytes(first), bytes(second)) == (b"key", b"next")
    assert first.time_base == second.time_base == TIME_BASE
    assert second.pts - first.pts == 2999  # 33.333 ms at 90 kHz
    assert track.dropped == 1 and track.sent == 2
    track.stop()
    assert encoder.sinks == []
    with pytest.raises(MediaStreamError):
        await track.recv()


@in_loop
async def test_track_without_start_gate_sends_what_comes() -> None:
    encoder = FakeEncoder()
    track = H264PassthroughTrack(encoder, Outgoing(), keyframe_on_start=False)
    pending = await started(track)
    encoder.push(b"delta", False, 0)
    assert bytes(await asyncio.wait_for(pending, 1.0)) == b"delta"
    assert encoder.forced == 0
    track.stop()


@in_loop
async def test_camera_off_sends_black_and_resumes_only_at_a_keyframe() -> None:
    encoder, out = FakeEncoder((320, 240)), Outgoing()
    track = H264PassthroughTrack(encoder, out, black_fps=50)
    pending = await started(track)
    encoder.push(b"key", True, 0)
    assert bytes(await asyncio.wait_for(pending, 1.0)) == b"key"

    out.camera_on = False
    encoder.push(b"secret-1", False, 33_333)  # must never leave
    blacks = [await asyncio.wait_for(track.recv(), 2.0) for _ in range(3)]
    encoder.push(b"secret-2", False, 66_666)
    blacks.append(await asyncio.wait_for(track.recv(), 2.0))
    clip = await black_clip((320, 240), 50)
    assert [bytes(p) for p in blacks] == [data for data, _ in clip[:4]]
    picture = decode_one(bytes(blacks[0]))
    assert (picture.width, picture.height) == (320, 240)
    assert float(picture.to_ndarray(format="gray").mean()) < 20
    assert [p.pts for p in blacks] == sorted({p.pts for p in blacks})  # rising

    forced = encoder.forced
    out.camera_on = True
    encoder.push(b"delta-after", False, 99_999)
    pending = await started(track)
    assert encoder.forced == forced + 1  # asked for the keyframe to resume at
    encoder.push(b"key-after", True, 133_333)
    resumed = await asyncio.wait_for(pending, 1.0)
    assert bytes(resumed) == b"key-after" and resumed.pts > blacks[-1].pts
    assert track.sent == 2 and track.dropped == 3
    track.stop()


@in_loop
async def test_video_level_off_sends_a_tiny_black_picture() -> None:
    encoder, out = FakeEncoder((320, 240)), Outgoing(video=LEVELS[-1])
    track = H264PassthroughTrack(encoder, out)
    packet = await asyncio.wait_for(track.recv(), 2.0)
    picture = decode_one(bytes(packet))
    assert (picture.width, picture.height) == OFF_SIZE
    assert track.sent_black == 1 and track.sent == 0
    track.stop()


@in_loop
async def test_far_side_keyframe_request_restarts_the_black_clip() -> None:
    encoder, out = FakeEncoder(), Outgoing(paused=True)
    track = H264PassthroughTrack(encoder, out, black_fps=50)
    clip = await black_clip((320, 240), 50)
    first = await asyncio.wait_for(track.recv(), 2.0)
    second = await asyncio.wait_for(track.recv(), 2.0)
    forced = encoder.forced
    track.request_keyframe()
    third = await asyncio.wait_for(track.recv(), 2.0)
    assert [bytes(p) for p in (first, second, third)] == [clip[0][0], clip[1][0], clip[0][0]]
    assert nal_types(bytes(third))[:2] == [7, 8]
    assert encoder.forced == forced  # the camera's encoder is not bothered while paused
    track.stop()


@in_loop
async def test_a_lagging_loop_skips_to_the_next_keyframe() -> None:
    encoder = FakeEncoder()
    track = H264PassthroughTrack(encoder, Outgoing(), queue_size=2)
    pending = await started(track)
    encoder.push(b"key", True, 0)
    assert bytes(await asyncio.wait_for(pending, 1.0)) == b"key"
    for i in range(3):  # nobody reads: the queue overflows
        encoder.push(b"d%d" % i, False, 33_333 * (i + 1))
    await asyncio.sleep(0.01)
    forced = encoder.forced
    pending = await started(track)
    assert encoder.forced == forced + 1
    encoder.push(b"key2", True, 200_000)
    assert bytes(await asyncio.wait_for(pending, 1.0)) == b"key2"
    assert track.dropped == 3
    track.stop()


@in_loop
async def test_a_silent_camera_shows_black_not_a_frozen_picture() -> None:
    encoder = FakeEncoder((160, 120))
    track = H264PassthroughTrack(encoder, Outgoing(), camera_silent=0.05)
    start = time.monotonic()
    packet = await asyncio.wait_for(track.recv(), 2.0)
    assert time.monotonic() - start >= 0.05
    assert track.sent_black == 1 and nal_types(bytes(packet))[:2] == [7, 8]
    track.stop()


@in_loop
async def test_stop_wakes_a_waiting_recv() -> None:
    encoder = FakeEncoder()
    track = H264PassthroughTrack(encoder, Outgoing())
    pending = await started(track)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(pending, 1.0)
    encoder.push(b"late", True, 0)  # after stop: ignored
    await asyncio.sleep(0.01)
    assert track.sent == 0


@pytest.fixture(autouse=True)
def _fresh_black_clips() -> Iterator[None]:
    """Tests may use any size; the cache is module state."""
    saved = dict(passthrough._black_clips)
    yield
    passthrough._black_clips.clear()
    passthrough._black_clips.update(saved)
