"""Protocol fuzzing against the hub over real WebSockets: no crash, no hang, no leak.

Every example runs a fresh hub (a new database, aiohttp ``AppRunner`` on
127.0.0.1 with the dev certificate, as ``tests/clinic/hubtest.py`` does) with
a fuzzed client and healthy neighbours connected at the same time, and sends
the fuzzed client's frames one by one, each followed by a ``ping``:

* random bytes (as binary frames), random text, random JSON values, deep
  nesting, frames around and over the 64 KiB cap (but within aiohttp's limit);
* structurally valid messages of every type (the sender's own and everyone
  else's) and the same messages mutated: fields dropped, retyped, swapped for
  huge strings, unicode, nesting, unknown fields added, ``v`` and ``type``
  changed, ids that name the live call, other booths and alerts, or nothing.

The invariants, for every frame:

* the replies before the ``pong`` are each a message ``protocol.parse(...,
  sender="hub")`` accepts: a refused frame gets exactly one ``error`` with the
  parser's code (and the frame's id when it was readable), an accepted one
  only replies of the kinds its type may get, never ``internal``;
* the ``pong`` comes within :data:`FRAME_TIMEOUT` seconds: nothing hangs and
  the connection stays open;
* no error text and no log record (messages and tracebacks, at DEBUG) ever
  contains :data:`MARKER`, a string put into fuzzed values, or a booth token;
  no log record is an error (an error or a traceback is a handler that broke);
* nothing reaches the event loop's exception handler.

After each sequence a second booth and a console connected all along still
work: they answer pings, and a presence change from the booth reaches the
console's snapshot. The console's ``/console`` socket is fuzzed the same way
(``sender="console"``, signed in), and so is a booth's first frame, before
``hello`` (which is answered with ``welcome`` for the right token, or with one
``error`` and a close).

Each fuzz test has a twin with one protection switched off that must fail:
the booth handler without its try/except around ``parse``, a parser that
repeats keys it was sent in its errors, and a hub that takes any token.

What the fuzzing found is pinned down at the end: an alert whose valid
``raised_at`` rounds past the calendar as a float failed (and then every
console's connect, and ``clinic-hub alerts``), and a second ``hello`` got no
reply but an error in the hub's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import tempfile
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from clinic import protocol, server
from clinic.protocol import (
    MAX_MESSAGE_BYTES,
    MESSAGE_TYPES,
    AlertAck,
    BadMessage,
    BoothState,
    CallEnded,
    CallStarted,
    Choice,
    CodeRefused,
    Door,
    Error,
    ErrorCode,
    Flag,
    Hello,
    Int,
    JoinQueue,
    ListOf,
    Message,
    Obj,
    Ping,
    Pong,
    Presence,
    Queued,
    Snapshot,
    Text,
    Timestamp,
    Welcome,
    new_id,
    schema,
)
from clinic.server import WS_MAX_MSG_SIZE
from clinic.store import Booth, Store
from tests.clinic.hubtest import CODE, Db, Server, Tls, open_db, running

PARSE = protocol.parse
"""The real parser, kept before any twin patches the module."""

MARKER = "Mk~Fz!9"
"""Put into fuzzed values; no error text or log line may ever contain it.

``~`` and ``!`` fit no id, word or version (the fields the hub may log or
repeat), and the uppercase letters keep it from reading as a field name.
"""
TOKEN_MARKER = "Tk~Fz.Q9x~Tk~Fz.Q9x~"
"""Shaped like a valid token (a wrong one): never logged, never repeated."""
FRAME_TIMEOUT = 5.0
"""Seconds the replies to one frame (and the pong after it) may take."""
EXAMPLE_TIMEOUT = 60.0

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Fixed examples (``derandomize``), so CI runs the same ones every time."""
TWIN = settings(
    FUZZ,
    max_examples=40,
    phases=[Phase.generate],  # no shrinking: the twin only has to fail
    report_multiple_bugs=False,
)


# ---------------------------------------------------------------- frames


