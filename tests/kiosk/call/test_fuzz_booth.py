"""Protocol fuzzing against the booth: a fake hub throws frames at HubLink and its CallEngine.

The fake hub is an aiohttp WebSocket server on 127.0.0.1 with the dev
certificate, pinned by a real :class:`HubLink` (as in ``test_hub_link.py``)
that has a real :class:`CallEngine` (aiortc, loopback ICE only: the package's
conftest patches ``aioice.ice.get_host_addresses``; no configured ICE servers).
The engine's ``ClinicianAnswered`` is answered with ``accept_call`` as the
controller would, so offers go out and the fuzzed answers and offers meet a
real peer connection. The hub welcomes the booth, which raises an alert the
hub does not acknowledge, and then sends a sequence of frames, each followed
by a ``ping``:

* random bytes, text and JSON values, deep nesting, frames around the cap;
* hub messages valid and mutated (see ``tests/clinic/test_fuzz_hub.py``):
  ``call_started`` with random ids and ICE servers (loopback addresses, odd
  ports and transports), ``offer``/``answer`` with random SDP and with a real
  answer's lines dropped, repeated, garbled or given odd values,
  ``call_state``, ``call_ended``, ``alert_ack`` for alerts the booth never
  raised, ``queued`` at any position, ``error`` naming the booth's own last
  message, and the rest.

The invariants:

* the booth answers each ping within :data:`FRAME_TIMEOUT` seconds on the same
  connection: no frame makes it drop the hub (or hang its receive loop);
* the unacknowledged alert is still in the outbox, and an alert raised after
  the sequence reaches the hub; once the hub acknowledges both the outbox is
  empty;
* no exception reaches the event loop, the link's logs hold no traceback and
  no error, no log holds SDP or :data:`MARKER`, and the visit hears only
  the events a hub link and a call engine post;
* after the engine and the link close, no task is left running.

The engine's data channel handler is fuzzed on its own too: whatever arrives,
it never raises, and the clinician's state changes exactly as a model of
``{"event": word}`` says. Each fuzz test has a twin with the guard taken out
that must fail.

What the fuzzing found is pinned down at the end: the handler raised
RecursionError for ``"[" * 1000`` (within its 1 KiB cap), which stopped the
call's DTLS transport and with it all media; and a call that ended while the
monitor was re-offering cancelled the monitor in the middle of closing the old
peer connection, whose ICE task and socket then stayed behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiortc.rtcicetransport import RTCIceTransport
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinic import protocol
from clinic.protocol import (
    MESSAGE_TYPES,
    Alert,
    AlertAck,
    AlertStatus,
    Answer,
    BadMessage,
    CallEvent,
    CallStarted,
    CallState,
    EndCall,
    ErrorCode,
    Hello,
    Message,
    Offer,
    Ping,
    Pong,
    Welcome,
    new_id,
)
from clinic.server import dev_certificate
from kiosk import config, session
from kiosk.call import hub_link as hub_link_module
from kiosk.call.engine import CallEngine, ClinicianState
from kiosk.call.hub_link import HubLink
from kiosk.controller import Visit
from tests.clinic.test_fuzz_hub import (
    MARKER,
    SPECIAL,
    TWIN,
    UNICODE,
    Frame,
    frames,
    ids,
    json_values,
    marked,
    valid_object,
)

FRAME_TIMEOUT = 15.0
"""Seconds the booth may take to answer the ping after a frame."""
EXAMPLE_TIMEOUT = 60.0
CALL_ID = "call-under-fuzz"

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # conftest's loopback patch: the same for all
    ],
)

SITE = config.Site(
    name="Riverside Library",
    street_address="1 Main St",
    room="Room 2",
    time_zone="America/Chicago",
    languages=("en", "es"),
)
TOKEN = "t" * 43

EXPECTED_EVENTS = (
    session.ClinicianAnswered,
    session.CallEnded,
    session.CodeRefused,
    session.NetworkLost,
    session.NetworkRestored,
)
"""What a hub link and a call engine may tell the visit."""


# ---------------------------------------------------------------- what the hub sends

ANSWER = (
    "v=0\r\no=- 4004719972 4004719972 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0 1 2\r\na=msid-semantic:WMS *\r\n"
    "m=audio 37982 UDP/TLS/RTP/SAVPF 96 0\r\nc=IN IP4 127.0.0.1\r\na=recvonly\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=mid:0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\na=rtcp-mux\r\na=ssrc:1611467130 cname:6e492a39\r\n"
    "a=rtpmap:96 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=candidate:16572de6 1 udp 2130706431 127.0.0.1 37982 typ host\r\n"
    "a=end-of-candidates\r\na=ice-ufrag:GCec\r\na=ice-pwd:bouTtYrxwK7ZGtNdlXOLFn\r\n"
    "a=fingerprint:sha-256 BE:56:81:72:E7:06:F4:CC:E2:9B:31:25:2F:90:14:DA:"
    "52:3F:DF:FD:99:3E:0C:42:2A:75:DE:0F:31:FF:44:FF\r\na=setup:active\r\n"
    "m=video 37982 UDP/TLS/RTP/SAVPF 97 98\r\nc=IN IP4 127.0.0.1\r\na=recvonly\r\n"
    "a=mid:1\r\na=rtcp-mux\r\na=rtpmap:97 VP8/90000\r\na=rtcp-fb:97 nack pli\r\n"
    "a=rtpmap:98 rtx/90000\r\na=fmtp:98 apt=97\r\n"
    "a=candidate:16572de6 1 udp 2130706431 127.0.0.1 37982 typ host\r\n"
    "a=ice-ufrag:GCec\r\na=ice-pwd:bouTtYrxwK7ZGtNdlXOLFn\r\n"
    "a=fingerprint:sha-256 BE:56:81:72:E7:06:F4:CC:E2:9B:31:25:2F:90:14:DA:"
    "52:3F:DF:FD:99:3E:0C:42:2A:75:DE:0F:31:FF:44:FF\r\na=setup:active\r\n"
    "m=application 37982 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 127.0.0.1\r\n"
    "a=mid:2\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
    "a=candidate:16572de6 1 udp 2130706431 127.0.0.1 37982 typ host\r\n"
    "a=ice-ufrag:GCec\r\na=ice-pwd:bouTtYrxwK7ZGtNdlXOLFn\r\n"
    "a=fingerprint:sha-256 BE:56:81:72:E7:06:F4:CC:E2:9B:31:25:2F:90:14:DA:"
    "52:3F:DF:FD:99:3E:0C:42:2A:75:DE:0F:31:FF:44:FF\r\na=setup:active\r\n"
)
"""An answer as aiortc makes one for the booth's offer (audio, video, data channel)."""
ODD_LINES = [
    "a=candidate:1 1 udp 1 ::1 0 typ host",
    "a=candidate:x",
    "a=candidate:1 1 tcp 1 127.0.0.1 9 typ host tcptype passive",
    "m=video 0 RTP/AVP 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF",
    "a=rtpmap:96 opus/abc/2",
    "a=rtpmap:999999999999 x/1",
    "a=ssrc:abc cname:x",
    "a=ssrc-group:FID",
    "a=fingerprint:sha-1 00",
    "a=fingerprint:md5",
    "a=setup:actpass",
    "a=setup:holdconn",
    "a=sctp-port:abc",
    "a=max-message-size:-1",
    "c=IN IP6 ::1",
    "a=extmap:99999 x",
    "a=fmtp:96 apt=",
    "a=ice-ufrag:",
    "a=group:BUNDLE 9",
    "a=mid:",
    "a=rtcp-fb:* nack",
    "b=AS:-5",
    "a=sendonly",
    "a=inactive",
    "",
]


