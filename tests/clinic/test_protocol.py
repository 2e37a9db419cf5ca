"""The signaling protocol: every message, every refusal, the cap, fuzzing, the docs.

``docs/protocol.md`` carries field tables and examples generated from the
message classes; a change to the schema fails here until the page is
regenerated (``python -m tests.clinic.test_protocol``) and the diff read.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import json
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinic import protocol
from clinic.protocol import (
    MAX_MESSAGE_BYTES,
    MESSAGE_TYPES,
    OBJECT_TYPES,
    PARSE_CODES,
    SENDERS,
    AckAlert,
    Alert,
    AlertAck,
    AlertKind,
    AlertStatus,
    Answer,
    AnswerBooth,
    BadMessage,
    BoothInfo,
    BoothState,
    CallEnded,
    CallEvent,
    CallStarted,
    CallState,
    Choice,
    CodeRefused,
    Door,
    EndCall,
    EndReason,
    Error,
    ErrorCode,
    Flag,
    Hello,
    IceServer,
    Int,
    JoinQueue,
    LeaveQueue,
    ListOf,
    Message,
    Obj,
    Offer,
    Ping,
    Pong,
    Presence,
    Queued,
    QueueEntry,
    Sender,
    Site,
    Snapshot,
    Text,
    Timestamp,
    Welcome,
    encode,
    error_reply,
    new_id,
    parse,
    schema,
)
from kiosk.errors import ProtocolError

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
BEGIN = "<!-- BEGIN GENERATED: python -m tests.clinic.test_protocol -->"
END = "<!-- END GENERATED -->"

SDP = (
    "v=0\r\no=- 3951 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n"
)
SITE = Site(name="Riverside Library", street_address="12 Main Street, Springfield", room="Room 2")
STUN = IceServer(urls=("stun:stun.example.org:3478",))
TURN = IceServer(
    urls=("turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"),
    username="1764191100:riverside-1",
    credential="q4Zx3bLmV9Yt0p8sFh2kPzJ1cWE=",
    ttl=3600,
)
WHEN = datetime(2026, 11, 26, 20, 5, 0, tzinfo=UTC)

# One of each type, as it would really be sent; the docs show these.
EXAMPLES: tuple[Message, ...] = (
    Hello(id="h1", booth_id="riverside-1", token="bt_8fK2mQ9xZr4LwT7vY1nC", firmware="0.1.0"),
    Welcome(id="w1", ice_servers=(STUN,)),
    Presence(id="p1", state=BoothState.IDLE, door=Door.CLOSED),
    JoinQueue(id="j1", language="es", audio_only=False, appointment_code="482913"),
    Queued(id="q1", position=2),
    CodeRefused(id="r1"),
    LeaveQueue(id="l1"),
    CallStarted(
        id="s1", call_id="c-7Hq2", booth_id="riverside-1", audio_only=False, ice_servers=(TURN,)
    ),
    Offer(id="o1", call_id="c-7Hq2", sdp=SDP),
    Answer(id="a1", call_id="c-7Hq2", sdp=SDP),
    CallState(id="u1", call_id="c-7Hq2", event=CallEvent.DOOR_OPEN),
    EndCall(id="e1", call_id="c-7Hq2"),
    CallEnded(id="x1", call_id="c-7Hq2", reason=EndReason.CLINICIAN_ENDED),
    Alert(
        id="al1",
        alert_id="emg-0001",
        booth_id="riverside-1",
        kind=AlertKind.EMERGENCY,
        raised_at=WHEN,
        site=SITE,
    ),
    AlertAck(id="k1", alert_id="emg-0001", status=AlertStatus.RECEIVED),
    Snapshot(
        id="n1",
        booths=(
            BoothInfo(
                booth_id="riverside-1",
                name="Riverside booth",
                site="Riverside Library",
                online=True,
                state=BoothState.IN_USE,
                door=Door.CLOSED,
            ),
        ),
        queue=(
            QueueEntry(
                booth_id="riverside-1",
                language="es",
                audio_only=False,
                has_appointment=True,
                since=WHEN,
            ),
        ),
    ),
    AnswerBooth(id="b1", booth_id="riverside-1"),
    AckAlert(id="ak1", alert_id="emg-0001"),
    Ping(id="pi1"),
    Pong(id="po1", in_reply_to="pi1"),
    Error(
        id="er1",
        code=ErrorCode.UNKNOWN_FIELD,
        message='join_queue.langauge: unknown field (did you mean "language"?)',
        in_reply_to="j1",
    ),
)
BY_TYPE = {m.TYPE: m for m in EXAMPLES}
CANARY_CODE = "90210431"  # an appointment code that must never show up in a log or an error


def may_send(sender: Sender, message: Message) -> bool:
    """The sender rules as the docs state them: by type, then by word."""
    if sender not in message.SENDERS:
        return False
    for name, words in message.VALUE_SENDERS.items():
        word = str(getattr(message, name))
        if word in words and sender not in words[word]:
            return False
    return True


def sender_for(message: Message) -> Sender:
    """A sender allowed to send this very message."""
    return next(s for s in SENDERS if may_send(s, message))


def as_dict(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(encode(message))
    return out


def refusal(raw: str | bytes, sender: Sender = "booth") -> BadMessage:
    with pytest.raises(BadMessage) as info:
        parse(raw, sender=sender)
    return info.value


def dumps(data: object) -> str:
    return json.dumps(data, separators=(",", ":"))


# ---------------------------------------------------------------- round trips


def test_there_is_an_example_of_every_type() -> None:
    assert sorted(BY_TYPE) == sorted(MESSAGE_TYPES)
    assert len(EXAMPLES) == len(MESSAGE_TYPES)


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.TYPE)
def test_every_type_round_trips_from_each_allowed_sender(message: Message) -> None:
    text = encode(message)
    for sender in SENDERS:
        if may_send(sender, message):
            assert parse(text, sender=sender) == message
            assert parse(text.encode(), sender=sender) == message
    assert encode(parse(text, sender=sender_for(message))) == text


def test_encode_is_compact_json_with_version_type_and_id_first() -> None:
    text = encode(BY_TYPE["join_queue"])
    assert text == (
        '{"v":1,"type":"join_queue","id":"j1","language":"es","audio_only":false,'
        '"appointment_code":"482913"}'
    )
    assert encode(CallEnded(id="x2", reason=EndReason.QUEUE_CLOSED)) == (
        '{"v":1,"type":"call_ended","id":"x2","reason":"queue_closed"}'
    ), "absent optional fields are left out, never null"


def test_times_are_utc_with_z_and_any_aware_time_is_converted() -> None:
    plus_two = datetime(2026, 11, 26, 22, 5, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    alert = Alert(
        id="a", alert_id="a", booth_id="b", kind=AlertKind.EMERGENCY, raised_at=plus_two, site=SITE
    )
    assert as_dict(alert)["raised_at"] == "2026-11-26T20:05:00.250000Z"
    assert alert.raised_at.tzinfo is UTC
    with pytest.raises(BadMessage, match=r"^alert\.raised_at: .*without a time zone"):
        Alert(
            id="a",
            alert_id="a",
            booth_id="b",
            kind=AlertKind.EMERGENCY,
            raised_at=datetime(2026, 1, 1),
            site=SITE,
        )
    data = as_dict(alert) | {"raised_at": "2026-02-30T10:00:00Z"}
    assert "does not exist" in str(refusal(dumps(data)))


def test_messages_are_checked_when_built_so_the_hub_cannot_send_a_bad_one() -> None:
    with pytest.raises(BadMessage) as info:
        Queued(id="q", position=0)
    assert (info.value.code, info.value.msg_type, info.value.field) == (
        "bad_field",
        "queued",
        "position",
    )
    assert (
        str(info.value)
        == "queued.position: must be a whole number 1-999, not a number outside that range"
    )
    with pytest.raises(BadMessage, match=r"^username: is missing: a turn: server must come"):
        IceServer(urls=("turn:turn.example.org",))
    with pytest.raises(BadMessage, match=r"^welcome\.ice_servers\[0\]\.username: is missing"):
        Welcome(id="w", ice_servers=[{"urls": ["turn:turn.example.org"]}])  # type: ignore[list-item]
    assert isinstance(info.value, ProtocolError)


def test_lists_become_tuples_and_words_become_enums() -> None:
    welcome = Welcome(id="w", ice_servers=[STUN])  # type: ignore[arg-type]
    assert welcome.ice_servers == (STUN,)
    presence = Presence(id="p", state="emergency", door="open")  # type: ignore[arg-type]
    assert presence.state is BoothState.EMERGENCY and presence.door is Door.OPEN
    assert hash(presence) == hash(Presence(id="p", state=BoothState.EMERGENCY, door=Door.OPEN))


# ---------------------------------------------------------------- every refusal

HELLO = {"v": 1, "type": "hello", "id": "h1", "booth_id": "riverside-1"}
HELLO |= {"token": "bt_8fK2mQ9xZr4LwT7vY1nC", "firmware": "0.1.0"}
JOIN = {"v": 1, "type": "join_queue", "id": "j1", "language": "es", "audio_only": False}

REFUSALS: list[tuple[str, str | bytes, Sender, ErrorCode, str | None, str | None, str]] = [
    # name, raw, sender, code, msg_type, field, the whole message
    (
        "too_big",
        b" " * (MAX_MESSAGE_BYTES + 1),
        "booth",
        ErrorCode.TOO_BIG,
        None,
        None,
        "message is larger than 65536 bytes (64 KiB)",
    ),
    (
        "not_json",
        '{"v":1,"type":"ping",',
        "booth",
        ErrorCode.NOT_JSON,
        None,
        None,
        "message is not JSON: Expecting property name enclosed in double quotes (character 21)",
    ),
    (
        "not_json_utf8",
        b'{"v":1,"type":"ping","id":"\xff"}',
        "booth",
        ErrorCode.NOT_JSON,
        None,
        None,
        "message is not UTF-8 text (byte 27)",
    ),
    (
        "not_json_nan",
        '{"v":NaN}',
        "booth",
        ErrorCode.NOT_JSON,
        None,
        None,
        "message is not JSON: NaN is not a JSON number",
    ),
    (
        "not_object",
        '[{"v":1,"type":"ping","id":"p"}]',
        "booth",
        ErrorCode.NOT_OBJECT,
        None,
        None,
        "message must be a JSON object, not a list",
    ),
    (
        "bad_version",
        dumps(HELLO | {"v": 2}),
        "booth",
        ErrorCode.BAD_VERSION,
        "hello",
        "v",
        "hello.v: must be 1 (this protocol's version), not 2",
    ),
    (
        "bad_version_text",
        dumps(HELLO | {"v": "1"}),
        "booth",
        ErrorCode.BAD_VERSION,
        "hello",
        "v",
        "hello.v: must be 1 (this protocol's version), not text",
    ),
    (
        "unknown_type",
        dumps({"v": 1, "type": "helo", "id": "h1"}),
        "booth",
        ErrorCode.UNKNOWN_TYPE,
        None,
        "type",
        'type: unknown message type "helo"; a booth may send hello, presence, join_queue, '
        "leave_queue, offer, answer, call_state, end_call, alert, ping, pong, error",
    ),
    (
        "not_allowed",
        dumps(HELLO),
        "console",
        ErrorCode.NOT_ALLOWED,
        "hello",
        None,
        "hello: a console may not send this; only the booth may",
    ),
    (
        "not_allowed_value",
        dumps({"v": 1, "type": "call_state", "id": "u", "call_id": "c", "event": "emergency"}),
        "console",
        ErrorCode.NOT_ALLOWED,
        "call_state",
        "event",
        'call_state.event: a console may not send "emergency"; only the booth or the hub may',
    ),
    (
        "missing_field",
        dumps({k: v for k, v in HELLO.items() if k != "token"}),
        "booth",
        ErrorCode.MISSING_FIELD,
        "hello",
        "token",
        "hello.token: is missing; it must be 16-512 of A-Z, a-z, 0-9 and ._~+/=-",
    ),
    (
        "missing_v",
        dumps({k: v for k, v in HELLO.items() if k != "v"}),
        "booth",
        ErrorCode.MISSING_FIELD,
        "hello",
        "v",
        "hello.v: is missing; it must be 1, the protocol version",
    ),
    (
        "missing_nested",
        dumps({"v": 1, "type": "welcome", "id": "w", "ice_servers": [{"urls": ["turn:t.org"]}]}),
        "hub",
        ErrorCode.MISSING_FIELD,
        "welcome",
        "ice_servers[0].username",
        "welcome.ice_servers[0].username: is missing: "
        "a turn: server must come with username, credential and ttl",
    ),
    (
        "bad_field",
        dumps(JOIN | {"appointment_code": 482913}),
        "booth",
        ErrorCode.BAD_FIELD,
        "join_queue",
        "appointment_code",
        "join_queue.appointment_code: must be 4-12 digits 0-9, in quotes, not a whole number",
    ),
    (
        "bad_field_null",
        dumps(JOIN | {"appointment_code": None}),
        "booth",
        ErrorCode.BAD_FIELD,
        "join_queue",
        "appointment_code",
        "join_queue.appointment_code: must be 4-12 digits 0-9, in quotes, or left out; not null",
    ),
    (
        "bad_field_nested",
        dumps(as_dict(BY_TYPE["welcome"]) | {"ice_servers": [{"urls": ["http://x.org"]}]}),
        "hub",
        ErrorCode.BAD_FIELD,
        "welcome",
        "ice_servers[0].urls[0]",
        "welcome.ice_servers[0].urls[0]: must be a stun:, stuns:, turn: or turns: address "
        'such as "turn:turn.example.org:3478", not text of another form',
    ),
    (
        "bad_field_word",
        dumps({"v": 1, "type": "presence", "id": "p", "state": "busy", "door": "closed"}),
        "booth",
        ErrorCode.BAD_FIELD,
        "presence",
        "state",
        'presence.state: must be one of "idle", "in_use", "out_of_service", "emergency", '
        "not another word",
    ),
    (
        "bad_field_control",
        dumps(
            as_dict(BY_TYPE["alert"])
            | {"site": {"name": "A\x1b[2J", "street_address": "x", "room": "y"}}
        ),
        "booth",
        ErrorCode.BAD_FIELD,
        "alert",
        "site.name",
        "alert.site.name: must be text of 1-100 characters, "
        "without control characters or unpaired surrogates",
    ),
    (
        "bad_field_duplicate",
        '{"v":1,"type":"ping","id":"a","id":"b"}',
        "booth",
        ErrorCode.BAD_FIELD,
        None,
        "id",
        "id: a key appears twice in one object",
    ),
    (
        "unknown_field",
        dumps(JOIN | {"langauge": "es"}),
        "booth",
        ErrorCode.UNKNOWN_FIELD,
        "join_queue",
        "langauge",
        'join_queue.langauge: unknown field (did you mean "language"?); '
        "expected id, language, audio_only, appointment_code",
    ),
    (
        "unknown_field_not_shown",
        dumps(JOIN | {CANARY_CODE: True}),
        "booth",
        ErrorCode.UNKNOWN_FIELD,
        "join_queue",
        None,
        "join_queue: unknown field; expected id, language, audio_only, appointment_code",
    ),
]


def test_every_parse_code_has_a_refusal_case() -> None:
    assert {case[3] for case in REFUSALS} == set(PARSE_CODES)
    assert len(PARSE_CODES) == 9


@pytest.mark.parametrize("case", REFUSALS, ids=[case[0] for case in REFUSALS])
def test_refusals_name_the_type_the_field_and_what_was_expected(
    case: tuple[str, str | bytes, Sender, ErrorCode, str | None, str | None, str],
) -> None:
    _, raw, sender, code, msg_type, field, text = case
    exc = refusal(raw, sender)
    assert (exc.code, exc.msg_type, exc.field) == (code, msg_type, field)
    assert str(exc) == text
    assert isinstance(exc, ProtocolError)
    assert CANARY_CODE not in str(exc) and "482913" not in str(exc)


def test_the_id_of_a_refused_message_is_kept_for_the_reply() -> None:
    exc = refusal(dumps(JOIN | {"id": "j-77", "language": 5}))
    assert exc.msg_id == "j-77"
    assert refusal(dumps(JOIN | {"id": "bad id!", "language": 5})).msg_id is None
    assert refusal(dumps(JOIN | {"id": "bad id!"})).field == "id"


def test_refusals_are_checked_envelope_first() -> None:
    """v before type (a v2 type is a version problem), type before sender, sender before fields."""
    assert refusal(dumps({"v": 2, "type": "new_v2_type"})).code is ErrorCode.BAD_VERSION
    assert refusal(dumps({"v": 1, "type": "queued", "x": 1})).code is ErrorCode.NOT_ALLOWED
    assert refusal(dumps({"v": 1, "id": "a"})).code is ErrorCode.MISSING_FIELD
    assert refusal(dumps({"v": 1, "type": 7, "id": "a"})).code is ErrorCode.BAD_FIELD
    assert refusal(dumps({"v": True, "type": "ping", "id": "a"})).code is ErrorCode.BAD_VERSION
    assert refusal(dumps({"v": 1.0, "type": "ping", "id": "a"})).code is ErrorCode.BAD_VERSION


def test_numbers_are_whole_and_bounded() -> None:
    queued = {"v": 1, "type": "queued", "id": "q"}
    for bad in (0, 1000, 2.0, True, "2", -1, 10**30):
        exc = refusal(dumps(queued | {"position": bad}), "hub")
        assert (exc.code, exc.field) == (ErrorCode.BAD_FIELD, "position"), bad
    assert parse(dumps(queued | {"position": 999}), sender="hub") == Queued(id="q", position=999)
    huge = '{"v":1,"type":"queued","id":"q","position":' + "9" * 5000 + "}"
    # Too many digits for Python to read (not_json), or else out of range (bad_field).
    assert refusal(huge, "hub").code in (ErrorCode.NOT_JSON, ErrorCode.BAD_FIELD)


def test_strings_are_capped() -> None:
    for name, size in (("language", 7), ("appointment_code", 13)):
        exc = refusal(dumps(JOIN | {name: "1" * size}))
        assert (exc.code, exc.field) == (ErrorCode.BAD_FIELD, name)
        assert f"not {size} characters" in str(exc)
    offer = as_dict(BY_TYPE["offer"])
    assert parse(dumps(offer | {"sdp": "v=0\r\n" + "a" * (60_000 - 5)}), sender="booth")
    exc = refusal(dumps(offer | {"sdp": "v=0\r\n" + "a" * (60_000 - 4)}))
    assert (exc.code, exc.field) == (ErrorCode.BAD_FIELD, "sdp")
    assert str(exc).startswith("offer.sdp: must be an SDP of up to 60000 characters")


# ---------------------------------------------------------------- who may send what


def test_sender_rules_for_every_type() -> None:
    for message in EXAMPLES:
        text = encode(message)
        for sender in SENDERS:
            if may_send(sender, message):
                assert parse(text, sender=sender) == message
            elif sender in message.SENDERS:
                assert refusal(text, sender).field is not None  # a word rule: see below
            else:
                exc = refusal(text, sender)
                assert (exc.code, exc.msg_type, exc.field) == ("not_allowed", message.TYPE, None)


def test_who_sends_what_reads_as_designed() -> None:
    def sent_by(sender: str) -> set[str]:
        return {t for t, c in MESSAGE_TYPES.items() if sender in c.SENDERS}

    common = {"offer", "answer", "call_state", "ping", "pong", "error"}
    booth_only = {"hello", "presence", "join_queue", "leave_queue"}
    assert sent_by("booth") == common | booth_only | {"end_call", "alert"}
    assert sent_by("console") == common | {"end_call", "answer_booth", "ack_alert"}
    hub_only = {"welcome", "queued", "code_refused", "call_started", "call_ended"}
    assert sent_by("hub") == common | hub_only | {"alert", "alert_ack", "snapshot"}


@pytest.mark.parametrize("event", list(CallEvent))
def test_consoles_may_send_only_their_own_call_states(event: CallEvent) -> None:
    text = encode(CallState(id="u", call_id="c", event=event))
    door_or_emergency = event.value.startswith(("door", "emergency"))
    about_the_booths_link = event.value.startswith("booth_")
    assert parse(text, sender="hub").event is event
    if about_the_booths_link:  # only the hub knows when a booth's link dropped
        assert refusal(text, "booth").code is ErrorCode.NOT_ALLOWED
    else:
        assert parse(text, sender="booth").event is event
    if door_or_emergency or about_the_booths_link:
        assert refusal(text, "console").code is ErrorCode.NOT_ALLOWED
    else:
        assert parse(text, sender="console").event is event


def test_booth_link_words_are_the_hubs_alone() -> None:
    rules = CallState.VALUE_SENDERS["event"]
    assert rules["booth_offline"] == rules["booth_online"] == frozenset({"hub"})


def test_an_unknown_sender_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="sender must be one of"):
        parse(encode(Ping(id="p")), sender="clinician")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the 64 KiB cap


def padded(message: Message, size: int) -> str:
    """The message with JSON whitespace added until it is exactly ``size`` bytes."""
    text = encode(message)
    pad = size - len(text.encode())
    assert pad >= 0
    return text[:-1] + " " * pad + "}"


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_exactly_64_kib_is_accepted_and_one_byte_more_is_not(as_bytes: bool) -> None:
    offer = Offer(id="o", call_id="c", sdp="v=0\r\n" + "a" * 59_000)
    at, over = padded(offer, MAX_MESSAGE_BYTES), padded(offer, MAX_MESSAGE_BYTES + 1)
    assert len(at.encode()) == 65_536 and len(over.encode()) == 65_537
    assert parse(at.encode() if as_bytes else at, sender="booth") == offer
    exc = refusal(over.encode() if as_bytes else over)
    assert (exc.code, exc.msg_type, exc.field) == (ErrorCode.TOO_BIG, None, None)


def test_the_cap_counts_utf8_bytes_not_characters() -> None:
    body = as_dict(BY_TYPE["offer"]) | {"sdp": "v=0\r\n" + "é" * 40_000}  # 2 bytes each
    text = json.dumps(body, ensure_ascii=False)
    assert len(text) < MAX_MESSAGE_BYTES < len(text.encode())
    assert refusal(text).code is ErrorCode.TOO_BIG


def test_encode_refuses_a_message_the_other_side_would_refuse() -> None:
    offer = Offer(id="o", call_id="c", sdp="v=0\r\n" + "é" * 40_000)
    with pytest.raises(BadMessage) as info:
        encode(offer)
    assert (info.value.code, info.value.msg_type) == (ErrorCode.TOO_BIG, "offer")


def test_the_largest_plain_snapshot_fits_under_the_cap() -> None:
    """Every list and text at its maximum (in ASCII) still fits: the hub never has to trim."""
    booth = BoothInfo(
        booth_id="b" * 63,
        name="n" * 100,
        site="s" * 100,
        online=False,
        state=BoothState.OUT_OF_SERVICE,
        door=Door.CLOSED,
    )
    entry = QueueEntry(
        booth_id="b" * 63,
        language="pt_BR",
        audio_only=False,
        has_appointment=False,
        since=WHEN.replace(microsecond=123456),
    )
    snapshot = Snapshot(id="i" * 64, booths=(booth,) * 100, queue=(entry,) * 100)
    assert len(encode(snapshot).encode()) <= MAX_MESSAGE_BYTES
    assert parse(encode(snapshot), sender="hub") == snapshot


# ---------------------------------------------------------------- nesting, and its twin

DEEP = "[" * 100_000 + "]" * 100_000
DEEP_AT_CAP = "[" * (MAX_MESSAGE_BYTES // 2) + "]" * (MAX_MESSAGE_BYTES // 2)


def test_deep_nesting_is_refused_quickly() -> None:
    start = time.perf_counter()
    assert refusal(DEEP).code is ErrorCode.TOO_BIG
    exc = refusal(DEEP_AT_CAP)  # within the cap, still far too deep for the decoder
    assert (exc.code, str(exc)) == (ErrorCode.NOT_JSON, "message is nested too deeply")
    inner = '{"v":1,"type":"ping","id":"p","x":' + "[" * 20_000 + "]" * 20_000 + "}"
    assert refusal(inner).code is ErrorCode.NOT_JSON
    assert time.perf_counter() - start < 1.0, "refusing must not take the hub's time"


def test_twin_without_the_guards_deep_nesting_raises_recursion_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twin: lift the size cap and the decoder recurses; only the catch in parse stands."""
    monkeypatch.setattr(protocol, "MAX_MESSAGE_BYTES", 10**9)
    exc = refusal(DEEP)
    assert exc.code is ErrorCode.NOT_JSON
    assert isinstance(exc.__cause__, RecursionError), "the decoder blew its stack"
    with pytest.raises(RecursionError):
        protocol._decode(DEEP)  # what parse guards: the bare decoder, no cap, no catch


