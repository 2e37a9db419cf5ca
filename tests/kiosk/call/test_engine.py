"""The booth's call engine against a real aiortc "clinician", on loopback, through a fake hub.

Every protection has a twin that runs the same scenario with the protection
switched off and must fail: proof that the scenario would notice its absence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiortc.rtcdtlstransport
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from clinic import protocol
from clinic.protocol import CallEvent, CallState, EndCall, EndReason, Offer, new_id
from kiosk import config, session
from kiosk.call import engine as engine_module
from kiosk.call.adapt import LEVELS, VideoPolicy
from kiosk.call.engine import (
    GATHER_TIMEOUT,
    CallEngine,
    CallStatus,
    ClinicianState,
    bound_gathering,
    ice_connections,
    ice_servers,
)
from kiosk.controller import CallPort
from tests.kiosk.call import peers
from tests.kiosk.call.conftest import Network
from tests.kiosk.call.peers import (
    BLACK_LUMA,
    CLINICIAN_COLOUR,
    SILENT_RMS,
    Booth,
    booth_call,
    eventually,
)

Scenario = Callable[[Booth], Awaitable[None]]


def run(scenario: Scenario, **engine_options: object) -> None:
    async def main() -> None:
        async with booth_call(**engine_options) as booth:  # type: ignore[arg-type]
            await scenario(booth)
        # aiortc's own connect tasks notice a close within one 20 ms ICE pacing step.
        with contextlib.suppress(AssertionError):
            await eventually(lambda: len(asyncio.all_tasks()) == 1, 0.2)
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert leftover == [], f"tasks still running after close: {leftover}"

    asyncio.run(main())


def now() -> float:
    return asyncio.get_running_loop().time()


def status(b: Booth) -> CallStatus:
    """Read afresh (mypy would otherwise keep an earlier assert's narrowing)."""
    return b.engine.status


@pytest.fixture(autouse=True)
def quiet_aiortc_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO, logger="kiosk.call")
    yield
    for record in caplog.records:  # the engine's logs: ids and fixed words, never SDP
        text = record.getMessage()
        assert "v=0" not in text and "a=fingerprint" not in text and "candidate" not in text


# ---------------------------------------------------------------- the port


def test_the_engine_is_the_whole_call_port() -> None:
    def port(engine: CallEngine) -> CallPort:
        return engine  # checked by mypy when tests are type-checked

    assert callable(port)


# ---------------------------------------------------------------- a whole call


def test_a_whole_call_carries_media_both_ways_and_ends_cleanly() -> None:
    async def scenario(b: Booth) -> None:
        took = await b.connected()
        assert took < 2.0
        assert b.engine.status is CallStatus.CONNECTED
        assert b.hub.booth.in_call
        await asyncio.sleep(1.0)
        got = b.clinician.got
        assert len(got.video) >= 15 and len(got.audio) >= 40  # 20 fps, 50 frames a second
        assert {(w, h) for _, _, w, h in got.video} == {(320, 240)}  # the test card's size
        assert min(luma for _, luma, _, _ in got.video) > BLACK_LUMA
        assert min(rms for _, rms in got.audio[5:]) > SILENT_RMS  # the simulated tone
        picture = b.engine.remote_frame()
        assert picture is not None and (picture.width, picture.height) == (320, 240)
        assert len(picture.rgb) == 320 * 240 * 3
        middle = (120 * 320 + 160) * 3
        pixel = picture.rgb[middle : middle + 3]
        assert all(abs(a - c) < 25 for a, c in zip(pixel, CLINICIAN_COLOUR, strict=True))
        assert b.speaker.samples >= 40_000 and b.speaker.loud_samples > 0  # most of a second
        assert b.events == [session.ClinicianAnswered()]

        await b.engine.end_call()
        assert isinstance(b.hub.booth.sent[-1][1], EndCall)
        assert status(b) is CallStatus.IDLE and b.engine.remote_frame() is None
        assert not b.hub.booth.in_call
        await asyncio.sleep(0.3)  # the hub's call_ended for a call already over: ignored
        assert b.events == [session.ClinicianAnswered()]

    run(scenario)