@st.composite
def answer_like(draw: st.DrawFn) -> str:
    """A real answer's lines dropped, repeated, garbled, given odd values, or cut short."""
    lines = ANSWER.split("\r\n")[:-1]
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["drop", "repeat", "garble", "value", "insert", "cut"]))
        i = draw(st.integers(1, len(lines) - 1)) if len(lines) > 1 else 0
        if op == "drop" and len(lines) > 1:
            del lines[i]
        elif op == "repeat":
            lines.insert(i, lines[i])
        elif op == "garble":
            lines[i] = draw(st.text(max_size=40) | marked)
        elif op == "value":  # one word of the line (after the "a=name:" when first)
            words = lines[i].split(" ")
            j = draw(st.integers(0, len(words) - 1))
            odd = st.sampled_from(["", "0", "-1", "99999999999999999999", "1.5", "NaN", *UNICODE])
            head, colon, _ = words[j].partition(":")
            words[j] = (head + colon if j == 0 else "") + draw(odd | marked)
            lines[i] = " ".join(words)
        elif op == "insert":
            lines.insert(i, draw(st.sampled_from(ODD_LINES)))
        elif op == "cut":
            lines = lines[: max(1, i)]
    text = "\r\n".join(lines) + "\r\n"
    return text[:60_000]


