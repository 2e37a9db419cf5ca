"""The hub's booth side: a WebSocket at ``/booth`` speaking ``clinic.protocol``.

One connection per booth. Its first message must be ``hello`` with the
booth's credential (checked with :meth:`Store.verify_booth`); anything else
gets an ``error`` (``hello_first``, ``unauthorized`` or the parser's code) and
the connection is closed. After ``welcome``, every text frame goes through
:func:`clinic.protocol.parse`; a refused message gets an ``error`` reply and
the connection stays open, whatever was sent.

What lives here is in memory (:class:`Hub`): which booths are online, their
state and door, and the waiting queue. It is rebuilt as booths reconnect.
What must survive a restart (alerts, the code-guessing throttle) is in the
:class:`~clinic.store.Store`, called through :func:`asyncio.to_thread`.

Logging names message types, ids and error codes only (``log_fields()``),
never what a message carried.

Frame sizes: aiohttp's ``max_msg_size`` is :data:`WS_MAX_MSG_SIZE`, twice the
protocol's 64 KiB cap. A frame over the cap but within that gets a
``too_big`` error and the connection stays open; a bigger one is never read
into memory, and aiohttp closes the connection with 1009 (message too big).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiohttp import WSMessage, WSMsgType, web

from clinic import protocol
from clinic.protocol import (
    MAX_MESSAGE_BYTES,
    AlertAck,
    AlertStatus,
    BadMessage,
    BoothInfo,
    BoothState,
    CodeRefused,
    Door,
    ErrorCode,
    Hello,
    IceServer,
    JoinQueue,
    LeaveQueue,
    Message,
    Ping,
    Pong,
    Presence,
    Queued,
    QueueEntry,
    Snapshot,
    Welcome,
    error_reply,
    new_id,
)
from clinic.store import Alert as StoredAlert
from clinic.store import Booth, Store
from clinic.turn import TurnConfig

log = logging.getLogger(__name__)

WS_MAX_MSG_SIZE: Final = 2 * MAX_MESSAGE_BYTES
"""aiohttp's limit; between the cap and this a frame gets ``too_big`` and the connection lives."""
HELLO_TIMEOUT: Final = 10.0
"""Seconds a new connection has to send ``hello``."""
MAX_QUEUE: Final = 100
"""A snapshot lists at most 100 waiting booths."""
DEV_CERT_NAME: Final = "hub-dev-cert.pem"
DEV_KEY_NAME: Final = "hub-dev-key.pem"

Clock = Callable[[], float]


# ------------------------------------------------------------------ state


@dataclass
class BoothStatus:
    """One booth as the hub last heard of it."""

    booth: Booth
    online: bool = True
    state: BoothState = BoothState.IDLE
    door: Door = Door.CLOSED


@dataclass
class Waiting:
    """One booth in the waiting queue. ``clinician`` is the appointment's, if a code matched."""

    booth_id: str
    language: str
    audio_only: bool
    has_appointment: bool
    since: float
    clinician: str | None = None


@dataclass
class Hub:
    """The hub's memory of booths and the queue, shared by the booth and console sides."""

    store: Store
    turn: TurnConfig | None = None
    clock: Clock = time.time
    booths: dict[str, BoothStatus] = field(default_factory=dict)
    queue: list[Waiting] = field(default_factory=list)
    connections: dict[str, web.WebSocketResponse] = field(default_factory=dict)

    # -------------------------------------------------- for the console side

    def snapshot(self) -> Snapshot:
        """Every booth heard of since the hub started, and the queue, next first."""
        booths = tuple(
            BoothInfo(
                booth_id=s.booth.booth_id,
                name=protocol.fit_text(s.booth.name, 100),
                site=protocol.fit_text(s.booth.site, 100),
                online=s.online,
                state=s.state,
                door=s.door,
            )
            for s in sorted(self.booths.values(), key=lambda s: s.booth.booth_id)[:100]
        )
        queue = tuple(
            QueueEntry(
                booth_id=w.booth_id,
                language=w.language,
                audio_only=w.audio_only,
                has_appointment=w.has_appointment,
                since=datetime.datetime.fromtimestamp(w.since, datetime.UTC).replace(microsecond=0),
            )
            for w in self.queue
        )
        return Snapshot(id=new_id(), booths=booths, queue=queue)

    async def unacked_alerts(self) -> list[StoredAlert]:
        """Alerts no staff member has acknowledged yet, oldest first (from the store)."""
        return await asyncio.to_thread(self.store.unacked_alerts)

    def position(self, booth_id: str) -> int | None:
        """1 for the next booth; None when ``booth_id`` is not waiting."""
        for i, w in enumerate(self.queue):
            if w.booth_id == booth_id:
                return i + 1
        return None

    # ----------------------------------------------------------- changes

    async def remove_from_queue(self, booth_id: str) -> bool:
        """Take a booth out of the queue and tell those behind it their new place."""
        index = self.position(booth_id)
        if index is None:
            return False
        del self.queue[index - 1]
        for i, w in enumerate(self.queue[index - 1 :], start=index):
            ws = self.connections.get(w.booth_id)
            if ws is not None and not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(protocol.encode(Queued(id=new_id(), position=i)))
        return True


