"""The booth's hub link against the real hub (``clinic.server``) over TLS on loopback.

Each test starts the hub as ``tests/clinic/test_server.py`` does (aiohttp
``AppRunner`` + ``TCPSite`` on 127.0.0.1, the dev certificate, scrypt at a tiny
cost) and a :class:`HubLink` pinning its certificate, with backoff in
milliseconds so reconnecting takes no time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from clinic import protocol
from clinic.protocol import Hello, Welcome, new_id
from clinic.server import Hub, create_app, hub_of
from kiosk import config, session
from kiosk.call.hub_link import BACKOFF_FIRST, BACKOFF_MAX, CALL_BACKOFF_MAX, HubLink
from kiosk.call.outbox import OutboxFile
from kiosk.controller import CallPort, StaffAlerts, Visit
from tests.kiosk.call.hubfixtures import CODE, T0, Cert, Db, Tls

SITE = config.Site(
    name="Riverside Library",
    street_address="1 Main St",
    room="Room 2",
    time_zone="America/Chicago",
    languages=("en", "es"),
)


# ---------------------------------------------------------------- helpers


@dataclass
class Running:
    hub: Hub
    requests: list[str]  # every HTTP request the hub received


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def hub_server(db: Db, cert: Cert, port: int = 0) -> AsyncIterator[Running]:
    app = create_app(db.store, turn=None, clock=lambda: T0)
    requests: list[str] = []

    @web.middleware
    async def count(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        requests.append(request.path)
        return await handler(request)

    app.middlewares.append(count)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    hub = hub_of(app)
    try:
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=cert.server())
        await site.start()
        yield Running(hub, requests)
    finally:
        for ws in list(hub.connections.values()):  # the hub going away closes its sockets
            await ws.close()
        await runner.cleanup()


@contextlib.asynccontextmanager
async def booth_link(
    db: Db, port: int, pin: str, events: list[session.Event], outbox: OutboxFile | None = None
) -> AsyncIterator[HubLink]:
    hub = config.Hub(url=f"wss://127.0.0.1:{port}/booth", certificate_sha256=pin)
    link = HubLink(
        hub,
        "booth-1",
        db.token,
        site=SITE,
        on_event=events.append,
        clock=lambda: T0 + 5,
        backoff_first=0.01,
        backoff_max=0.05,
        welcome_timeout=2.0,
        outbox_file=outbox,
    )
    link.start()
    try:
        yield link
    finally:
        await link.close()


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


LOST, RESTORED = session.NetworkLost(), session.NetworkRestored()


def visit(code: str | None = None) -> Visit:
    return Visit(language="es", started=T0, appointment_code=code, audio_only=True)


# ------------------------------------------------------------------- tests


def test_the_link_is_both_ports() -> None:
    def ports(link: HubLink) -> tuple[CallPort, StaffAlerts]:
        return link, link  # checked by mypy when tests are type-checked

    assert callable(ports)


def test_connects_pinning_the_hubs_certificate(db: Db, tls: Tls) -> None:
    async def main() -> None:
        port = free_port()
        events: list[session.Event] = []
        async with (
            hub_server(db, tls.hub, port) as server,
            booth_link(db, port, tls.hub.fingerprint, events) as link,
        ):
            await eventually(lambda: link.connected)
            assert server.hub.booths["booth-1"].online
            assert server.requests == ["/booth"]
        assert events == []

    asyncio.run(main())


def test_another_certificate_is_refused_and_nothing_is_sent(
    db: Db, tls: Tls, caplog: pytest.LogCaptureFixture
) -> None:
    """The hub serves a different self-signed certificate: no request ever reaches it."""

    async def main() -> None:
        port = free_port()
        events: list[session.Event] = []
        async with (
            hub_server(db, tls.other, port) as server,
            booth_link(db, port, tls.hub.fingerprint, events) as link,
        ):
            link.alert("emergency")

            def refusals() -> int:
                return sum("does not match" in r.getMessage() for r in caplog.records)

            await eventually(lambda: refusals() >= 3)  # and it keeps trying, with backoff
            assert events == [LOST]
            assert not link.connected
            assert server.requests == []  # not even the HTTP upgrade was sent
            assert not any(s.online for s in server.hub.booths.values())
            assert await server.hub.unacked_alerts() == []
            assert len(link.outbox) == 1  # kept for the real hub

            # The twin: without pinning, the very same connection would have worked.
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"wss://127.0.0.1:{port}/booth", ssl=False) as ws,
            ):
                hello = Hello(id=new_id(), booth_id="booth-1", token=db.token, firmware="0.1.0")
                await ws.send_str(protocol.encode(hello))
                reply = await ws.receive(timeout=5)
                assert isinstance(protocol.parse(reply.data, sender="hub"), Welcome)
            assert server.requests == ["/booth"]

        # And a booth pinning that certificate connects to it.
        async with (
            hub_server(db, tls.other, port) as server,
            booth_link(db, port, tls.other.fingerprint, []) as link,
        ):
            await eventually(lambda: link.connected)

    caplog.set_level(logging.INFO, logger="kiosk.call.hub_link")
    asyncio.run(main())


def test_alert_raised_while_the_hub_is_down_is_delivered_when_it_starts(db: Db, tls: Tls) -> None:
    async def main() -> None:
        port = free_port()
        events: list[session.Event] = []
        async with booth_link(db, port, tls.hub.fingerprint, events) as link:
            await eventually(lambda: events == [LOST])
            link.alert("emergency")
            (alert_id,) = link.outbox
            await asyncio.sleep(0.05)  # a few failed attempts
            assert list(link.outbox) == [alert_id]
            async with hub_server(db, tls.hub, port) as server:
                await eventually(lambda: not link.outbox)
                assert events == [LOST, RESTORED]
                (stored,) = await server.hub.unacked_alerts()
                assert (stored.booth.booth_id, stored.alert_id, stored.kind) == (
                    "booth-1",
                    alert_id,
                    "emergency",
                )
                assert stored.raised_at == T0 + 5
        assert await server.hub.unacked_alerts() == [stored]  # stored once

    asyncio.run(main())


def test_alert_sent_while_connected_is_acknowledged_and_leaves_the_outbox(db: Db, tls: Tls) -> None:
    async def main() -> None:
        port = free_port()
        async with (
            hub_server(db, tls.hub, port) as server,
            booth_link(db, port, tls.hub.fingerprint, []) as link,
        ):
            await eventually(lambda: link.connected)
            link.alert("emergency")
            link.alert("emergency")  # held twice: two alerts
            ids = list(link.outbox)
            assert len(ids) == 2
            await eventually(lambda: not link.outbox)
            stored = await server.hub.unacked_alerts()
            assert sorted(a.alert_id for a in stored) == sorted(ids)
            assert datetime.fromtimestamp(stored[0].raised_at, UTC) == datetime.fromtimestamp(
                T0 + 5, UTC
            )

    asyncio.run(main())


def test_hub_restarted_mid_visit_the_booth_reconnects_and_keeps_its_place(db: Db, tls: Tls) -> None:
    async def main() -> None:
        port = free_port()
        events: list[session.Event] = []
        async with contextlib.AsyncExitStack() as stack:
            first_hub = contextlib.AsyncExitStack()  # stopped mid-test, or at the end on failure
            stack.push_async_exit(first_hub)
            server = await first_hub.enter_async_context(hub_server(db, tls.hub, port))
            link = await stack.enter_async_context(
                booth_link(db, port, tls.hub.fingerprint, events)
            )
            await eventually(lambda: link.connected)
            await link.join_queue(visit())
            await eventually(lambda: link.position == 1)
            assert server.hub.position("booth-1") == 1
            await first_hub.aclose()  # the hub goes away mid-visit

            await eventually(lambda: events == [LOST])
            assert not link.connected and link.position is None
            async with hub_server(db, tls.hub, port) as server:
                await eventually(lambda: link.connected)
                assert events == [LOST, RESTORED]
                await eventually(lambda: link.position == 1)  # asked again by itself
                assert server.hub.position("booth-1") == 1
                await link.leave_queue()
                await eventually(lambda: server.hub.position("booth-1") is None)
                assert link.position is None

    asyncio.run(main())


def test_wrong_appointment_code_is_refused(db: Db, tls: Tls) -> None:
    async def main() -> None:
        port = free_port()
        events: list[session.Event] = []
        async with (
            hub_server(db, tls.hub, port) as server,
            booth_link(db, port, tls.hub.fingerprint, events) as link,
        ):
            await eventually(lambda: link.connected)
            await link.join_queue(visit("000000"))
            await eventually(lambda: events == [session.CodeRefused()])
            assert link.position is None
            assert server.hub.queue == []

    asyncio.run(main())


def test_right_appointment_code_queues_and_is_never_logged(
    db: Db, tls: Tls, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        port = free_port()
        async with (
            hub_server(db, tls.hub, port) as server,
            booth_link(db, port, tls.hub.fingerprint, []) as link,
        ):
            await eventually(lambda: link.connected)
            await link.join_queue(visit(CODE))
            await eventually(lambda: link.position == 1)
            (entry,) = server.hub.snapshot().queue
            assert (entry.language, entry.audio_only, entry.has_appointment) == ("es", True, True)
            link.alert("emergency")
            await eventually(lambda: not link.outbox)

    caplog.set_level(logging.DEBUG)
    asyncio.run(main())
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("kiosk"))
    assert "join_queue" in logged and "alert" in logged  # types and ids are logged ...
    for secret in (CODE, db.token, SITE.street_address):  # ... what they carried is not
        assert secret not in logged


def test_backoff_doubles_from_half_a_second_to_thirty_with_jitter() -> None:
    hub = config.Hub(url="wss://127.0.0.1:1/booth", certificate_sha256="0" * 64)
    low = HubLink(hub, "booth-1", "t" * 43, site=SITE, on_event=print, rng=lambda: 0.0)
    high = HubLink(hub, "booth-1", "t" * 43, site=SITE, on_event=print, rng=lambda: 0.999999)
    assert (BACKOFF_FIRST, BACKOFF_MAX) == (0.5, 30.0)
    steps = [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    for failures, step in enumerate(steps, start=1):
        assert low._backoff(failures) == step / 2
        assert high._backoff(failures) == pytest.approx(step, rel=1e-5)


# ------------------------------------------------------------ signalling for the call engine


SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def test_call_messages_and_unknown_call_errors_go_to_the_call_engine(db: Db, tls: Tls) -> None:
    async def main() -> None:
        port = free_port()
        got: list[protocol.Message] = []

        async def on_call(message: protocol.Message) -> None:
            got.append(message)

        offer = protocol.Offer(id=new_id(), call_id=new_id(), sdp=SDP)
        async with hub_server(db, tls.hub, port):
            async with booth_link(db, port, tls.hub.fingerprint, []) as link:
                assert await link.send(offer) is False  # not connected yet: nothing sent
                link.on_call = on_call
                await eventually(lambda: link.connected)
                assert await link.send(offer) is True
                await eventually(lambda: len(got) == 1)
            (error,) = got  # the hub knows no such call
            assert isinstance(error, protocol.Error)
            assert error.code is protocol.ErrorCode.UNKNOWN_CALL
            assert error.in_reply_to == offer.id
            assert await link.send(offer) is False  # closed

    asyncio.run(main())


class _NoSocket:
    """Stands in for the WebSocket where a message needs no reply."""


def _link(events: list[session.Event]) -> HubLink:
    hub = config.Hub(url="wss://127.0.0.1:1/booth", certificate_sha256="0" * 64)
    return HubLink(hub, "booth-1", "t" * 43, site=SITE, on_event=events.append)


def test_the_link_routes_every_call_message_and_leaves_the_queue_when_a_call_starts() -> None:
    async def main() -> None:
        events: list[session.Event] = []
        link = _link(events)
        got: list[str] = []

        async def on_call(message: protocol.Message) -> None:
            got.append(message.TYPE)
            if isinstance(message, protocol.CallState):
                raise RuntimeError("a bug in the engine")  # must not reach the link

        link.on_call = on_call
        await link.join_queue(visit())
        link.position = 3
        call_id = new_id()
        ws: Any = _NoSocket()
        for message in (
            protocol.CallStarted(
                id=new_id(), call_id=call_id, booth_id="booth-1", audio_only=False, ice_servers=()
            ),
            protocol.Offer(id=new_id(), call_id=call_id, sdp=SDP),
            protocol.Answer(id=new_id(), call_id=call_id, sdp=SDP),
            protocol.CallState(id=new_id(), call_id=call_id, event=protocol.CallEvent.MUTED),
            protocol.CallEnded(id=new_id(), call_id=call_id, reason=protocol.EndReason.HUB_CLOSING),
            protocol.Error(id=new_id(), code=protocol.ErrorCode.UNKNOWN_CALL, message="offer: -"),
            protocol.Error(id=new_id(), code=protocol.ErrorCode.BUSY, message="not a call's"),
        ):
            await link._handle(ws, message)
        assert got == ["call_started", "offer", "answer", "call_state", "call_ended", "error"]
        assert link._wanted is None and link.position is None  # never rejoins the queue mid-call
        assert events == []  # the engine posts the call's events, not the link

    asyncio.run(main())


def test_without_an_engine_a_dropped_queue_place_still_ends_the_wait() -> None:
    async def main() -> None:
        events: list[session.Event] = []
        link = _link(events)
        await link.join_queue(visit())
        ws: Any = _NoSocket()
        await link._handle(
            ws, protocol.CallEnded(id=new_id(), reason=protocol.EndReason.QUEUE_CLOSED)
        )
        assert events == [session.CallEnded()] and link._wanted is None

    asyncio.run(main())


def test_in_a_call_the_backoff_is_capped_at_two_seconds() -> None:
    hub = config.Hub(url="wss://127.0.0.1:1/booth", certificate_sha256="0" * 64)
    link = HubLink(hub, "booth-1", "t" * 43, site=SITE, on_event=print, rng=lambda: 0.999999)
    assert CALL_BACKOFF_MAX == 2.0
    assert link._backoff(10) == pytest.approx(30.0, rel=1e-5)
    link.in_call = True
    assert max(link._backoff(n) for n in range(1, 20)) == pytest.approx(2.0, rel=1e-5)
    link.in_call = False
    assert link._backoff(10) == pytest.approx(30.0, rel=1e-5)


async def reconnects_within_a_second_of_the_hub_once_a_call_is_live(
    db: Db, tls: Tls, in_call: bool
) -> None:
    port = free_port()
    events: list[session.Event] = []
    hub = config.Hub(url=f"wss://127.0.0.1:{port}/booth", certificate_sha256=tls.hub.fingerprint)
    link = HubLink(
        hub,
        "booth-1",
        db.token,
        site=SITE,
        on_event=events.append,
        backoff_first=20.0,  # a booth long disconnected waits long between tries ...
        welcome_timeout=2.0,
    )
    link.start()
    try:
        await eventually(lambda: events == [LOST])
        async with hub_server(db, tls.hub, port):
            link.in_call = in_call  # ... unless a call is waiting to be rebuilt
            await eventually(lambda: link.connected, timeout=1.0)
    finally:
        await link.close()


def test_a_live_call_cuts_a_long_backoff_short(db: Db, tls: Tls) -> None:
    asyncio.run(reconnects_within_a_second_of_the_hub_once_a_call_is_live(db, tls, True))


def test_twin_without_a_call_the_long_backoff_runs_its_course(db: Db, tls: Tls) -> None:
    with pytest.raises(AssertionError, match="condition not reached"):
        asyncio.run(reconnects_within_a_second_of_the_hub_once_a_call_is_live(db, tls, False))


# ------------------------------------------------------- the outbox on disk


async def _restart_while_offline(
    db: Db, tls: Tls, outbox: OutboxFile | None
) -> tuple[str, list[str]]:
    """Raise an alert with the hub down, stop the booth, start it again, then the hub."""
    port = free_port()
    events: list[session.Event] = []
    async with booth_link(db, port, tls.hub.fingerprint, events, outbox) as link:
        await eventually(lambda: events == [LOST])
        link.alert("emergency")
        (alert_id,) = link.outbox
    events.clear()
    async with (
        booth_link(db, port, tls.hub.fingerprint, events, outbox) as again,
        hub_server(db, tls.hub, port) as server,
    ):
        with contextlib.suppress(AssertionError):
            await eventually(lambda: not again.outbox and bool(events), timeout=2.0)
        await asyncio.sleep(0.2)
        stored = [a.alert_id for a in await server.hub.unacked_alerts()]
    return alert_id, stored


def test_an_alert_raised_offline_survives_a_booth_restart(db: Db, tls: Tls, tmp_path: Path) -> None:
    outbox = OutboxFile(tmp_path / "alert-outbox.json")
    alert_id, stored = asyncio.run(_restart_while_offline(db, tls, outbox))
    assert stored == [alert_id]
    assert not outbox.path.exists(), "emptied once the hub has it"


def test_twin_without_the_outbox_file_a_restart_loses_the_alert(db: Db, tls: Tls) -> None:
    _, stored = asyncio.run(_restart_while_offline(db, tls, None))
    assert stored == []