# ---------------------------------------------------------------- strategies

_TEXT_CHARS = st.characters(exclude_categories=("Cc", "Cs"))


def values(spec: Any) -> st.SearchStrategy[Any]:
    """Valid Python values for one field spec."""
    if isinstance(spec, Text):
        if spec.line_breaks:  # SDP
            lines = st.characters(exclude_categories=("Cc", "Cs"), include_characters="\r\n")
            return st.text(lines, max_size=300).map(lambda s: "v=0\r\n" + s)
        if spec.pattern is None:
            return st.text(_TEXT_CHARS, min_size=spec.min_len, max_size=min(spec.max_len, 120))
        return st.from_regex(spec.pattern, fullmatch=True).filter(
            lambda s: spec.min_len <= len(s) <= spec.max_len
        )
    if isinstance(spec, Int):
        return st.integers(spec.lo, spec.hi)
    if isinstance(spec, Flag):
        return st.booleans()
    if isinstance(spec, Choice):
        return st.sampled_from(list(spec.enum))
    if isinstance(spec, Timestamp):
        return st.datetimes(
            min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
        )
    if isinstance(spec, ListOf):
        return st.lists(values(spec.item), min_size=spec.lo, max_size=min(spec.hi, 3)).map(tuple)
    if isinstance(spec, Obj):
        return objects(spec.cls)
    raise AssertionError(f"no strategy for {spec!r}")