@dataclass(frozen=True)
class Frame:
    """One WebSocket frame: text (``str``) or binary (``bytes``), with placeholders.

    A placeholder is a JSON string the scenario replaces as it sends the frame:
    ``"@CALL@"`` with the live call's id, ``"@TOKEN1@"`` with booth-1's token.
    """

    data: str | bytes

    def render(self, subs: dict[str, str]) -> str | bytes:
        data = self.data
        for name, value in subs.items():
            old, new = json.dumps(name), json.dumps(value)
            data = (
                data.replace(old, new)
                if isinstance(data, str)
                else data.replace(old.encode(), new.encode())
            )
        return data

    def __repr__(self) -> str:  # Hypothesis prints failing examples: keep them readable
        shown = self.data if len(self.data) <= 300 else self.data[:300]
        more = f" ...({len(self.data)})" if len(self.data) > 300 else ""
        return f"Frame({shown!r}{more})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis's printer
        printer.text(repr(self))


def _dump(value: object, ascii_only: bool) -> str:
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only escaped can it travel
        text = json.dumps(value, ensure_ascii=True)
    return text


def _clip(text: str) -> str:
    """Keep a frame within aiohttp's limit, so the connection is meant to stay open."""
    limit = WS_MAX_MSG_SIZE - 1024
    raw = text.encode("utf-8")
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


_PLAIN = st.characters(exclude_categories=("Cc", "Cs"))
marked = st.tuples(st.text(max_size=8), st.text(max_size=8)).map(lambda ab: ab[0] + MARKER + ab[1])
"""Text with the marker in it (and whatever around it)."""
_marked_plain = st.tuples(st.text(_PLAIN, max_size=8), st.text(_PLAIN, max_size=8)).map(
    lambda ab: ab[0] + MARKER + ab[1]
)
ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
UNICODE = [
    "\u202eevil",  # right-to-left override
    "e\u0301\u0301\u0301",  # combining marks
    "\U0001f6a8" * 3,  # emoji (4 bytes each in UTF-8)
    "\u2028\u2029",  # JavaScript's line breaks
    "\x00",
    "\ud800",  # a lone surrogate: JSON can carry it escaped
    "\ufeff",
    "\uff42\uff4f\uff4f\uff54\uff48\uff0d\uff11",  # "booth-1" in fullwidth
]
TIMES = st.sampled_from(
    [
        "9999-12-31T23:59:59.999999Z",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00.000001Z",
        "1970-01-01T00:00:00Z",
        "2026-11-26T20:05:00Z",
        "2026-02-29T00:00:00Z",  # no such day
    ]
) | st.datetimes(max_value=datetime(9999, 12, 31, 23, 59, 59)).map(
    lambda t: (
        t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{t.microsecond:06d}" if t.microsecond else "") + "Z"
    )
)
SDP = st.one_of(
    st.text(max_size=200).map(lambda s: "v=0\r\n" + s),
    _marked_plain.map(lambda s: "v=0\r\n" + s),
    st.just("v=0\r\no=- 1 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"),
)
Special = Mapping[str, st.SearchStrategy[Any]]
SPECIAL: Special = {
    "call_id": st.sampled_from(["@CALL@", "@CALL@", "no-such-call"]) | ids,
    "booth_id": st.sampled_from(["booth-1", "booth-2", "nobody-here"]),
    "alert_id": st.sampled_from(["emg-0001", "emg-0002"]) | ids,
    "appointment_code": st.sampled_from([CODE, "000000"]),
    "token": st.sampled_from(["@TOKEN1@", TOKEN_MARKER]),
    "in_reply_to": ids,
    "id": ids,
}


def valid_value(spec: Any, name: str, special: Special = SPECIAL) -> st.SearchStrategy[Any]:
    """JSON values the field's spec accepts (mostly: ids may name nothing that exists).

    ``special`` gives the values of some fields by name (ids that exist, placeholders).
    """
    if name in special:
        return special[name]
    if isinstance(spec, Text):
        if spec.line_breaks:
            return SDP
        if spec.pattern is None:
            return st.text(_PLAIN, min_size=1, max_size=min(spec.max_len, 40)) | _marked_plain
        return st.from_regex(spec.pattern, fullmatch=True).filter(
            lambda s: spec.min_len <= len(s) <= spec.max_len
        )
    if isinstance(spec, Int):
        return st.integers(spec.lo, spec.hi) | st.sampled_from([spec.lo, spec.hi])
    if isinstance(spec, Flag):
        return st.booleans()
    if isinstance(spec, Choice):
        return st.sampled_from([m.value for m in spec.enum])
    if isinstance(spec, Timestamp):
        return TIMES
    if isinstance(spec, ListOf):
        item = valid_value(spec.item, name, special)
        return st.lists(item, min_size=spec.lo, max_size=min(spec.hi, 3))
    if isinstance(spec, Obj):
        return valid_object(spec.cls, special=special)
    raise AssertionError(f"no strategy for {spec!r}")