def test_the_clinician_ending_the_call_ends_the_visit() -> None:
    async def scenario(b: Booth) -> None:
        await b.connected()
        b.hub.end_call()
        await eventually(lambda: b.posted(session.CallEnded) == 1, 2.0)
        assert b.engine.status is CallStatus.IDLE and b.engine.peer_connection() is None

    run(scenario)


def test_the_hub_having_forgotten_the_call_ends_the_visit() -> None:
    async def scenario(b: Booth) -> None:
        b.hub.forgot_call = True  # the grace ran out while the booth was away
        b.hub.start_call()
        await eventually(lambda: b.posted(session.ClinicianAnswered) == 1)
        await b.engine.accept_call()
        await eventually(lambda: b.posted(session.CallEnded) == 1, 2.0, "CallEnded")
        assert b.engine.status is CallStatus.IDLE and b.engine.peer_connection() is None

    run(scenario)


def test_an_unknown_call_error_about_another_message_is_not_ours() -> None:
    async def scenario(b: Booth) -> None:
        await b.connected()
        b.hub.say_to_booth(
            protocol.Error(
                id=new_id(),
                code=protocol.ErrorCode.UNKNOWN_CALL,
                message="offer: no such call",
                in_reply_to=new_id(),
            )
        )
        await asyncio.sleep(0.3)
        assert b.posted(session.CallEnded) == 0 and b.engine.status is CallStatus.CONNECTED

    run(scenario)


def test_a_call_ended_before_any_call_drops_the_queue_place() -> None:
    async def scenario(b: Booth) -> None:
        b.hub.say_to_booth(protocol.CallEnded(id=new_id(), reason=EndReason.QUEUE_CLOSED))
        await eventually(lambda: b.posted(session.CallEnded) == 1, 2.0)

    run(scenario)


def test_an_audio_only_call_sends_no_picture_but_shows_the_clinician() -> None:
    async def scenario(b: Booth) -> None:
        await b.engine.set_camera(False)  # the visit says so before the call
        b.hub.start_call(audio_only=True)
        await eventually(lambda: b.posted(session.ClinicianAnswered) == 1)
        await b.engine.accept_call()
        await eventually(
            lambda: b.engine.remote_frame() is not None and len(b.clinician.got.audio) > 10
        )
        assert b.clinician.got.video == []
        assert CallEvent.CAMERA_OFF in b.clinician.hub_events

        await b.engine.set_camera(True)  # the resident changes their mind: offer video after all
        await eventually(lambda: b.engine.offers == 2 and len(b.clinician.got.video) > 5, 3.0)
        assert b.clinician.hub_events[-1] is CallEvent.CAMERA_ON

    run(scenario)


# ---------------------------------------------------------------- privacy


async def pause_and_resume(b: Booth) -> None:
    await b.connected()
    await asyncio.sleep(0.5)
    got = b.clinician.got
    paused_at = now()
    await b.engine.pause_media()
    await asyncio.sleep(1.5)
    video, audio = got.video_since(paused_at), got.audio_since(paused_at)
    assert video and audio
    first_black = next((t for t, luma, _, _ in video if luma < BLACK_LUMA), math.inf)
    first_silent = next((t for t, rms in audio if rms < SILENT_RMS), math.inf)
    assert first_black - paused_at < 1.0, "no black picture within a second"
    assert first_silent - paused_at < 1.0, "no silence within a second"
    # From one second on, nothing of the booth got through.
    assert all(luma < BLACK_LUMA for t, luma, _, _ in video if t > paused_at + 1.0)
    assert all(rms < SILENT_RMS for t, rms in audio if t > paused_at + 1.0)
    assert b.engine.status is CallStatus.CONNECTED  # the call stayed up
    assert b.engine.remote_frame() is not None  # the resident still hears and sees

    resumed_at = now()
    await b.engine.resume_media()
    await eventually(
        lambda: (
            any(luma > BLACK_LUMA for _, luma, _, _ in got.video_since(resumed_at))
            and any(rms > SILENT_RMS for _, rms in got.audio_since(resumed_at))
        ),
        1.0,
        "picture and sound back within a second",
    )
    assert b.events == [session.ClinicianAnswered()]