def objects(cls: type[Any]) -> st.SearchStrategy[Any]:
    if cls is IceServer:
        stun = st.builds(
            IceServer,
            urls=st.lists(
                st.from_regex(r"stuns?:[a-z0-9.-]{1,30}(:[0-9]{1,5})?", fullmatch=True),
                min_size=1,
                max_size=3,
            ).map(tuple),
        )
        creds = {f.name: values(f.spec) for f in schema(IceServer)}
        return stun | st.builds(IceServer, **creds)
    fields = {}
    for f in schema(cls):
        strategy = values(f.spec)
        fields[f.name] = strategy if f.required else st.none() | strategy
    return st.builds(cls, **fields)


messages = st.sampled_from(list(MESSAGE_TYPES.values())).flatmap(objects)


@settings(max_examples=300)
@given(messages)
def test_any_valid_message_round_trips(message: Message) -> None:
    text = encode(message)
    assert parse(text, sender=sender_for(message)) == message
    assert parse(text.encode(), sender=sender_for(message)) == message


# ---------------------------------------------------------------- fuzzing


def parses_or_refuses(raw: str | bytes, sender: Sender = "booth") -> BadMessage | None:
    """The property: a Message or a BadMessage with a fixed code, nothing else, quickly."""
    start = time.perf_counter()
    try:
        assert isinstance(parse(raw, sender=sender), Message)
        exc = None
    except BadMessage as refused:
        exc = refused
        assert exc.code in PARSE_CODES
        assert not re.search(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]", str(exc))
        if exc.msg_type:
            assert str(exc).startswith(f"{exc.msg_type}")
    assert time.perf_counter() - start < 0.5
    return exc