SDP = st.one_of(
    st.just(ANSWER),
    answer_like(),
    answer_like(),
    st.text(max_size=200).map(lambda s: "v=0\r\n" + s),
)
ICE_URLS = st.builds(
    "{}:{}{}{}".format,
    st.sampled_from(["stun", "stuns", "turn", "turns"]),
    st.sampled_from(["127.0.0.1", "localhost", "[::1]", "0.0.0.0"]),
    st.sampled_from(["", ":1", ":3478", ":0", ":65535", ":99999"]),
    st.sampled_from(["", "?transport=udp", "?transport=tcp"]),
)
"""Loopback only: a fuzzed hub must not send the test out to the internet."""
ICE_SERVERS = st.one_of(
    st.fixed_dictionaries({"urls": st.lists(ICE_URLS, min_size=1, max_size=3)}),
    st.fixed_dictionaries(
        {
            "urls": st.lists(ICE_URLS, min_size=1, max_size=3),
            "username": st.sampled_from(["1750003600:booth-1", "u", MARKER]),
            "credential": st.sampled_from(["q4Zx3bLmV9Yt0p8sFh2kPzJ1cWE=", "c", MARKER]),
            "ttl": st.integers(60, 86_400),
        }
    ),
)
"""Servers as a hub sends them: STUN alone, or anything with TURN's three credentials."""
HUB_SPECIAL = {
    **SPECIAL,
    "sdp": SDP,
    "ice_servers": st.lists(ICE_SERVERS, max_size=2),
    "call_id": st.one_of(*[st.just("@CALL@")] * 3, st.just("other-call"), ids),
    "in_reply_to": st.just("@SENT@") | ids,
    "code": st.sampled_from(["unknown_call", "unknown_call", *(c.value for c in ErrorCode)]),
}
CALL_TYPES = ["call_started", "answer", "offer", "call_state", "call_ended", "error"]
HUB_TYPES = [*CALL_TYPES, *CALL_TYPES, *(t for t, c in MESSAGE_TYPES.items() if "hub" in c.SENDERS)]
"""The hub's types, call messages three times as often as the rest."""
CALL_FRAMES = st.sampled_from(["answer", "answer", "offer", *CALL_TYPES]).flatmap(
    lambda t: valid_object(
        MESSAGE_TYPES[t], {"v": st.just(1), "type": st.just(t)}, HUB_SPECIAL
    ).map(lambda m: Frame(json.dumps(m)))
)
"""Valid call messages, most about the call under way: what reaches the peer connection."""
HUB_FRAMES = frames(HUB_TYPES, HUB_SPECIAL) | CALL_FRAMES
CALL_STARTED = valid_object(
    MESSAGE_TYPES["call_started"],
    {"v": st.just(1), "type": st.just("call_started"), "call_id": st.just("@CALL@")},
    HUB_SPECIAL,
).map(lambda m: Frame(json.dumps(m)))
SEQUENCES = st.tuples(
    st.sampled_from([True, True, True, False]), st.lists(HUB_FRAMES, min_size=1, max_size=8)
).flatmap(
    lambda start: (
        CALL_STARTED.map(lambda first: [first, *start[1]]) if start[0] else st.just(start[1])
    )
)
"""Most sequences start a call (accepted, so an offer is out) before the rest."""


