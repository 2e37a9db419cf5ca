"""The hub: booths at ``/booth``, clinicians at ``/console``, calls between them.

One connection per booth. Its first message must be ``hello`` with the
booth's credential (checked with :meth:`Store.verify_booth`); anything else
gets an ``error`` (``hello_first``, ``unauthorized`` or the parser's code) and
the connection is closed. After ``welcome``, every text frame goes through
:func:`clinic.protocol.parse`; a refused message gets an ``error`` reply and
the connection stays open, whatever was sent. The clinician side (sign-in,
the console page, ``/console``) is :mod:`clinic.console`; both sides share one
:class:`Hub`.

What lives here is in memory (:class:`Hub`): which booths and consoles are
online, booths' state and door, the waiting queue and the calls. It is rebuilt
as booths and consoles reconnect. What must survive a restart (alerts, the
code-guessing throttle, sessions) is in the :class:`~clinic.store.Store`,
called through :func:`asyncio.to_thread`.

Calls follow ``docs/calls.md``: the hub pairs a waiting booth with the
console that answers it, mints TURN credentials per call and party, relays
``offer``/``answer``/``call_state`` only between the two parties of a call,
and keeps a call for :data:`CALL_GRACE` seconds when the booth's link drops
(a console that drops ends its call at once).

Logging names message types, ids and error codes only (``log_fields()``),
never what a message carried (SDP, codes, tokens).

Frame sizes: aiohttp's ``max_msg_size`` is :data:`WS_MAX_MSG_SIZE`, twice the
protocol's 64 KiB cap. A frame over the cap but within that gets a
``too_big`` error and the connection stays open; a bigger one is never read
into memory, and aiohttp closes the connection with 1009 (message too big).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import hashlib
import ipaddress
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from clinic import protocol
from clinic.protocol import (
    MAX_MESSAGE_BYTES,
    AckAlert,
    AlertAck,
    AlertKind,
    AlertStatus,
    Answer,
    BadMessage,
    BoothInfo,
    BoothState,
    CallEnded,
    CallEvent,
    CallStarted,
    CallState,
    CodeRefused,
    Door,
    EndCall,
    EndReason,
    ErrorCode,
    Hello,
    IceServer,
    JoinQueue,
    LeaveQueue,
    Message,
    Offer,
    Ping,
    Pong,
    Presence,
    Queued,
    QueueEntry,
    Site,
    Snapshot,
    Welcome,
    error_reply,
    new_id,
)
from clinic.store import Alert as StoredAlert
from clinic.store import Booth, Clinician, NotFoundError, Store
from clinic.turn import TurnConfig

log = logging.getLogger(__name__)

WS_MAX_MSG_SIZE: Final = 2 * MAX_MESSAGE_BYTES
"""aiohttp's limit; between the cap and this a frame gets ``too_big`` and the connection lives."""
HELLO_TIMEOUT: Final = 10.0
"""Seconds a new connection has to send ``hello``."""
MAX_QUEUE: Final = 100
"""A snapshot lists at most 100 waiting booths."""
CALL_GRACE: Final = 60.0
"""Seconds a call outlives its booth's dropped hub link, for the booth to come back."""
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

    def visible_to(self, username: str | None) -> bool:
        """An appointment's entry is that clinician's alone; ``None`` (the hub itself) sees all."""
        return username is None or self.clinician is None or self.clinician == username


@dataclass(eq=False)
class Console:
    """One signed-in clinician's console connection."""

    ws: web.WebSocketResponse
    user: Clinician
    session_key: bytes
    """SHA-256 of the session token, so signing out closes this connection."""
    turn_user: str = field(default_factory=lambda: f"console-{secrets.token_hex(8)}")
    """Names this console in coturn's log without naming the clinician."""
    call: Call | None = None


@dataclass(eq=False)
class Call:
    """A booth and a console in a call; media flows between them, never through the hub."""

    call_id: str
    booth_id: str
    console: Console
    audio_only: bool
    booth_online: bool = True
    grace: asyncio.Task[None] | None = None
    """Ends the call when the booth's link stays down past the grace."""