# Finite floats only: json.dumps writes inf as Infinity, which is not JSON (see below).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_python_only_numbers_are_not_json(constant: str) -> None:
    exc = refusal('{"v":1,"type":"ping","id":"p","x":' + constant + "}")
    assert (exc.code, str(exc)) == (
        ErrorCode.NOT_JSON,
        f"message is not JSON: {constant} is not a JSON number",
    )


@settings(max_examples=300)
@given(st.binary(max_size=512), st.sampled_from(SENDERS))
def test_fuzz_arbitrary_bytes(raw: bytes, sender: Sender) -> None:
    parses_or_refuses(raw, sender)


@settings(max_examples=300)
@given(json_values, st.sampled_from(SENDERS))
def test_fuzz_arbitrary_json_values(value: object, sender: Sender) -> None:
    parses_or_refuses(json.dumps(value), sender)


@settings(max_examples=300)
@given(
    st.sampled_from([*MESSAGE_TYPES, "nope"]),
    st.dictionaries(
        st.sampled_from(["id", "booth_id", "call_id", "event", "sdp", "x"]), json_values
    ),
    st.sampled_from(SENDERS),
)
def test_fuzz_envelopes_with_arbitrary_fields(
    msg_type: str, fields: dict[str, object], sender: Sender
) -> None:
    parses_or_refuses(json.dumps({"v": 1, "type": msg_type, **fields}), sender)


