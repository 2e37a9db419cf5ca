"""The booth's one connection to its clinic hub (``clinic/server.py``'s ``/booth``).

:class:`HubLink` keeps a WebSocket to ``[hub] url`` open for as long as it
runs: it connects over TLS, **pins** the hub's certificate (the SHA-256 of its
DER bytes must equal ``[hub] certificate_sha256``, whatever CA signed it, and a
certificate that does not match is dropped before a byte of HTTP is sent),
says ``hello`` with the booth's credential and waits for ``welcome``. When the
connection fails or drops it tries again after an exponential backoff with
jitter (0.5 s doubling up to 30 s), and tells the visit through ``on_event``:
:class:`~kiosk.session.NetworkLost` when the hub is lost,
:class:`~kiosk.session.NetworkRestored` when a ``welcome`` comes again.

It is two of the controller's ports:

* :class:`~kiosk.controller.StaffAlerts`: :meth:`HubLink.alert` puts an
  ``alert`` in an outbox that is sent whenever the hub is connected, and again
  after every reconnect, until an ``alert_ack`` for its ``alert_id`` arrives.
  An alert is never dropped. Given an :class:`~kiosk.call.outbox.OutboxFile`
  the outbox is also kept on disk, so a restart while offline loses none.
* the queue half of :class:`~kiosk.controller.CallPort`: :meth:`HubLink.join_queue`
  and :meth:`HubLink.leave_queue` keep the booth's place in the waiting room
  (the hub forgets a place when a booth disconnects, so the request is sent
  again after a reconnect); ``code_refused`` becomes
  :class:`~kiosk.session.CodeRefused`. The call itself is
  :class:`~kiosk.call.engine.CallEngine`'s, which signals through this link:
  it sets :attr:`HubLink.on_call` to receive ``call_started``, ``offer``,
  ``answer``, ``call_state``, ``call_ended`` and ``error unknown_call``, and
  sends with :meth:`HubLink.send`. Without an engine the call methods here
  are no-ops, and a ``call_ended`` for the queue place still reaches the visit.

While a call is live (:attr:`HubLink.in_call`) the reconnect backoff is
capped at :data:`CALL_BACKOFF_MAX`, so a call whose hub link dropped is back
within seconds of the network, well inside the hub's grace for it.

Logs name message types, ids and error codes only (``log_fields()``), never
what a message carried: appointment codes and the token stay out of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final

import aiohttp

from clinic import protocol
from clinic.protocol import (
    Alert,
    AlertAck,
    AlertKind,
    AlertStatus,
    Answer,
    BadMessage,
    BoothState,
    CallEnded,
    CallStarted,
    CallState,
    CodeRefused,
    Door,
    ErrorCode,
    Hello,
    JoinQueue,
    LeaveQueue,
    Message,
    Offer,
    Ping,
    Pong,
    Presence,
    Queued,
    Welcome,
    new_id,
)
from kiosk import __version__, config, session
from kiosk.call.outbox import OutboxFile
from kiosk.controller import Visit

_log = logging.getLogger(__name__)

BACKOFF_FIRST: Final = 0.5
"""Seconds before the first retry; doubled after every failed attempt ..."""
BACKOFF_MAX: Final = 30.0
"""... up to this."""
CALL_BACKOFF_MAX: Final = 2.0
"""... or up to this while a call is live: the call must be rebuilt within seconds."""
WELCOME_TIMEOUT: Final = 10.0
"""Seconds the hub has to answer ``hello``."""
HEARTBEAT: Final = 20.0
"""WebSocket ping interval: a hub that stops answering is noticed within about this."""

EventSink = Callable[[session.Event], None]
Clock = Callable[[], float]
CallHandler = Callable[[Message], Awaitable[None]]

_CALL_MESSAGES: Final = (CallStarted, Offer, Answer, CallState, CallEnded)

_ENDS: Final = frozenset(
    {
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSING,
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.ERROR,
    }
)


class _HelloRefusedError(Exception):
    """The hub did not answer ``hello`` with ``welcome``."""


class HubLink:
    """The hub connection: reconnects by itself, queues alerts, keeps the queue place.

    Call :meth:`start` on the booth's loop and :meth:`close` when the booth
    stops. ``on_event`` is called on the loop (``Controller.post`` fits).
    """

    def __init__(
        self,
        hub: config.Hub,
        booth_id: str,
        token: str,
        *,
        site: config.Site,
        on_event: EventSink,
        clock: Clock = time.time,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        call_backoff_max: float = CALL_BACKOFF_MAX,
        welcome_timeout: float = WELCOME_TIMEOUT,
        heartbeat: float = HEARTBEAT,
        rng: Callable[[], float] = random.random,
        outbox_file: OutboxFile | None = None,
    ) -> None:
        self.url = hub.url
        self._pin = aiohttp.Fingerprint(bytes.fromhex(hub.certificate_sha256))
        self.booth_id = booth_id
        self._token = token
        self._site = protocol.Site.fitted(
            name=site.name, street_address=site.street_address, room=site.room
        )
        self._on_event = on_event
        self._clock = clock
        self._backoff_first = backoff_first
        self._backoff_max = backoff_max
        self._call_backoff_max = call_backoff_max
        self._welcome_timeout = welcome_timeout
        self._heartbeat = heartbeat
        self._rng = rng
        self._outbox_file = outbox_file
        self.outbox: dict[str, Alert] = outbox_file.load() if outbox_file is not None else {}
        self._saving: asyncio.Task[None] | None = None
        self._save_again = False
        """Alerts not yet received by the hub, by alert id, oldest first."""
        self.position: int | None = None
        """The booth's place in the waiting queue (1 is next), or None."""
        self._wanted: JoinQueue | None = None  # the queue request to (re)send
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._outbox_changed = asyncio.Event()
        self._online = True  # as the visit starts out believing
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_call = False
        self._presence: tuple[BoothState, Door] | None = None
        self._hurry = asyncio.Event()  # wakes a long backoff when a call goes live
        self.on_call: CallHandler | None = None
        """Where call messages go (``CallEngine.on_hub_message``); awaited on the receive loop."""

    # ------------------------------------------------------------ running

    @property
    def connected(self) -> bool:
        """True between ``welcome`` and the connection's end."""
        return self._ws is not None and not self._ws.closed

    @property
    def in_call(self) -> bool:
        """Set by the call engine while a call is live: reconnects are then retried quickly."""
        return self._in_call

    @in_call.setter
    def in_call(self, value: bool) -> None:
        self._in_call = value
        if value:
            self._hurry.set()

    def start(self) -> None:
        """Start connecting (and reconnecting) in the background; call on the loop."""
        if self._task is not None:
            raise RuntimeError("the hub link is already running")
        self._session = aiohttp.ClientSession()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hub-link")

    def _persist(self) -> None:
        """Write the outbox to its file off the loop; writes never overlap, the last wins."""
        if self._outbox_file is None:
            return
        if self._saving is not None and not self._saving.done():
            self._save_again = True
            return
        self._saving = asyncio.get_running_loop().create_task(self._save())

    async def _save(self) -> None:
        assert self._outbox_file is not None
        while True:
            self._save_again = False
            try:
                await asyncio.to_thread(self._outbox_file.save, list(self.outbox.values()))
            except OSError as exc:  # the alert still goes out from memory
                _log.error("alert outbox cannot be written (%s)", exc.strerror)
            if not self._save_again:
                return

    async def close(self) -> None:
        """Disconnect and stop; alerts still in the outbox stay there (and in its file)."""
        if self._saving is not None:
            await self._saving
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        session_, self._session = self._session, None
        if session_ is not None:
            await session_.close()

    async def _run(self) -> None:
        failures = 0
        while True:
            welcomed = False
            try:
                welcomed = await self._connect_once()
            except aiohttp.ServerFingerprintMismatch:
                _log.error(
                    "hub %s: its certificate does not match [hub] certificate_sha256; refused it",
                    self.url,
                )
            except _HelloRefusedError as exc:
                _log.error("hub %s: hello refused (%s)", self.url, exc)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                _log.info("hub %s: cannot connect (%s)", self.url, type(exc).__name__)
            except Exception:  # a bug here must not stop alerts from being retried
                _log.exception("hub %s: the connection failed", self.url)
            self._lost()
            failures = 1 if welcomed else failures + 1
            self._hurry.clear()
            with contextlib.suppress(TimeoutError):  # a call going live cuts the wait short
                await asyncio.wait_for(self._hurry.wait(), self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed attempts in a row: half to all of the step."""
        cap = min(self._backoff_max, self._call_backoff_max) if self._in_call else self._backoff_max
        step: float = min(cap, self._backoff_first * 2.0 ** (failures - 1))
        return step * (0.5 + 0.5 * self._rng())

    def _lost(self) -> None:
        self._ws = None
        self.position = None
        if self._online:
            self._online = False
            _log.warning("hub %s: lost", self.url)
            self._on_event(session.NetworkLost())

    async def _connect_once(self) -> bool:
        """One connection from connect to close; True when ``welcome`` came."""
        assert self._session is not None
        async with self._session.ws_connect(
            self.url, ssl=self._pin, heartbeat=self._heartbeat, autoping=True
        ) as ws:
            await self._hello(ws)
            self._ws = ws
            _log.info("hub %s: connected", self.url)
            if not self._online:
                self._online = True
                self._on_event(session.NetworkRestored())
            if self._presence is not None:  # the hub starts every booth as idle, door closed
                await self._send(ws, self._presence_message())
            if self._wanted is not None:  # the hub forgot our place when we went
                await self._send(ws, self._rejoin(self._wanted))
            sender = asyncio.get_running_loop().create_task(self._send_outbox(ws))
            try:
                await self._receive(ws)
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await sender
            return True

    async def _hello(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        hello = Hello(id=new_id(), booth_id=self.booth_id, token=self._token, firmware=__version__)
        await self._send(ws, hello)
        msg = await ws.receive(timeout=self._welcome_timeout)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise _HelloRefusedError(f"connection ended: {msg.type.name}")
        try:
            reply = protocol.parse(msg.data, sender="hub")
        except BadMessage as exc:
            raise _HelloRefusedError(f"bad reply: {exc.code.value}") from None
        if isinstance(reply, protocol.Error):
            raise _HelloRefusedError(reply.code.value)
        if not isinstance(reply, Welcome):
            raise _HelloRefusedError(f"got {reply.TYPE}, not welcome")

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, message: Message) -> None:
        _log.debug("to hub: %s", message.log_fields())
        await ws.send_str(protocol.encode(message))

    async def _send_outbox(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send every alert once on this connection, as they come, until acknowledged."""
        sent: set[str] = set()
        while True:
            self._outbox_changed.clear()
            for alert_id, alert in list(self.outbox.items()):
                if alert_id not in sent:
                    await self._send(ws, alert)
                    sent.add(alert_id)
            await self._outbox_changed.wait()

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            msg = await ws.receive()
            if msg.type in _ENDS:
                return
            if msg.type is not aiohttp.WSMsgType.TEXT:
                _log.info("hub sent a %s frame; ignored", msg.type.name)
                continue
            try:
                message = protocol.parse(msg.data, sender="hub")
            except BadMessage as exc:
                _log.warning("refused a message from the hub: %s", exc.code.value)
                continue
            _log.debug("from hub: %s", message.log_fields())
            await self._handle(ws, message)

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, message: Message) -> None:
        if isinstance(message, CallStarted):
            self._wanted = None  # the hub took us out of the queue: never rejoin during a call
            self.position = None
        if isinstance(message, _CALL_MESSAGES):
            if self.on_call is not None:
                await self._to_engine(message)
            elif isinstance(message, CallEnded):
                self._wanted = None
                self.position = None
                self._on_event(session.CallEnded())
            else:
                _log.info("hub message %s: no call engine", message.TYPE)
        elif isinstance(message, AlertAck):
            if self.outbox.pop(message.alert_id, None) is not None:
                _log.info("alert %s received by the hub", message.alert_id)
                self._persist()
            if message.status is AlertStatus.ACKNOWLEDGED:
                _log.info("alert %s acknowledged by staff", message.alert_id)
        elif isinstance(message, Queued):
            self.position = message.position
        elif isinstance(message, CodeRefused):
            self._wanted = None
            self.position = None
            self._on_event(session.CodeRefused())
        elif isinstance(message, Ping):
            await self._send(ws, Pong(id=new_id(), in_reply_to=message.id))
        elif isinstance(message, protocol.Error):
            _log.warning(
                "hub error %s (in reply to %s)", message.code.value, message.in_reply_to or "-"
            )
            if message.code is ErrorCode.UNKNOWN_CALL and self.on_call is not None:
                await self._to_engine(message)
        else:
            _log.debug("hub message %s not handled yet", message.TYPE)

    async def _to_engine(self, message: Message) -> None:
        assert self.on_call is not None
        try:
            await self.on_call(message)
        except Exception as exc:  # the call engine must not take the hub link down with it
            _log.error("the call engine failed on %s (%s)", message.TYPE, type(exc).__name__)

    async def set_presence(self, state: BoothState, door: Door) -> None:
        """Tell the hub what the booth is doing; kept and told again after every reconnect."""
        if self._presence == (state, door):
            return
        self._presence = (state, door)
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send(ws, self._presence_message())

    def _presence_message(self) -> Presence:
        assert self._presence is not None
        return Presence(id=new_id(), state=self._presence[0], door=self._presence[1])

    async def send(self, message: Message) -> bool:
        """Send ``message`` now if the hub is connected; False (nothing sent) if not."""
        ws = self._ws
        if ws is None or ws.closed:
            return False
        try:
            await self._send(ws, message)
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            _log.info("to hub: %s not sent (%s)", message.TYPE, type(exc).__name__)
            return False
        return True

    # ------------------------------------------------------ StaffAlerts port

    def alert(self, kind: str) -> None:
        """Queue an alert for the hub; sent now if connected, else after reconnecting.

        A kind the protocol knows goes out unchanged, ``updates_blocked`` too, even to a
        hub too old to accept it: a maintenance alert never turns into an emergency.
        Only a word the booth itself does not know is sent as an emergency.
        """
        try:
            alert_kind = AlertKind(kind)
        except ValueError:  # a word this booth does not know: an alert must always go out
            _log.error("unknown alert kind; sent as %s", AlertKind.EMERGENCY.value)
            alert_kind = AlertKind.EMERGENCY
        alert = Alert(
            id=new_id(),
            alert_id=new_id(),
            booth_id=self.booth_id,
            kind=alert_kind,
            raised_at=datetime.fromtimestamp(self._clock(), UTC),
            site=self._site,
        )
        self.outbox[alert.alert_id] = alert
        self._persist()
        _log.warning("alert %s (%s) queued for the hub", alert.alert_id, alert_kind.value)
        self._outbox_changed.set()

    # --------------------------------------------------------- CallPort port

    async def join_queue(self, visit: Visit) -> None:
        """Ask for a place in the waiting room; kept and re-sent after a reconnect."""
        self._wanted = JoinQueue(
            id=new_id(),
            language=visit.language,
            audio_only=visit.audio_only,
            appointment_code=visit.appointment_code,
        )
        ws = self._ws
        if ws is not None and not ws.closed:
            await self._send(ws, self._wanted)
        else:
            _log.info("join_queue: hub not connected; sent when it is")

    async def leave_queue(self) -> None:
        """Give up the place in the waiting room (and forget the appointment code)."""
        self._wanted = None
        self.position = None
        ws = self._ws
        if ws is not None and not ws.closed:
            await self._send(ws, LeaveQueue(id=new_id()))

    @staticmethod
    def _rejoin(wanted: JoinQueue) -> JoinQueue:
        return JoinQueue(
            id=new_id(),
            language=wanted.language,
            audio_only=wanted.audio_only,
            appointment_code=wanted.appointment_code,
        )

    # The call itself is CallEngine's; without one these are no-ops.

    async def accept_call(self) -> None:
        _log.debug("accept_call: no call engine")

    async def end_call(self) -> None:
        _log.debug("end_call: no call engine")

    async def rebuild_call(self) -> None:
        _log.debug("rebuild_call: no call engine")

    async def pause_media(self) -> None:
        _log.debug("pause_media: no call engine")

    async def resume_media(self) -> None:
        _log.debug("resume_media: no call engine")

    async def set_microphone(self, on: bool) -> None:
        _log.debug("set_microphone: no call engine")

    async def set_camera(self, on: bool) -> None:
        _log.debug("set_camera: no call engine")

    async def tell_clinician(self, what: str) -> None:
        _log.debug("tell_clinician: no call engine")