def test_pause_sends_black_and_silence_within_a_second_and_resume_brings_them_back() -> None:
    run(pause_and_resume)


class NoPause(CallEngine):
    """The protection switched off: pausing changes nothing."""

    async def pause_media(self) -> None:
        return None


def test_twin_without_pausing_the_clinician_keeps_seeing_the_booth() -> None:
    with pytest.raises(AssertionError, match="no black picture within a second"):
        run(pause_and_resume, engine_class=NoPause)


def test_muting_and_camera_off_send_silence_and_black_and_tell_the_clinician() -> None:
    async def scenario(b: Booth) -> None:
        await b.connected()
        got = b.clinician.got
        await b.engine.set_microphone(False)
        await b.engine.set_camera(False)
        t = now()
        await asyncio.sleep(1.3)
        assert all(rms < SILENT_RMS for s, rms in got.audio_since(t + 1.0))
        assert all(luma < BLACK_LUMA for s, luma, _, _ in got.video_since(t + 1.0))
        await eventually(
            lambda: {"muted", "camera_off"} <= set(b.clinician.channel_events), 1.0, "channel"
        )
        assert {CallEvent.MUTED, CallEvent.CAMERA_OFF} <= set(b.clinician.hub_events)
        await b.engine.set_microphone(True)
        await b.engine.set_camera(True)
        t = now()
        await eventually(
            lambda: (
                any(rms > SILENT_RMS for _, rms in got.audio_since(t))
                and any(luma > BLACK_LUMA for _, luma, _, _ in got.video_since(t))
            ),
            1.0,
        )

    run(scenario)


# ---------------------------------------------------------------- telling each other


def test_events_travel_both_ways_on_the_data_channel_and_through_the_hub() -> None:
    async def scenario(b: Booth) -> None:
        seen: list[ClinicianState] = []
        b.engine.clinician_listeners.append(seen.append)
        await b.connected()
        await eventually(lambda: b.clinician.channel is not None)
        await b.engine.tell_clinician("door_open")
        await b.engine.tell_clinician("emergency")
        await eventually(lambda: b.clinician.channel_events[-2:] == ["door_open", "emergency"], 1.0)
        assert b.clinician.hub_events[-2:] == [CallEvent.DOOR_OPEN, CallEvent.EMERGENCY]

        b.clinician.say(CallEvent.MUTED)
        await eventually(lambda: b.engine.clinician_state.muted, 1.0)
        b.hub.console_says(
            CallState(id=new_id(), call_id=b.hub.call_id, event=CallEvent.CAMERA_OFF)
        )
        await eventually(lambda: b.engine.clinician_state.camera_off, 1.0)
        b.clinician.say(CallEvent.DOOR_CLOSED)  # the booth's word: not the console's to say
        b.clinician.channel.send("not json")  # type: ignore[union-attr]
        b.clinician.say(CallEvent.UNMUTED)
        await eventually(lambda: not b.engine.clinician_state.muted, 1.0)
        assert seen == [
            ClinicianState(muted=True),
            ClinicianState(muted=True, camera_off=True),
            ClinicianState(muted=False, camera_off=True),
        ]
        await b.engine.tell_clinician("not a word")  # refused, never sent
        assert b.clinician.hub_events[-1] is CallEvent.EMERGENCY

    run(scenario)


# ---------------------------------------------------------------- DTLS fingerprint


def tamper(sdp: str) -> str:
    """Every a=fingerprint value replaced by another of the same length: a man in the middle."""

    def other(match: re.Match[str]) -> str:
        count = len(match.group(2).split(":"))
        return match.group(1) + ":".join(f"{b:02X}" for b in os.urandom(count))

    out = re.sub(r"(a=fingerprint:\S+ )([0-9A-Fa-f:]+)", other, sdp)
    assert out != sdp
    return out


async def tampered_answer_is_refused(b: Booth) -> None:
    b.hub.tamper_answer = tamper
    b.hub.start_call()
    await eventually(lambda: b.posted(session.ClinicianAnswered) == 1)
    await b.engine.accept_call()
    await eventually(lambda: b.engine.failures >= 1, 1.5, "the failure reported")
    assert b.posted(session.NetworkLost) == 1
    assert b.engine.status is CallStatus.STALLED
    await asyncio.sleep(1.0)
    assert b.clinician.got.video == [] and b.clinician.got.audio == []
    assert b.speaker.samples == 0 and b.engine.remote_frame() is None