OTHER_KINDS: list[object] = [None, True, 7, 1.5, "text", [], {}]


def json_kind(value: object) -> str:
    return "bool" if isinstance(value, bool) else type(value).__name__


def text_spec(cls: type[Message], name: str) -> Text | None:
    spec = {f.name: f.spec for f in schema(cls)}.get(name)
    return spec if isinstance(spec, Text) else None


@settings(max_examples=300)
@given(messages, st.data())
def test_fuzz_mutations_of_valid_messages(message: Message, data: st.DataObject) -> None:
    """Drop, retype, add or oversize one field: the refusal names that field exactly."""
    body = as_dict(message)
    cls = type(message)
    required = {"v", "type"} | {f.name for f in schema(cls) if f.required}
    sender = sender_for(message)
    name = data.draw(st.sampled_from(sorted(body)))
    mutation = data.draw(st.sampled_from(["drop", "retype", "add", "oversize"]))
    if mutation == "drop":
        del body[name]
        exc = parses_or_refuses(json.dumps(body), sender)
        if name in required:
            assert exc is not None and (exc.code, exc.field) == (ErrorCode.MISSING_FIELD, name)
        else:
            assert exc is None
    elif mutation == "retype":
        body[name] = data.draw(
            st.sampled_from([v for v in OTHER_KINDS if json_kind(v) != json_kind(body[name])])
        )
        exc = parses_or_refuses(json.dumps(body), sender)
        expected = ErrorCode.BAD_VERSION if name == "v" else ErrorCode.BAD_FIELD
        assert exc is not None and (exc.code, exc.field) == (expected, name)
    elif mutation == "add":
        extra = data.draw(st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True))
        if extra in body or extra in ("v", "type"):
            return
        body[extra] = data.draw(json_values)
        exc = parses_or_refuses(json.dumps(body), sender)
        assert exc is not None and (exc.code, exc.field) == (ErrorCode.UNKNOWN_FIELD, extra)
    else:
        spec = text_spec(cls, name)
        if spec is None:
            return
        body[name] = "a" * (spec.max_len + 1)
        exc = parses_or_refuses(json.dumps(body), sender)
        assert exc is not None
        if spec.max_len + 200 < MAX_MESSAGE_BYTES:
            assert (exc.code, exc.field, exc.msg_type) == (ErrorCode.BAD_FIELD, name, cls.TYPE)