_HUB_KEY: Final = web.AppKey("hub", Hub)


# ------------------------------------------------------------ the socket


async def _send(ws: web.WebSocketResponse, message: Message) -> None:
    await ws.send_str(protocol.encode(message))


async def _refuse(ws: web.WebSocketResponse, exc: BadMessage, booth_id: str | None) -> None:
    log.info(
        "refused a message from booth %s: %s (type %s)",
        booth_id or "(not identified)",
        exc.code.value,
        exc.msg_type or "unknown",
    )
    await _send(ws, error_reply(exc, exc.msg_id))


def _hub_error(code: ErrorCode, text: str, in_reply_to: str | None) -> protocol.Error:
    return protocol.Error(id=new_id(), code=code, message=text, in_reply_to=in_reply_to)


def _frame_text(msg: WSMessage) -> str:
    """A frame's text, or BadMessage for a binary frame."""
    if msg.type is WSMsgType.TEXT:
        text: str = msg.data
        return text
    raise BadMessage(ErrorCode.NOT_JSON, "a message must be a WebSocket text frame, not binary")


_ENDS: Final = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})


async def _hello(hub: Hub, ws: web.WebSocketResponse) -> Booth | None:
    """Wait for a valid hello; on anything else reply with an error and return None."""
    try:
        msg = await ws.receive(timeout=HELLO_TIMEOUT)
    except TimeoutError:
        log.info("a connection sent no hello in %s s", HELLO_TIMEOUT)
        return None
    if msg.type in _ENDS:
        return None
    try:
        message = protocol.parse(_frame_text(msg), sender="booth")
    except BadMessage as exc:
        await _refuse(ws, exc, None)
        return None
    if not isinstance(message, Hello):
        log.info("refused %s before hello", message.TYPE)
        await _send(
            ws,
            _hub_error(ErrorCode.HELLO_FIRST, "the first message must be hello", message.id),
        )
        return None
    booth = await asyncio.to_thread(hub.store.verify_booth, message.booth_id, message.token)
    if booth is None:
        log.warning("refused hello from booth %s: wrong booth id or token", message.booth_id)
        await _send(
            ws,
            _hub_error(ErrorCode.UNAUTHORIZED, "hello: unknown booth or wrong token", message.id),
        )
        return None
    ice: tuple[IceServer, ...] = ()
    if hub.turn is not None:
        creds = hub.turn.credentials_for(booth.booth_id, hub.clock())
        ice = (
            IceServer(
                urls=creds.urls,
                username=creds.username,
                credential=creds.credential,
                ttl=creds.ttl,
            ),
        )
    await _send(ws, Welcome(id=new_id(), ice_servers=ice))
    log.info("booth %s connected (firmware %s)", booth.booth_id, message.firmware)
    return booth


async def _join(hub: Hub, ws: web.WebSocketResponse, booth_id: str, msg: JoinQueue) -> None:
    clinician: str | None = None
    if msg.appointment_code is not None:
        now = hub.clock()
        delay = await asyncio.to_thread(hub.store.code_delay, booth_id, now)
        if delay > 0:
            text = f"join_queue: too many wrong appointment codes; try again in {delay:.0f} s"
            await _send(ws, _hub_error(ErrorCode.RATE_LIMITED, text, msg.id))
            return
        found = await asyncio.to_thread(hub.store.lookup_appointment, msg.appointment_code, now)
        await asyncio.to_thread(hub.store.note_code_attempt, booth_id, found is not None, now)
        if found is None:
            log.info("booth %s: appointment code refused", booth_id)
            await _send(ws, CodeRefused(id=new_id()))
            return
        clinician = found.username
    entry = Waiting(
        booth_id=booth_id,
        language=msg.language,
        audio_only=msg.audio_only,
        has_appointment=clinician is not None,
        since=hub.clock(),
        clinician=clinician,
    )
    position = hub.position(booth_id)
    if position is not None:  # already waiting: update, keep its place
        entry.since = hub.queue[position - 1].since
        hub.queue[position - 1] = entry
    elif len(hub.queue) >= MAX_QUEUE:
        text = "join_queue: the waiting room is full; try again later"
        await _send(ws, _hub_error(ErrorCode.BUSY, text, msg.id))
        return
    else:
        hub.queue.append(entry)
        position = len(hub.queue)
    await _send(ws, Queued(id=new_id(), position=position))


