"""The hub's booth side over real TLS on loopback, the client pinning the dev certificate.

Each test runs a fresh server (aiohttp ``AppRunner`` + ``TCPSite``) on
127.0.0.1 and talks to it as booths do. Time is frozen at ``T0`` so the
code-guessing throttle and TURN expiry are exact; scrypt runs at a tiny cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinic import protocol
from clinic.protocol import (
    MAX_MESSAGE_BYTES,
    Alert,
    AlertAck,
    AlertStatus,
    BoothState,
    CodeRefused,
    Door,
    Error,
    ErrorCode,
    Hello,
    JoinQueue,
    LeaveQueue,
    Message,
    Ping,
    Pong,
    Presence,
    Queued,
    Site,
    Welcome,
    new_id,
)
from clinic.server import WS_MAX_MSG_SIZE, Hub, create_app, dev_certificate, hub_of
from clinic.store import ScryptParams, Store
from clinic.turn import TurnConfig

FAST = ScryptParams(n=16, r=1, p=1)
T0 = 1_750_000_000.0
BOOTH = {
    "name": "Riverside booth",
    "site": "Riverside Library",
    "address": "1 Main St",
    "room": "2",
}
CODE = "482913"


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path
    fingerprint: str
    other_cert: Path  # another self-signed certificate, for the twin test

    def server(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client(self, pinned: Path | None = None) -> ssl.SSLContext:
        """Trusts only the given certificate (the hub's by default)."""
        return ssl.create_default_context(cafile=str(pinned or self.cert))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    cert, key, fingerprint = dev_certificate(tmp_path_factory.mktemp("tls"))
    other, _, _ = dev_certificate(tmp_path_factory.mktemp("other-tls"))
    return Tls(cert, key, fingerprint, other)


@dataclass(frozen=True)
class Db:
    store: Store
    tokens: dict[str, str]


def _open_db(path: Path) -> Db:
    store = Store(path, password_params=FAST)
    tokens = {b: store.add_booth(b, **BOOTH) for b in ("booth-1", "booth-2")}
    store.add_clinician("a.rivera", "correct horse battery staple", "Dr. Ana Rivera")
    store.add_appointment(CODE, "a.rivera", T0)
    return Db(store, tokens)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    d = _open_db(tmp_path / "hub.sqlite3")
    with d.store:
        yield d


@pytest.fixture(scope="module")
def module_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Db]:
    d = _open_db(tmp_path_factory.mktemp("db") / "hub.sqlite3")
    with d.store:
        yield d


# ---------------------------------------------------------------- helpers


class BoothClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, message: Message) -> None:
        await self.ws.send_str(protocol.encode(message))

    async def recv(self) -> Message:
        msg = await self.ws.receive(timeout=5)
        assert msg.type is WSMsgType.TEXT, msg
        return protocol.parse(msg.data, sender="hub")

    async def error(self) -> Error:
        reply = await self.recv()
        assert isinstance(reply, Error), reply
        return reply

    async def ping(self) -> None:
        ping = Ping(id=new_id())
        await self.send(ping)
        reply = await self.recv()
        assert isinstance(reply, Pong) and reply.in_reply_to == ping.id, reply

    async def ping_through(self) -> None:
        """Ping, and read whatever came first (each a valid hub message) until the pong."""
        ping = Ping(id=new_id())
        await self.send(ping)
        for _ in range(10):
            reply = await self.recv()
            if isinstance(reply, Pong) and reply.in_reply_to == ping.id:
                return
        raise AssertionError("no pong")

    async def closed(self) -> bool:
        msg = await self.ws.receive(timeout=5)
        return msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)


@dataclass
class Server:
    hub: Hub
    session: aiohttp.ClientSession
    url: str
    tls: Tls
    db: Db

    async def raw(self, pinned: Path | None = None) -> BoothClient:
        ws = await self.session.ws_connect(self.url, ssl=self.tls.client(pinned))
        return BoothClient(ws)

    async def booth(self, booth_id: str = "booth-1") -> tuple[BoothClient, Welcome]:
        client = await self.raw()
        token = self.db.tokens[booth_id]
        await client.send(Hello(id=new_id(), booth_id=booth_id, token=token, firmware="0.1.0"))
        welcome = await client.recv()
        assert isinstance(welcome, Welcome), welcome
        return client, welcome


@contextlib.asynccontextmanager
async def running(
    db: Db, tls: Tls, turn: TurnConfig | None = None, clock: Callable[[], float] = lambda: T0
) -> AsyncIterator[Server]:
    app = create_app(db.store, turn=turn, clock=clock)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server())
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            yield Server(hub_of(app), session, f"wss://127.0.0.1:{port}/booth", tls, db)
    finally:
        await runner.cleanup()


def run(db: Db, tls: Tls, scenario: Callable[[Server], Any], **kw: Any) -> None:
    async def main() -> None:
        async with running(db, tls, **kw) as server:
            await scenario(server)

    asyncio.run(main())