@settings(max_examples=300)
@given(messages, st.data())
def test_fuzz_deep_mutations_never_escape(message: Message, data: st.DataObject) -> None:
    """Replace any value at any depth with any JSON value: Message or BadMessage, nothing else."""
    body = as_dict(message)
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            paths.append((node, key))
            if isinstance(value, dict | list):
                walk(value)

    walk(body)
    node, key = data.draw(st.sampled_from(paths))
    node[key] = data.draw(json_values)
    parses_or_refuses(json.dumps(body), sender_for(message))


# ---------------------------------------------------------------- privacy


def test_log_fields_never_carry_an_appointment_code() -> None:
    join = JoinQueue(id="j9", language="es", audio_only=True, appointment_code=CANARY_CODE)
    assert join.log_fields() == {"type": "join_queue", "id": "j9"}
    assert CANARY_CODE not in repr(join)
    assert CANARY_CODE in encode(join), "the canary really is in the message"
    parsed = parse(encode(join), sender="booth")
    assert CANARY_CODE not in repr(parsed) and CANARY_CODE not in str(parsed.log_fields())


@pytest.mark.parametrize(
    "bad",
    [
        CANARY_CODE * 2,  # too long
        CANARY_CODE[:3],  # too short
        CANARY_CODE + "x",  # not digits
        int(CANARY_CODE),  # a number
        [CANARY_CODE],  # a list
    ],
)
def test_a_refused_appointment_code_is_never_echoed(bad: object) -> None:
    exc = refusal(dumps(JOIN | {"appointment_code": bad}))
    reply = error_reply(exc, exc.msg_id)
    for text in (str(exc), repr(exc), reply.message, str(vars(exc))):
        assert CANARY_CODE[:3] not in text  # every bad form above starts with these digits


