"""The engine feeds the video policy the booth's own load and the far side's bitrate estimate.

Real calls between the booth engine and an aiortc clinician (``peers.py``).
A booth given a CPU budget it cannot meet steps its video down while the
voice goes on; the twin that ignores the CPU keeps sending full video. A
camera that encodes H.264 itself is given the level's bitrate, lowered to the
clinician's REMB; the twin without REMB watching keeps the level's cap.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from hardware.audio import SimulatedMicrophone, SimulatedSpeaker
from hardware.h264 import EncodingTestCard
from kiosk import session
from kiosk.call import engine as engine_module
from kiosk.call.adapt import LEVELS, VideoPolicy, video_bitrate
from kiosk.call.engine import CallEngine
from kiosk.call.load import watch_remb
from kiosk.call.passthrough import H264PassthroughTrack
from tests.kiosk.call.peers import SILENT_RMS, Booth, FakeHub, booth_call, eventually

BUSY = 0.001  # cores: any booth in a call uses more


def now() -> float:
    return asyncio.get_running_loop().time()


@pytest.mark.parametrize("follow_cpu", [True, False], ids=["follows-cpu", "twin-ignores-cpu"])
def test_a_booth_over_its_cpu_budget_steps_video_down_and_the_voice_goes_on(
    follow_cpu: bool,
) -> None:
    policy = VideoPolicy(down_after=0.5, cpu_budget=BUSY, follow_cpu=follow_cpu)

    async def main() -> None:
        async with booth_call(policy=policy, stats_every=0.25) as b:
            await b.connected()
            got = b.clinician.got
            if follow_cpu:
                await eventually(lambda: b.engine.video_level is LEVELS[1], 3.0, "reduced")
                assert policy.cause == "cpu"
                await eventually(lambda: b.engine.video_level is LEVELS[2], 3.0, "off")
            else:
                await asyncio.sleep(2.0)
                assert b.engine.video_level is LEVELS[0]  # overloaded all along
            t = now()
            await asyncio.sleep(1.0)
            assert len(got.audio_since(t)) > 30  # 20 ms frames: the voice never starves
            assert all(rms > SILENT_RMS for _, rms in got.audio_since(t))
            assert b.engine.outgoing.sound
            assert b.posted(session.NetworkLost) == 0

    asyncio.run(main())


@contextlib.asynccontextmanager
async def passthrough_call(policy: VideoPolicy) -> AsyncIterator[tuple[Booth, EncodingTestCard]]:
    hub = FakeHub()
    card, microphone, speaker = (
        EncodingTestCard(320, 240),
        SimulatedMicrophone(),
        SimulatedSpeaker(),
    )
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
        policy=policy,
        stats_every=0.25,
    )
    try:
        yield Booth(engine, hub, events, card, microphone, speaker), card
    finally:
        await engine.close()
        await hub.close()
        card.close()


@pytest.mark.parametrize("remb", [True, False], ids=["follows-remb", "twin-without-remb"])
def test_a_hardware_encoders_bitrate_follows_the_level_and_the_far_sides_estimate(
    remb: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    estimates: list[int | None] = []
    if not remb:
        monkeypatch.setattr(engine_module, "watch_remb", lambda sender: lambda fresh: None)
    else:

        def noted(sender: object) -> object:
            read = watch_remb(sender)  # type: ignore[arg-type]

            def estimate(fresh: float) -> int | None:
                estimates.append(read(fresh))
                return estimates[-1]

            return estimate

        monkeypatch.setattr(engine_module, "watch_remb", noted)
    # The clinician's REMB on loopback: aiortc's estimator starts low and climbs.
    policy = VideoPolicy(down_after=1.0, up_after=60.0)

    async def main() -> None:
        async with passthrough_call(policy) as (b, card):
            await b.connected(timeout=10.0)
            leg = b.engine._leg
            assert leg is not None and isinstance(leg.video, H264PassthroughTrack)
            encoder = card.encoder
            full = video_bitrate(LEVELS[0], None, (320, 240))
            if remb:
                await eventually(lambda: any(estimates), 5.0, "a REMB from the clinician")
                await asyncio.sleep(0.6)
                latest = next(e for e in reversed(estimates) if e is not None)
                assert encoder.bitrate == video_bitrate(LEVELS[0], latest, (320, 240))
                assert encoder.bitrate < full  # aiortc's estimate starts near 70 kbit/s
            else:
                await eventually(lambda: encoder.bitrate == full, 3.0, "the level's cap")
                await asyncio.sleep(1.0)
                assert encoder.bitrate == full  # whatever the clinician can take
            policy.cpu_budget = BUSY  # now the booth cannot keep up: reduced, then less bitrate
            await eventually(lambda: b.engine.video_level is LEVELS[1], 3.0, "reduced")
            reduced = video_bitrate(LEVELS[1], None, (320, 240))
            await eventually(lambda: encoder.bitrate <= reduced, 2.0, "the reduced level's cap")
            assert encoder.frames_encoded > 0
            t = now()
            await asyncio.sleep(0.5)
            assert len(b.clinician.got.video_since(t)) > 0  # still the camera's picture

    asyncio.run(main())


# ---------------------------------------------------------------- codecs


def test_video_the_booth_encodes_itself_offers_vp8_first_and_h264_only_as_a_fallback() -> None:
    """VP8 costs aiortc no more CPU than its libx264 settings (tests/perf/bench_media.py)."""

    async def main() -> list[str]:
        async with booth_call() as b:
            await b.connected()
            pc = b.engine.peer_connection()
            assert pc is not None and pc.localDescription is not None
            video = pc.localDescription.sdp.split("m=video", 1)[1].split("m=", 1)[0]
            names = [line.split(" ", 1)[1].split("/")[0] for line in video.splitlines()
                     if line.startswith("a=rtpmap:")]  # fmt: skip
            sender = next(t.sender for t in pc.getTransceivers() if t.kind == "video")
            assert sender.track is not None
            return names

    names = asyncio.run(main())
    assert engine_module.SOFTWARE_VIDEO_CODECS[0] == "video/VP8"
    assert names[0] == "VP8" and "H264" in names and names.index("H264") > names.index("VP8")


def test_the_codec_list_follows_the_order_asked_for() -> None:
    assert [c.mimeType for c in engine_module.video_codecs(["video/H264"])] == [
        "video/H264",
        "video/H264",
        "video/rtx",
    ]
    assert [c.mimeType for c in engine_module.video_codecs(["video/VP8", "video/H264"])][:2] == [
        "video/VP8",
        "video/H264",
    ]
