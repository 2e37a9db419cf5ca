"""Shared by the console and call tests: a real hub over TLS on loopback, and its clients.

The hub runs in the test's own event loop (aiohttp ``AppRunner`` + ``TCPSite``
on 127.0.0.1, the dev certificate); clients pin that certificate. Cookies are
sent by hand: aiohttp's cookie jar ignores cookies from IP addresses, and the
tests want to see exactly what is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import WSMsgType, web

from clinic import protocol
from clinic.console import SESSION_COOKIE
from clinic.protocol import (
    Hello,
    JoinQueue,
    Message,
    Ping,
    Pong,
    Queued,
    Snapshot,
    Welcome,
    new_id,
)
from clinic.server import Hub, create_app, dev_certificate, hub_of
from clinic.store import Kdf, ScryptParams, Store, scrypt_kdf
from clinic.turn import TurnConfig

FAST = ScryptParams(n=16, r=1, p=1)
T0 = 1_750_000_000.0
BOOTH = {
    "name": "Riverside booth",
    "site": "Riverside Library",
    "address": "1 Main St, Springfield",
    "room": "Room 2",
}
CODE = "482913"
PASSWORD = "correct horse battery staple"
OTHER_PASSWORD = "purple monkey dishwasher lamp"

M = TypeVar("M", bound=Message)


class Clock:
    """A settable clock for the hub (sessions, throttles, TURN expiry)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path
    fingerprint: str

    def server(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


def make_tls(directory: Path) -> Tls:
    return Tls(*dev_certificate(directory))


@dataclass(frozen=True)
class Db:
    store: Store
    tokens: dict[str, str]


def open_db(path: Path, kdf: Kdf = scrypt_kdf) -> Db:
    store = Store(path, password_params=FAST, kdf=kdf)
    tokens = {b: store.add_booth(b, **BOOTH) for b in ("booth-1", "booth-2")}
    store.add_clinician("a.rivera", PASSWORD, "Dr. Ana Rivera")
    store.add_clinician("b.chen", OTHER_PASSWORD, "Dr. Bo Chen")
    store.add_appointment(CODE, "a.rivera", T0)
    return Db(store, tokens)


class Peer:
    """A booth or a console, as the hub's other end: typed messages in and out."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, message: Message) -> None:
        await self.ws.send_str(protocol.encode(message))

    async def recv(self, timeout: float = 5.0) -> Message:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type is WSMsgType.TEXT, msg
        return protocol.parse(msg.data, sender="hub")

    async def expect(
        self, cls: type[M], *, skip: tuple[type[Message], ...] = (Snapshot, Queued)
    ) -> M:
        """The next message of type ``cls``; snapshots and queue places on the way are skipped."""
        for _ in range(50):
            message = await self.recv()
            if isinstance(message, cls):
                return message
            assert isinstance(message, skip), f"expected {cls.TYPE}, got {message!r}"
        raise AssertionError(f"no {cls.TYPE}")

    async def snapshot_where(self, check: Callable[[Snapshot], bool]) -> Snapshot:
        """The first snapshot (skipping others) for which ``check`` holds."""
        for _ in range(50):
            snap = await self.expect(Snapshot, skip=(Queued,))
            if check(snap):
                return snap
        raise AssertionError("no such snapshot")

    async def drain(self) -> list[Message]:
        """Ping and return everything that came before the pong: what is pending now."""
        ping = Ping(id=new_id())
        await self.send(ping)
        seen: list[Message] = []
        for _ in range(50):
            message = await self.recv()
            if isinstance(message, Pong) and message.in_reply_to == ping.id:
                return seen
            seen.append(message)
        raise AssertionError("no pong")

    async def closed(self) -> bool:
        msg = await self.ws.receive(timeout=5)
        return msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)


@dataclass
class Server:
    hub: Hub
    app: web.Application
    session: aiohttp.ClientSession
    base: str
    tls: Tls
    db: Db

    @property
    def origin(self) -> str:
        return self.base

    async def post_login(
        self,
        username: str,
        password: str,
        *,
        origin: str | None = "own",
        fetch_site: str | None = None,
    ) -> aiohttp.ClientResponse:
        headers = {} if origin is None else {"Origin": self.origin if origin == "own" else origin}
        if fetch_site is not None:
            headers["Sec-Fetch-Site"] = fetch_site
        return await self.session.post(
            f"{self.base}/login",
            data={"username": username, "password": password},
            headers=headers,
            ssl=self.tls.client(),
            allow_redirects=False,
        )

    async def sign_in(self, username: str = "a.rivera", password: str = PASSWORD) -> str:
        """Sign in through the form; the session token from the cookie."""
        async with await self.post_login(username, password) as reply:
            assert reply.status == 303, await reply.text()
            return session_token(reply)

    async def get(self, path: str, token: str | None = None) -> aiohttp.ClientResponse:
        headers = {} if token is None else {"Cookie": f"{SESSION_COOKIE}={token}"}
        return await self.session.get(
            f"{self.base}{path}", headers=headers, ssl=self.tls.client(), allow_redirects=False
        )

    async def console(
        self, token: str | None = None, *, origin: str | None = "own", sign_in: str = "a.rivera"
    ) -> Peer:
        """A console connection (signing ``sign_in`` in first when no token is given)."""
        if token is None:
            password = PASSWORD if sign_in == "a.rivera" else OTHER_PASSWORD
            token = await self.sign_in(sign_in, password)
        headers = {"Cookie": f"{SESSION_COOKIE}={token}"}
        if origin is not None:
            headers["Origin"] = self.origin if origin == "own" else origin
        ws = await self.session.ws_connect(
            self.base.replace("https:", "wss:") + "/console",
            headers=headers,
            ssl=self.tls.client(),
        )
        return Peer(ws)

    async def booth(self, booth_id: str = "booth-1") -> tuple[Peer, Welcome]:
        ws = await self.session.ws_connect(
            self.base.replace("https:", "wss:") + "/booth", ssl=self.tls.client()
        )
        peer = Peer(ws)
        token = self.db.tokens[booth_id]
        await peer.send(Hello(id=new_id(), booth_id=booth_id, token=token, firmware="0.1.0"))
        welcome = await peer.recv()
        assert isinstance(welcome, Welcome), welcome
        return peer, welcome

    async def waiting_booth(
        self, booth_id: str = "booth-1", *, code: str | None = None, audio_only: bool = False
    ) -> Peer:
        booth, _ = await self.booth(booth_id)
        await booth.send(
            JoinQueue(id=new_id(), language="es", audio_only=audio_only, appointment_code=code)
        )
        assert isinstance(await booth.expect(Queued, skip=()), Queued)
        return booth


def session_token(reply: aiohttp.ClientResponse) -> str:
    cookie = SimpleCookie()
    for header in reply.headers.getall("Set-Cookie", []):
        cookie.load(header)
    return cookie[SESSION_COOKIE].value


@contextlib.asynccontextmanager
async def running(
    db: Db,
    tls: Tls,
    *,
    turn: TurnConfig | None = None,
    clock: Callable[[], float] = lambda: T0,
    call_grace: float = 5.0,
) -> AsyncIterator[Server]:
    app = create_app(db.store, turn=turn, clock=clock, call_grace=call_grace)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server())
        await site.start()
        port = runner.addresses[0][1]
        jar = aiohttp.DummyCookieJar()
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            yield Server(hub_of(app), app, session, f"https://127.0.0.1:{port}", tls, db)
    finally:
        await runner.cleanup()


def run(db: Db, tls: Tls, scenario: Callable[[Server], Any], **kw: Any) -> None:
    async def main() -> None:
        async with running(db, tls, **kw) as server:
            await scenario(server)

    asyncio.run(main())


async def eventually(check: Callable[[], bool]) -> None:
    for _ in range(300):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")