@dataclass
class Hub:
    """The hub's memory of booths, consoles, the queue and calls, shared by both sides."""

    store: Store
    turn: TurnConfig | None = None
    clock: Clock = time.time
    call_grace: float = CALL_GRACE
    booths: dict[str, BoothStatus] = field(default_factory=dict)
    queue: list[Waiting] = field(default_factory=list)
    connections: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    consoles: list[Console] = field(default_factory=list)
    calls: dict[str, Call] = field(default_factory=dict)

    # -------------------------------------------------- what consoles see

    def snapshot(self, viewer: str | None = None) -> Snapshot:
        """Every booth heard of since the hub started, and the queue as ``viewer`` may see it.

        ``viewer`` is a clinician's username: an entry with an appointment is
        shown to that appointment's clinician only. ``None`` shows everything
        (for the hub itself and tests, never for a console). A booth in a call
        shows as ``in_use`` unless it reports an emergency.
        """
        in_call = {c.booth_id for c in self.calls.values()}
        booths = tuple(
            BoothInfo(
                booth_id=s.booth.booth_id,
                name=protocol.fit_text(s.booth.name, 100),
                site=protocol.fit_text(s.booth.site, 100),
                online=s.online,
                state=(
                    BoothState.IN_USE
                    if s.booth.booth_id in in_call and s.state is not BoothState.EMERGENCY
                    else s.state
                ),
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
            if w.visible_to(viewer)
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

    def call_of_booth(self, booth_id: str) -> Call | None:
        """The call a booth is in (its link may be down, within the grace), or None."""
        return next((c for c in self.calls.values() if c.booth_id == booth_id), None)

    # ------------------------------------------------------- sending

    async def to_booth(self, booth_id: str, message: Message) -> bool:
        """Send to a booth if it is online; False when it is not (or its link just failed)."""
        ws = self.connections.get(booth_id)
        return ws is not None and await _deliver(ws, message)

    async def to_consoles(self, message: Message) -> None:
        """The same message to every console at once."""
        await asyncio.gather(*(_deliver(c.ws, message) for c in list(self.consoles)))

    async def publish(self) -> None:
        """A fresh snapshot to every console, each as its clinician may see it."""
        await asyncio.gather(
            *(_deliver(c.ws, self.snapshot(c.user.username)) for c in list(self.consoles))
        )

    def ice_servers(self, user: str) -> tuple[IceServer, ...]:
        """TURN credentials minted now for ``user`` (a booth id or a console's turn id)."""
        if self.turn is None:
            return ()
        creds = self.turn.credentials_for(user, self.clock())
        return (
            IceServer(
                urls=creds.urls,
                username=creds.username,
                credential=creds.credential,
                ttl=creds.ttl,
            ),
        )

    # ----------------------------------------------------------- queue

    async def remove_from_queue(self, booth_id: str) -> bool:
        """Take a booth out of the queue and tell those behind it their new place."""
        index = self.position(booth_id)
        if index is None:
            return False
        del self.queue[index - 1]
        for i, w in enumerate(self.queue[index - 1 :], start=index):
            await self.to_booth(w.booth_id, Queued(id=new_id(), position=i))
        return True

    # ----------------------------------------------------------- calls

    async def answer(self, console: Console, msg: protocol.AnswerBooth) -> protocol.Error | None:
        """A console takes a waiting booth: ``call_started`` to both, or the refusal."""
        if console.call is not None:
            return _hub_error(
                ErrorCode.BUSY, "answer_booth: you are already in a call; end it first", msg.id
            )
        position = self.position(msg.booth_id)
        if position is None or not self.queue[position - 1].visible_to(console.user.username):
            return _hub_error(
                ErrorCode.NOT_WAITING,
                "answer_booth: that booth is not waiting (it left the queue, "
                "or another clinician answered it)",
                msg.id,
            )
        # No await between the checks above and this: two consoles cannot both take it.
        entry = self.queue.pop(position - 1)
        call = Call(new_id(), entry.booth_id, console, entry.audio_only)
        self.calls[call.call_id] = call
        console.call = call
        log.info("call %s: booth %s answered", call.call_id, call.booth_id)
        for i, w in enumerate(self.queue[position - 1 :], start=position):
            await self.to_booth(w.booth_id, Queued(id=new_id(), position=i))
        await self.to_booth(call.booth_id, self._started(call, call.booth_id))
        await _deliver(console.ws, self._started(call, console.turn_user))
        await self.publish()
        return None

    def _started(self, call: Call, turn_user: str) -> CallStarted:
        return CallStarted(
            id=new_id(),
            call_id=call.call_id,
            booth_id=call.booth_id,
            audio_only=call.audio_only,
            ice_servers=self.ice_servers(turn_user),
        )

    async def end_call(self, call: Call, reason: EndReason) -> None:
        """Forget a call and tell both parties why it ended (those still connected)."""
        if self.calls.get(call.call_id) is not call:
            return
        del self.calls[call.call_id]
        if call.console.call is call:
            call.console.call = None
        if call.grace is not None and call.grace is not asyncio.current_task():
            call.grace.cancel()
        log.info("call %s ended: %s", call.call_id, reason.value)
        ended = CallEnded(id=new_id(), call_id=call.call_id, reason=reason)
        if call.booth_online:
            await self.to_booth(call.booth_id, ended)
        await _deliver(call.console.ws, ended)
        await self.publish()

    async def booth_dropped(self, booth_id: str) -> None:
        """A booth's link went down: out of the queue; its call waits for the grace."""
        self.booths[booth_id].online = False
        await self.remove_from_queue(booth_id)
        call = self.call_of_booth(booth_id)
        if call is not None and call.booth_online:
            call.booth_online = False
            log.info("call %s: booth offline; keeping the call %s s", call.call_id, self.call_grace)
            call.grace = asyncio.create_task(self._grace(call))
            await _deliver(
                call.console.ws,
                CallState(id=new_id(), call_id=call.call_id, event=CallEvent.BOOTH_OFFLINE),
            )
        await self.publish()

    async def _grace(self, call: Call) -> None:
        await asyncio.sleep(self.call_grace)
        if not call.booth_online:
            await self.end_call(call, EndReason.BOOTH_DISCONNECTED)

    async def booth_back(self, booth_id: str) -> None:
        """A booth said hello: if it is in a call, give it the call again (fresh credentials)."""
        call = self.call_of_booth(booth_id)
        if call is not None:
            was_offline = not call.booth_online
            call.booth_online = True
            if call.grace is not None:
                call.grace.cancel()
                call.grace = None
            log.info("call %s: booth back", call.call_id)
            await self.to_booth(booth_id, self._started(call, booth_id))
            if was_offline:
                await _deliver(
                    call.console.ws,
                    CallState(id=new_id(), call_id=call.call_id, event=CallEvent.BOOTH_ONLINE),
                )
        await self.publish()

    async def console_gone(self, console: Console) -> None:
        """A console closed: its call ends at once, for the booth not to wait in vain."""
        with contextlib.suppress(ValueError):
            self.consoles.remove(console)
        if console.call is not None:
            await self.end_call(console.call, EndReason.CLINICIAN_DISCONNECTED)
        else:
            await self.publish()

    async def relay(
        self,
        message: Offer | Answer | CallState | EndCall,
        *,
        booth_id: str | None = None,
        console: Console | None = None,
    ) -> protocol.Error | None:
        """Pass a call message to the call's other party, or end the call on ``end_call``.

        The sender is ``booth_id`` or ``console``; a call it is not a party to
        gets ``unknown_call``, as if there were no such call.
        """
        call = self.calls.get(message.call_id)
        mine = call is not None and (
            call.booth_id == booth_id if console is None else call.console is console
        )
        if call is None or not mine:
            log.info("refused %s: unknown call", message.TYPE)
            return _hub_error(
                ErrorCode.UNKNOWN_CALL,
                f"{message.TYPE}: there is no call with that call_id "
                "(it ended, or it is not yours)",
                message.id,
            )
        if isinstance(message, EndCall):
            reason = EndReason.CLINICIAN_ENDED if console else EndReason.RESIDENT_ENDED
            await self.end_call(call, reason)
            return None
        relayed = dataclasses.replace(message, id=new_id())
        if console is None:
            await _deliver(call.console.ws, relayed)
        elif not await self.to_booth(call.booth_id, relayed):
            log.info("call %s: booth offline; %s not relayed", call.call_id, message.TYPE)
        return None

    # ---------------------------------------------------------- alerts

    async def alert_from_booth(self, booth: Booth, message: protocol.Alert) -> None:
        """Keep the alert, confirm it to the booth, and sound it on every console."""
        first = await asyncio.to_thread(
            self.store.record_alert,
            booth.booth_id,
            message.alert_id,
            message.kind.value,
            message.raised_at.timestamp(),
            self.clock(),
        )
        log.warning(
            "ALERT %s (%s) from booth %s (%s)",
            message.alert_id,
            message.kind.value,
            booth.booth_id,
            "new" if first else "repeated",
        )
        await self.to_booth(
            booth.booth_id,
            AlertAck(id=new_id(), alert_id=message.alert_id, status=AlertStatus.RECEIVED),
        )
        if first:
            stored = StoredAlert(
                booth,
                message.alert_id,
                message.kind.value,
                message.raised_at.timestamp(),
                self.clock(),
            )
            await self.to_consoles(alert_message(stored))
            return
        unacked = await self.unacked_alerts()
        if not any(_same_alert(a, booth.booth_id, message.alert_id) for a in unacked):
            # Acknowledged while the booth was away: tell it, so it can stop showing it.
            await self.to_booth(
                booth.booth_id,
                AlertAck(id=new_id(), alert_id=message.alert_id, status=AlertStatus.ACKNOWLEDGED),
            )

    async def ack_alert(self, console: Console, msg: AckAlert) -> protocol.Error | None:
        """A staff member acknowledged an alert: record who, tell every console and the booth.

        Alert ids are the booths' own and unique per booth; should two booths'
        unacknowledged alerts share one, both are acknowledged, which is what
        every console (keyed by the id the ack names) then shows.
        """
        found = [a for a in await self.unacked_alerts() if a.alert_id == msg.alert_id]
        if not found:
            return _hub_error(
                ErrorCode.UNKNOWN_ALERT,
                "ack_alert: no unacknowledged alert has that alert_id "
                "(someone may have acknowledged it already)",
                msg.id,
            )
        now = self.clock()
        for alert in found:
            with contextlib.suppress(NotFoundError):
                await asyncio.to_thread(
                    self.store.ack_alert,
                    alert.booth.booth_id,
                    alert.alert_id,
                    console.user.username,
                    now,
                )
            log.warning("alert %s from booth %s acknowledged", alert.alert_id, alert.booth.booth_id)
        ack = AlertAck(id=new_id(), alert_id=msg.alert_id, status=AlertStatus.ACKNOWLEDGED)
        await self.to_consoles(ack)
        for booth_id in {a.booth.booth_id for a in found}:
            await self.to_booth(booth_id, dataclasses.replace(ack, id=new_id()))
        return None

    # -------------------------------------------------------- shutdown

    async def close(self) -> None:
        """The hub is stopping: end every call (``hub_closing``) and close every connection."""
        for call in list(self.calls.values()):
            await self.end_call(call, EndReason.HUB_CLOSING)
        sockets = [c.ws for c in self.consoles] + list(self.connections.values())
        for ws in sockets:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"the hub is stopping")


def _same_alert(alert: StoredAlert, booth_id: str, alert_id: str) -> bool:
    return alert.booth.booth_id == booth_id and alert.alert_id == alert_id


def _utc(seconds: float) -> datetime.datetime:
    """A stored time as a UTC datetime; one just past datetime's range is kept at its edge.

    A booth's ``raised_at`` may be any valid protocol time (a Pi has no clock to trust), and
    stored as a float 9999-12-31T23:59:59.999999Z rounds into the year 10000: the alert must
    still reach the consoles.
    """
    try:
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        edge = datetime.datetime.max if seconds > 0 else datetime.datetime.min
        return edge.replace(tzinfo=datetime.UTC)


def alert_message(alert: StoredAlert) -> protocol.Alert:
    """An alert as consoles get it: where to send help comes from the hub's booth record."""
    booth = alert.booth
    try:
        kind = AlertKind(alert.kind)
    except ValueError:  # a kind from a newer booth: still an alert to sound
        kind = AlertKind.EMERGENCY
    return protocol.Alert(
        id=new_id(),
        alert_id=alert.alert_id,
        booth_id=booth.booth_id,
        kind=kind,
        raised_at=_utc(alert.raised_at),
        site=Site.fitted(name=booth.site, street_address=booth.address, room=booth.room),
    )


HUB_KEY: Final = web.AppKey("hub", Hub)


# ------------------------------------------------------------ the socket


async def _send(ws: web.WebSocketResponse, message: Message) -> None:
    await ws.send_str(protocol.encode(message))


async def _deliver(ws: web.WebSocketResponse, message: Message) -> bool:
    """Send unless the connection is closing; False if it was (its own handler cleans up)."""
    if ws.closed:
        return False
    try:
        await _send(ws, message)
    except (ConnectionError, RuntimeError):
        return False
    return True


async def _refuse(ws: web.WebSocketResponse, exc: BadMessage, who: str) -> None:
    log.info(
        "refused a message from %s: %s (type %s)",
        who,
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
        await _refuse(ws, exc, "booth (not identified)")
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
    await _send(ws, Welcome(id=new_id(), ice_servers=hub.ice_servers(booth.booth_id)))
    log.info("booth %s connected (firmware %s)", booth.booth_id, message.firmware)
    return booth


async def _join(hub: Hub, ws: web.WebSocketResponse, booth_id: str, msg: JoinQueue) -> None:
    if hub.call_of_booth(booth_id) is not None:
        text = "join_queue: this booth is still in a call; end it (end_call) first"
        await _send(ws, _hub_error(ErrorCode.BUSY, text, msg.id))
        return
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
    await hub.publish()


async def _handle(hub: Hub, ws: web.WebSocketResponse, booth: Booth, message: Message) -> None:
    booth_id = booth.booth_id
    if isinstance(message, Ping):
        await _send(ws, Pong(id=new_id(), in_reply_to=message.id))
    elif isinstance(message, Presence):
        status = hub.booths[booth_id]
        status.state, status.door = message.state, message.door
        await hub.publish()
    elif isinstance(message, JoinQueue):
        await _join(hub, ws, booth_id, message)
    elif isinstance(message, LeaveQueue):
        if await hub.remove_from_queue(booth_id):
            await hub.publish()
    elif isinstance(message, protocol.Alert):
        if message.booth_id != booth_id:  # kept, under the booth that sent it
            log.warning("booth %s sent an alert naming booth %s", booth_id, message.booth_id)
        await hub.alert_from_booth(booth, message)
    elif isinstance(message, Offer | Answer | CallState | EndCall):
        refusal = await hub.relay(message, booth_id=booth_id)
        if refusal is not None:
            await _send(ws, refusal)
    elif isinstance(message, Pong | protocol.Error):
        if isinstance(message, protocol.Error):
            log.info("booth %s reported error %s", booth_id, message.code.value)
    elif isinstance(message, Hello):  # a valid type, but only as a connection's first message
        text = "hello: this connection has said hello already; reconnect to say it again"
        await _send(ws, _hub_error(ErrorCode.NOT_ALLOWED, text, message.id))
    else:  # pragma: no cover - every type a booth may send is handled above
        log.error("booth %s: no handler for %s", booth_id, message.TYPE)


async def _serve_booth(hub: Hub, ws: web.WebSocketResponse, booth: Booth) -> None:
    booth_id = booth.booth_id
    async for msg in ws:
        if msg.type is WSMsgType.ERROR:
            log.info("booth %s: connection error (%s)", booth_id, type(ws.exception()).__name__)
            break
        try:
            message = protocol.parse(_frame_text(msg), sender="booth")
        except BadMessage as exc:
            await _refuse(ws, exc, f"booth {booth_id}")
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
    hub = request.app[HUB_KEY]
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
        await hub.booth_back(booth_id)
        await _serve_booth(hub, ws, booth)
    finally:
        if hub.connections.get(booth_id) is ws:  # not replaced by a newer connection
            del hub.connections[booth_id]
            log.info("booth %s disconnected", booth_id)
            await hub.booth_dropped(booth_id)
        await ws.close()
    return ws


def create_app(
    store: Store,
    *,
    turn: TurnConfig | None,
    clock: Clock = time.time,
    call_grace: float = CALL_GRACE,
) -> web.Application:
    """The hub's web application (booths, sign-in, console); its :class:`Hub` is ``hub_of(app)``.

    ``call_grace`` is how long a call waits for its booth's link to come
    back (:data:`CALL_GRACE`; tests pass a fraction of a second).
    """
    from clinic import console, enroll

    if not call_grace > 0:
        raise ValueError(f"call_grace must be a number of seconds above 0, not {call_grace!r}")
    app = web.Application(
        middlewares=[console.security_headers], client_max_size=console.MAX_BODY_BYTES
    )
    hub = Hub(store=store, turn=turn, clock=clock, call_grace=call_grace)
    for booth in store.all_booths():  # offline until it says hello
        hub.booths[booth.booth_id] = BoothStatus(booth, online=False)
    app[HUB_KEY] = hub
    app.router.add_get("/booth", booth_socket)
    console.add_routes(app)
    enroll.add_routes(app)

    async def on_shutdown(app: web.Application) -> None:
        await hub.close()

    app.on_shutdown.append(on_shutdown)
    return app


def hub_of(app: web.Application) -> Hub:
    """The :class:`Hub` of an app made by :func:`create_app`."""
    return app[HUB_KEY]


# ------------------------------------------------------------ update repository

UPDATE_FOLDERS = ("metadata", "targets")
"""The two folders of a signed update repository (docs/updates.md) served under /updates/."""
_UPDATE_TYPES = {".json": "application/json", ".tar": "application/x-tar"}


def add_update_routes(app: web.Application, repository: Path) -> None:
    """Serve a TUF repository's ``metadata/`` and ``targets/`` read-only under ``/updates/``.

    For ``clinic-hub serve --dev --updates DIR`` (a laptop's booths update from
    it). Only regular files below those two folders, never a listing, never a
    dot file, never a path that leaves the folder (``..``, or a symlink out);
    big files are streamed by aiohttp's FileResponse (which also answers Range,
    so an interrupted bundle download continues). The bytes need no trust:
    booths verify every file against the signed metadata.
    """
    bases = {name: (repository / name).resolve() for name in UPDATE_FOLDERS}

    async def serve_update(request: web.Request) -> web.StreamResponse:
        base = bases.get(request.match_info["folder"])
        parts = request.match_info["path"].split("/")
        if base is None or any(not p or p.startswith(".") or "\\" in p for p in parts):
            raise web.HTTPNotFound()
        path = base.joinpath(*parts).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            raise web.HTTPNotFound()
        kind = _UPDATE_TYPES.get(path.suffix, "application/octet-stream")
        return web.FileResponse(path, headers={"Content-Type": kind, "Cache-Control": "no-cache"})

    app.router.add_get("/updates/{folder}/{path:.+}", serve_update)


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