# ---------------------------------------------------------------- the fake hub


class FakeHub:
    """Welcomes one booth at a time; records what it says; sends what the test says."""

    def __init__(self) -> None:
        self.connections = 0
        self.ws: web.WebSocketResponse | None = None
        self.received: list[Message] = []
        self.invalid: list[str] = []
        self.changed = asyncio.Event()

    async def socket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        hello = await ws.receive(timeout=5)
        assert hello.type is WSMsgType.TEXT
        assert isinstance(protocol.parse(hello.data, sender="booth"), Hello)
        await ws.send_str(protocol.encode(Welcome(id=new_id(), ice_servers=())))
        self.ws = ws
        self.changed.set()
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                self.invalid.append(msg.type.name)
                continue
            try:
                self.received.append(protocol.parse(msg.data, sender="booth"))
            except BadMessage as exc:
                self.invalid.append(exc.code.value)
            self.changed.set()
        self.changed.set()
        return ws

    async def wait_for(self, check: Callable[[], bool], what: str) -> None:
        """Until ``check()``; fails at once should the booth's connection drop."""
        ws = self.ws
        loop = asyncio.get_running_loop()
        end = loop.time() + FRAME_TIMEOUT
        while not check():
            assert ws is None or (ws is self.ws and not ws.closed), (
                f"the booth dropped its hub connection (waiting for {what})"
            )
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), max(0.0, end - loop.time()))
            if loop.time() >= end and not check():
                raise AssertionError(f"the booth sent no {what} within {FRAME_TIMEOUT} s (a hang)")

    def last_id(self) -> str:
        """The id of the booth's latest call message (an error naming it ends the call)."""
        calls = [m for m in self.received if isinstance(m, Offer | Answer | CallState | EndCall)]
        return calls[-1].id if calls else "nothing-sent"

    async def send(self, data: str | bytes) -> None:
        assert self.ws is not None
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def ping(self) -> None:
        ping = Ping(id=new_id())
        await self.send(protocol.encode(ping))
        await self.wait_for(
            lambda: any(isinstance(m, Pong) and m.in_reply_to == ping.id for m in self.received),
            "pong",
        )

    def count(self, kind: type[Message]) -> int:
        return sum(isinstance(m, kind) for m in self.received)

    def alert_ids(self) -> set[str]:
        return {m.alert_id for m in self.received if isinstance(m, Alert)}


@contextlib.asynccontextmanager
async def fake_hub(cert: Path, key: Path) -> AsyncIterator[tuple[FakeHub, int]]:
    import ssl

    hub = FakeHub()
    app = web.Application()
    app.router.add_get("/booth", hub.socket)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    try:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        yield hub, runner.addresses[0][1]
    finally:
        if hub.ws is not None:
            await hub.ws.close()
        await runner.cleanup()


# ---------------------------------------------------------------- what must hold


