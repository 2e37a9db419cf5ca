"""The one signaling protocol between booths, the hub and clinician consoles.

Every message is one JSON object in one WebSocket text frame, at most
:data:`MAX_MESSAGE_BYTES` (64 KiB) of UTF-8, shaped like::

    {"v": 1, "type": "join_queue", "id": "k3Jx9", "language": "es", "audio_only": false}

Each ``type`` is a frozen dataclass below whose annotations *are* the schema:
``Annotated`` aliases (:data:`BoothId`, :data:`Sdp`, ...) carry the bounds,
enums the fixed words, nested dataclasses the objects. Who may send a type
is part of it (``SENDERS``). A message is checked when it is built, so the
hub cannot construct what a booth would refuse, and :func:`parse` is nothing
but the envelope checks followed by construction. ``docs/protocol.md`` is
generated from the same classes (``python -m tests.clinic.test_protocol``).

Refusals raise :class:`BadMessage` (a :class:`kiosk.errors.ProtocolError`)
with a fixed ``code`` and a text naming the type, the field and what was
expected. They never repeat a value that was sent: a value may be a token or
an appointment code, and error texts end up in logs and in ``error`` replies.
For the same reason :meth:`Message.log_fields` returns only ids and fixed
words, and ``repr`` hides tokens, credentials, codes and SDP.

Input is untrusted all the way down: the size is checked before JSON is
decoded, nesting too deep for the decoder is refused rather than crashing,
and a malformed message of any shape ends in :class:`BadMessage`, never in
another exception.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import re
import secrets
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import (
    Annotated,
    Any,
    ClassVar,
    Final,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from kiosk.errors import ProtocolError

PROTOCOL_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 64 * 1024
"""The cap on one message, in bytes of UTF-8, checked before anything is decoded."""
MAX_ERROR_TEXT: Final = 300

Sender = Literal["booth", "console", "hub"]
SENDERS: Final[tuple[Sender, ...]] = ("booth", "console", "hub")

_BOOTH: Final[frozenset[Sender]] = frozenset({"booth"})
_CONSOLE: Final[frozenset[Sender]] = frozenset({"console"})
_HUB: Final[frozenset[Sender]] = frozenset({"hub"})
_ANYONE: Final[frozenset[Sender]] = frozenset(SENDERS)


# ---------------------------------------------------------------- fixed words


class ErrorCode(StrEnum):
    """Why a message was refused (:class:`BadMessage`) or a request failed (the hub's)."""

    # Refusals by parse(): the message itself is wrong.
    TOO_BIG = "too_big"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    BAD_VERSION = "bad_version"
    UNKNOWN_TYPE = "unknown_type"
    NOT_ALLOWED = "not_allowed"
    MISSING_FIELD = "missing_field"
    BAD_FIELD = "bad_field"
    UNKNOWN_FIELD = "unknown_field"
    # The hub's answers to well-formed requests it cannot carry out.
    UNAUTHORIZED = "unauthorized"
    HELLO_FIRST = "hello_first"
    UNKNOWN_BOOTH = "unknown_booth"
    UNKNOWN_CALL = "unknown_call"
    UNKNOWN_ALERT = "unknown_alert"
    NOT_WAITING = "not_waiting"
    BUSY = "busy"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal"


PARSE_CODES: Final = frozenset(list(ErrorCode)[:9])
"""The codes :func:`parse` raises; the rest are the hub's."""


class BoothState(StrEnum):
    """What a booth tells the hub it is doing (a summary of the visit's states)."""

    IDLE = "idle"
    IN_USE = "in_use"
    OUT_OF_SERVICE = "out_of_service"
    EMERGENCY = "emergency"


class Door(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class CallEvent(StrEnum):
    """Something that changed in a call, told to the other side."""

    DOOR_OPEN = "door_open"
    DOOR_CLOSED = "door_closed"
    EMERGENCY = "emergency"
    EMERGENCY_CLEARED = "emergency_cleared"
    MUTED = "muted"
    UNMUTED = "unmuted"
    CAMERA_OFF = "camera_off"
    CAMERA_ON = "camera_on"
    BOOTH_OFFLINE = "booth_offline"  # the hub to the console: the booth's link dropped
    BOOTH_ONLINE = "booth_online"  # the hub to the console: the booth is back, within the grace


class EndReason(StrEnum):
    """Why a call ended, or why a booth's place in the queue did (no call yet)."""

    RESIDENT_ENDED = "resident_ended"
    CLINICIAN_ENDED = "clinician_ended"
    BOOTH_DISCONNECTED = "booth_disconnected"
    CLINICIAN_DISCONNECTED = "clinician_disconnected"
    MEDIA_FAILED = "media_failed"
    QUEUE_CLOSED = "queue_closed"
    HUB_CLOSING = "hub_closing"


class AlertKind(StrEnum):
    """What an alert is about, which decides how loudly consoles show it."""

    EMERGENCY = "emergency"  # the emergency button was held: an alarm until acknowledged
    UPDATES_BLOCKED = "updates_blocked"  # updates have failed for days: a quiet notice


class AlertStatus(StrEnum):
    RECEIVED = "received"  # the hub has it: the booth stops retrying
    ACKNOWLEDGED = "acknowledged"  # a member of staff acknowledged it on a console


# ---------------------------------------------------------------- the error


class BadMessage(ProtocolError):  # noqa: N818 -- the name the hub and booth code use
    """A message broke the schema. ``code`` is a fixed word from :data:`PARSE_CODES`.

    ``msg_type`` is the message's type when it was readable and known,
    ``field`` the offending field's path (``ice_servers[0].urls[1]``) or None,
    ``msg_id`` the message's id when it was a valid id (for ``in_reply_to``).
    """

    def __init__(
        self,
        code: ErrorCode,
        detail: str,
        *,
        msg_type: str | None = None,
        path: tuple[str | int, ...] = (),
        msg_id: str | None = None,
    ) -> None:
        self.code = code
        self.detail = detail
        self.msg_type = msg_type
        self.path = path
        self.field = _render_path(path) or None
        self.msg_id = msg_id
        where = ".".join(p for p in (msg_type, self.field) if p)
        super().__init__(f"{where}: {detail}" if where else detail)

    def _within(self, part: str | int) -> BadMessage:
        return BadMessage(self.code, self.detail, path=(part, *self.path))

    def _of(self, msg_type: str | None, msg_id: str | None) -> BadMessage:
        return BadMessage(self.code, self.detail, msg_type=msg_type, path=self.path, msg_id=msg_id)


def _render_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _bad(detail: str, code: ErrorCode = ErrorCode.BAD_FIELD) -> BadMessage:
    return BadMessage(code, detail)


def _kind(value: object) -> str:
    """What was sent, by kind only: a value may be secret, so it is never repeated."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def _shown(name: object) -> str | None:
    """A key or type name safe to repeat in an error: shaped like ours, never digits."""
    return name if isinstance(name, str) and _NAME.fullmatch(name) else None


def _quoted(words: Iterable[object]) -> str:
    return ", ".join(json.dumps(str(w)) for w in words)


# ---------------------------------------------------------------- field specs

# C0 and C1 controls (category Cc) and lone surrogates (Cs): they garble logs
# and consoles, and a surrogate cannot even be sent as UTF-8.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


class _Spec:
    """How one field is checked, written to JSON, described and logged."""

    json_type: ClassVar[str]

    def loggable(self) -> bool:
        """Whether values are ids or fixed words, safe in any log."""
        return False

    def expect(self) -> str:
        raise NotImplementedError

    def load(self, value: object) -> Any:
        """Check a JSON or Python value; return its canonical Python form."""
        raise NotImplementedError

    def dump(self, value: Any) -> object:
        return value


@dataclass(frozen=True)
class Text(_Spec):
    """A string of ``min_len``-``max_len`` code points, optionally matching ``pattern``."""

    json_type: ClassVar[str] = "string"
    max_len: int
    min_len: int = 1
    pattern: str | None = None
    what: str = ""  # how ``pattern`` reads to a person
    line_breaks: bool = False  # CR and LF allowed (SDP)
    log: bool = False  # an id: safe to log

    def loggable(self) -> bool:
        return self.log

    def expect(self) -> str:
        return self.what or f"text of {self.min_len}-{self.max_len} characters"

    @functools.cached_property
    def _rx(self) -> re.Pattern[str] | None:
        return re.compile(self.pattern) if self.pattern else None

    def load(self, value: object) -> str:
        if not isinstance(value, str):
            raise _bad(f"must be {self.expect()}, not {_kind(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            raise _bad(f"must be {self.expect()}, not {len(value)} characters")
        bad_chars = _CONTROL_BUT_LINES if self.line_breaks else _CONTROL
        if bad_chars.search(value):
            raise _bad(
                f"must be {self.expect()}, without control characters or unpaired surrogates"
            )
        if self._rx is not None and not self._rx.fullmatch(value):
            raise _bad(f"must be {self.expect()}, not text of another form")
        return value


@dataclass(frozen=True)
class Int(_Spec):
    """A whole number within ``lo``-``hi``; ``true`` and ``2.0`` are not numbers here."""

    json_type: ClassVar[str] = "integer"
    lo: int
    hi: int
    unit: str = ""

    def expect(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"a whole number{unit} {self.lo}-{self.hi}"

    def load(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(f"must be {self.expect()}, not {_kind(value)}")
        if not self.lo <= value <= self.hi:
            raise _bad(f"must be {self.expect()}, not a number outside that range")
        return value


@dataclass(frozen=True)
class Flag(_Spec):
    json_type: ClassVar[str] = "boolean"

    def expect(self) -> str:
        return "true or false"

    def load(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise _bad(f"must be true or false, not {_kind(value)}")
        return value


@dataclass(frozen=True)
class Choice(_Spec):
    """One word of a fixed vocabulary: safe to log by construction."""

    json_type: ClassVar[str] = "string"
    enum: type[StrEnum]

    def loggable(self) -> bool:
        return True

    def expect(self) -> str:
        return f"one of {_quoted(m.value for m in self.enum)}"

    def load(self, value: object) -> StrEnum:
        if isinstance(value, self.enum):
            return value
        if isinstance(value, str) and value in self.enum._value2member_map_:
            return self.enum(value)
        found = "another word" if isinstance(value, str) else _kind(value)
        raise _bad(f"must be {self.expect()}, not {found}")

    def dump(self, value: Any) -> object:
        return str(value.value)


_UTC_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")


@dataclass(frozen=True)
class Timestamp(_Spec):
    """An instant in UTC, ISO 8601 with a ``Z``; in Python an aware ``datetime`` in UTC."""

    json_type: ClassVar[str] = "string"

    def expect(self) -> str:
        return 'a UTC time such as "2026-11-26T20:05:00Z"'

    def load(self, value: object) -> datetime:
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise _bad(f"must be {self.expect()}, not a time without a time zone")
            return value.astimezone(UTC)
        if not isinstance(value, str):
            raise _bad(f"must be {self.expect()}, not {_kind(value)}")
        if not _UTC_TIME.fullmatch(value):
            raise _bad(f"must be {self.expect()}, not text of another form")
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise _bad(f"must be {self.expect()}, not a date that does not exist") from None

    def dump(self, value: Any) -> object:
        t: datetime = value
        frac = f".{t.microsecond:06d}" if t.microsecond else ""
        return (
            f"{t.year:04d}-{t.month:02d}-{t.day:02d}T"
            f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}{frac}Z"
        )


@dataclass(frozen=True)
class Items:
    """Bounds on a list, written ``Annotated[tuple[X, ...], Items(lo, hi)]``."""

    lo: int
    hi: int


@dataclass(frozen=True)
class ListOf(_Spec):
    json_type: ClassVar[str] = "array"
    item: _Spec
    lo: int
    hi: int

    def expect(self) -> str:
        return f"a list of {self.lo}-{self.hi} items"

    def load(self, value: object) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _bad(f"must be {self.expect()}, not {_kind(value)}")
        if not self.lo <= len(value) <= self.hi:
            raise _bad(f"must be {self.expect()}, not {len(value)} items")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(self.item.load(v))
            except BadMessage as exc:
                raise exc._within(i) from None
        return tuple(out)

    def dump(self, value: Any) -> object:
        return [self.item.dump(v) for v in value]


@dataclass(frozen=True)
class Obj(_Spec):
    json_type: ClassVar[str] = "object"
    cls: type[_Object]

    def expect(self) -> str:
        return f"an object ({self.cls.__name__})"

    def load(self, value: object) -> _Object:
        if isinstance(value, self.cls):
            return value  # checked when it was built
        if not isinstance(value, dict):
            raise _bad(f"must be {self.expect()}, not {_kind(value)}")
        return _build(self.cls, value)

    def dump(self, value: Any) -> object:
        return _to_json(value)


# ---------------------------------------------------------------- field types
# Reusable aliases: the type a field has in Python and its bounds on the wire.

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MsgId = Annotated[
    str, Text(64, pattern=_ID.pattern, what="1-64 of A-Z, a-z, 0-9, _ and -", log=True)
]
CallId = MsgId
AlertId = MsgId
BoothId = Annotated[
    str,
    Text(
        63,
        pattern=r"[a-z0-9][a-z0-9-]{0,62}",
        what="1-63 of a-z, 0-9 and -, not starting with -",
        log=True,
    ),
]
Token = Annotated[
    str,
    Text(512, 16, r"[A-Za-z0-9._~+/=-]{16,512}", "16-512 of A-Z, a-z, 0-9 and ._~+/=-"),
]
Firmware = Annotated[
    str, Text(40, pattern=r"[0-9A-Za-z][0-9A-Za-z.+-]{0,39}", what="a version such as 0.1.0")
]
Language = Annotated[
    str, Text(6, 2, r"[a-z]{2,3}(_[A-Z]{2})?", 'a language code such as "es" or "pt_BR"')
]
AppointmentCode = Annotated[str, Text(12, 4, r"[0-9]{4,12}", "4-12 digits 0-9, in quotes")]
Sdp = Annotated[
    str,
    Text(
        60_000, 3, r"(?s)v=0\r\n.*", 'an SDP of up to 60000 characters starting "v=0\\r\\n"', True
    ),
]
IceUrl = Annotated[
    str,
    Text(
        256,
        pattern=r"(stuns?|turns?):([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?"
        r"(\?transport=(udp|tcp))?",
        what='a stun:, stuns:, turn: or turns: address such as "turn:turn.example.org:3478"',
    ),
]
IceSecret = Annotated[str, Text(256, pattern=r"[!-~]{1,256}", what="1-256 printable ASCII")]
Label100 = Annotated[str, Text(100)]
Label200 = Annotated[str, Text(200)]
ErrorText = Annotated[str, Text(MAX_ERROR_TEXT)]
Position = Annotated[int, Int(1, 999)]
Ttl = Annotated[int, Int(60, 86_400, "of seconds")]
UtcTime = Annotated[datetime, Timestamp()]


# ---------------------------------------------------------------- objects


@dataclass(frozen=True, kw_only=True)
class _Object:
    """A checked, frozen record: every field is validated (and made canonical) on build."""

    def __post_init__(self) -> None:
        msg_type: str | None = getattr(type(self), "TYPE", None)
        msg_id: str | None = None
        for f in schema(type(self)):
            value = getattr(self, f.name)
            if value is None and not f.required:
                continue
            try:
                canonical = f.spec.load(value)
            except BadMessage as exc:
                raise exc._within(f.name)._of(msg_type, msg_id) from None
            if canonical is not value:
                object.__setattr__(self, f.name, canonical)
            if f.name == "id":
                msg_id = canonical
        try:
            self._check()
        except BadMessage as exc:
            raise exc._of(msg_type, msg_id) from None

    def _check(self) -> None:
        """Rules across fields; override where there are any."""


_O = TypeVar("_O", bound=_Object)


@dataclass(frozen=True)
class FieldSchema:
    """One field of a message or object, as the schema (and the docs) see it."""

    name: str
    spec: _Spec
    required: bool


def _spec_of(hint: Any) -> _Spec:
    if get_origin(hint) is Annotated:
        base, marker = get_args(hint)[:2]
        if isinstance(marker, Items):
            item_hint = get_args(base)[0]
            return ListOf(_spec_of(item_hint), marker.lo, marker.hi)
        if not isinstance(marker, _Spec):
            raise TypeError(f"no field spec in {hint!r}")
        return marker
    if hint is bool:
        return Flag()
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return Choice(hint)
    if isinstance(hint, type) and issubclass(hint, _Object):
        return Obj(hint)
    raise TypeError(f"no field spec for {hint!r}")


_SCHEMAS: dict[type[_Object], tuple[FieldSchema, ...]] = {}


def schema(cls: type[_Object]) -> tuple[FieldSchema, ...]:
    """The fields of a message or object type, in order, with their specs."""
    known = _SCHEMAS.get(cls)
    if known is None:
        known = _SCHEMAS[cls] = _compile(cls)
    return known


def _compile(cls: type[_Object]) -> tuple[FieldSchema, ...]:
    hints = get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if get_origin(hint) in (Union, types.UnionType):
            hint = next(a for a in get_args(hint) if a is not type(None))
        out.append(FieldSchema(f.name, _spec_of(hint), required))
    return tuple(out)


def _build(cls: type[_O], data: dict[str, Any]) -> _O:
    """Build ``cls`` from a decoded JSON object: unknown, missing and null fields first."""
    fields = schema(cls)
    names = [f.name for f in fields]
    for key in data:
        if key not in names:
            shown = _shown(key)
            hint = difflib.get_close_matches(shown, names, n=1, cutoff=0.6) if shown else []
            mean = f" (did you mean {json.dumps(hint[0])}?)" if hint else ""
            known = ", ".join(names) or "nothing"
            raise BadMessage(
                ErrorCode.UNKNOWN_FIELD,
                f"unknown field{mean}; expected {known}",
                path=(shown,) if shown else (),
            )
    for f in fields:
        if f.name not in data:
            if f.required:
                raise BadMessage(
                    ErrorCode.MISSING_FIELD,
                    f"is missing; it must be {f.spec.expect()}",
                    path=(f.name,),
                )
        elif data[f.name] is None and not f.required:
            raise _bad(f"must be {f.spec.expect()}, or left out; not null")._within(f.name)
    return cls(**data)


def _to_json(obj: _Object) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in schema(type(obj)):
        value = getattr(obj, f.name)
        if value is not None:
            out[f.name] = f.spec.dump(value)
    return out


@dataclass(frozen=True, kw_only=True)
class IceServer(_Object):
    """One STUN or TURN server in the shape of WebRTC's ``RTCIceServer``."""

    urls: Annotated[tuple[IceUrl, ...], Items(1, 8)]
    """Addresses of the one server (e.g. its UDP and TCP ports)."""
    username: IceSecret | None = None
    """TURN only: ``expiry:user`` in coturn's REST scheme (see ``clinic/turn.py``)."""
    credential: IceSecret | None = field(default=None, repr=False)
    """TURN only: the password for ``username``; never logged."""
    ttl: Ttl | None = None
    """TURN only: seconds from now until ``username`` and ``credential`` stop working."""

    def _check(self) -> None:
        # Browsers refuse a turn: URL without credentials, so it is refused here first.
        secrets_ = {"username": self.username, "credential": self.credential, "ttl": self.ttl}
        given = [k for k, v in secrets_.items() if v is not None]
        turn = any(u.startswith("turn") for u in self.urls)
        if (turn or given) and len(given) < 3:
            missing = next(k for k, v in secrets_.items() if v is None)
            why = "a turn: server" if turn else "credentials"
            raise BadMessage(
                ErrorCode.MISSING_FIELD,
                f"is missing: {why} must come with username, credential and ttl",
                path=(missing,),
            )


@dataclass(frozen=True, kw_only=True)
class Site(_Object):
    """Where a booth stands, as its configuration says (``[site]``)."""

    name: Label100
    """The library or clinic."""
    street_address: Label200
    """For staff to send help to."""
    room: Label100
    """Where in the building the booth is."""

    @classmethod
    def fitted(cls, *, name: str, street_address: str, room: str) -> Site:
        """From the booth's config, never refused: an emergency alert must always be sendable.

        The config accepts any text (a multi-line address, a tab); see :func:`fit_text`.
        """
        given = {"name": name, "street_address": street_address, "room": room}
        fitted = {}
        for f in schema(cls):
            assert isinstance(f.spec, Text)
            fitted[f.name] = fit_text(given[f.name], f.spec.max_len)
        return cls(**fitted)


@dataclass(frozen=True, kw_only=True)
class BoothInfo(_Object):
    """One booth as a console shows it."""

    booth_id: BoothId
    """The booth."""
    name: Label100
    """The booth's name as staff know it."""
    site: Label100
    """The name of the site it is in."""
    online: bool
    """Connected to the hub now; if not, ``state`` and ``door`` are the last known."""
    state: BoothState
    """What the booth last said it was doing."""
    door: Door
    """The door as the booth last reported it."""


@dataclass(frozen=True, kw_only=True)
class QueueEntry(_Object):
    """One booth waiting for a clinician. The list is in queue order."""

    booth_id: BoothId
    """The waiting booth."""
    language: Language
    """The language the resident chose."""
    audio_only: bool
    """The resident asked for a call without video."""
    has_appointment: bool
    """The resident gave an appointment code the hub recognised (the code is not sent)."""
    since: UtcTime
    """When the booth joined the queue, by the hub's clock."""


# ---------------------------------------------------------------- messages


@dataclass(frozen=True, kw_only=True)
class Message(_Object):
    """Base of every message: the sender's ``id`` for it; ``v`` and ``type`` are implied."""

    TYPE: ClassVar[str]
    SENDERS: ClassVar[frozenset[Sender]]
    VALUE_SENDERS: ClassVar[Mapping[str, Mapping[str, frozenset[Sender]]]] = MappingProxyType({})
    """Per field, words only some senders may use (the rest may be sent by any sender)."""

    id: MsgId
    """Chosen by the sender, unique on its connection (``new_id()``); replies name it."""

    def log_fields(self) -> dict[str, str]:
        """What may be logged about this message: type, ids and fixed words, nothing else."""
        out = {"type": self.TYPE}
        for f in schema(type(self)):
            value = getattr(self, f.name)
            if value is not None and f.spec.loggable():
                out[f.name] = str(f.spec.dump(value))
        return out


@dataclass(frozen=True, kw_only=True)
class Hello(Message):
    """The booth's first message on every connection: who it is, and proof of it."""

    TYPE: ClassVar[str] = "hello"
    SENDERS: ClassVar[frozenset[Sender]] = _BOOTH
    booth_id: BoothId
    """The id the booth was enrolled with (``[booth] id`` in its config)."""
    token: Token = field(repr=False)
    """The booth's enrolment token; never logged."""
    firmware: Firmware
    """The firmware version the booth runs."""


@dataclass(frozen=True, kw_only=True)
class Welcome(Message):
    """The hub accepts a booth's hello; anything else before it is refused."""

    TYPE: ClassVar[str] = "welcome"
    SENDERS: ClassVar[frozenset[Sender]] = _HUB
    ice_servers: Annotated[tuple[IceServer, ...], Items(0, 8)]
    """STUN/TURN servers for the booth's network check before a call; calls get their own."""


@dataclass(frozen=True, kw_only=True)
class Presence(Message):
    """The booth's state and door, sent after welcome and on every change."""

    TYPE: ClassVar[str] = "presence"
    SENDERS: ClassVar[frozenset[Sender]] = _BOOTH
    state: BoothState
    """What the booth is doing."""
    door: Door
    """Whether the booth's door is open."""


@dataclass(frozen=True, kw_only=True)
class JoinQueue(Message):
    """The resident is ready: put the booth in the waiting room."""

    TYPE: ClassVar[str] = "join_queue"
    SENDERS: ClassVar[frozenset[Sender]] = _BOOTH
    language: Language
    """The language the resident chose, for a clinician who speaks it."""
    audio_only: bool
    """The resident asked for a call without video."""
    appointment_code: AppointmentCode | None = field(default=None, repr=False)
    """The code the resident typed, if any (a walk-in has none); never logged or echoed."""


@dataclass(frozen=True, kw_only=True)
class Queued(Message):
    """The booth is in the queue; sent again whenever its position changes."""

    TYPE: ClassVar[str] = "queued"
    SENDERS: ClassVar[frozenset[Sender]] = _HUB
    position: Position
    """1 is next."""


@dataclass(frozen=True, kw_only=True)
class CodeRefused(Message):
    """The hub knows no appointment for the code; the booth is not queued."""

    TYPE: ClassVar[str] = "code_refused"
    SENDERS: ClassVar[frozenset[Sender]] = _HUB


@dataclass(frozen=True, kw_only=True)
class LeaveQueue(Message):
    """The resident stopped waiting (or the booth's wait limit ran out)."""

    TYPE: ClassVar[str] = "leave_queue"
    SENDERS: ClassVar[frozenset[Sender]] = _BOOTH


@dataclass(frozen=True, kw_only=True)
class CallStarted(Message):
    """A clinician answered: sent to the booth and to that clinician's console."""

    TYPE: ClassVar[str] = "call_started"
    SENDERS: ClassVar[frozenset[Sender]] = _HUB
    call_id: CallId
    """Names the call in every message about it."""
    booth_id: BoothId
    """The booth in the call."""
    audio_only: bool
    """The resident asked for a call without video."""
    ice_servers: Annotated[tuple[IceServer, ...], Items(0, 8)]
    """STUN/TURN servers with TURN credentials minted for this call and this party."""


@dataclass(frozen=True, kw_only=True)
class Offer(Message):
    """A WebRTC offer, relayed by the hub. The booth offers; either side may re-offer."""

    TYPE: ClassVar[str] = "offer"
    SENDERS: ClassVar[frozenset[Sender]] = _ANYONE
    call_id: CallId
    """The call, from call_started."""
    sdp: Sdp = field(repr=False)
    """The session description, with every ICE candidate in it (no trickle ICE)."""


@dataclass(frozen=True, kw_only=True)
class Answer(Message):
    """The WebRTC answer to an offer, relayed by the hub."""

    TYPE: ClassVar[str] = "answer"
    SENDERS: ClassVar[frozenset[Sender]] = _ANYONE
    call_id: CallId
    """The call, from call_started."""
    sdp: Sdp = field(repr=False)
    """The session description, with every ICE candidate in it (no trickle ICE)."""


_FROM_THE_BOOTH: Final[frozenset[Sender]] = frozenset({"booth", "hub"})


@dataclass(frozen=True, kw_only=True)
class CallState(Message):
    """Something changed in a call, for the other side to show; the hub relays it."""

    TYPE: ClassVar[str] = "call_state"
    SENDERS: ClassVar[frozenset[Sender]] = _ANYONE
    VALUE_SENDERS: ClassVar[Mapping[str, Mapping[str, frozenset[Sender]]]] = MappingProxyType(
        {
            "event": {
                **{
                    e.value: _FROM_THE_BOOTH
                    for e in (
                        CallEvent.DOOR_OPEN,
                        CallEvent.DOOR_CLOSED,
                        CallEvent.EMERGENCY,
                        CallEvent.EMERGENCY_CLEARED,
                    )
                },
                **{e.value: _HUB for e in (CallEvent.BOOTH_OFFLINE, CallEvent.BOOTH_ONLINE)},
            }
        }
    )
    call_id: CallId
    """The call."""
    event: CallEvent
    """What changed. Door and emergency words come from the booth only, booth_offline and
    booth_online (the booth's hub link dropped, or came back within the call's grace) from
    the hub only."""


@dataclass(frozen=True, kw_only=True)
class EndCall(Message):
    """The resident or the clinician hangs up."""

    TYPE: ClassVar[str] = "end_call"
    SENDERS: ClassVar[frozenset[Sender]] = frozenset({"booth", "console"})
    call_id: CallId
    """The call to end."""


@dataclass(frozen=True, kw_only=True)
class CallEnded(Message):
    """A call is over, or a booth was dropped from the queue before one started."""

    TYPE: ClassVar[str] = "call_ended"
    SENDERS: ClassVar[frozenset[Sender]] = _HUB
    call_id: CallId | None = None
    """The call; left out when the booth's queue place ended before any call."""
    reason: EndReason
    """Why."""


@dataclass(frozen=True, kw_only=True)
class Alert(Message):
    """Staff must act: from the booth (retried until received) to consoles, until acknowledged."""

    TYPE: ClassVar[str] = "alert"
    SENDERS: ClassVar[frozenset[Sender]] = frozenset({"booth", "hub"})
    alert_id: AlertId
    """Chosen by the booth, the same on every retry, so the hub keeps one alert."""
    booth_id: BoothId
    """The booth that raised it."""
    kind: AlertKind
    """What happened: ``emergency``, the emergency button was held (send help; consoles sound an
    alarm until acknowledged); ``updates_blocked``, the booth's updates have failed for days (a
    technician should check its network and clock; a maintenance notice, no alarm)."""
    raised_at: UtcTime
    """When, by the booth's clock (which may be wrong: a Pi has no RTC)."""
    site: Site
    """Where to send help, from the booth's own config, so it arrives even if the hub lost it."""


@dataclass(frozen=True, kw_only=True)
class AlertAck(Message):
    """How far an alert got: the hub has it, then staff acknowledged it."""

    TYPE: ClassVar[str] = "alert_ack"
    SENDERS: ClassVar[frozenset[Sender]] = _HUB
    alert_id: AlertId
    """The alert."""
    status: AlertStatus
    """``received``: stop retrying; ``acknowledged``: a person has seen it."""


@dataclass(frozen=True, kw_only=True)
class Snapshot(Message):
    """Every booth and the waiting queue, sent to a console on connect and on each change."""

    TYPE: ClassVar[str] = "snapshot"
    SENDERS: ClassVar[frozenset[Sender]] = _HUB
    booths: Annotated[tuple[BoothInfo, ...], Items(0, 100)]
    """Every booth of the clinic."""
    queue: Annotated[tuple[QueueEntry, ...], Items(0, 100)]
    """The waiting booths, next first."""


@dataclass(frozen=True, kw_only=True)
class AnswerBooth(Message):
    """A clinician takes a waiting booth (not necessarily the first)."""

    TYPE: ClassVar[str] = "answer_booth"
    SENDERS: ClassVar[frozenset[Sender]] = _CONSOLE
    booth_id: BoothId
    """The booth to answer."""


@dataclass(frozen=True, kw_only=True)
class AckAlert(Message):
    """A member of staff acknowledges an alert."""

    TYPE: ClassVar[str] = "ack_alert"
    SENDERS: ClassVar[frozenset[Sender]] = _CONSOLE
    alert_id: AlertId
    """The alert."""


@dataclass(frozen=True, kw_only=True)
class Ping(Message):
    """Are you there? Answered with pong at once."""

    TYPE: ClassVar[str] = "ping"
    SENDERS: ClassVar[frozenset[Sender]] = _ANYONE


@dataclass(frozen=True, kw_only=True)
class Pong(Message):
    """The answer to a ping."""

    TYPE: ClassVar[str] = "pong"
    SENDERS: ClassVar[frozenset[Sender]] = _ANYONE
    in_reply_to: MsgId
    """The ping's id."""


@dataclass(frozen=True, kw_only=True)
class Error(Message):
    """A message was refused or a request failed. The connection stays open."""

    TYPE: ClassVar[str] = "error"
    SENDERS: ClassVar[frozenset[Sender]] = _ANYONE
    code: ErrorCode
    """Why, as a fixed word."""
    message: ErrorText
    """For a technician: the type, the field and what was expected; never a value sent."""
    in_reply_to: MsgId | None = None
    """The refused message's id, when it could be read."""


MESSAGE_TYPES: Final[Mapping[str, type[Message]]] = MappingProxyType(
    {
        cls.TYPE: cls
        for cls in (
            Hello,
            Welcome,
            Presence,
            JoinQueue,
            Queued,
            CodeRefused,
            LeaveQueue,
            CallStarted,
            Offer,
            Answer,
            CallState,
            EndCall,
            CallEnded,
            Alert,
            AlertAck,
            Snapshot,
            AnswerBooth,
            AckAlert,
            Ping,
            Pong,
            Error,
        )
    }
)
"""Every message type by its ``type`` word, in the order the docs list them."""
OBJECT_TYPES: Final = (IceServer, Site, BoothInfo, QueueEntry)
"""The objects nested in messages."""


# ---------------------------------------------------------------- the API


def fit_text(value: str, max_len: int) -> str:
    """Text from configuration made fit for a label field, rather than refused.

    Control characters and runs of whitespace (line breaks, tabs) become one
    space, and text too long is cut with an ellipsis; nothing left is ``-``.
    """
    cleaned = " ".join(_CONTROL.sub(" ", value).split())
    if len(cleaned) > max_len:
        cleaned = cleaned[: max_len - 1] + "…"
    return cleaned or "-"


def new_id() -> str:
    """A fresh random message id (16 characters): ids must not carry meaning or data."""
    return secrets.token_urlsafe(12)


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return out


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _decode(text: str) -> object:
    """``json.loads`` as strict as JSON: no NaN/Infinity, no key twice. Unguarded."""
    return json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constants)


def _text_of(raw: str | bytes) -> str:
    too_big = BadMessage(
        ErrorCode.TOO_BIG, f"message is larger than {MAX_MESSAGE_BYTES} bytes (64 KiB)"
    )
    if isinstance(raw, bytes):
        if len(raw) > MAX_MESSAGE_BYTES:
            raise too_big
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadMessage(
                ErrorCode.NOT_JSON, f"message is not UTF-8 text (byte {exc.start})"
            ) from None
    if not isinstance(raw, str):
        raise TypeError(f"parse() takes str or bytes, not {type(raw).__name__}")
    # A code point is 1-4 bytes of UTF-8: text longer than the cap is too big unencoded.
    if len(raw) > MAX_MESSAGE_BYTES:
        raise too_big
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise too_big
    return raw


def parse(raw: str | bytes, *, sender: Sender) -> Message:
    """Check one message received from ``sender`` against the schema and build it.

    Raises :class:`BadMessage` for anything but a valid message that ``sender``
    may send; never any other exception, whatever ``raw`` holds.
    """
    if sender not in SENDERS:
        raise ValueError(f"sender must be one of {_quoted(SENDERS)}, not {sender!r}")
    text = _text_of(raw)
    try:
        data = _decode(text)
    except RecursionError as exc:
        raise BadMessage(ErrorCode.NOT_JSON, "message is nested too deeply") from exc
    except _DuplicateKeyError as exc:
        shown = _shown(exc.key)
        raise BadMessage(
            ErrorCode.BAD_FIELD,
            "a key appears twice in one object",
            path=(shown,) if shown else (),
        ) from None
    except json.JSONDecodeError as exc:
        raise BadMessage(
            ErrorCode.NOT_JSON, f"message is not JSON: {exc.msg} (character {exc.pos})"
        ) from None
    except ValueError as exc:  # NaN/Infinity, or a number too long to convert
        detail = str(exc) if "JSON number" in str(exc) else "a number is too long"
        raise BadMessage(ErrorCode.NOT_JSON, f"message is not JSON: {detail}") from None
    if not isinstance(data, dict):
        raise BadMessage(ErrorCode.NOT_OBJECT, f"message must be a JSON object, not {_kind(data)}")
    return _message(data, sender)


def _message(data: dict[str, Any], sender: Sender) -> Message:
    raw_type = data.get("type")
    cls = MESSAGE_TYPES.get(raw_type) if isinstance(raw_type, str) else None
    msg_type = cls.TYPE if cls else None
    raw_id = data.get("id")
    msg_id = raw_id if isinstance(raw_id, str) and _is_id(raw_id) else None

    def refuse(code: ErrorCode, detail: str, *path: str) -> BadMessage:
        return BadMessage(code, detail, msg_type=msg_type, path=path, msg_id=msg_id)

    version = data.get("v")
    if "v" not in data:
        raise refuse(
            ErrorCode.MISSING_FIELD,
            f"is missing; it must be {PROTOCOL_VERSION}, the protocol version",
            "v",
        )
    if type(version) is not int or version != PROTOCOL_VERSION:
        found = str(version) if type(version) is int and abs(version) < 10**6 else _kind(version)
        raise refuse(
            ErrorCode.BAD_VERSION,
            f"must be {PROTOCOL_VERSION} (this protocol's version), not {found}",
            "v",
        )
    if "type" not in data:
        raise refuse(ErrorCode.MISSING_FIELD, "is missing; it must be a message type", "type")
    if cls is None:
        allowed = ", ".join(t for t, c in MESSAGE_TYPES.items() if sender in c.SENDERS)
        if not isinstance(raw_type, str):
            raise refuse(
                ErrorCode.BAD_FIELD, f"must be a message type, not {_kind(raw_type)}", "type"
            )
        name = _shown(raw_type)
        what = f"unknown message type {json.dumps(name)}" if name else "unknown message type"
        raise refuse(ErrorCode.UNKNOWN_TYPE, f"{what}; a {sender} may send {allowed}", "type")
    if sender not in cls.SENDERS:
        only = " or ".join(f"the {s}" for s in SENDERS if s in cls.SENDERS)
        raise refuse(ErrorCode.NOT_ALLOWED, f"a {sender} may not send this; only {only} may")
    body = {k: v for k, v in data.items() if k not in ("v", "type")}
    try:
        message = _build(cls, body)
    except BadMessage as exc:
        raise exc._of(msg_type, msg_id) from None
    for name, rules in cls.VALUE_SENDERS.items():
        word = str(getattr(message, name))
        if word in rules and sender not in rules[word]:
            only = " or ".join(f"the {s}" for s in SENDERS if s in rules[word])
            raise refuse(
                ErrorCode.NOT_ALLOWED,
                f"a {sender} may not send {json.dumps(word)}; only {only} may",
                name,
            )
    return message


def encode(message: Message) -> str:
    """The message as compact JSON, ``v`` and ``type`` first. Refuses one over the cap."""
    out = json.dumps(
        {"v": PROTOCOL_VERSION, "type": message.TYPE, **_to_json(message)},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    if len(out) > MAX_MESSAGE_BYTES // 4 and len(out.encode()) > MAX_MESSAGE_BYTES:
        raise BadMessage(
            ErrorCode.TOO_BIG,
            f"message is larger than {MAX_MESSAGE_BYTES} bytes (64 KiB)",
            msg_type=message.TYPE,
            msg_id=message.id,
        )
    return out


def error_reply(exc: BadMessage, in_reply_to: str | None) -> Error:
    """The ``error`` message telling a sender why its message was refused."""
    text = str(exc)
    if len(text) > MAX_ERROR_TEXT:
        text = text[: MAX_ERROR_TEXT - 1] + "…"
    reply_to = in_reply_to if in_reply_to and _is_id(in_reply_to) else None
    return Error(id=new_id(), code=exc.code, message=text, in_reply_to=reply_to)


def _is_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None