def valid_object(
    cls: type[Any], head: dict[str, Any] | None = None, special: Special = SPECIAL
) -> st.SearchStrategy[Any]:
    fields = {f.name: valid_value(f.spec, f.name, special) for f in schema(cls)}
    required = {f.name: fields[f.name] for f in schema(cls) if f.required}
    optional = {f.name: fields[f.name] for f in schema(cls) if not f.required}
    return st.fixed_dictionaries({**(head or {}), **required}, optional=optional)


def valid_messages(own: list[str], special: Special = SPECIAL) -> st.SearchStrategy[dict[str, Any]]:
    """Messages of the sender's own types, often, and of every type."""
    types = st.sampled_from(own) | st.sampled_from(list(MESSAGE_TYPES))
    return types.flatmap(
        lambda t: valid_object(MESSAGE_TYPES[t], {"v": st.just(1), "type": st.just(t)}, special)
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | marked,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
wild = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 2**31, 2**63, -(2**63), 10**100, 1.5, -0.0, 1e308]),
    marked,
    st.sampled_from(UNICODE),
    st.integers(1000, 70_000).map(lambda n: (MARKER * (n // len(MARKER) + 1))[:n]),
    st.integers(1, 50).map(lambda n: json.loads("[" * n + json.dumps(MARKER) + "]" * n)),
    json_values,
)
"""Any value in place of a field's: wrong types, huge, odd unicode, nested."""
field_names = sorted({f.name for cls in MESSAGE_TYPES.values() for f in schema(cls)})
keys = st.sampled_from(field_names) | marked | st.text(max_size=10) | st.sampled_from(UNICODE)
types = st.sampled_from(list(MESSAGE_TYPES)) | marked | st.sampled_from(["", "Ping", "x" * 41])


OPS = ["set", "set", "set", "drop", "drop", "add", "add", "nest", "retype", "version"]


@st.composite
def mutated(draw: st.DrawFn, own: list[str], special: Special = SPECIAL) -> dict[str, Any]:
    body: dict[str, Any] = draw(valid_messages(own, special))
    for _ in range(draw(st.integers(1, 2))):
        op = draw(st.sampled_from(OPS))
        names = sorted(body)
        if op == "drop" and names:
            del body[draw(st.sampled_from(names))]
        elif op == "set" and names:
            body[draw(st.sampled_from(names))] = draw(wild)
        elif op == "add":
            body[draw(keys)] = draw(wild)
        elif op == "retype":
            body["type"] = draw(types | wild)
        elif op == "version":
            body["v"] = draw(st.sampled_from([0, 2, -1, 1.0, "1", True, None, 10**7]))
        elif op == "nest" and names:
            name = draw(st.sampled_from(names))
            body[name] = draw(st.sampled_from([[body[name]], {name: body[name]}]))
    return body


def _padded(n: int) -> str:
    """A ping with a pad: exactly ``n`` bytes."""
    head = '{"v":1,"type":"ping","id":"pad","pad":"'
    return head + "a" * max(0, n - len(head) - 2) + '"}'


def frames(own: list[str], special: Special = SPECIAL) -> st.SearchStrategy[Frame]:
    """About two frames in three a message (valid, or mutated), the rest anything at all."""
    as_text = st.booleans()
    valid = st.tuples(valid_messages(own, special), as_text).map(lambda m: Frame(_dump(*m)))
    broken = st.tuples(mutated(own, special), as_text).map(lambda m: Frame(_clip(_dump(*m))))
    anything = st.one_of(
        st.text(max_size=200).map(Frame),
        (st.text(max_size=8) | marked).map(Frame),
        json_values.map(lambda v: Frame(json.dumps(v))),
        st.binary(max_size=200).map(Frame),
        valid.map(lambda f: Frame(f.data.encode() if isinstance(f.data, str) else f.data)),
        st.integers(1, 40_000).map(lambda n: Frame("[" * n + "]" * n)),
        st.integers(1, 40_000).map(
            lambda n: Frame('{"v":1,"type":"ping","id":"deep","x":' + "[" * n + "]" * n + "}")
        ),
        st.integers(MAX_MESSAGE_BYTES - 8, MAX_MESSAGE_BYTES + 8).map(lambda n: Frame(_padded(n))),
        # aiohttp refuses a frame of max_msg_size bytes too: its limit is exclusive.
        st.integers(MAX_MESSAGE_BYTES + 1, WS_MAX_MSG_SIZE - 1).map(lambda n: Frame(_padded(n))),
    )
    return st.sampled_from(["valid", "valid", "broken", "broken", "anything"]).flatmap(
        lambda kind: {"valid": valid, "broken": broken, "anything": anything}[kind]
    )


BOOTH_TYPES = sorted(t for t, c in MESSAGE_TYPES.items() if "booth" in c.SENDERS)
CONSOLE_TYPES = sorted(t for t, c in MESSAGE_TYPES.items() if "console" in c.SENDERS)


# ---------------------------------------------------------------- what must hold


class Watch:
    """Log records (DEBUG and up, hub and booth code) and the event loop's exceptions."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self.secrets = (MARKER, TOKEN_MARKER, *secrets)
        self.records: list[logging.LogRecord] = []
        self.loop_errors: list[dict[str, Any]] = []
        self.conns: list[Conn] = []  # closed when the example ends, pass or fail

    def on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.loop_errors.append(context)

    def check_text(self, where: str, text: str) -> None:
        for secret in self.secrets:
            assert secret not in text, f"{where} repeats a value that was sent: {text!r}"

    def check(self) -> None:
        assert not self.loop_errors, f"exceptions reached the event loop: {self.loop_errors}"
        for record in self.records:
            text = record.getMessage()
            if record.exc_info:
                text += "".join(traceback.format_exception(*record.exc_info))
            self.check_text(f"a log record ({record.name})", text)
            assert record.levelno < logging.ERROR and not record.exc_info, (
                f"an error was logged ({record.name}): {text}"
            )


@contextlib.contextmanager
def watching(secrets: tuple[str, ...]) -> Iterator[Watch]:
    watch = Watch(secrets)

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            watch.records.append(record)

    handler = Keep(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in ("clinic", "kiosk")]
    levels = [lg.level for lg in loggers]
    root = logging.getLogger()
    root.addHandler(handler)
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    try:
        yield watch
    finally:
        root.removeHandler(handler)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


class Conn:
    """One client of the hub; every frame it receives must be a valid hub message."""

    def __init__(self, ws: Any, name: str, watch: Watch) -> None:
        self.ws = ws
        self.name = name
        self.watch = watch
        watch.conns.append(self)

    async def send(self, message: Message) -> None:
        await self.ws.send_str(protocol.encode(message))

    async def send_frame(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def recv(self) -> Message:
        try:
            msg = await self.ws.receive(timeout=FRAME_TIMEOUT)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: nothing within {FRAME_TIMEOUT} s (a hang)"
            ) from None
        if msg.type is not WSMsgType.TEXT:
            raise AssertionError(
                f"{self.name}: the connection ended ({msg.type.name}, code {self.ws.close_code})"
            )
        try:
            message = PARSE(msg.data, sender="hub")
        except BadMessage as exc:
            raise AssertionError(f"{self.name}: the hub sent an invalid message ({exc})") from None
        if isinstance(message, Error):
            self.watch.check_text(f"{self.name}: an error text", message.message)
        return message

    async def until_pong(self) -> list[Message]:
        """Ping; everything that came before the pong."""
        ping = Ping(id=new_id())
        await self.send(ping)
        seen: list[Message] = []
        while True:
            message = await self.recv()
            if isinstance(message, Pong) and message.in_reply_to == ping.id:
                return seen
            seen.append(message)
            assert len(seen) < 200, f"{self.name}: an endless stream before the pong"

    async def until(self, check: Callable[[Message], bool]) -> Message:
        for _ in range(200):
            message = await self.recv()
            if check(message):
                return message
        raise AssertionError(f"{self.name}: the message waited for never came")

    async def closed(self) -> None:
        """The hub closes this connection now (after whatever it still had to say)."""
        try:
            msg = await self.ws.receive(timeout=FRAME_TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"{self.name}: not closed within {FRAME_TIMEOUT} s") from None
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING), (
            f"{self.name}: expected the close, got {msg!r}"
        )


Replies = tuple[frozenset[type[Message]], frozenset[ErrorCode]]
_RELAY: Replies = (frozenset({Error}), frozenset({ErrorCode.UNKNOWN_CALL}))
_NOTHING: Replies = (frozenset(), frozenset())
BOOTH_REPLIES: dict[str, Replies] = {
    "hello": (frozenset({Error}), frozenset({ErrorCode.NOT_ALLOWED})),
    "presence": _NOTHING,
    "join_queue": (
        frozenset({Queued, CodeRefused, Error}),
        frozenset({ErrorCode.BUSY, ErrorCode.RATE_LIMITED}),
    ),
    "leave_queue": _NOTHING,
    "offer": _RELAY,
    "answer": _RELAY,
    "call_state": _RELAY,
    "end_call": (frozenset({CallEnded, Error}), frozenset({ErrorCode.UNKNOWN_CALL})),
    "alert": (frozenset({AlertAck}), frozenset()),
    "ping": (frozenset({Pong}), frozenset()),
    "pong": _NOTHING,
    "error": _NOTHING,
}
"""What a booth's accepted message may get back on its own connection."""
CONSOLE_REPLIES: dict[str, Replies] = {
    "answer_booth": (
        frozenset({CallStarted, Snapshot, Error}),
        frozenset({ErrorCode.BUSY, ErrorCode.NOT_WAITING}),
    ),
    "offer": _RELAY,
    "answer": _RELAY,
    "call_state": _RELAY,
    "end_call": (frozenset({CallEnded, Snapshot, Error}), frozenset({ErrorCode.UNKNOWN_CALL})),
    "ack_alert": (frozenset({AlertAck, Error}), frozenset({ErrorCode.UNKNOWN_ALERT})),
    "ping": (frozenset({Pong}), frozenset()),
    "pong": _NOTHING,
    "error": _NOTHING,
}


def expected(data: str | bytes, sender: protocol.Sender) -> Message | BadMessage:
    """What the hub's parser makes of a frame: the message, or the refusal it must answer."""
    if isinstance(data, bytes):
        return BadMessage(ErrorCode.NOT_JSON, "binary")
    try:
        return PARSE(data, sender=sender)
    except BadMessage as exc:
        return exc


def check_replies(
    data: str | bytes, sender: protocol.Sender, replies: list[Message], table: dict[str, Replies]
) -> None:
    want = expected(data, sender)
    if isinstance(want, BadMessage):
        assert len(replies) == 1 and isinstance(replies[0], Error), (
            f"a refused frame ({want.code.value}) got {replies!r}, not one error"
        )
        assert (replies[0].code, replies[0].in_reply_to) == (want.code, want.msg_id), replies
        return
    kinds, codes = table[want.TYPE]
    for reply in replies:
        assert type(reply) in kinds, f"{want.TYPE} got {reply!r}"
        if isinstance(reply, Error):
            assert reply.code in codes, f"{want.TYPE} got {reply!r}"
            assert reply.in_reply_to == want.id, reply
    if isinstance(want, Ping):
        assert replies == [Pong(id=replies[0].id, in_reply_to=want.id)], replies
    if isinstance(want, JoinQueue | Hello):
        assert len(replies) == 1, f"{want.TYPE} got {replies!r}"


# ---------------------------------------------------------------- the scenarios


@contextlib.asynccontextmanager
async def fresh_hub(tls: Tls, watch: Watch) -> AsyncIterator[Server]:
    """A hub on a database of its own; every client closed at the end, pass or fail."""
    with tempfile.TemporaryDirectory() as tmp:
        db = open_db(Path(tmp) / "hub.sqlite3")
        with db.store:
            async with fresh_db_hub(tls, db, watch) as srv:
                yield srv


@contextlib.asynccontextmanager
async def fresh_db_hub(tls: Tls, db: Db, watch: Watch) -> AsyncIterator[Server]:
    asyncio.get_running_loop().set_exception_handler(watch.on_loop_error)
    watch.secrets = (*watch.secrets, *db.tokens.values())
    async with running(db, tls) as srv:
        try:
            yield srv
        finally:
            for conn in watch.conns:
                await conn.ws.close()


async def booth_conn(srv: Server, booth_id: str, watch: Watch) -> Conn:
    ws = await srv.session.ws_connect(
        srv.base.replace("https:", "wss:") + "/booth", ssl=srv.tls.client()
    )
    conn = Conn(ws, booth_id, watch)
    token = srv.db.tokens[booth_id]
    await conn.send(Hello(id=new_id(), booth_id=booth_id, token=token, firmware="0.1.0"))
    assert isinstance(await conn.recv(), Welcome)
    return conn


async def console_conn(srv: Server, username: str, watch: Watch) -> Conn:
    peer = await srv.console(sign_in=username)
    conn = Conn(peer.ws, f"console {username}", watch)
    assert isinstance(await conn.recv(), Snapshot)
    return conn


async def still_working(booth: Conn, consoles: list[Conn], others: list[Conn]) -> None:
    """A healthy booth's presence reaches every console; everyone answers a ping."""
    for conn in [booth, *consoles, *others]:
        await conn.until_pong()
    await booth.send(Presence(id=new_id(), state=BoothState.OUT_OF_SERVICE, door=Door.OPEN))

    def told(message: Message) -> bool:
        return isinstance(message, Snapshot) and any(
            b.booth_id == booth.name and b.state is BoothState.OUT_OF_SERVICE
            for b in message.booths
        )

    for console in consoles:
        await console.until(told)


def bounded(scenario: Awaitable[None]) -> None:
    async def main() -> None:
        try:
            async with asyncio.timeout(EXAMPLE_TIMEOUT):
                await scenario
        except TimeoutError:
            raise AssertionError(f"the example took over {EXAMPLE_TIMEOUT} s (a hang)") from None

    asyncio.run(main())


async def booth_scenario(tls: Tls, sequence: list[Frame], in_call: bool) -> None:
    with watching(()) as watch:
        async with fresh_hub(tls, watch) as srv:
            fuzzed = await booth_conn(srv, "booth-1", watch)
            healthy = await booth_conn(srv, "booth-2", watch)
            console = await console_conn(srv, "a.rivera", watch)
            call_id = "no-call-yet"
            if in_call:
                await fuzzed.send(JoinQueue(id=new_id(), language="es", audio_only=False))
                await fuzzed.until_pong()
                await console.send(protocol.AnswerBooth(id=new_id(), booth_id="booth-1"))
                started = await console.until(lambda m: isinstance(m, CallStarted))
                assert isinstance(started, CallStarted)
                call_id = started.call_id
                await fuzzed.until_pong()
            subs = {"@CALL@": call_id, "@TOKEN1@": srv.db.tokens["booth-1"]}
            for frame in sequence:
                data = frame.render(subs)
                await fuzzed.send_frame(data)
                check_replies(data, "booth", await fuzzed.until_pong(), BOOTH_REPLIES)
            assert srv.hub.connections.get("booth-1") is not None
            await still_working(healthy, [console], [fuzzed])
        watch.check()


def fuzz_booth_after_hello(tls: Tls, how: settings) -> None:
    @how
    @given(sequence=st.lists(frames(BOOTH_TYPES), min_size=1, max_size=6), in_call=st.booleans())
    def booth_after_hello(sequence: list[Frame], in_call: bool) -> None:
        bounded(booth_scenario(tls, sequence, in_call))

    booth_after_hello()


def test_fuzz_a_booths_frames_after_hello(tls: Tls) -> None:
    fuzz_booth_after_hello(tls, FUZZ)


async def _serve_booth_unguarded(hub: server.Hub, ws: web.WebSocketResponse, booth: Booth) -> None:
    """``_serve_booth`` with the try/except around ``parse`` taken out."""
    async for msg in ws:
        if msg.type is WSMsgType.ERROR:
            break
        message = protocol.parse(server._frame_text(msg), sender="booth")
        await server._handle(hub, ws, booth, message)


def test_twin_without_the_try_around_parse_a_bad_frame_kills_the_booths_connection(
    tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "_serve_booth", _serve_booth_unguarded)
    with pytest.raises(AssertionError, match="booth-1: the connection ended"):
        fuzz_booth_after_hello(tls, settings(TWIN, suppress_health_check=list(HealthCheck)))


# ---------------------------------------------------------------- the console


async def console_scenario(tls: Tls, sequence: list[Frame], in_call: bool) -> None:
    with watching(()) as watch:
        async with fresh_hub(tls, watch) as srv:
            waiting = await booth_conn(srv, "booth-1", watch)
            healthy = await booth_conn(srv, "booth-2", watch)
            await waiting.send(JoinQueue(id=new_id(), language="es", audio_only=False))
            await waiting.until_pong()
            await healthy.send(
                protocol.Alert(
                    id=new_id(),
                    alert_id="emg-0001",
                    booth_id="booth-2",
                    kind=protocol.AlertKind.EMERGENCY,
                    raised_at=datetime(2026, 11, 26, 20, 5, tzinfo=UTC),
                    site=protocol.Site(name="Library", street_address="1 Main St", room="2"),
                )
            )
            await healthy.until_pong()
            fuzzed = await console_conn(srv, "a.rivera", watch)
            other = await console_conn(srv, "b.chen", watch)
            await fuzzed.until_pong()
            call_id = "no-call-yet"
            if in_call:
                await fuzzed.send(protocol.AnswerBooth(id=new_id(), booth_id="booth-1"))
                started = await fuzzed.until(lambda m: isinstance(m, CallStarted))
                assert isinstance(started, CallStarted)
                call_id = started.call_id
                await fuzzed.until_pong()
            subs = {"@CALL@": call_id, "@TOKEN1@": srv.db.tokens["booth-1"]}
            for frame in sequence:
                data = frame.render(subs)
                await fuzzed.send_frame(data)
                check_replies(data, "console", await fuzzed.until_pong(), CONSOLE_REPLIES)
            assert len(srv.hub.consoles) == 2  # the fuzzed one still among them
            await still_working(healthy, [other, fuzzed], [waiting])
        watch.check()


def fuzz_console(tls: Tls, how: settings) -> None:
    @how
    @given(sequence=st.lists(frames(CONSOLE_TYPES), min_size=1, max_size=6), in_call=st.booleans())
    def console_frames(sequence: list[Frame], in_call: bool) -> None:
        bounded(console_scenario(tls, sequence, in_call))

    console_frames()


def test_fuzz_a_consoles_frames(tls: Tls) -> None:
    fuzz_console(tls, FUZZ)


def test_twin_a_parser_that_repeats_any_key_leaks_the_marker(
    tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown keys and type names are named in errors only when shaped like ours."""
    monkeypatch.setattr(protocol, "_shown", lambda name: name if isinstance(name, str) else None)
    with pytest.raises(AssertionError, match="repeats a value that was sent"):
        fuzz_console(tls, TWIN)


# ---------------------------------------------------------------- before hello


def hello_frames() -> st.SearchStrategy[Frame]:
    hello = valid_object(Hello, {"v": st.just(1), "type": st.just("hello")})
    as_text = st.booleans()
    hellos = st.tuples(hello, as_text).map(lambda m: Frame(_dump(*m)))
    return st.one_of(hellos, hellos, frames(["hello"]))


async def before_hello_scenario(tls: Tls, first: Frame, then: list[Frame]) -> None:
    with watching(()) as watch:
        async with fresh_hub(tls, watch) as srv:
            healthy = await booth_conn(srv, "booth-2", watch)
            console = await console_conn(srv, "a.rivera", watch)
            ws = await srv.session.ws_connect(
                srv.base.replace("https:", "wss:") + "/booth", ssl=srv.tls.client()
            )
            fuzzed = Conn(ws, "booth-1", watch)
            subs = {"@TOKEN1@": srv.db.tokens["booth-1"]}
            data = first.render(subs)
            await fuzzed.send_frame(data)
            want = expected(data, "booth")
            if isinstance(want, BadMessage):
                code, reply_to = want.code, want.msg_id
            elif not isinstance(want, Hello):
                code, reply_to = ErrorCode.HELLO_FIRST, want.id
            elif srv.db.tokens.get(want.booth_id) == want.token:
                code, reply_to = None, want.id
            else:
                code, reply_to = ErrorCode.UNAUTHORIZED, want.id
            reply = await fuzzed.recv()
            if code is None:
                assert isinstance(reply, Welcome), f"a right hello got {reply!r}"
                for frame in then:  # and the connection is a booth's like any other
                    data = frame.render(subs)
                    await fuzzed.send_frame(data)
                    check_replies(data, "booth", await fuzzed.until_pong(), BOOTH_REPLIES)
                await fuzzed.ws.close()
            else:
                assert isinstance(reply, Error), f"a refused first frame got {reply!r}"
                assert (reply.code, reply.in_reply_to) == (code, reply_to), reply
                await fuzzed.closed()
                assert "booth-1" not in srv.hub.connections
            again = await booth_conn(srv, "booth-1", watch)  # the booth itself can still come in
            await still_working(healthy, [console], [again])
        watch.check()


def fuzz_before_hello(tls: Tls, how: settings) -> None:
    @how
    @given(first=hello_frames(), then=st.lists(frames(BOOTH_TYPES), max_size=3))
    def before_hello(first: Frame, then: list[Frame]) -> None:
        bounded(before_hello_scenario(tls, first, then))

    before_hello()


def test_fuzz_a_booths_first_frame_before_hello(tls: Tls) -> None:
    fuzz_before_hello(tls, settings(FUZZ, max_examples=100))  # four connections each


def test_twin_a_hub_that_takes_any_token_lets_a_wrong_hello_in(
    tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    def any_token(self: Store, booth_id: str, token: str) -> Booth | None:
        return self.booth(booth_id)

    monkeypatch.setattr(Store, "verify_booth", any_token)
    with pytest.raises(AssertionError, match="a refused first frame got Welcome"):
        fuzz_before_hello(tls, TWIN)


def test_the_markers_fit_nothing_the_hub_may_log_or_repeat() -> None:
    """Ids, field names and versions have fixed forms; neither marker takes any of them."""
    for shape in (r"[A-Za-z0-9_-]{1,64}", r"[a-z][a-z0-9_]{0,39}", r"[0-9A-Za-z.+-]{1,40}"):
        assert not re.fullmatch(shape, MARKER) and not re.fullmatch(shape, TOKEN_MARKER)
    hello = {"v": 1, "type": "hello", "id": "h", "booth_id": "b", "token": TOKEN_MARKER}
    assert isinstance(PARSE(json.dumps({**hello, "firmware": "1"}), sender="booth"), Hello)


# ---------------------------------------------------------------- found by the fuzzing

EDGE = "9999-12-31T23:59:59.999999Z"
"""A valid ``raised_at`` that, stored as a float, rounds into the year 10000."""


def test_an_alert_at_the_calendars_edge_still_sounds_everywhere(
    tls: Tls, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once it failed the booth's alert (``internal``), every console's connect and the CLI."""
    from clinic.cli import main as cli

    db = open_db(tmp_path / "hub.sqlite3")
    alert = {
        "v": 1,
        "type": "alert",
        "id": "al1",
        "alert_id": "emg-0001",
        "booth_id": "booth-1",
        "kind": "emergency",
        "raised_at": EDGE,
        "site": {"name": "Library", "street_address": "1 Main St", "room": "2"},
    }

    async def scenario() -> None:
        with watching(()) as watch:
            async with fresh_db_hub(tls, db, watch) as srv:
                console = await console_conn(srv, "a.rivera", watch)
                booth = await booth_conn(srv, "booth-1", watch)
                await booth.send_frame(json.dumps(alert))
                replies = await booth.until_pong()
                assert [type(r) for r in replies] == [AlertAck], replies
                got = await console.until(lambda m: isinstance(m, protocol.Alert))
                assert isinstance(got, protocol.Alert)
                assert got.raised_at == datetime.max.replace(tzinfo=UTC)
                later = await console_conn(srv, "b.chen", watch)  # the alert on connect
                assert isinstance(await later.recv(), protocol.Alert)
            watch.check()

    with db.store:
        bounded(scenario())
    assert cli(["--db", str(tmp_path / "hub.sqlite3"), "alerts"]) == 0
    assert "emg-0001" in capsys.readouterr().out


def test_a_second_hello_is_refused_by_name_and_the_connection_stays(
    tls: Tls, tmp_path: Path
) -> None:
    """Once it went to a handler-less branch: no reply, and an error in the hub's log."""
    db = open_db(tmp_path / "hub.sqlite3")

    async def scenario() -> None:
        with watching(()) as watch:
            async with fresh_db_hub(tls, db, watch) as srv:
                booth = await booth_conn(srv, "booth-1", watch)
                token = srv.db.tokens["booth-1"]
                await booth.send(Hello(id="h2", booth_id="booth-1", token=token, firmware="1"))
                (reply,) = await booth.until_pong()
                assert isinstance(reply, Error)
                assert (reply.code, reply.in_reply_to) == (ErrorCode.NOT_ALLOWED, "h2")
            watch.check()

    with db.store:
        bounded(scenario())
