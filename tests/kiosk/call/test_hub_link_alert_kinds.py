"""``HubLink.alert`` with a maintenance kind: queued as itself, never as an emergency.

The booth sends ``updates_blocked`` when its updates have failed for days. A
word the booth does not know still goes out as an emergency (the emergency
button's alert must always go out), but ``updates_blocked`` is known: it is
queued unchanged, delivered to the real hub as itself, and a hub too old to
know the word (one that answers ``bad_field``, as hubs before it do) never
gets it re-sent as an emergency: the booth keeps it until a hub takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import WSMsgType, web

from clinic import protocol
from clinic.protocol import AlertAck, AlertKind, AlertStatus, ErrorCode, Welcome, new_id
from kiosk import session
from tests.kiosk.call.hubfixtures import Cert, Db, Tls
from tests.kiosk.call.test_hub_link import (
    LOST,
    booth_link,
    eventually,
    free_port,
    hub_server,
)


@pytest.mark.parametrize(
    ("asked", "queued"),
    [
        ("updates_blocked", AlertKind.UPDATES_BLOCKED),
        (AlertKind.UPDATES_BLOCKED, AlertKind.UPDATES_BLOCKED),
        ("emergency", AlertKind.EMERGENCY),
        # The twin: a word the booth does not know is escalated; the kind being known is
        # all that keeps updates_blocked from going out as an emergency.
        ("door_forced", AlertKind.EMERGENCY),
    ],
)
def test_the_real_hub_stores_the_kind_the_booth_queued(
    db: Db, tls: Tls, asked: str, queued: AlertKind
) -> None:
    async def main() -> None:
        port = free_port()
        async with (
            hub_server(db, tls.hub, port) as server,
            booth_link(db, port, tls.hub.fingerprint, []) as link,
        ):
            await eventually(lambda: link.connected)
            link.alert(asked)
            ((alert_id, message),) = link.outbox.items()
            assert message.kind is queued
            await eventually(lambda: not link.outbox)
            (stored,) = await server.hub.unacked_alerts()
            assert (stored.alert_id, stored.kind) == (alert_id, queued.value)

    asyncio.run(main())


# ------------------------------------------------------- a hub older than the word


@dataclass
class OldHub:
    """What a hub from before ``updates_blocked`` does with alerts: its schema knows only
    ``emergency``, so any other kind is refused with ``bad_field`` (its parser's words)."""

    kinds: list[str] = field(default_factory=list)  # every alert kind received, in order
    sockets: list[web.WebSocketResponse] = field(default_factory=list)

    async def booth(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data.get("type") == "hello":
                await ws.send_str(protocol.encode(Welcome(id=new_id(), ice_servers=())))
            elif data.get("type") == "alert":
                self.kinds.append(data["kind"])
                if data["kind"] == "emergency":
                    ack = AlertAck(
                        id=new_id(), alert_id=data["alert_id"], status=AlertStatus.RECEIVED
                    )
                    await ws.send_str(protocol.encode(ack))
                else:
                    refused = protocol.Error(
                        id=new_id(),
                        code=ErrorCode.BAD_FIELD,
                        message='alert.kind: must be one of "emergency", not another word',
                        in_reply_to=data["id"],
                    )
                    await ws.send_str(protocol.encode(refused))
        return ws


@contextlib.asynccontextmanager
async def old_hub(cert: Cert, port: int) -> AsyncIterator[OldHub]:
    hub = OldHub()
    app = web.Application()
    app.router.add_get("/booth", hub.booth)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=cert.server()).start()
        yield hub
    finally:
        for ws in hub.sockets:
            await ws.close()
        await runner.cleanup()


@pytest.mark.parametrize(
    ("asked", "at_the_old_hub", "kept"),
    [
        ("updates_blocked", "updates_blocked", True),
        # The twin: an unknown word becomes an emergency, which the old hub takes at once.
        ("door_forced", "emergency", False),
    ],
)
def test_an_old_hub_refusing_the_word_never_gets_an_emergency_instead(
    db: Db, tls: Tls, asked: str, at_the_old_hub: str, kept: bool
) -> None:
    async def main() -> None:
        port = free_port()
        events: list[session.Event] = []
        async with booth_link(db, port, tls.hub.fingerprint, events) as link:
            async with old_hub(tls.hub, port) as old:
                await eventually(lambda: link.connected)
                link.alert(asked)
                (alert_id,) = link.outbox
                await eventually(lambda: bool(old.kinds))
                await old.sockets[-1].close()  # a reconnect: the booth sends its outbox again
                await eventually(lambda: len(old.sockets) == 2 and link.connected)
                if kept:
                    await eventually(lambda: len(old.kinds) == 2)
                await asyncio.sleep(0.1)
                assert set(old.kinds) == {at_the_old_hub}
                assert (alert_id in link.outbox) is kept
            if not kept:
                return
            # The hub is updated: the very same alert arrives, as itself.
            await eventually(lambda: LOST in events)
            async with hub_server(db, tls.hub, port) as server:
                await eventually(lambda: not link.outbox)
                (stored,) = await server.hub.unacked_alerts()
                assert (stored.alert_id, stored.kind) == (alert_id, "updates_blocked")

    asyncio.run(main())