class Watch:
    """Log records of the booth's code, the loop's exceptions, the visit's events."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []
        self.loop_errors: list[dict[str, Any]] = []
        self.events: list[session.Event] = []

    def on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.loop_errors.append(context)

    def check(self) -> None:
        assert not self.loop_errors, f"exceptions reached the event loop: {self.loop_errors}"
        for record in self.records:
            text = record.getMessage()
            if record.exc_info:
                text += "".join(traceback.format_exception(*record.exc_info))
            for secret in (MARKER, "v=0", "a=fingerprint", "a=candidate", TOKEN):
                assert secret not in text, f"a log record carries what it was sent: {text!r}"
            assert not record.exc_info, f"a traceback was logged ({record.name}): {text}"
            if record.name == hub_link_module.__name__:
                assert record.levelno < logging.ERROR, f"the hub link logged an error: {text}"
        unexpected = [e for e in self.events if not isinstance(e, EXPECTED_EVENTS)]
        assert not unexpected, f"the visit was told {unexpected}"


@contextlib.contextmanager
def watching() -> Iterator[Watch]:
    watch = Watch()

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            watch.records.append(record)

    handler = Keep(logging.DEBUG)
    logger = logging.getLogger("kiosk")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield watch
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def bounded(scenario: Callable[[], Any]) -> None:
    async def main() -> None:
        try:
            async with asyncio.timeout(EXAMPLE_TIMEOUT):  # in this task: no task of its own
                await scenario()
        except TimeoutError:
            raise AssertionError(f"the example took over {EXAMPLE_TIMEOUT} s (a hang)") from None

    asyncio.run(main())


async def no_task_left() -> None:
    """aiortc's and aioice's own tasks notice a close within a few pacing steps."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 1.0
    while loop.time() < end:
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if not left:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"tasks still running after close: {left}")


@pytest.fixture(scope="module")
def hub_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    return dev_certificate(tmp_path_factory.mktemp("tls"))


def starts_a_call(data: str | bytes, current: str | None) -> bool:
    """Whether the booth takes ``data`` for a new call (which the visit then accepts)."""
    try:
        message = protocol.parse(data, sender="hub") if isinstance(data, str) else None
    except BadMessage:
        return False
    return isinstance(message, CallStarted) and message.call_id != current


async def booth_scenario(cert: tuple[Path, Path, str], sequence: list[Frame]) -> None:
    with watching() as watch:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(watch.on_loop_error)
        accepting: list[asyncio.Task[None]] = []
        async with fake_hub(cert[0], cert[1]) as (hub, port):
            link = HubLink(
                config.Hub(url=f"wss://127.0.0.1:{port}/booth", certificate_sha256=cert[2]),
                "booth-1",
                TOKEN,
                site=SITE,
                on_event=watch.events.append,
                backoff_first=0.01,
                backoff_max=0.05,
                welcome_timeout=2.0,
            )

            def post(event: session.Event) -> None:  # the controller accepts every call
                watch.events.append(event)
                if isinstance(event, session.ClinicianAnswered):
                    accepting.append(loop.create_task(engine.accept_call()))

            engine = CallEngine(
                link,
                (),
                camera=None,
                microphone=None,
                speaker=None,
                post=post,
                gather_timeout=0.1,
                regather_timeout=0.1,
            )
            link.start()
            try:
                await hub.wait_for(lambda: hub.ws is not None, "hello")
                link.alert("emergency")
                (unacked,) = link.outbox
                await hub.wait_for(lambda: unacked in hub.alert_ids(), "alert")
                for frame in sequence:
                    subs = {"@CALL@": CALL_ID, "@SENT@": hub.last_id()}
                    data = frame.render(subs)
                    new_call = starts_a_call(data, engine.call_id)
                    offers = hub.count(Offer)
                    await hub.send(data)
                    await hub.ping()
                    if new_call:  # accepted at once: the offer follows
                        await hub.wait_for(lambda: hub.count(Offer) > offers, "offer")  # noqa: B023
                assert hub.connections == 1 and link.connected
                assert link.position is None or 1 <= link.position <= 999, link.position
                assert unacked in link.outbox, "an alert_ack for another alert took ours"
                link.alert("emergency")
                (later,) = set(link.outbox) - {unacked}
                await hub.wait_for(lambda: later in hub.alert_ids(), "alert raised afterwards")
                for alert_id in (unacked, later):
                    ack = AlertAck(id=new_id(), alert_id=alert_id, status=AlertStatus.RECEIVED)
                    await hub.send(protocol.encode(ack))
                await hub.ping()
                assert link.outbox == {}
                assert hub.invalid == [], f"the booth sent what the hub refuses: {hub.invalid}"
            finally:
                await engine.close()
                await link.close()
                for task in accepting:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task  # an accept that raised fails the example here
        await no_task_left()
        watch.check()