def test_twin_a_naive_log_would_carry_the_code() -> None:
    """Twin: logging the decoded JSON instead of log_fields() leaks the canary."""
    text = encode(JoinQueue(id="j9", language="es", audio_only=True, appointment_code=CANARY_CODE))
    assert CANARY_CODE in str(json.loads(text))


SECRET_FIELDS = {"token", "credential", "appointment_code", "sdp", "message", "site"}


@settings(max_examples=200)
@given(messages)
def test_log_fields_are_only_ids_and_fixed_words(message: Message) -> None:
    logged = message.log_fields()
    assert logged["type"] == message.TYPE and logged["id"] == message.id
    assert not SECRET_FIELDS & set(logged)
    words = {
        m.value
        for e in (BoothState, Door, CallEvent, EndReason, AlertKind, AlertStatus, ErrorCode)
        for m in e
    }
    for key, value in logged.items():
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value), (key, value)
        assert (
            key in {"type", "id", "booth_id", "call_id", "alert_id", "in_reply_to"}
            or value in words
        )


def test_secrets_are_hidden_from_repr() -> None:
    for message, secret in (
        (BY_TYPE["hello"], "bt_8fK2mQ9xZr4LwT7vY1nC"),
        (BY_TYPE["call_started"], "q4Zx3bLmV9Yt0p8sFh2kPzJ1cWE="),
        (BY_TYPE["offer"], "opus/48000"),
        (BY_TYPE["join_queue"], "482913"),
    ):
        assert secret not in repr(message), message.TYPE
        assert secret in encode(message)


def test_new_ids_are_valid_and_do_not_repeat() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{16}", i) for i in ids)


# ---------------------------------------------------------------- error replies


def test_error_reply_tells_the_sender_what_was_wrong() -> None:
    exc = refusal(dumps(JOIN | {"id": "j-5", "langauge": "es"}))
    reply = error_reply(exc, exc.msg_id)
    assert reply.code is ErrorCode.UNKNOWN_FIELD and reply.in_reply_to == "j-5"
    assert reply.message.startswith("join_queue.langauge: unknown field")
    assert parse(encode(reply), sender="hub") == reply
    assert reply.log_fields() == {
        "type": "error",
        "id": reply.id,
        "code": "unknown_field",
        "in_reply_to": "j-5",
    }


def test_error_reply_drops_a_bad_reply_id_and_cuts_long_texts() -> None:
    exc = refusal(dumps({"v": 1, "type": "x" * 40, "id": "a"}), "console")
    reply = error_reply(exc, "not an id!")
    assert reply.in_reply_to is None
    assert len(reply.message) <= protocol.MAX_ERROR_TEXT
    assert error_reply(refusal(b"\xff"), None).code is ErrorCode.NOT_JSON


# ---------------------------------------------------------------- neighbours


def test_turn_credentials_fit_the_ice_server_schema() -> None:
    """What clinic/turn.py mints must be what a welcome or call_started may carry."""
    turn = pytest.importorskip("clinic.turn")
    creds = turn.turn_credentials(
        b"0123456789abcdef0123", "riverside-1", 1_764_187_500, urls=("turn:turn.example.org",)
    )
    server = IceServer(**creds.as_ice_server(), ttl=creds.ttl)
    assert server.username == creds.username and server.ttl == creds.ttl
    lo, hi = turn.TTL_RANGE
    assert IceServer(**{**as_dict(BY_TYPE["call_started"])["ice_servers"][0], "ttl": lo}).ttl == lo
    assert IceServer(**{**as_dict(BY_TYPE["call_started"])["ice_servers"][0], "ttl": hi}).ttl == hi


def test_a_configured_site_always_fits_in_an_alert() -> None:
    """The config takes multi-line text and tabs; the alert must still be built."""
    site = Site.fitted(
        name="Riverside\tLibrary", street_address="12 Main Street\nSpringfield", room="\x1b[2J"
    )
    assert site == Site(
        name="Riverside Library", street_address="12 Main Street Springfield", room="[2J"
    )
    assert Site.fitted(name="n" * 500, street_address="\x00", room=" ").name == "n" * 99 + "…"


def test_twin_without_fitting_a_multi_line_address_stops_the_alert() -> None:
    """Twin: the same configured address, not fitted, cannot be put in an alert."""
    with pytest.raises(BadMessage, match="street_address"):
        Site(name="Riverside Library", street_address="12 Main Street\nSpringfield", room="2")


@settings(max_examples=200)
@given(st.text(max_size=300), st.text(max_size=300), st.text(max_size=300))
def test_any_site_text_fits(name: str, street_address: str, room: str) -> None:
    site = Site.fitted(name=name, street_address=street_address, room=room)
    alert = replace(BY_TYPE["alert"], site=site)
    assert parse(encode(alert), sender="booth") == alert