async def eventually(check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def alert(alert_id: str = "emg-0001") -> Alert:
    return Alert(
        id=new_id(),
        alert_id=alert_id,
        booth_id="booth-1",
        kind=protocol.AlertKind.EMERGENCY,
        raised_at=datetime(2026, 11, 26, 20, 5, tzinfo=UTC),
        site=Site(name="Riverside Library", street_address="1 Main St", room="Room 2"),
    )


# ------------------------------------------------------------------ TLS


def test_client_pinning_the_dev_certificate_connects(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        client, _ = await server.booth()
        await client.ping()
        await client.ws.close()

    run(db, tls, scenario)
    assert len(tls.fingerprint) == 64 and int(tls.fingerprint, 16) >= 0


def test_client_pinning_another_certificate_is_refused(db: Db, tls: Tls) -> None:
    """The twin: the same server, a different self-signed certificate trusted: no connection."""

    async def scenario(server: Server) -> None:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await server.raw(pinned=tls.other_cert)

    run(db, tls, scenario)


def test_dev_certificate_is_reused(tls: Tls) -> None:
    again = dev_certificate(tls.cert.parent)
    assert again == (tls.cert, tls.key, tls.fingerprint)
    assert tls.key.stat().st_mode & 0o077 == 0


# ---------------------------------------------------------------- hello


def test_wrong_token_is_refused_and_closed(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        client = await server.raw()
        wrong = "x" * 43
        await client.send(Hello(id="h1", booth_id="booth-1", token=wrong, firmware="0.1.0"))
        err = await client.error()
        assert (err.code, err.in_reply_to) == (ErrorCode.UNAUTHORIZED, "h1")
        assert await client.closed()
        assert not server.hub.booths["booth-1"].online and not server.hub.connections

    run(db, tls, scenario)


def test_message_before_hello_is_refused_and_closed(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        client = await server.raw()
        await client.send(Ping(id="p1"))
        err = await client.error()
        assert (err.code, err.in_reply_to) == (ErrorCode.HELLO_FIRST, "p1")
        assert await client.closed()

    run(db, tls, scenario)


def test_welcome_without_turn_has_no_ice_servers(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        client, welcome = await server.booth()
        assert welcome.ice_servers == ()
        await client.ws.close()

    run(db, tls, scenario)


def test_welcome_carries_turn_credentials_when_configured(db: Db, tls: Tls) -> None:
    turn = TurnConfig(urls=("turn:127.0.0.1:3478",), secret=b"s" * 32, ttl=600)

    async def scenario(server: Server) -> None:
        client, welcome = await server.booth()
        (ice,) = welcome.ice_servers
        expected = turn.credentials_for("booth-1", T0)
        assert ice.urls == ("turn:127.0.0.1:3478",)
        assert (ice.username, ice.credential, ice.ttl) == (
            expected.username,
            expected.credential,
            600,
        )
        assert ice.username == f"{int(T0) + 600}:booth-1"
        await client.ws.close()

    run(db, tls, scenario, turn=turn)


# --------------------------------------------------------- presence, queue


def test_presence_and_queue(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        hub = server.hub
        one, _ = await server.booth("booth-1")
        two, _ = await server.booth("booth-2")
        await one.send(Presence(id=new_id(), state=BoothState.IN_USE, door=Door.OPEN))
        await one.ping()  # the presence has been handled
        assert (hub.booths["booth-1"].state, hub.booths["booth-1"].door) == ("in_use", "open")
        assert hub.booths["booth-1"].online

        await one.send(JoinQueue(id=new_id(), language="es", audio_only=True))
        reply = await one.recv()
        assert isinstance(reply, Queued) and reply.position == 1
        await two.send(JoinQueue(id=new_id(), language="en", audio_only=False))
        reply = await two.recv()
        assert isinstance(reply, Queued) and reply.position == 2

        snap = hub.snapshot()
        assert [(q.booth_id, q.language, q.audio_only, q.has_appointment) for q in snap.queue] == [
            ("booth-1", "es", True, False),
            ("booth-2", "en", False, False),
        ]
        assert {b.booth_id: b.online for b in snap.booths} == {"booth-1": True, "booth-2": True}

        await one.send(LeaveQueue(id=new_id()))
        moved = await two.recv()  # booth-2 moves up
        assert isinstance(moved, Queued) and moved.position == 1
        assert [q.booth_id for q in hub.snapshot().queue] == ["booth-2"]
        await one.ws.close()
        await two.ws.close()

    run(db, tls, scenario)


def test_disconnect_removes_the_booth_from_the_queue(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        hub = server.hub
        client, _ = await server.booth()
        await client.send(JoinQueue(id=new_id(), language="es", audio_only=False))
        assert isinstance(await client.recv(), Queued)
        assert hub.position("booth-1") == 1
        await client.ws.close()
        await eventually(lambda: not hub.booths["booth-1"].online)
        assert hub.position("booth-1") is None
        assert hub.snapshot().queue == ()

    run(db, tls, scenario)


def test_right_appointment_code_queues_with_appointment(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        client, _ = await server.booth()
        await client.send(
            JoinQueue(id=new_id(), language="es", audio_only=False, appointment_code=CODE)
        )
        assert isinstance(await client.recv(), Queued)
        (entry,) = server.hub.snapshot().queue
        assert entry.has_appointment
        assert server.hub.queue[0].clinician == "a.rivera"
        await client.ws.close()

    run(db, tls, scenario)


def test_wrong_codes_are_refused_then_rate_limited(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        client, _ = await server.booth()

        async def join(code: str) -> Message:
            await client.send(
                JoinQueue(id="j1", language="es", audio_only=False, appointment_code=code)
            )
            return await client.recv()

        for _ in range(3):  # two free misses, the third starts a wait
            assert isinstance(await join("000000"), CodeRefused)
        for code in ("000000", CODE):  # while throttled, not even the right code is looked up
            err = await join(code)
            assert isinstance(err, Error)
            assert (err.code, err.in_reply_to) == (ErrorCode.RATE_LIMITED, "j1")
        assert server.hub.queue == []
        await client.ws.close()

    run(db, tls, scenario)


# ---------------------------------------------------------------- alerts


def test_alert_is_recorded_once_and_acknowledged_every_time(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        for _ in range(2):  # the booth resends after reconnecting
            client, _ = await server.booth()
            await client.send(alert())
            ack = await client.recv()
            assert isinstance(ack, AlertAck)
            assert (ack.alert_id, ack.status) == ("emg-0001", AlertStatus.RECEIVED)
            await client.send(alert())  # and again on the same connection
            assert isinstance(await client.recv(), AlertAck)
            await client.ws.close()
        (stored,) = await server.hub.unacked_alerts()
        assert (stored.booth.booth_id, stored.alert_id, stored.kind) == (
            "booth-1",
            "emg-0001",
            "emergency",
        )
        assert stored.raised_at == datetime(2026, 11, 26, 20, 5, tzinfo=UTC).timestamp()
        assert stored.received_at == T0

    run(db, tls, scenario)


# ------------------------------------------------------- refused frames


def test_refused_frames_get_an_error_and_the_connection_keeps_working(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        client, _ = await server.booth()
        await client.ws.send_str("{not json")
        assert (await client.error()).code == ErrorCode.NOT_JSON
        await client.ping()
        await client.ws.send_str('{"v":1,"type":"teleport","id":"t1"}')
        err = await client.error()
        assert (err.code, err.in_reply_to) == (ErrorCode.UNKNOWN_TYPE, "t1")
        await client.ping()
        await client.ws.send_str('{"v":1,"type":"welcome","id":"w1","ice_servers":[]}')
        assert (await client.error()).code == ErrorCode.NOT_ALLOWED
        await client.ping()
        await client.ws.send_bytes(b'{"v":1,"type":"ping","id":"b1"}')
        assert (await client.error()).code == ErrorCode.NOT_JSON
        await client.ping()
        await client.ws.send_str('{"v":1,"type":"ping","id":"big","pad":"' + "a" * 70_000 + '"}')
        err = await client.error()
        assert err.code == ErrorCode.TOO_BIG
        await client.ping()
        await client.ws.close()

    run(db, tls, scenario)


def test_a_frame_beyond_aiohttps_limit_closes_only_that_connection(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        client, _ = await server.booth()
        await client.ws.send_str("a" * (WS_MAX_MSG_SIZE + 1))
        assert await client.closed()
        # 1009 from the hub, or 1006 when the hub cut the transport while we still wrote.
        assert client.ws.close_code in (
            aiohttp.WSCloseCode.MESSAGE_TOO_BIG,
            aiohttp.WSCloseCode.ABNORMAL_CLOSURE,
        )
        await eventually(lambda: not server.hub.booths["booth-1"].online)
        again, _ = await server.booth()  # the server is fine
        await again.ping()
        await again.ws.close()

    run(db, tls, scenario)


def test_exactly_the_cap_reaches_the_parser(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        client, _ = await server.booth()
        head = '{"v":1,"type":"ping","id":"p1","pad":"'
        frame = head + "a" * (MAX_MESSAGE_BYTES - len(head) - 2) + '"}'
        assert len(frame.encode()) == MAX_MESSAGE_BYTES
        await client.ws.send_str(frame)
        assert (await client.error()).code == ErrorCode.UNKNOWN_FIELD  # parsed, not too big
        await client.ping()
        await client.ws.close()

    run(db, tls, scenario)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    frames=st.lists(
        st.one_of(
            st.text(max_size=200),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                lambda inner: (
                    st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4)
                ),
                max_leaves=10,
            ).map(json.dumps),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_arbitrary_text_frames_never_close_the_connection(
    frames: list[str], module_db: Db, tls: Tls
) -> None:
    async def scenario(server: Server) -> None:
        client, _ = await server.booth()
        for frame in frames:
            await client.ws.send_str(frame)
            await client.ping_through()
        await client.ws.close()

    run(module_db, tls, scenario)


# ------------------------------------------------------------ clinic-hub serve


def test_serve_without_dev_needs_a_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clinic.cli import main

    code = main(["--db", str(tmp_path / "hub.sqlite3"), "serve"])
    err = capsys.readouterr().err
    assert code == 1
    assert "give --cert PEM and --key PEM" in err and "--dev" in err