async def _handle(hub: Hub, ws: web.WebSocketResponse, booth: Booth, message: Message) -> None:
    booth_id = booth.booth_id
    if isinstance(message, Ping):
        await _send(ws, Pong(id=new_id(), in_reply_to=message.id))
    elif isinstance(message, Presence):
        status = hub.booths[booth_id]
        status.state, status.door = message.state, message.door
    elif isinstance(message, JoinQueue):
        await _join(hub, ws, booth_id, message)
    elif isinstance(message, LeaveQueue):
        await hub.remove_from_queue(booth_id)
    elif isinstance(message, protocol.Alert):
        if message.booth_id != booth_id:  # kept, under the booth that sent it
            log.warning("booth %s sent an alert naming booth %s", booth_id, message.booth_id)
        first = await asyncio.to_thread(
            hub.store.record_alert,
            booth_id,
            message.alert_id,
            message.kind.value,
            message.raised_at.timestamp(),
            hub.clock(),
        )
        log.warning(
            "ALERT %s from booth %s (%s)",
            message.alert_id,
            booth_id,
            "new" if first else "repeated",
        )
        await _send(
            ws, AlertAck(id=new_id(), alert_id=message.alert_id, status=AlertStatus.RECEIVED)
        )
    else:
        # Calls (offer, answer, call_state, end_call) come with the console side.
        await _send(
            ws,
            _hub_error(
                ErrorCode.UNKNOWN_CALL,
                f"{message.TYPE}: there is no call on this hub yet",
                message.id,
            ),
        )


async def _serve_booth(hub: Hub, ws: web.WebSocketResponse, booth: Booth) -> None:
    booth_id = booth.booth_id
    async for msg in ws:
        if msg.type is WSMsgType.ERROR:
            log.info("booth %s: connection error (%s)", booth_id, type(ws.exception()).__name__)
            break
        try:
            message = protocol.parse(_frame_text(msg), sender="booth")
        except BadMessage as exc:
            await _refuse(ws, exc, booth_id)
            continue
        log.debug("booth %s sent %s", booth_id, message.log_fields())
        try:
            await _handle(hub, ws, booth, message)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("booth %s: failed to handle %s", booth_id, message.TYPE)
            text = f"{message.TYPE}: the hub failed ({type(exc).__name__}); try again"
            await _send(ws, _hub_error(ErrorCode.INTERNAL, text, message.id))


async def booth_socket(request: web.Request) -> web.StreamResponse:
    """``GET /booth``: one booth's connection, from hello to close."""
    hub = request.app[_HUB_KEY]
    ws = web.WebSocketResponse(max_msg_size=WS_MAX_MSG_SIZE, heartbeat=30.0)
    await ws.prepare(request)
    booth = await _hello(hub, ws)
    if booth is None:
        await ws.close()
        return ws
    booth_id = booth.booth_id
    old = hub.connections.get(booth_id)
    hub.connections[booth_id] = ws
    status = hub.booths.get(booth_id)
    if status is None:
        hub.booths[booth_id] = BoothStatus(booth)
    else:
        status.booth, status.online = booth, True
    if old is not None and not old.closed:
        log.info("booth %s connected again; closing its older connection", booth_id)
        await old.close(message=b"replaced by a newer connection")
    try:
        await _serve_booth(hub, ws, booth)
    finally:
        if hub.connections.get(booth_id) is ws:  # not replaced by a newer connection
            del hub.connections[booth_id]
            hub.booths[booth_id].online = False
            await hub.remove_from_queue(booth_id)
            log.info("booth %s disconnected", booth_id)
        await ws.close()
    return ws


def create_app(
    store: Store, *, turn: TurnConfig | None, clock: Clock = time.time
) -> web.Application:
    """The hub's web application; its :class:`Hub` is ``hub_of(app)``."""
    app = web.Application()
    app[_HUB_KEY] = Hub(store=store, turn=turn, clock=clock)
    app.router.add_get("/booth", booth_socket)
    return app


def hub_of(app: web.Application) -> Hub:
    """The :class:`Hub` of an app made by :func:`create_app`."""
    return app[_HUB_KEY]


# --------------------------------------------------------------------- TLS


def certificate_sha256(cert_pem: bytes) -> str:
    """The SHA-256 of a PEM certificate's DER form, as 64 lowercase hex digits."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = x509.load_pem_x509_certificate(cert_pem)
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def dev_certificate(directory: Path) -> tuple[Path, Path, str]:
    """A self-signed certificate for localhost and 127.0.0.1, made once and then reused.

    Returns the certificate's path, the key's path (mode 0600) and the
    certificate's SHA-256 fingerprint for a booth's ``[hub] certificate_sha256``.
    For development only: a clinic's hub uses a certificate it was issued.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = directory / DEV_CERT_NAME, directory / DEV_KEY_NAME
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path, certificate_sha256(cert_path.read_bytes())
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clinic-hub dev")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(cert_pem)
    return cert_path, key_path, certificate_sha256(cert_pem)
