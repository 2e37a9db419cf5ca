"""Calls and alerts through the hub, as ``docs/calls.md`` describes them.

A booth and one or two consoles talk to a real hub over TLS on loopback.
The hub relays signaling only between the two parties of a call; a party
dropping ends the call (a console) or pauses it for the grace (a booth).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from datetime import UTC, datetime

import pytest

from clinic.protocol import (
    AckAlert,
    Alert,
    AlertAck,
    AlertKind,
    AlertStatus,
    Answer,
    AnswerBooth,
    BoothState,
    CallEnded,
    CallEvent,
    CallStarted,
    CallState,
    EndCall,
    EndReason,
    Error,
    ErrorCode,
    JoinQueue,
    Offer,
    Site,
    Snapshot,
    new_id,
)
from clinic.turn import TurnConfig
from tests.clinic.hubtest import (
    CODE,
    PASSWORD,
    T0,
    Clock,
    Db,
    Peer,
    Server,
    Tls,
    eventually,
    run,
)

SDP_OFFER = "v=0\r\no=- 1 0 IN IP4 127.0.0.1\r\ns=booth-offer\r\nt=0 0\r\n"
SDP_ANSWER = "v=0\r\no=- 2 0 IN IP4 127.0.0.1\r\ns=console-answer\r\nt=0 0\r\n"
SECRET = b"s3cret-shared-with-coturn-0123456789"


async def in_call(server: Server, booth_id: str = "booth-1") -> tuple[Peer, Peer, str]:
    """A booth waiting, a console answering it: (booth, console, call_id)."""
    booth = await server.waiting_booth(booth_id)
    console = await server.console()
    await console.send(AnswerBooth(id=new_id(), booth_id=booth_id))
    started = await console.expect(CallStarted)
    at_booth = await booth.expect(CallStarted)
    assert started.call_id == at_booth.call_id
    return booth, console, started.call_id


def alert(alert_id: str = "emg-0001", booth_id: str = "booth-1") -> Alert:
    return Alert(
        id=new_id(),
        alert_id=alert_id,
        booth_id=booth_id,
        kind=AlertKind.EMERGENCY,
        raised_at=datetime(2026, 11, 26, 20, 5, tzinfo=UTC),
        site=Site(name="What the booth says", street_address="Its own idea", room="Some room"),
    )


# ------------------------------------------------------------- answering


def test_answering_starts_a_call_for_both(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        booth = await server.waiting_booth(audio_only=True)
        console = await server.console()
        await console.snapshot_where(lambda s: len(s.queue) == 1)
        await console.send(AnswerBooth(id=new_id(), booth_id="booth-1"))
        started = await console.expect(CallStarted)
        at_booth = await booth.expect(CallStarted)
        assert (started.call_id, started.booth_id, started.audio_only) == (
            at_booth.call_id,
            "booth-1",
            True,
        )
        assert started.ice_servers == at_booth.ice_servers == ()  # no TURN configured
        snap = await console.snapshot_where(lambda s: s.queue == ())
        assert snap.booths[0].state is BoothState.IN_USE  # in a call, whatever it last said
        assert list(server.hub.calls) == [started.call_id]
        assert server.hub.position("booth-1") is None

    run(db, tls, scenario)


def test_answering_a_booth_that_is_not_waiting(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        booth, _ = await server.booth()  # online, but not in the queue
        console = await server.console()
        for booth_id in ("booth-1", "booth-2", "no-such-booth"):
            request = AnswerBooth(id=new_id(), booth_id=booth_id)
            await console.send(request)
            err = await console.expect(Error)
            assert (err.code, err.in_reply_to) == (ErrorCode.NOT_WAITING, request.id)
        assert server.hub.calls == {}
        await booth.send(JoinQueue(id=new_id(), language="es", audio_only=False))
        await console.snapshot_where(lambda s: len(s.queue) == 1)
        await console.send(AnswerBooth(id=new_id(), booth_id="booth-1"))  # the twin
        await console.expect(CallStarted)

    run(db, tls, scenario)


def test_a_booth_answered_by_one_clinician_is_gone_for_the_other(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        booth = await server.waiting_booth()
        first = await server.console()
        second = await server.console(sign_in="b.chen")
        await first.send(AnswerBooth(id=new_id(), booth_id="booth-1"))
        await first.expect(CallStarted)
        request = AnswerBooth(id=new_id(), booth_id="booth-1")
        await second.send(request)
        err = await second.expect(Error)
        assert (err.code, err.in_reply_to) == (ErrorCode.NOT_WAITING, request.id)
        assert isinstance(await booth.expect(CallStarted), CallStarted)  # one call, the first

    run(db, tls, scenario)


def test_a_clinician_in_a_call_is_busy(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        booth, console, _ = await in_call(server, "booth-1")
        other = await server.waiting_booth("booth-2")
        request = AnswerBooth(id=new_id(), booth_id="booth-2")
        await console.send(request)
        err = await console.expect(Error)
        assert (err.code, err.in_reply_to) == (ErrorCode.BUSY, request.id)
        assert server.hub.position("booth-2") == 1  # still waiting for someone else
        colleague = await server.console(sign_in="b.chen")  # the twin: someone free
        await colleague.send(AnswerBooth(id=new_id(), booth_id="booth-2"))
        await colleague.expect(CallStarted)
        await other.expect(CallStarted)
        assert not booth.ws.closed

    run(db, tls, scenario)


def test_an_appointment_is_seen_and_answered_by_its_clinician_only(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        booth = await server.waiting_booth(code=CODE)
        walk_in = await server.waiting_booth("booth-2")
        rivera = await server.console()
        chen = await server.console(sign_in="b.chen")
        mine = await rivera.snapshot_where(lambda s: len(s.queue) == 2)
        assert [(q.booth_id, q.has_appointment) for q in mine.queue] == [
            ("booth-1", True),
            ("booth-2", False),
        ]
        theirs = await chen.snapshot_where(lambda s: len(s.queue) == 1)
        assert [q.booth_id for q in theirs.queue] == ["booth-2"]
        request = AnswerBooth(id=new_id(), booth_id="booth-1")
        await chen.send(request)
        err = await chen.expect(Error)
        assert (err.code, err.in_reply_to) == (ErrorCode.NOT_WAITING, request.id)
        await rivera.send(AnswerBooth(id=new_id(), booth_id="booth-1"))  # the twin
        await rivera.expect(CallStarted)
        await booth.expect(CallStarted)
        assert walk_in.ws.closed is False

    run(db, tls, scenario)


def test_a_booth_in_a_call_cannot_queue_again(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        booth, _, _ = await in_call(server)
        request = JoinQueue(id=new_id(), language="es", audio_only=False)
        await booth.send(request)
        err = await booth.expect(Error)
        assert (err.code, err.in_reply_to) == (ErrorCode.BUSY, request.id)
        assert server.hub.queue == []

    run(db, tls, scenario)


# ---------------------------------------------------------------- relay


def test_offer_answer_and_call_state_are_relayed_between_the_parties(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        booth, console, call_id = await in_call(server)
        await booth.send(Offer(id=new_id(), call_id=call_id, sdp=SDP_OFFER))
        offer = await console.expect(Offer)
        assert (offer.call_id, offer.sdp) == (call_id, SDP_OFFER)
        await console.send(Answer(id=new_id(), call_id=call_id, sdp=SDP_ANSWER))
        answer = await booth.expect(Answer)
        assert (answer.call_id, answer.sdp) == (call_id, SDP_ANSWER)
        await booth.send(CallState(id=new_id(), call_id=call_id, event=CallEvent.DOOR_OPEN))
        state = await console.expect(CallState)
        assert (state.call_id, state.event) == (call_id, CallEvent.DOOR_OPEN)
        await console.send(CallState(id=new_id(), call_id=call_id, event=CallEvent.MUTED))
        state = await booth.expect(CallState)
        assert (state.call_id, state.event) == (call_id, CallEvent.MUTED)
        await console.send(Offer(id=new_id(), call_id=call_id, sdp=SDP_ANSWER))  # a re-offer
        assert (await booth.expect(Offer)).sdp == SDP_ANSWER

    run(db, tls, scenario)


def test_call_messages_outside_ones_own_call_are_unknown(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        booth, console, call_id = await in_call(server)
        stranger = await server.console(sign_in="b.chen")
        other_booth, _ = await server.booth("booth-2")
        attempts: list[tuple[Peer, Offer | Answer | CallState | EndCall]] = [
            (stranger, Offer(id=new_id(), call_id=call_id, sdp=SDP_ANSWER)),
            (stranger, CallState(id=new_id(), call_id=call_id, event=CallEvent.MUTED)),
            (stranger, EndCall(id=new_id(), call_id=call_id)),
            (other_booth, Offer(id=new_id(), call_id=call_id, sdp=SDP_OFFER)),
            (other_booth, Answer(id=new_id(), call_id=call_id, sdp=SDP_OFFER)),
            (other_booth, EndCall(id=new_id(), call_id=call_id)),
            (console, Answer(id=new_id(), call_id="no-such-call", sdp=SDP_ANSWER)),
            (booth, Offer(id=new_id(), call_id="no-such-call", sdp=SDP_OFFER)),
        ]
        for sender, message in attempts:
            await sender.send(message)
            err = await sender.expect(Error)
            assert (err.code, err.in_reply_to) == (ErrorCode.UNKNOWN_CALL, message.id)
        # Nothing leaked to the call's parties, and the call goes on.
        assert [m for m in await booth.drain() if not isinstance(m, Snapshot)] == []
        assert [m for m in await console.drain() if not isinstance(m, Snapshot)] == []
        assert call_id in server.hub.calls

    run(db, tls, scenario)


@pytest.mark.parametrize(
    ("who", "reason"), [("booth", EndReason.RESIDENT_ENDED), ("console", EndReason.CLINICIAN_ENDED)]
)
def test_either_side_ends_the_call(db: Db, tls: Tls, who: str, reason: EndReason) -> None:
    async def scenario(server: Server) -> None:
        booth, console, call_id = await in_call(server)
        await (booth if who == "booth" else console).send(EndCall(id=new_id(), call_id=call_id))
        for peer in (booth, console):
            ended = await peer.expect(CallEnded)
            assert (ended.call_id, ended.reason) == (call_id, reason)
        assert server.hub.calls == {}
        await console.snapshot_where(lambda s: s.booths[0].state is BoothState.IDLE)
        await booth.send(Offer(id=new_id(), call_id=call_id, sdp=SDP_OFFER))
        assert (await booth.expect(Error)).code is ErrorCode.UNKNOWN_CALL
        await booth.send(JoinQueue(id=new_id(), language="es", audio_only=False))
        await console.snapshot_where(lambda s: len(s.queue) == 1)  # free to wait again
        await console.send(AnswerBooth(id=new_id(), booth_id="booth-1"))  # and not busy
        assert (await console.expect(CallStarted)).call_id != call_id

    run(db, tls, scenario)


# ---------------------------------------------------------------- drops


def test_a_console_that_drops_ends_its_call(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        booth, console, call_id = await in_call(server)
        await console.ws.close()
        ended = await booth.expect(CallEnded)
        assert (ended.call_id, ended.reason) == (call_id, EndReason.CLINICIAN_DISCONNECTED)
        assert server.hub.calls == {}

    run(db, tls, scenario)


def test_a_booth_that_comes_back_within_the_grace_gets_its_call_again(db: Db, tls: Tls) -> None:
    turn = TurnConfig(urls=("turn:127.0.0.1:3478",), secret=SECRET)
    clock = Clock()

    async def scenario(server: Server) -> None:
        booth, console, call_id = await in_call(server)
        await booth.ws.close()
        state = await console.expect(CallState)
        assert (state.call_id, state.event) == (call_id, CallEvent.BOOTH_OFFLINE)
        await console.snapshot_where(lambda s: not s.booths[0].online)
        assert server.hub.calls[call_id].booth_online is False

        clock.now += 30
        again, _ = await server.booth()
        started = await again.expect(CallStarted)
        assert started.call_id == call_id
        (ice,) = started.ice_servers
        assert ice.username == f"{int(T0) + 30 + 3600}:booth-1"  # fresh credentials
        state = await console.expect(CallState)
        assert (state.call_id, state.event) == (call_id, CallEvent.BOOTH_ONLINE)
        await console.snapshot_where(lambda s: s.booths[0].online)

        await again.send(Offer(id=new_id(), call_id=call_id, sdp=SDP_OFFER))  # the re-offer
        assert (await console.expect(Offer)).call_id == call_id
        await console.send(Answer(id=new_id(), call_id=call_id, sdp=SDP_ANSWER))
        assert (await again.expect(Answer)).sdp == SDP_ANSWER

    run(db, tls, scenario, turn=turn, clock=clock, call_grace=5.0)


def test_past_the_grace_the_call_ends_for_the_console(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        booth, console, call_id = await in_call(server)
        await booth.ws.close()
        assert (await console.expect(CallState)).event is CallEvent.BOOTH_OFFLINE
        ended = await console.expect(CallEnded, skip=(Snapshot,))
        assert (ended.call_id, ended.reason) == (call_id, EndReason.BOOTH_DISCONNECTED)
        assert server.hub.calls == {}
        late, _ = await server.booth()  # too late: no call_started, and its re-offer is refused
        await late.send(Offer(id=new_id(), call_id=call_id, sdp=SDP_OFFER))
        err = await late.expect(Error)
        assert err.code is ErrorCode.UNKNOWN_CALL

    run(db, tls, scenario, call_grace=0.2)


def test_a_hub_that_stops_ends_its_calls_and_closes_its_connections(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        booth, console, call_id = await in_call(server)
        await server.hub.close()
        for peer in (booth, console):
            ended = await peer.expect(CallEnded)
            assert (ended.call_id, ended.reason) == (call_id, EndReason.HUB_CLOSING)
        for peer in (booth, console):
            for _ in range(5):  # a last snapshot may come before the close
                if await peer.closed():
                    break

    run(db, tls, scenario)


# ----------------------------------------------------------------- TURN


def test_turn_credentials_are_minted_per_call_and_per_party(db: Db, tls: Tls) -> None:
    turn = TurnConfig(
        urls=("turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp"),
        secret=SECRET,
        ttl=600,
    )
    clock = Clock()

    async def scenario(server: Server) -> None:
        booth = await server.waiting_booth()
        console = await server.console()
        usernames: list[tuple[str, str]] = []
        for _ in range(2):  # two calls, 100 s apart
            await console.send(AnswerBooth(id=new_id(), booth_id="booth-1"))
            pair = []
            for started in (await console.expect(CallStarted), await booth.expect(CallStarted)):
                (ice,) = started.ice_servers
                assert ice.urls == turn.urls and ice.ttl == 600
                assert ice.username is not None and ice.credential is not None
                expected = hmac.new(SECRET, ice.username.encode(), hashlib.sha1).digest()
                assert base64.b64decode(ice.credential) == expected  # coturn will accept it
                pair.append(ice.username)
            usernames.append((pair[0], pair[1]))
            await console.send(EndCall(id=new_id(), call_id=started.call_id))
            await booth.expect(CallEnded)
            await console.expect(CallEnded)
            clock.now += 100
            await booth.send(JoinQueue(id=new_id(), language="es", audio_only=False))
            await console.snapshot_where(lambda s: len(s.queue) == 1)
        for i, (console_user, booth_user) in enumerate(usernames):
            expiry = int(T0) + 100 * i + 600
            assert booth_user == f"{expiry}:booth-1"
            assert console_user.startswith(f"{expiry}:console-")
            assert "rivera" not in console_user  # nothing that names the clinician
        assert usernames[0] != usernames[1]

    run(db, tls, scenario, turn=turn, clock=clock)


def test_without_turn_no_ice_servers_are_sent(db: Db, tls: Tls) -> None:
    """The twin of the test above: no TURN configured, nothing (and no public STUN) is sent."""

    async def scenario(server: Server) -> None:
        booth, console, call_id = await in_call(server)
        assert server.hub.turn is None
        await booth.ws.close()
        await console.expect(CallState)
        again, _ = await server.booth()
        assert (await again.expect(CallStarted)).ice_servers == ()

    run(db, tls, scenario)


# --------------------------------------------------------------- alerts


def test_an_alert_sounds_on_every_console_with_the_hubs_address(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        consoles = [await server.console(), await server.console(sign_in="b.chen")]
        booth, _ = await server.booth()
        await booth.send(alert())
        ack = await booth.expect(AlertAck)
        assert (ack.alert_id, ack.status) == ("emg-0001", AlertStatus.RECEIVED)
        for console in consoles:
            got = await console.expect(Alert)
            assert (got.alert_id, got.booth_id, got.kind) == (
                "emg-0001",
                "booth-1",
                AlertKind.EMERGENCY,
            )
            # Where to send help comes from the hub's record of the booth.
            assert got.site == Site(
                name="Riverside Library", street_address="1 Main St, Springfield", room="Room 2"
            )
            assert got.raised_at == datetime(2026, 11, 26, 20, 5, tzinfo=UTC)
        await booth.send(alert())  # a retry: received again, but no second alarm
        assert (await booth.expect(AlertAck)).status is AlertStatus.RECEIVED
        for console in consoles:
            assert [m for m in await console.drain() if isinstance(m, Alert)] == []

    run(db, tls, scenario)


def test_an_alert_raised_with_no_console_open_arrives_when_one_connects(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        booth, _ = await server.booth()
        await booth.send(alert())
        await booth.expect(AlertAck)
        await booth.ws.close()
        console = await server.console()
        assert isinstance(await console.recv(), Snapshot)
        got = await console.recv()
        assert isinstance(got, Alert) and got.alert_id == "emg-0001"
        assert got.site.street_address == "1 Main St, Springfield"

    run(db, tls, scenario)


def test_acknowledging_tells_every_console_and_the_booth(db: Db, tls: Tls) -> None:
    clock = Clock()

    async def scenario(server: Server) -> None:
        booth, _ = await server.booth()
        rivera = await server.console()
        chen = await server.console(sign_in="b.chen")
        await booth.send(alert())
        await booth.expect(AlertAck)
        await rivera.expect(Alert)
        await chen.expect(Alert)
        clock.now += 42
        await rivera.send(AckAlert(id=new_id(), alert_id="emg-0001"))
        for console in (rivera, chen):
            ack = await console.expect(AlertAck)
            assert (ack.alert_id, ack.status) == ("emg-0001", AlertStatus.ACKNOWLEDGED)
        ack = await booth.expect(AlertAck)
        assert (ack.alert_id, ack.status) == ("emg-0001", AlertStatus.ACKNOWLEDGED)
        assert db.store.unacked_alerts() == []
        with db.store._read() as sql:  # who acknowledged, and when, is the record kept
            row = sql.execute("SELECT acked_by, acked_at FROM alerts").fetchone()
        assert tuple(row) == ("a.rivera", T0 + 42)

        request = AckAlert(id=new_id(), alert_id="emg-0001")
        await chen.send(request)  # too late: someone did already
        err = await chen.expect(Error)
        assert (err.code, err.in_reply_to) == (ErrorCode.UNKNOWN_ALERT, request.id)
        later = await server.console()  # an acknowledged alert is not delivered again
        assert [m for m in await later.drain() if isinstance(m, Alert)] == []

        await booth.send(alert())  # a booth that missed the ack hears it on its retry
        assert [(await booth.expect(AlertAck)).status, (await booth.expect(AlertAck)).status] == [
            AlertStatus.RECEIVED,
            AlertStatus.ACKNOWLEDGED,
        ]
        assert [m for m in await rivera.drain() if isinstance(m, Alert)] == []

    run(db, tls, scenario, clock=clock)


def test_an_ack_reaches_a_booth_that_reconnected(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        booth, _ = await server.booth()
        await booth.send(alert())
        await booth.expect(AlertAck)
        console = await server.console()
        await console.expect(Alert)
        await booth.ws.close()
        await eventually(lambda: "booth-1" not in server.hub.connections)
        again, _ = await server.booth()
        await console.send(AckAlert(id=new_id(), alert_id="emg-0001"))
        ack = await again.expect(AlertAck)
        assert ack.status is AlertStatus.ACKNOWLEDGED

    run(db, tls, scenario)


# ---------------------------------------------------------------- logs


def test_logs_never_carry_sdp_tokens_passwords_or_codes(
    db: Db, tls: Tls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def scenario(server: Server) -> None:
        booth = await server.waiting_booth(code=CODE)
        console = await server.console()
        await console.send(AnswerBooth(id=new_id(), booth_id="booth-1"))
        call_id = (await console.expect(CallStarted)).call_id
        await booth.expect(CallStarted)
        await booth.send(Offer(id=new_id(), call_id=call_id, sdp=SDP_OFFER))
        await console.expect(Offer)
        await console.send(Answer(id=new_id(), call_id=call_id, sdp=SDP_ANSWER))
        await booth.expect(Answer)
        async with await server.post_login("a.rivera", "a wrong password, typed") as reply:
            assert reply.status == 401

    run(db, tls, scenario)
    text = caplog.text
    assert "answered" in text and "call" in text  # the logs are there, and say what happened
    for secret in ("booth-offer", "console-answer", CODE, PASSWORD, "a wrong password", "v=0"):
        assert secret not in text, secret
    for token in db.tokens.values():
        assert token not in text