def test_an_answer_whose_fingerprint_does_not_match_the_certificate_carries_no_media() -> None:
    run(tampered_answer_is_refused)


def test_twin_the_same_answer_untampered_works() -> None:
    async def scenario(b: Booth) -> None:
        await b.connected(timeout=3.0)
        assert b.engine.failures == 0

    run(scenario)


def test_twin_without_the_fingerprint_check_the_tampered_call_goes_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        aiortc.rtcdtlstransport.RTCDtlsTransport,
        "_validate_peer_identity",
        lambda self, parameters: None,
    )
    with pytest.raises(AssertionError, match="the failure reported"):
        run(tampered_answer_is_refused)


# ---------------------------------------------------------------- ICE servers and gathering


def dead_stun_server() -> tuple[socket.socket, config.IceServer]:
    """A UDP port that is open (no ICMP "unreachable" to give up on) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock, config.IceServer(urls=(f"stun:127.0.0.1:{sock.getsockname()[1]}",))


SETUP_TIMES: list[float] = []


async def offer_goes_out_within_a_second(b: Booth) -> None:
    b.hub.start_call()
    await eventually(lambda: b.posted(session.ClinicianAnswered) == 1)
    start = now()
    try:
        await asyncio.wait_for(b.engine.accept_call(), 2.0)
    except TimeoutError:
        raise AssertionError("no offer within 2 s") from None
    (offer_at,) = [t for t, m in b.hub.booth.sent if isinstance(m, Offer)]
    SETUP_TIMES.append(offer_at - start)
    assert offer_at - start < 1.0, f"offer after {offer_at - start:.2f} s"
    await eventually(b.flowing, 2.0, "media with host candidates")


def test_a_dead_stun_server_delays_the_offer_by_half_a_second_at_most() -> None:
    sock, dead = dead_stun_server()
    with sock:
        run(offer_goes_out_within_a_second, ice=(dead,))
    assert GATHER_TIMEOUT - 0.05 < SETUP_TIMES[-1] < 1.0
    print(f"call setup with a dead STUN server: {SETUP_TIMES[-1]:.3f} s")


def test_twin_unbounded_gathering_waits_for_the_dead_server() -> None:
    sock, dead = dead_stun_server()
    with sock, pytest.raises(AssertionError, match="no offer within 2 s"):
        run(offer_goes_out_within_a_second, ice=(dead,), gather_timeout=None)


def test_an_ice_server_on_an_impossible_port_is_left_out() -> None:
    """Found by fuzzing: aioice sends to it anyway and fails inside the event loop."""
    call = (protocol.IceServer(urls=("stun:127.0.0.1:99999",)),)
    assert ice_servers((), call) == []
    good = (protocol.IceServer(urls=("stun:127.0.0.1:3478",)),)
    assert [s.urls for s in ice_servers((), good)] == [["stun:127.0.0.1:3478"]]


def test_ice_servers_are_always_an_explicit_list_never_aiortcs_google_default() -> None:
    assert ice_servers((), ()) == []
    configured = (config.IceServer(urls=("stun:stun.example.org", "turn:turn.example.org")),)
    call = (
        protocol.IceServer(
            urls=("turn:turn.example.org:3478?transport=udp",),
            username="1750000000:booth-1",
            credential="secret",
            ttl=3600,
        ),
    )
    servers = ice_servers(configured, call)
    assert [s.urls for s in servers] == [
        ["stun:stun.example.org"],  # a configured turn: has no credentials: left out
        ["turn:turn.example.org:3478?transport=udp"],
    ]
    assert servers[1].username == "1750000000:booth-1" and servers[1].credential == "secret"

    async def gatherers() -> tuple[object, object]:
        ours = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers((), ())))
        default = RTCPeerConnection(RTCConfiguration())  # what a missing list would do
        try:
            found = []
            for pc in (ours, default):
                pc.addTransceiver("audio")
                gatherer = pc.getTransceivers()[0].sender.transport.transport.iceGatherer
                found.append(gatherer._connection.stun_server)
            return found[0], found[1]
        finally:
            await ours.close()
            await default.close()

    ours, default = asyncio.run(gatherers())
    assert ours is None
    assert default == ("stun.l.google.com", 19302)


def test_gathering_bound_applies_to_every_transport() -> None:
    async def main() -> int:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            pc.addTransceiver("audio")
            pc.addTransceiver("video")  # balanced bundling: a transport of its own
            pc.createDataChannel("state")
            bound_gathering(pc, 0.25)
            connections = {
                id(t.sender.transport.transport.iceGatherer._connection)
                for t in pc.getTransceivers()
            }
            bounded: list[Any] = [
                t.sender.transport.transport.iceGatherer._connection.get_component_candidates
                for t in pc.getTransceivers()
            ]
            assert all(b.keywords == {"timeout": 0.25} for b in bounded)
            return len(connections)
        finally:
            await pc.close()

    assert asyncio.run(main()) == 2


# ---------------------------------------------------------------- dead media


async def stall_then_recovery(b: Booth, net: Network) -> None:
    await b.connected()
    cut_at = now()
    net.cut = True  # UDP blocked both ways; the hub link stays up
    lost_after = await eventually(lambda: b.posted(session.NetworkLost) == 1, 6.0, "NetworkLost")
    assert 4.5 < lost_after < 6.0
    assert b.engine.status is CallStatus.STALLED
    await asyncio.sleep(max(0.0, cut_at + 6.0 - now()))
    net.cut = False
    back_after = await eventually(
        lambda: b.posted(session.NetworkRestored) == 1, 9.0, "NetworkRestored"
    )
    print(f"media back {back_after:.2f} s after the network")
    assert b.engine.offers >= 2 and b.clinician.offers >= 2  # re-offered, same call id
    offers = [m for m in b.hub.booth.of_type(Offer) if isinstance(m, Offer)]
    assert {m.call_id for m in offers} == {b.hub.call_id}
    assert status(b) is CallStatus.CONNECTED
    await eventually(b.flowing, 2.0, "media both ways again")
    assert b.events == [
        session.ClinicianAnswered(),
        session.NetworkLost(),
        session.NetworkRestored(),
    ]


def test_dead_media_is_noticed_within_five_seconds_and_a_reoffer_restores_it(
    network: Network,
) -> None:
    run(lambda b: stall_then_recovery(b, network))


def test_twin_without_watching_media_a_dead_call_goes_unnoticed(network: Network) -> None:
    with pytest.raises(AssertionError, match="NetworkLost"):
        run(lambda b: stall_then_recovery(b, network), stall_after=math.inf)


async def blip(b: Booth, net: Network) -> None:
    await b.connected()
    cut_at = now()
    net.cut = True
    await asyncio.sleep(2.5)
    net.cut = False
    await eventually(b.flowing, 3.0, "media back after the blip")
    await asyncio.sleep(max(0.0, cut_at + 6.0 - now()))  # past the stall limit
    assert b.events == [session.ClinicianAnswered()]
    assert b.engine.offers == 1 and b.engine.status is CallStatus.CONNECTED


def test_a_blip_under_three_seconds_posts_nothing_and_keeps_the_call(network: Network) -> None:
    run(lambda b: blip(b, network))


def test_twin_a_watch_without_patience_turns_a_blip_into_a_lost_network(
    network: Network,
) -> None:
    with pytest.raises(AssertionError):
        run(lambda b: blip(b, network), stall_after=1.0)


def test_the_hub_starting_the_call_again_reoffers_with_fresh_ice_servers() -> None:
    async def scenario(b: Booth) -> None:
        await b.connected()
        fresh = protocol.IceServer(urls=("stun:127.0.0.1:9",))
        b.hub.start_call(ice=(fresh,))  # the booth's hub link came back within the grace
        await eventually(lambda: b.engine.offers == 2, 3.0, "a re-offer")
        pc = b.engine.peer_connection()
        assert pc is not None
        configuration = pc._RTCPeerConnection__configuration  # type: ignore[attr-defined]
        assert [s.urls for s in configuration.iceServers] == [["stun:127.0.0.1:9"]]
        await eventually(lambda: b.clinician.offers == 2 and b.flowing(), 5.0)
        assert b.events == [session.ClinicianAnswered()]  # no second answer for the visit

    run(scenario, regather_timeout=0.2)  # that STUN server does not answer


def test_rebuild_reoffers_only_when_media_is_not_flowing(network: Network) -> None:
    async def scenario(b: Booth) -> None:
        await b.connected()
        await b.engine.rebuild_call()
        assert b.engine.offers == 1  # flowing fine: nothing to rebuild
        network.cut = True
        await asyncio.sleep(1.6)
        network.cut = False
        await b.engine.rebuild_call()  # (as NetworkRestored from the hub link would)
        assert b.engine.offers == 2
        await eventually(b.flowing, 5.0)

    run(scenario)


async def console_reoffers(b: Booth) -> None:
    await b.connected()
    await b.clinician.reoffer()
    await eventually(lambda: b.flowing() and len(b.hub.booth.of_type(protocol.Answer)) == 1)
    # ... and the call closes at once: just as ICE completes, when aioice is racy.


def test_the_console_may_reoffer_and_the_booth_answers() -> None:
    run(console_reoffers)


def test_twin_without_sealing_closed_connections_aioice_leaves_a_task_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine_module, "seal", lambda connections: None)
    monkeypatch.setattr(peers, "seal", lambda connections: None)
    with pytest.raises(AssertionError, match="tasks still running after close"):
        run(console_reoffers)


# ---------------------------------------------------------------- poor link


def test_sustained_loss_steps_video_down_to_off_and_back_with_audio_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quality: list[tuple[float | None, float | None]] = [(0.3, 0.05)]

    async def fake_quality(pc: RTCPeerConnection) -> tuple[float | None, float | None]:
        return quality[-1]

    monkeypatch.setattr(engine_module, "link_quality", fake_quality)

    async def scenario(b: Booth) -> None:
        await b.connected()
        got = b.clinician.got
        await eventually(lambda: b.engine.video_level is LEVELS[1], 3.0, "reduced")
        t = now()
        await eventually(lambda: any(w == 160 for _, _, w, _ in got.video_since(t)), 1.0)
        await eventually(lambda: b.engine.video_level is LEVELS[2], 3.0, "off")
        await eventually(lambda: "camera_off" in b.clinician.channel_events, 1.0)
        assert CallEvent.CAMERA_OFF in b.clinician.hub_events
        t = now()
        await asyncio.sleep(1.2)
        assert len(got.video_since(t)) <= 3  # a black frame a second keeps the track alive
        assert len(got.audio_since(t)) > 40  # the voice goes on
        assert all(rms > SILENT_RMS for _, rms in got.audio_since(t))
        quality.append((0.0, 0.05))
        await eventually(lambda: b.engine.video_level is LEVELS[0], 4.0, "back to full")
        await eventually(lambda: b.clinician.channel_events[-1] == "camera_on", 1.0)
        assert b.events == [session.ClinicianAnswered()]

    run(scenario, policy=VideoPolicy(down_after=0.5, up_after=0.5), stats_every=0.25)


def test_real_loss_on_the_way_to_the_clinician_steps_the_video_down(network: Network) -> None:
    async def scenario(b: Booth) -> None:
        await b.connected()
        pc = b.engine.peer_connection()
        assert pc is not None
        reports: list[tuple[float | None, float | None]] = []
        while not reports or reports[-1][1] is None:  # a round trip needs a report on our report
            await asyncio.sleep(0.2)
            reports.append(await engine_module.link_quality(pc))
            assert len(reports) < 25, "no receiver report with a round trip"
        loss, rtt = reports[-1]
        assert loss == 0.0 and rtt is not None and 0.0 <= rtt < 0.5
        assert b.engine.video_level is LEVELS[0]

        network.lossy_from = {
            protocol.local_candidate.port
            for connection in ice_connections(pc)
            for protocol in connection._protocols
        }
        network.loss = 0.3  # of what the booth sends: the clinician's reports say so
        await eventually(lambda: b.engine.video_level is not LEVELS[0], 5.0, "stepped down")
        assert b.engine.status is CallStatus.CONNECTED and b.posted(session.NetworkLost) == 0

    run(scenario, policy=VideoPolicy(down_after=0.5), stats_every=0.25)


def test_the_booth_ending_a_stalled_call_withdraws_its_network_lost(network: Network) -> None:
    """A visit that gives up on dead media ends the call itself; the booth must not stay offline.

    The engine told the visit NetworkLost; the hub never sends call_ended for a
    call the booth ended, so the engine itself says the media is no longer missed.
    """

    async def scenario(b: Booth) -> None:
        await b.connected()
        network.cut = True
        await eventually(lambda: b.posted(session.NetworkLost) == 1, 6.0, "NetworkLost")
        # Let the re-offer that follows a stall be answered first: ending a call halfway
        # through that exchange leaves aiortc tasks behind (an aiortc race, not the point here).
        await eventually(lambda: b.clinician.offers == 2, 2.0, "the re-offer answered")
        await asyncio.sleep(0.5)
        await b.engine.end_call()
        assert status(b) is CallStatus.IDLE
        assert b.events == [
            session.ClinicianAnswered(),
            session.NetworkLost(),
            session.NetworkRestored(),
        ]

    run(scenario)


def test_a_call_the_booth_ended_is_ended_again_when_the_hub_gives_it_back() -> None:
    """The booth's end_call was lost with the hub link; after the reconnect the hub says
    call_started for it again. The visit is over: the engine ends it at the hub, and does
    not take it up (a clinician would wait in a dead call, the booth's next queue place
    would be refused as busy)."""

    async def scenario(b: Booth) -> None:
        await b.connected()
        await b.engine.end_call()
        assert len(b.hub.booth.of_type(EndCall)) == 1
        b.hub.start_call()  # the same call id, as the hub does for a booth that comes back
        await eventually(lambda: len(b.hub.booth.of_type(EndCall)) == 2, 2.0, "end_call again")
        ends = b.hub.booth.of_type(EndCall)
        assert all(isinstance(m, EndCall) and m.call_id == b.hub.call_id for m in ends)
        await asyncio.sleep(0.2)
        assert status(b) is CallStatus.IDLE and b.engine.call_id is None
        assert not b.hub.booth.in_call
        assert b.events == [session.ClinicianAnswered()]  # no second answer for the visit

    run(scenario)


def _as_a_browser_answers(sdp: str) -> str:
    """Candidates in the first m-section of the bundle only, and no end-of-candidates.

    That is how Chromium writes an answer whose gathering is still running.
    """
    head, *sections = re.split(r"(?m)^(?=m=)", sdp)
    out = [head]
    for i, section in enumerate(sections):
        lines = [
            line for line in section.splitlines(keepends=True) if "end-of-candidates" not in line
        ]
        if i > 0:
            lines = [line for line in lines if not line.startswith("a=candidate:")]
        out.append("".join(lines))
    return "".join(out)


def test_candidates_only_in_the_first_bundled_section_reach_the_booths_ice() -> None:
    """aiortc under max-bundle reads remote candidates from the last m-section only."""
    from aiortc import RTCBundlePolicy, RTCSessionDescription

    from kiosk.call.engine import add_bundled_candidates

    async def main() -> None:
        booth = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        clinician = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            booth.addTransceiver("audio")
            booth.addTransceiver("video")
            booth.createDataChannel("state")
            await booth.setLocalDescription(await booth.createOffer())
            await clinician.setRemoteDescription(booth.localDescription)
            await clinician.setLocalDescription(await clinician.createAnswer())
            answer = _as_a_browser_answers(clinician.localDescription.sdp)
            ports = set(re.findall(r"(?m)^a=candidate:\S+ 1 udp \d+ \S+ (\d+) typ", answer))
            assert ports, "the answer lists no candidate"

            await booth.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            ice = booth.getTransceivers()[0].receiver.transport.transport
            assert ice.getRemoteCandidates() == []  # the twin: aiortc alone finds none

            assert await add_bundled_candidates(booth, answer) == len(ports)
            assert {str(c.port) for c in ice.getRemoteCandidates()} == ports
        finally:
            for pc in (booth, clinician):
                engine_module.seal(ice_connections(pc))
                await pc.close()

    asyncio.run(main())
