"""The simulated hardware H.264 encoder makes real, decodable H.264 of the kind WebRTC wants."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import av
import pytest
from aiortc import RTCRtpSender

from hardware.camera import TestCard, encoder_of
from hardware.h264 import (
    WEBRTC_LEVEL,
    EncodedFrame,
    EncodedVideo,
    EncodingTestCard,
    SimulatedH264Encoder,
    encode_black,
    nal_types,
    profile_level,
)

SPS, PPS, IDR, SLICE = 7, 8, 5, 1


def collect(encoder: SimulatedH264Encoder, count: int, timeout: float = 5.0) -> list[EncodedFrame]:
    """Subscribe until ``count`` pictures came, then unsubscribe."""
    got: list[EncodedFrame] = []
    enough = threading.Event()

    def sink(frame: EncodedFrame) -> None:
        got.append(frame)
        if len(got) >= count:
            enough.set()

    unsubscribe = encoder.subscribe(sink)
    try:
        assert enough.wait(timeout), f"only {len(got)} of {count} pictures in {timeout} s"
    finally:
        unsubscribe()
    return got[:count]


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def decode(units: list[bytes]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("h264", "r")
    frames: list[av.VideoFrame] = []
    for unit in units:
        frames.extend(decoder.decode(av.Packet(unit)))  # type: ignore[arg-type]
    return frames


def sps_profile_level(unit: bytes) -> tuple[int, int]:
    """profile_idc and level_idc of the SPS in an access unit."""
    start = unit.find(b"\x00\x00\x01")
    while start != -1 and unit[start + 3] & 0x1F != SPS:
        start = unit.find(b"\x00\x00\x01", start + 3)
    assert start != -1, "no SPS"
    return unit[start + 4], unit[start + 6]


def test_simulated_encoder_makes_decodable_baseline_h264_with_headers_on_every_keyframe() -> None:
    card = EncodingTestCard(320, 240, keyframe_interval=15)
    card.open()
    units = collect(card.encoder, 32)

    frames = decode([u.data for u in units])
    assert len(frames) == len(units) == 32  # zerolatency: one picture in, one out
    assert {(f.width, f.height) for f in frames} == {(320, 240)}
    # The test card, not noise: its left bar is near-white, its blue bar blue.
    rgb = frames[-1].to_ndarray(format="rgb24").astype(int)
    assert rgb[10:30, 5:30].mean() > 200
    assert rgb[10:30, 285:315, 2].mean() > 180 and rgb[10:30, 285:315, 0].mean() < 60

    keyframes = [i for i, u in enumerate(units) if u.keyframe]
    assert keyframes == [0, 15, 30]
    for i in keyframes:
        assert nal_types(units[i].data)[:2] == [SPS, PPS]  # repeated, in-band
        assert IDR in nal_types(units[i].data)
        assert sps_profile_level(units[i].data) == (66, 31)  # baseline, level 3.1
    assert all(SPS not in nal_types(u.data) for u in units if not u.keyframe)
    stamps = [u.timestamp_us for u in units]
    assert stamps == sorted(stamps)
    assert 25 < 1e6 * (len(stamps) - 1) / (stamps[-1] - stamps[0]) < 36  # about 30 fps


def test_force_key_frame_makes_one_of_the_next_pictures_an_idr() -> None:
    card = EncodingTestCard(160, 120, keyframe_interval=600)
    card.open()
    encoder = card.encoder
    got: list[EncodedFrame] = []
    unsubscribe = encoder.subscribe(got.append)
    try:
        wait_for(lambda: len(got) >= 5)
        asked_at = len(got)
        encoder.force_key_frame()
        wait_for(lambda: len(got) >= asked_at + 4)
    finally:
        unsubscribe()
    later = [i for i, u in enumerate(got) if u.keyframe and i >= asked_at]
    assert later and later[0] <= asked_at + 2
    assert encoder.key_frames_forced == encoder.key_frames_requested == 1
    assert [u.keyframe for u in got[1:asked_at]] == [False] * (asked_at - 1)


def test_encoder_runs_only_while_someone_is_subscribed() -> None:
    card = EncodingTestCard(160, 120)
    card.open()
    encoder = card.encoder
    a: list[EncodedFrame] = []
    b: list[EncodedFrame] = []
    stop_a = encoder.subscribe(a.append)
    stop_b = encoder.subscribe(b.append)
    wait_for(lambda: len(b) >= 3)
    stop_a()
    stop_a()  # twice is harmless
    assert encoder.running
    stop_b()
    assert not encoder.running and encoder.starts == 1
    made = encoder.frames_encoded
    time.sleep(0.15)
    assert encoder.frames_encoded == made


def test_a_closed_camera_gives_the_encoder_nothing() -> None:
    card = EncodingTestCard(160, 120)  # never opened
    got: list[EncodedFrame] = []
    unsubscribe = card.encoder.subscribe(got.append)
    time.sleep(0.2)
    unsubscribe()
    assert got == [] and card.encoder.frames_encoded == 0


def test_a_failing_sink_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    card = EncodingTestCard(160, 120)
    card.open()
    good: list[EncodedFrame] = []

    def bad(frame: EncodedFrame) -> None:
        raise ValueError("boom")

    stop_bad = card.encoder.subscribe(bad)
    stop_good = card.encoder.subscribe(good.append)
    wait_for(lambda: len(good) >= 3)
    stop_bad()
    stop_good()
    assert "sink failed" in caplog.text


def test_encoder_scales_pictures_to_its_size() -> None:
    camera = TestCard(320, 240)
    camera.open()
    encoder = SimulatedH264Encoder(camera, (160, 120))
    units = collect(encoder, 3)
    assert {(f.width, f.height) for f in decode([u.data for u in units])} == {(160, 120)}


def test_black_clip_loops_as_valid_h264() -> None:
    clip = encode_black(160, 120, 10)
    assert [key for _, key in clip] == [True] + [False] * 9
    assert nal_types(clip[0][0])[:2] == [SPS, PPS]
    assert sum(len(data) for data, _ in clip) < 4000  # tiny
    # Played twice in a row through one decoder: every picture decodes, all black.
    frames = decode([data for data, _ in clip] * 2)
    assert len(frames) == 20
    assert max(float(f.to_ndarray(format="gray").mean()) for f in frames) < 20


def test_the_encoders_are_what_the_call_looks_for() -> None:
    card = EncodingTestCard()
    assert isinstance(card.encoder, EncodedVideo)
    assert encoder_of(card) is card.encoder
    assert encoder_of(TestCard()) is None
    assert encoder_of(None) is None
    assert card.encoder.size == (card.width, card.height)


@pytest.mark.parametrize(
    ("profile_level_id", "expected"),
    [("42e01f", (66, 0xE0, "3.1")), ("42001e", (66, 0, "3.0")), ("640c1f", (100, 0x0C, "3.1"))],
)
def test_profile_level_id(profile_level_id: str, expected: tuple[int, int, str]) -> None:
    assert profile_level(profile_level_id) == expected
    assert profile_level("42f00b") == (66, 0xF0, "1b")
    with pytest.raises(ValueError, match="six hex digits"):
        profile_level("42e01")


def test_encoders_use_the_level_and_profile_aiortc_offers() -> None:
    offered = [
        c.parameters["profile-level-id"]
        for c in RTCRtpSender.getCapabilities("video").codecs
        if c.mimeType == "video/H264"
    ]
    assert offered
    for plid in offered:
        profile, _, level = profile_level(plid)
        assert profile == 66 and level == WEBRTC_LEVEL


def test_nal_types_reads_three_and_four_byte_start_codes() -> None:
    unit = b"\x00\x00\x00\x01\x67\x42" + b"\x00\x00\x01\x68\xce" + b"\x00\x00\x01\x65\x88"
    assert nal_types(unit) == [SPS, PPS, IDR]
    assert nal_types(b"") == []