# ---------------------------------------------------------------- the documentation


@functools.cache
def _attribute_docs() -> dict[str, dict[str, str]]:
    """Per class of clinic/protocol.py, the string under each field (its meaning)."""
    tree = ast.parse(Path(inspect.getfile(protocol)).read_text())
    out: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        docs = out[node.name] = {}
        for first, second in itertools.pairwise(node.body):
            if (
                isinstance(first, ast.AnnAssign)
                and isinstance(first.target, ast.Name)
                and isinstance(second, ast.Expr)
                and isinstance(second.value, ast.Constant)
                and isinstance(second.value.value, str)
            ):
                docs[first.target.id] = " ".join(inspect.cleandoc(second.value.value).split())
    return out


def field_docs(cls: type[Any]) -> dict[str, str]:
    """Attribute docstrings of a class and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        docs |= _attribute_docs().get(klass.__name__, {})
    return docs


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("``", "`")


def _type_of(spec: Any) -> str:
    if isinstance(spec, ListOf):
        return f"array of {_type_of(spec.item)}"
    if isinstance(spec, Obj):
        return f"[{spec.cls.__name__}](#{spec.cls.__name__.lower()})"
    return str(spec.json_type)


def _bounds(spec: Any) -> str:
    if isinstance(spec, ListOf):
        inner = "" if isinstance(spec.item, Obj) else f"; each {_bounds(spec.item)}"
        return f"{spec.lo}-{spec.hi} items{inner}"
    if isinstance(spec, Obj):
        return f"see {spec.cls.__name__}"
    return str(spec.expect())


def _table(cls: type[Any]) -> list[str]:
    docs = field_docs(cls)
    rows = ["| field | type | required | allowed | meaning |", "|---|---|---|---|---|"]
    for f in schema(cls):
        required = "yes" if f.required else "no"
        rows.append(
            f"| `{f.name}` | {_type_of(f.spec)} | {required} | {_cell(_bounds(f.spec))} "
            f"| {_cell(docs[f.name])} |"
        )
    return rows


def _senders(cls: type[Message]) -> str:
    return ", ".join(s for s in SENDERS if s in cls.SENDERS)


def render_schema() -> str:
    """The generated part of docs/protocol.md: index, one section per message, objects."""
    out = [BEGIN, "", "## Messages", "", "| type | sent by | what it is for |", "|---|---|---|"]
    for msg_type, cls in MESSAGE_TYPES.items():
        summary = _cell(" ".join((cls.__doc__ or "").split()))
        out.append(f"| [`{msg_type}`](#{msg_type}) | {_senders(cls)} | {summary} |")
    for msg_type, cls in MESSAGE_TYPES.items():
        summary = _cell(" ".join((cls.__doc__ or "").split()))
        out += ["", f"### {msg_type}", "", f"Sent by: {_senders(cls)}. {summary}", ""]
        out += _table(cls)
        for name, rules in cls.VALUE_SENDERS.items():
            for word, senders in rules.items():
                who = ", ".join(s for s in SENDERS if s in senders)
                out.append("")
                out.append(f"`{name}` = `{word}` may be sent only by: {who}.")
        out += ["", "```json", encode(BY_TYPE[msg_type]), "```"]
    out += ["", "## Objects inside messages"]
    for cls in OBJECT_TYPES:
        summary = _cell(" ".join((cls.__doc__ or "").split()))
        out += ["", f"### {cls.__name__}", "", summary, ""]
        out += _table(cls)
    out += ["", END]
    return "\n".join(out) + "\n"


def test_every_field_has_a_meaning() -> None:
    for cls in (*MESSAGE_TYPES.values(), *OBJECT_TYPES):
        docs = field_docs(cls)
        missing = [f.name for f in schema(cls) if not docs.get(f.name)]
        assert not missing, f"{cls.__name__}: document {missing} with a string under the field"


def test_docs_list_every_type_field_and_code() -> None:
    text = DOC.read_text()
    for msg_type, cls in MESSAGE_TYPES.items():
        assert f"### {msg_type}\n" in text, msg_type
        section = text.split(f"### {msg_type}\n", 1)[1].split("\n### ", 1)[0]
        for f in schema(cls):
            assert f"| `{f.name}` |" in section, f"{msg_type}.{f.name}"
    for cls in OBJECT_TYPES:
        assert f"### {cls.__name__}\n" in text
    for code in ErrorCode:
        assert f"`{code.value}`" in text, code


def test_docs_are_generated_from_the_code() -> None:
    text = DOC.read_text()
    assert BEGIN in text and END in text
    generated = BEGIN + text.split(BEGIN, 1)[1].split(END, 1)[0] + END + "\n"
    assert generated == render_schema(), "run: python -m tests.clinic.test_protocol"


def test_doc_examples_are_valid_messages() -> None:
    blocks = re.findall(r"```json\n(.*?)\n```", DOC.read_text(), re.S)
    parsed = []
    for block in blocks:
        data = json.loads(block)
        if "type" in data and "v" in data:
            cls = MESSAGE_TYPES[data["type"]]
            parsed.append(parse(block, sender=sender_for(BY_TYPE[cls.TYPE])).TYPE)
    assert set(parsed) == set(MESSAGE_TYPES)


def write_docs() -> None:
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(head + render_schema().rstrip("\n") + tail)


if __name__ == "__main__":
    write_docs()
    print(f"wrote {DOC}")
