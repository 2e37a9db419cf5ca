"""The maintenance alert ``updates_blocked`` beside the emergency: protocol and hub.

A booth whose updates have failed for days raises ``updates_blocked``. On the
wire it is an ``alert`` like an emergency, and the hub keeps it, re-sends it
and takes its acknowledgement the same way; only consoles treat it as a quiet
notice (``tests/clinic/test_console_browser.py``). Here: the word in the
schema and the docs, and a real hub on loopback storing, broadcasting and
acknowledging it, across a restart, without changing how emergencies go.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clinic.protocol import (
    AckAlert,
    Alert,
    AlertAck,
    AlertKind,
    AlertStatus,
    BadMessage,
    ErrorCode,
    Message,
    Site,
    Snapshot,
    encode,
    new_id,
    parse,
)
from clinic.store import Store
from tests.clinic.hubtest import (
    FAST,
    Db,
    Server,
    Tls,
    run,
    running,
)

ROOT = Path(__file__).resolve().parents[2]
WHEN = datetime(2026, 11, 26, 20, 5, tzinfo=UTC)
HUB_SITE = Site(name="Riverside Library", street_address="1 Main St, Springfield", room="Room 2")


def alert(kind: AlertKind, alert_id: str, booth_id: str = "booth-1") -> Alert:
    return Alert(
        id=new_id(),
        alert_id=alert_id,
        booth_id=booth_id,
        kind=kind,
        raised_at=WHEN,
        site=Site(name="What the booth says", street_address="Its own idea", room="Some room"),
    )


def alerts_in(messages: Sequence[Message]) -> list[tuple[str, AlertKind]]:
    return [(m.alert_id, m.kind) for m in messages if isinstance(m, Alert)]


# ---------------------------------------------------------------- protocol


def test_updates_blocked_round_trips_from_booth_and_hub() -> None:
    message = alert(AlertKind.UPDATES_BLOCKED, "upd-0001")
    raw = encode(message)
    assert json.loads(raw)["kind"] == "updates_blocked"
    for sender in ("booth", "hub"):
        back = parse(raw, sender=sender)
        assert back == message and isinstance(back, Alert)
        assert back.kind is AlertKind.UPDATES_BLOCKED
    assert message.log_fields()["kind"] == "updates_blocked"  # a fixed word: fine to log


def test_a_console_may_not_raise_one() -> None:
    with pytest.raises(BadMessage) as info:
        parse(encode(alert(AlertKind.UPDATES_BLOCKED, "upd-0001")), sender="console")
    assert info.value.code is ErrorCode.NOT_ALLOWED


def test_an_unknown_kind_is_refused_naming_both_words() -> None:
    data = json.loads(encode(alert(AlertKind.UPDATES_BLOCKED, "upd-0001")))
    data["kind"] = "updates_blockd"
    with pytest.raises(BadMessage) as info:
        parse(json.dumps(data), sender="booth")
    assert (info.value.code, info.value.field) == (ErrorCode.BAD_FIELD, "kind")
    assert str(info.value) == (
        'alert.kind: must be one of "emergency", "updates_blocked", not another word'
    )


def test_the_kinds_are_the_emergency_and_one_maintenance_word() -> None:
    assert [k.value for k in AlertKind] == ["emergency", "updates_blocked"]


def test_the_docs_explain_the_maintenance_alert() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text()
    written = text.split("<!-- BEGIN GENERATED", 1)[0]  # the hand-written part, not the tables
    assert "`kind: updates_blocked`" in written
    assert "never re-sent as an emergency" in written
    assert 'one of "emergency", "updates_blocked"' in text  # the generated alert table


# ---------------------------------------------------------------- the hub


def test_the_hub_keeps_it_sends_it_to_every_console_and_once(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        consoles = [await server.console(), await server.console(sign_in="b.chen")]
        booth, _ = await server.booth()
        await booth.send(alert(AlertKind.UPDATES_BLOCKED, "upd-0001"))
        ack = await booth.expect(AlertAck)
        assert (ack.alert_id, ack.status) == ("upd-0001", AlertStatus.RECEIVED)
        for console in consoles:
            got = await console.expect(Alert)
            assert (got.alert_id, got.booth_id, got.kind) == (
                "upd-0001",
                "booth-1",
                AlertKind.UPDATES_BLOCKED,
            )
            assert got.site == HUB_SITE  # where the booth is: the hub's record
            assert got.raised_at == WHEN
        await booth.send(alert(AlertKind.UPDATES_BLOCKED, "upd-0001"))  # a retry
        assert (await booth.expect(AlertAck)).status is AlertStatus.RECEIVED
        for console in consoles:
            assert alerts_in(await console.drain()) == []
        (stored,) = db.store.unacked_alerts()
        assert (stored.alert_id, stored.kind) == ("upd-0001", "updates_blocked")

    run(db, tls, scenario)


def test_acknowledging_one_kind_leaves_the_other_open(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        booth, _ = await server.booth()
        console = await server.console()
        await booth.send(alert(AlertKind.EMERGENCY, "emg-0001"))
        await booth.send(alert(AlertKind.UPDATES_BLOCKED, "upd-0001"))
        assert [(await booth.expect(AlertAck)).alert_id for _ in range(2)] == [
            "emg-0001",
            "upd-0001",
        ]
        got = [await console.expect(Alert), await console.expect(Alert)]
        assert [(a.alert_id, a.kind) for a in got] == [
            ("emg-0001", AlertKind.EMERGENCY),
            ("upd-0001", AlertKind.UPDATES_BLOCKED),
        ]

        await console.send(AckAlert(id=new_id(), alert_id="upd-0001"))
        ack = await console.expect(AlertAck)
        assert (ack.alert_id, ack.status) == ("upd-0001", AlertStatus.ACKNOWLEDGED)
        ack = await booth.expect(AlertAck)
        assert (ack.alert_id, ack.status) == ("upd-0001", AlertStatus.ACKNOWLEDGED)
        assert [(a.alert_id, a.kind) for a in db.store.unacked_alerts()] == [
            ("emg-0001", "emergency")
        ]
        later = await server.console()  # the emergency is still sent on connect
        assert alerts_in(await later.drain()) == [("emg-0001", AlertKind.EMERGENCY)]

        await console.send(AckAlert(id=new_id(), alert_id="emg-0001"))
        assert (await booth.expect(AlertAck)).alert_id == "emg-0001"
        assert db.store.unacked_alerts() == []

    run(db, tls, scenario)


def _reopened(db: Db, path: Path) -> Db:
    return Db(Store(path, password_params=FAST), db.tokens)


def test_an_unacknowledged_one_survives_a_hub_restart_as_itself(
    db: Db, tls: Tls, tmp_path: Path
) -> None:
    path = tmp_path / "hub.sqlite3"

    async def main() -> None:
        async with running(db, tls) as server:
            booth, _ = await server.booth()
            await booth.send(alert(AlertKind.UPDATES_BLOCKED, "upd-0001"))
            await booth.expect(AlertAck)
            await booth.ws.close()
        db.store.close()  # the hub stops

        again = _reopened(db, path)
        with again.store:
            async with running(again, tls) as server:
                console = await server.console()
                assert isinstance(await console.recv(), Snapshot)
                got = await console.recv()
                assert isinstance(got, Alert)
                assert (got.alert_id, got.kind) == ("upd-0001", AlertKind.UPDATES_BLOCKED)
                assert got.site == HUB_SITE
                await console.send(AckAlert(id=new_id(), alert_id="upd-0001"))
                assert (await console.expect(AlertAck)).status is AlertStatus.ACKNOWLEDGED
                assert again.store.unacked_alerts() == []
                booth, _ = await server.booth()  # the booth, back, retries: told it is handled
                await booth.send(alert(AlertKind.UPDATES_BLOCKED, "upd-0001"))
                statuses = [(await booth.expect(AlertAck)).status for _ in range(2)]
                assert statuses == [AlertStatus.RECEIVED, AlertStatus.ACKNOWLEDGED]

    asyncio.run(main())


@pytest.mark.parametrize(
    ("stored_kind", "sent_as"),
    [
        ("updates_blocked", AlertKind.UPDATES_BLOCKED),
        # The twin: a word this hub does not know (a newer version's, left in the database
        # after a downgrade) goes to consoles as an emergency, so a kind the hub knows is
        # what keeps updates_blocked from sounding the alarm.
        ("door_forced", AlertKind.EMERGENCY),
    ],
)
def test_a_stored_kind_reaches_consoles_as_itself_only_if_the_hub_knows_it(
    db: Db, tls: Tls, stored_kind: str, sent_as: AlertKind
) -> None:
    db.store.record_alert("booth-1", "a-1", stored_kind, WHEN.timestamp(), WHEN.timestamp())

    async def scenario(server: Server) -> None:
        console = await server.console()
        assert alerts_in(await console.drain()) == [("a-1", sent_as)]

    run(db, tls, scenario)