def fuzz_booth(cert: tuple[Path, Path, str], how: settings) -> None:
    @how
    @given(sequence=SEQUENCES)
    def hub_frames(sequence: list[Frame]) -> None:
        bounded(lambda: booth_scenario(cert, sequence))

    hub_frames()


def test_fuzz_the_hubs_frames_at_a_booth_in_a_call(hub_cert: tuple[Path, Path, str]) -> None:
    # Each example is a whole booth (hub link and aiortc engine): fewer than the hub's fuzz.
    fuzz_booth(hub_cert, settings(FUZZ, max_examples=60))


async def _receive_unguarded(self: HubLink, ws: aiohttp.ClientWebSocketResponse) -> None:
    """``HubLink._receive`` with the guard around ``parse`` taken out."""
    while True:
        msg = await ws.receive()
        if msg.type in hub_link_module._ENDS:
            return
        await self._handle(ws, protocol.parse(msg.data, sender="hub"))


def test_twin_without_the_guard_around_parse_a_bad_frame_drops_the_hub(
    hub_cert: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HubLink, "_receive", _receive_unguarded)
    with pytest.raises(AssertionError, match="the booth dropped its hub connection"):
        fuzz_booth(hub_cert, settings(TWIN, suppress_health_check=list(HealthCheck)))


# ---------------------------------------------------------------- the data channel

CONSOLE_WORDS = {"muted", "unmuted", "camera_off", "camera_on"}


class QuietLink:
    """The engine's hub port, never connected: the data channel needs none."""

    def __init__(self) -> None:
        self.on_call: Any = None
        self.connected = False
        self.in_call = False

    async def send(self, message: Message) -> bool:
        return False

    async def join_queue(self, visit: Visit) -> None:
        return None

    async def leave_queue(self) -> None:
        return None


def model(data: object, state: ClinicianState) -> ClinicianState:
    """What the console's word does to its state: only ``{"event": word}`` counts."""
    if not isinstance(data, str) or len(data) > 1024:
        return state
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return state
    word = body.get("event") if isinstance(body, dict) else None
    if not isinstance(word, str) or word not in CONSOLE_WORDS:
        return state
    if word in ("muted", "unmuted"):
        return ClinicianState(word == "muted", state.camera_off)
    return ClinicianState(state.muted, word == "camera_off")


words = st.sampled_from([e.value for e in CallEvent]) | marked | st.sampled_from(UNICODE)
channel_data = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.fixed_dictionaries({"event": words}).map(json.dumps),
    st.fixed_dictionaries({"event": words | json_values}, optional={"x": json_values}).map(
        json.dumps
    ),
    (st.integers(0, 1024) | st.integers(900, 1024)).map(lambda n: "[" * n),  # decoder's stack
    (st.integers(0, 1015) | st.integers(900, 1015)).map(lambda n: '{"event":' + "[" * n),
    st.integers(1020, 1030).map(lambda n: json.dumps({"event": "muted", "p": "x" * n})[:n]),
    st.sampled_from(['{"event": "muted"}', '{"event": "camera_off"}', "null", "[]", "{}"]),
)


@contextlib.contextmanager
def python_recursion_limit() -> Iterator[None]:
    """The headroom the handler has in a booth, whatever the test's own stack.

    Python's limit is 1000 frames and aiortc calls the handler some 25 deep; Hypothesis
    raises the limit while a test runs, and its own depth varies from run to replay.
    """
    depth, frame = 0, sys._getframe()
    while frame.f_back is not None:
        depth, frame = depth + 1, frame.f_back
    raised = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 950)
    try:
        yield
    finally:
        sys.setrecursionlimit(raised)


