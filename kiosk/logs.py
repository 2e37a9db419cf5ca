"""Allow-listed event logging: only words the booth itself chose reach a log.

A booth log may be read by a technician, shipped to a hub or kept in the
journal, so it must never hold a resident's name, an appointment code or
anything typed or said. Rather than trusting every caller, the booth logs
*events* from a fixed :data:`SCHEMA`; each field accepts a bool, an int, a
float, a string from a fixed vocabulary (the state machine's own enums and a
few small sets here) or, only where declared :attr:`Kind.WORD`, a short
lower-case word from code or configuration (a version, a device role)::

    log_event("state_changed", state=State.IN_CALL, previous=State.WAITING)
    # message: "state_changed state=in_call previous=waiting"
    # record.kiosk_event == {"event": "state_changed", "state": "in_call", "previous": "waiting"}

Anything else is replaced, never passed through: a bad value or a field the
event does not declare becomes ``<redacted>`` (a field name that is not in the
schema at all is hidden too), and an unknown event becomes ``log_rejected``.
At run time this never raises, so logging cannot take the booth down; tests
turn on :data:`STRICT` (or ``with strict():``) to make every violation a
:class:`ValueError` naming the event and field, never the value.

:func:`configure_logging` sends everything to the journal on a booth and to
stderr elsewhere, and caps other libraries at WARNING.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Final

from hardware.events import DeviceKind, WiringFault
from kiosk.session import Do, Message, State, Timer

LOGGER_NAME: Final = "kiosk.events"
EVENT_ATTR: Final = "kiosk_event"  # the LogRecord attribute holding the structured event
REDACTED: Final = "<redacted>"
REJECTED: Final = "log_rejected"

logger = logging.getLogger(LOGGER_NAME)

STRICT: bool = False
"""Raise :class:`ValueError` on every schema violation instead of redacting. For tests."""

_WORD = re.compile(r"[a-z0-9_.-]{1,40}")
_INT_LIMIT = 1 << 63  # beyond int64 nothing downstream (JSON, journal) is exact anyway


class Kind(Enum):
    """Field types other than a fixed vocabulary."""

    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    WORD = "word"  # ^[a-z0-9_.-]{1,40}$ from code or config, never from a resident


FieldSpec = Kind | frozenset[str]


@dataclass(frozen=True)
class EventSpec:
    """One allowed event: its fields and the level it is logged at."""

    fields: Mapping[str, FieldSpec] = field(default_factory=dict)
    level: int = logging.INFO


def _values(*enums: type[Enum]) -> frozenset[str]:
    return frozenset(str(m.value) for e in enums for m in e)


# ---------------------------------------------------------------- vocabularies

STATES: Final = _values(State)
EFFECTS: Final = _values(Do)
TIMERS: Final = _values(Timer)
MESSAGES: Final = _values(Message)
DEVICE_KINDS: Final = _values(DeviceKind)
# Effect details: timers for start/cancel_timer, what tell_clinician says.
EFFECT_DETAILS: Final = TIMERS | {"door_open", "door_closed", "emergency", "emergency_cleared"}
# kiosk.config.Backend; not imported so config may log without an import cycle.
BACKENDS: Final = frozenset({"pi", "sim"})
# Why the booth stops; signals by name as __main__ reports them ("sigterm").
STOP_REASONS: Final = frozenset(
    {
        "signal",
        "sigterm",
        "sigint",
        "sighup",
        "closing",
        "update",
        "technician",
        "restart",
        "error",
        "config_invalid",
    }
)
FAULT_REASONS: Final = _values(WiringFault) | {
    "missing",
    "open_failed",
    "not_responding",
    "error",
    "safe_mode",
    "frozen",
    "no_frames",
    "silent",
}
COMMAND_REJECTIONS: Final = frozenset({"unknown_command", "bad_argument", "too_long"})
WATCHDOG_WITHHELD: Final = frozenset({"unhealthy", "check_failed"})
NOTIFICATIONS: Final = frozenset({"ready", "status", "stopping", "watchdog"})
# Event names once in the schema; a caller still using one is named in log_rejected.
RETIRED_EVENTS: Final[frozenset[str]] = frozenset()

_I, _W, _E = logging.INFO, logging.WARNING, logging.ERROR
_EVENTS: dict[str, EventSpec] = {
    "booth_started": EventSpec({"version": Kind.WORD, "backend": BACKENDS, "simulate": Kind.BOOL}),
    "booth_stopping": EventSpec({"reason": STOP_REASONS}),
    "config_invalid": EventSpec({"problems": Kind.INT}, _E),
    "state_changed": EventSpec({"state": STATES, "previous": STATES, "message": MESSAGES}),
    "effect": EventSpec({"effect": EFFECTS, "detail": EFFECT_DETAILS}),
    "hardware_fault": EventSpec({"device": Kind.WORD, "reason": FAULT_REASONS}, _W),
    "hardware_restored": EventSpec({"device": Kind.WORD}),
    "device_added": EventSpec({"kind": DEVICE_KINDS}),
    "device_removed": EventSpec({"kind": DEVICE_KINDS}),
    "network": EventSpec({"up": Kind.BOOL}),
    "hub_not_configured": EventSpec({}, _W),
    "camera_missing": EventSpec({"choice": Kind.WORD}, _W),
    "audio_routed": EventSpec({"headset": Kind.BOOL, "echo_cancelled": Kind.BOOL}),
    "updates_blocked": EventSpec({}, _W),
    "emergency_raised": EventSpec({}, _W),
    "emergency_cleared": EventSpec({}, _W),
    "watchdog_late": EventSpec({"lag_ms": Kind.INT}, _W),
    "watchdog_withheld": EventSpec({"reason": WATCHDOG_WITHHELD}, _W),
    "notify_failed": EventSpec({"what": NOTIFICATIONS, "errno": Kind.INT}, _W),
    "timer_fired": EventSpec({"timer": TIMERS}),
    "command_rejected": EventSpec({"reason": COMMAND_REJECTIONS}, _W),
}
# A refused event is named only if the name is one the schema knows (current or retired).
_SAFE_NAMES = frozenset(_EVENTS) | RETIRED_EVENTS | {REJECTED}
_EVENTS[REJECTED] = EventSpec({"name": _SAFE_NAMES}, _W)

SCHEMA: Final[Mapping[str, EventSpec]] = MappingProxyType(_EVENTS)
"""Every event the booth may log, with its fields. Add here before logging anything new."""

# Field names that are safe to show even on an event that does not declare them.
KNOWN_FIELDS: Final = frozenset(f for spec in _EVENTS.values() for f in spec.fields)


# ---------------------------------------------------------------- checking


class _RefusedError(Exception):
    """Internal: why a field was refused (names only, never the value)."""


def _plain(value: object) -> str | None:
    """The text of a str (or StrEnum member) as an exact ``str``; None for other types.

    ``str.__str__`` copies the character data, so a str subclass cannot
    pretend to equal a vocabulary word through its own ``__eq__``/``__hash__``.
    """
    return str.__str__(value) if isinstance(value, str) else None


def _check(spec: FieldSpec, value: object) -> str | int | float | bool:
    """Return the loggable form of ``value`` or raise :class:`_RefusedError`."""
    if spec is Kind.BOOL:
        if type(value) is bool:
            return value
        raise _RefusedError("must be a bool")
    if spec is Kind.INT:
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and -_INT_LIMIT < value < _INT_LIMIT
        ):
            return int(value)
        raise _RefusedError("must be an int within int64")
    if spec is Kind.FLOAT:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(value, int) and not -_INT_LIMIT < value < _INT_LIMIT:
                raise _RefusedError("must be a number within int64")
            return float(value)
        raise _RefusedError("must be a number")
    text = _plain(value)
    if text is None:
        raise _RefusedError("must be a str")
    if spec is Kind.WORD:
        if _WORD.fullmatch(text):
            return text
        raise _RefusedError(f"must match {_WORD.pattern}")
    assert isinstance(spec, frozenset)
    if text in spec:
        return text
    raise _RefusedError("is not in the field's vocabulary")


def _violation(event: str, field_name: str | None, why: str) -> None:
    if STRICT:
        where = f"field {field_name!r} " if field_name is not None else ""
        raise ValueError(f"log event {event!r}: {where}{why} (see kiosk.logs.SCHEMA)")


def sanitize(name: object, fields: Mapping[str, object]) -> tuple[str, dict[str, object]]:
    """Check an event against :data:`SCHEMA`; return ``(event logged, safe dict)``.

    The dict starts with ``"event"``; None values are left out (the field does
    not apply). In :data:`STRICT` mode a violation raises :class:`ValueError`.
    """
    text_name = _plain(name)
    spec = SCHEMA.get(text_name) if text_name is not None else None
    if spec is None or text_name is None or text_name == REJECTED:
        _violation(text_name or "?", None, "unknown event")
        out: dict[str, object] = {"event": REJECTED}
        if text_name in _SAFE_NAMES:
            out["name"] = text_name
        return REJECTED, out
    out = {"event": text_name}
    hidden = False
    for key, value in fields.items():
        key_text = _plain(key)
        field_spec = spec.fields.get(key_text) if key_text is not None else None
        if field_spec is None or key_text is None:
            _violation(text_name, str(key), "is not a field of this event")
            if key_text in KNOWN_FIELDS:
                out[key_text] = REDACTED
            else:
                hidden = True
            continue
        if value is None:
            continue
        try:
            out[key_text] = _check(field_spec, value)
        except _RefusedError as why:
            _violation(text_name, key_text, str(why))
            out[key_text] = REDACTED
    if hidden:
        out[REDACTED] = REDACTED
    return text_name, out


def _render(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def render(event: Mapping[str, object]) -> str:
    """The compact one-line form: ``name key=value ...`` (every part a checked word)."""
    parts = [str(event["event"])]
    parts += [f"{k}={_render(v)}" for k, v in event.items() if k != "event"]
    return " ".join(parts)


def log_event(name: str, /, **fields: str | int | float | bool | None) -> None:
    """Log one allow-listed event on ``kiosk.events``; never raises unless :data:`STRICT`.

    Fields not allowed by :data:`SCHEMA` are redacted, not passed through.
    The record's location is the caller's, so a rejected event can be found.
    """
    try:
        event, safe = sanitize(name, fields)
    except ValueError:
        if STRICT:
            raise
        event, safe = REJECTED, {"event": REJECTED}
    except Exception:  # a hostile str subclass or similar: refuse the event, keep running
        event, safe = REJECTED, {"event": REJECTED}
    level = SCHEMA[event].level
    if logger.isEnabledFor(level):
        # No args: the message is final and nothing else from the call is kept.
        logger.log(level, render(safe), extra={EVENT_ATTR: safe}, stacklevel=2)


@contextmanager
def strict(enabled: bool = True) -> Iterator[None]:
    """Make schema violations raise within the block (tests), restoring the mode after."""
    global STRICT  # noqa: PLW0603 - the module flag is the documented switch
    before, STRICT = STRICT, enabled
    try:
        yield
    finally:
        STRICT = before


# ---------------------------------------------------------------- set-up

# Our own packages log at the configured level; everything else only from WARNING.
OWN_LOGGERS: Final = ("kiosk", "hardware", "provisioning", "clinic", "__main__")
JOURNAL_SOCKET: Final = "/run/systemd/journal/socket"
_INSTALLED = "_kiosk_installed"


class ThirdPartyCap(logging.Filter):
    """Drop records below WARNING from libraries: their INFO/DEBUG text is unchecked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        top = record.name.split(".", 1)[0]
        return top in OWN_LOGGERS


def configure_logging(journal: bool | None = None, level: int = logging.INFO) -> logging.Handler:
    """Send logs to the journal on a booth, else to stderr; returns the handler installed.

    ``journal=None`` picks the journal when its socket exists. Calling again
    replaces the handler installed before, so tests and restarts stay tidy.
    """
    if journal is None:
        journal = os.path.exists(JOURNAL_SOCKET)
    handler: logging.Handler
    if journal:
        from hardware.systemd import journal_handler

        handler = journal_handler()
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ThirdPartyCap())
    setattr(handler, _INSTALLED, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _INSTALLED, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    return handler