def fuzz_channel(how: settings) -> None:
    @how
    @given(st.lists(channel_data, min_size=1, max_size=8))
    def channel(sequence: list[str | bytes]) -> None:
        engine = CallEngine(QuietLink(), (), camera=None, microphone=None, speaker=None, post=print)
        heard: list[ClinicianState] = []
        engine.clinician_listeners.append(heard.append)
        state, changes = ClinicianState(), 0
        with watching() as watch:
            for data in sequence:
                with python_recursion_limit():
                    engine._channel_message(data)
                after = model(data, state)
                changes += after != state
                state = after
                assert engine.clinician_state == state, data
        assert len(heard) == changes and (not heard or heard[-1] == state)
        for record in watch.records:
            assert MARKER not in record.getMessage()

    channel()


def test_fuzz_the_data_channel_handler() -> None:
    fuzz_channel(settings(FUZZ, max_examples=500))


def test_twin_a_handler_without_its_guard_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def unguarded(self: CallEngine, data: object) -> None:
        if isinstance(data, str) and len(data) <= 1024:
            self._clinician_word(CallEvent(json.loads(data)["event"]))

    monkeypatch.setattr(CallEngine, "_channel_message", unguarded)
    with pytest.raises((ValueError, TypeError, KeyError, RecursionError)):
        fuzz_channel(TWIN)


# ---------------------------------------------------------------- found by the fuzzing


class ConnectedLink(QuietLink):
    """A hub port that is up and takes every message."""

    def __init__(self) -> None:
        super().__init__()
        self.connected = True

    async def send(self, message: Message) -> bool:
        return True


async def end_while_the_monitor_reoffers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The fuzzed sequence, made exact: the call ends while the monitor drops the old leg.

    ``call_started`` twice (a re-offer is then wanted) and the console's offer (a leg whose
    ICE is running): the monitor's next tick re-offers, and the engine closes while that
    re-offer is closing the leg. Returns the tasks still running once the engine has closed.
    """
    dropping = asyncio.Event()
    stop = RTCIceTransport.stop
    stopped: list[RTCIceTransport] = []

    async def watched_stop(self: RTCIceTransport) -> None:
        stopped.append(self)
        if asyncio.current_task() is engine._monitor:
            dropping.set()
        await stop(self)

    monkeypatch.setattr(RTCIceTransport, "stop", watched_stop)
    engine = CallEngine(
        ConnectedLink(),
        (),
        camera=None,
        microphone=None,
        speaker=None,
        post=lambda event: None,
        gather_timeout=0.1,
        regather_timeout=0.1,
        tick=0.05,
    )
    started = CallStarted(
        id=new_id(), call_id=CALL_ID, booth_id="booth-1", audio_only=False, ice_servers=()
    )
    await engine.on_hub_message(started)
    await engine.accept_call()
    await engine.on_hub_message(started)
    offer = ANSWER.replace("a=setup:active", "a=setup:actpass")
    await engine.on_hub_message(Offer(id=new_id(), call_id=CALL_ID, sdp=offer))
    await asyncio.wait_for(dropping.wait(), FRAME_TIMEOUT)
    await engine.close()
    await asyncio.sleep(0.5)
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for transport in stopped:  # what a stop cut short left open (the twin's socket)
        await transport._connection.close()
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    return [t.get_coro().__qualname__ for t in left]  # type: ignore[union-attr]


def test_a_call_ended_while_the_monitor_re_offers_leaves_no_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert asyncio.run(end_while_the_monitor_reoffers(monkeypatch)) == []


def test_twin_cancelling_the_monitor_mid_re_offer_leaves_the_old_legs_ice_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    finish = CallEngine._finish

    async def cancel_first(self: CallEngine) -> bool:
        """``_finish`` as it was: the monitor cancelled before the lock is taken."""
        monitor, self._monitor = self._monitor, None
        self._call = None
        if monitor is not None:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
        return await finish(self)

    monkeypatch.setattr(CallEngine, "_finish", cancel_first)
    assert "RTCIceTransport._monitor" in asyncio.run(end_while_the_monitor_reoffers(monkeypatch))
