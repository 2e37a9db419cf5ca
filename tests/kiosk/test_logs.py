"""Allow-listed event logging: what is allowed passes, nothing else ever reaches a record."""

from __future__ import annotations

import json
import logging
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hardware.systemd
from hardware.events import DeviceKind, WiringFault
from kiosk import logs
from kiosk.config import Backend
from kiosk.logs import (
    KNOWN_FIELDS,
    REDACTED,
    REJECTED,
    SCHEMA,
    FieldSpec,
    Kind,
    configure_logging,
    log_event,
    render,
    strict,
)
from kiosk.session import Do, Message, State, Timer

CANARIES = ("Maria Canary-7Q4", "APPT-991-CANARY")
# What must never show up, in any case: the canaries' distinctive parts.
LEAK = re.compile(r"maria|7q4|appt-991|991-canary", re.IGNORECASE)
WORD = re.compile(r"[a-z0-9_.-]{1,40}")


def sample(spec: FieldSpec) -> str | int | float | bool:
    """A valid value for a field."""
    if spec is Kind.BOOL:
        return True
    if spec is Kind.INT:
        return 3
    if spec is Kind.FLOAT:
        return 1.5
    if spec is Kind.WORD:
        return "0.1.0"
    assert isinstance(spec, frozenset)
    return sorted(spec)[0]


def valid(spec: FieldSpec, value: object) -> bool:
    """Is ``value`` (as logged) allowed for a field of this spec?"""
    if spec is Kind.BOOL:
        return type(value) is bool
    if spec is Kind.INT:
        return type(value) is int
    if spec is Kind.FLOAT:
        return type(value) is float
    if spec is Kind.WORD:
        return type(value) is str and WORD.fullmatch(value) is not None
    assert isinstance(spec, frozenset)
    return type(value) is str and value in spec


def dump(record: logging.LogRecord) -> str:
    """Everything a handler could write: the formatted line plus every attribute."""
    line = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s").format(record)
    return line + json.dumps(vars(record), default=repr)


class Capture(logging.Handler):
    """Keeps records and each one fully formatted, as a file or journal handler would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(dump(record))


@contextmanager
def capture() -> Iterator[Capture]:
    """Capture kiosk.events without pytest fixtures (usable inside Hypothesis tests)."""
    events = logging.getLogger(logs.LOGGER_NAME)
    handler, level = Capture(), events.level
    events.addHandler(handler)
    events.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        events.removeHandler(handler)
        events.setLevel(level)


def assert_no_leak(cap: Capture, caplog: pytest.LogCaptureFixture | None = None) -> None:
    records = list(cap.records) + (list(caplog.records) if caplog else [])
    for record in records:
        for part in (record.getMessage(), str(record.msg), repr(record.args), dump(record)):
            assert not LEAK.search(part), f"resident data in a log record: {part!r}"
    for line in cap.lines:
        assert not LEAK.search(line), f"resident data in a formatted record: {line!r}"


# ---------------------------------------------------------------- allowed events


@pytest.mark.parametrize("name", sorted(n for n in SCHEMA if n != REJECTED))
def test_each_event_passes_with_its_fields(name: str) -> None:
    fields = {k: sample(spec) for k, spec in SCHEMA[name].fields.items()}
    with capture() as cap:
        log_event(name, **fields)
    [record] = cap.records
    assert record.name == "kiosk.events"
    assert record.levelno == SCHEMA[name].level
    assert record.kiosk_event == {"event": name, **fields}  # type: ignore[attr-defined]
    assert record.args == ()
    shown = {True: "true", False: "false"}
    words = [f"{k}={shown.get(v, v) if type(v) is bool else v}" for k, v in fields.items()]
    assert record.getMessage() == " ".join([name, *words])
    # The record points at the caller, so a refused event can be traced to its line.
    assert Path(record.pathname).name == "test_logs.py"


def test_message_is_compact_and_enums_log_as_their_words() -> None:
    with capture() as cap:
        log_event("state_changed", state=State.IN_CALL, previous=State.WAITING, message=None)
        log_event("booth_started", version="0.1.0", backend="sim", simulate=True)
        log_event("watchdog_late", lag_ms=250)
        log_event("effect", effect=Do.START_TIMER, detail=Timer.WAIT_LIMIT)
    assert [r.getMessage() for r in cap.records] == [
        "state_changed state=in_call previous=waiting",
        "booth_started version=0.1.0 backend=sim simulate=true",
        "watchdog_late lag_ms=250",
        "effect effect=start_timer detail=wait_limit",
    ]
    first = cap.records[0].kiosk_event  # type: ignore[attr-defined]
    assert first == {"event": "state_changed", "state": "in_call", "previous": "waiting"}
    assert type(first["state"]) is str  # plain words, not enum members


@pytest.mark.parametrize(
    ("event", "field_name", "enum"),
    [
        ("state_changed", "state", State),
        ("state_changed", "previous", State),
        ("state_changed", "message", Message),
        ("effect", "effect", Do),
        ("effect", "detail", Timer),
        ("timer_fired", "timer", Timer),
        ("device_added", "kind", DeviceKind),
        ("device_removed", "kind", DeviceKind),
        ("hardware_fault", "reason", WiringFault),
    ],
)
def test_every_word_of_the_booths_enums_is_accepted(
    event: str, field_name: str, enum: type[Enum]
) -> None:
    with strict(), capture() as cap:
        for member in enum:
            log_event(event, **{field_name: member.value})
    assert [r.kiosk_event[field_name] for r in cap.records] == [m.value for m in enum]  # type: ignore[attr-defined]


def test_effect_details_cover_what_the_state_machine_tells_the_clinician() -> None:
    source = Path(__file__).parents[2].joinpath("kiosk", "session.py").read_text()
    told = set(re.findall(r"_fx\(Do\.TELL_CLINICIAN, \"([a-z_]+)\"\)", source))
    assert told
    assert told <= logs.EFFECT_DETAILS


def test_backends_match_the_config() -> None:
    assert {b.value for b in Backend} == logs.BACKENDS


def test_stop_reasons_cover_the_signals_the_booth_handles() -> None:
    handled = {s.name.lower() for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    assert handled <= logs.STOP_REASONS


def test_command_rejected_reasons_are_a_fixed_set() -> None:
    assert SCHEMA["command_rejected"].fields["reason"] == {
        "unknown_command",
        "bad_argument",
        "too_long",
    }
    with capture() as cap:
        log_event("command_rejected", reason="rm -rf /")
    assert cap.records[0].getMessage() == f"command_rejected reason={REDACTED}"


# ---------------------------------------------------------------- redaction


@pytest.mark.parametrize("canary", CANARIES)
def test_canary_in_any_field_of_any_event_never_reaches_a_record(
    canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=logs.LOGGER_NAME)
    with capture() as cap:
        for name, spec in SCHEMA.items():
            for field_name in spec.fields:
                log_event(name, **{field_name: canary})
            log_event(name, resident=canary)  # an unknown field
            log_event(name, **{canary: canary})  # a field named by resident data
            log_event(name, **{canary: 1, "state": canary})
        log_event(canary)  # as the event name
        log_event(canary, state="attract")
    assert len(cap.records) == sum(len(s.fields) + 3 for s in SCHEMA.values()) + 2
    assert len(caplog.records) == len(cap.records)
    assert_no_leak(cap, caplog)


def test_bad_values_are_replaced_field_by_field() -> None:
    with capture() as cap:
        log_event("state_changed", state="attract", previous=CANARIES[0])
        log_event("booth_started", version="Maria", backend="pi", simulate="yes")
        log_event("config_invalid", problems=True)
        log_event("watchdog_late", lag_ms=1.5)
        log_event("watchdog_late", lag_ms=5551234567 * 10**20)
    messages = [r.getMessage() for r in cap.records]
    assert messages == [
        f"state_changed state=attract previous={REDACTED}",
        f"booth_started version={REDACTED} backend=pi simulate={REDACTED}",
        f"config_invalid problems={REDACTED}",
        f"watchdog_late lag_ms={REDACTED}",
        f"watchdog_late lag_ms={REDACTED}",
    ]


def test_unknown_fields_are_named_only_when_the_name_is_a_schema_field() -> None:
    with capture() as cap:
        log_event("network", up=True, state="attract", resident="x", other="y")
    [record] = cap.records
    assert record.kiosk_event == {  # type: ignore[attr-defined]
        "event": "network",
        "up": True,
        "state": REDACTED,
        REDACTED: REDACTED,
    }
    assert record.getMessage() == f"network up=true state={REDACTED} {REDACTED}={REDACTED}"


def test_unknown_event_becomes_log_rejected_without_its_name() -> None:
    with capture() as cap:
        log_event("Maria called", state="attract")
        log_event("state_chnaged", state="attract")
        log_event(REJECTED, name="effect")  # nobody logs log_rejected by hand
    assert [r.getMessage() for r in cap.records] == [
        REJECTED,
        REJECTED,
        f"{REJECTED} name={REJECTED}",
    ]
    assert all(r.levelno == logging.WARNING for r in cap.records)
    assert cap.records[0].kiosk_event == {"event": REJECTED}  # type: ignore[attr-defined]


class Sly(str):
    """A str that claims to equal everything: must not pass as a vocabulary word."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash("attract")


def test_str_subclasses_are_judged_by_their_text() -> None:
    with capture() as cap:
        log_event("state_changed", state=Sly("Maria Canary-7Q4"))
        log_event(Sly("Maria Canary-7Q4"))
    assert [r.getMessage() for r in cap.records] == [f"state_changed state={REDACTED}", REJECTED]
    assert_no_leak(cap)


def test_hostile_values_never_raise() -> None:
    class Boom:
        def __str__(self) -> str:
            raise RuntimeError("Maria Canary-7Q4")

        __repr__ = __str__

    with capture() as cap:
        log_event("state_changed", state=Boom())  # type: ignore[arg-type]
        log_event("watchdog_late", lag_ms=[1])  # type: ignore[arg-type]
        log_event(None)  # type: ignore[arg-type]
    assert [r.getMessage() for r in cap.records] == [
        f"state_changed state={REDACTED}",
        f"watchdog_late lag_ms={REDACTED}",
        REJECTED,
    ]


def test_twin_a_naive_logger_is_caught_by_the_same_check() -> None:
    """The leak check can fail: logging the fields as given leaks the canary."""
    naive = logging.getLogger("kiosk.events.naive")
    with capture() as cap:
        naive.info("state_changed %s", {"state": CANARIES[0]})
    assert cap.records
    with pytest.raises(AssertionError, match="resident data"):
        assert_no_leak(cap)


# ---------------------------------------------------------------- strict mode


def test_strict_raises_naming_event_and_field_but_not_the_value() -> None:
    with strict(), pytest.raises(ValueError, match="state_changed") as err:
        log_event("state_changed", state=CANARIES[0])
    assert "'state'" in str(err.value)
    assert not LEAK.search(str(err.value))

    with strict(), pytest.raises(ValueError, match=r"'network'.*'resident'"):
        log_event("network", up=True, resident="x")
    with strict(), pytest.raises(ValueError, match=r"'no_such_event'.*unknown event"):
        log_event("no_such_event")
    with strict(), pytest.raises(ValueError, match=r"'lag_ms'"):
        log_event("watchdog_late", lag_ms="12")
    with strict(), pytest.raises(ValueError, match=r"'resident'"):
        log_event("network", resident=None)  # an unknown field is wrong even when empty


def test_strict_is_restored_after_the_block_and_settable_as_a_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError), strict():
        log_event("nope")
    assert logs.STRICT is False
    with capture() as cap:
        log_event("nope")  # not strict again: redacted, no exception
    assert cap.records[0].getMessage() == REJECTED
    monkeypatch.setattr(logs, "STRICT", True)
    with pytest.raises(ValueError, match="'nope'"):
        log_event("nope")


def test_strict_accepts_every_valid_event() -> None:
    with strict(), capture() as cap:
        for name, spec in SCHEMA.items():
            if name != REJECTED:
                log_event(name, **{k: sample(s) for k, s in spec.fields.items()})
    assert all(REDACTED not in r.getMessage() for r in cap.records)


# ---------------------------------------------------------------- properties

names = st.one_of(st.sampled_from(sorted(SCHEMA)), st.text(max_size=30))
keys = st.one_of(st.sampled_from(sorted(KNOWN_FIELDS)), st.text(min_size=1, max_size=20))
vocabulary = sorted(
    {
        w
        for spec in SCHEMA.values()
        for f in spec.fields.values()
        if isinstance(f, frozenset)
        for w in f
    }
)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=50),
    st.from_regex(WORD, fullmatch=True),
    st.sampled_from(vocabulary),
    st.sampled_from(CANARIES),
)


def check_event(name: object, fields: dict[str, object], record: logging.LogRecord) -> None:
    """The record holds only allowed words, and keeps every valid input unchanged."""
    event = record.kiosk_event  # type: ignore[attr-defined]
    assert record.getMessage() == render(event)
    assert record.args == ()
    logged = event["event"]
    assert logged in SCHEMA
    spec = SCHEMA[logged]
    for key, value in event.items():
        if key == "event":
            continue
        if key == REDACTED:
            assert value == REDACTED
            continue
        assert key in KNOWN_FIELDS
        assert value == REDACTED or (key in spec.fields and valid(spec.fields[key], value))
    if logged == REJECTED:  # logging "log_rejected" by hand is refused like any unknown name
        assert name == REJECTED or name not in SCHEMA
        return
    for key, value in fields.items():
        field_spec = spec.fields.get(key)
        if value is None and field_spec is not None:
            assert key not in event  # a declared field left empty: "does not apply"
        elif field_spec is not None and valid(field_spec, value):
            assert event[key] == value


@settings(max_examples=300)
@given(name=names, fields=st.dictionaries(keys, values, max_size=5))
def test_arbitrary_events_never_raise_and_never_leak(name: str, fields: dict[str, object]) -> None:
    with capture() as cap:
        log_event(name, **fields)  # type: ignore[arg-type]
    [record] = cap.records
    check_event(name, fields, record)
    for text in (v for v in [name, *fields, *fields.values()] if isinstance(v, str)):
        if LEAK.search(text):
            assert_no_leak(cap)


@settings(max_examples=200)
@given(name=names, fields=st.dictionaries(keys, values, max_size=5))
def test_strict_either_raises_or_logs_everything_unredacted(
    name: str, fields: dict[str, object]
) -> None:
    with capture() as cap, strict():
        try:
            log_event(name, **fields)  # type: ignore[arg-type]
        except ValueError:
            assert not cap.records
            return
    [record] = cap.records
    assert REDACTED not in record.getMessage()
    assert record.kiosk_event["event"] == name  # type: ignore[attr-defined]


# ---------------------------------------------------------------- configure_logging


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """Restore the root logger's handlers and level after a configure_logging test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_stderr_logging_caps_other_libraries_at_warning(
    root_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = configure_logging(journal=False)
    assert isinstance(handler, logging.StreamHandler)
    log_event("network", up=False)
    logging.getLogger("kiosk.controller").info("controller detail")
    logging.getLogger("aiortc.rtcpeerconnection").info("sdp a=fingerprint")
    logging.getLogger("aioice").debug("candidate")
    logging.getLogger("aiortc").warning("library warning")
    err = capsys.readouterr().err
    assert "INFO kiosk.events: network up=false" in err
    assert "controller detail" in err
    assert "library warning" in err
    assert "sdp" not in err
    assert "candidate" not in err


def test_twin_without_the_cap_library_info_gets_through(
    root_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = configure_logging(journal=False)
    for f in list(handler.filters):
        handler.removeFilter(f)
    logging.getLogger("aiortc.rtcpeerconnection").info("sdp a=fingerprint")
    assert "sdp" in capsys.readouterr().err


def test_configuring_again_replaces_the_handler(root_logging: logging.Logger) -> None:
    before = len(root_logging.handlers)
    first = configure_logging(journal=False, level=logging.DEBUG)
    second = configure_logging(journal=False)
    assert first not in root_logging.handlers
    assert second in root_logging.handlers
    assert len(root_logging.handlers) == before + 1
    assert root_logging.level == logging.INFO


def test_journal_is_used_when_its_socket_exists(
    root_logging: logging.Logger, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sent: list[tuple[str, dict[str, object]]] = []
    real = hardware.systemd.journal_handler
    monkeypatch.setattr(
        hardware.systemd,
        "journal_handler",
        lambda: real(sender=lambda m, **f: sent.append((m, f))),
    )
    socket_path = tmp_path / "socket"
    monkeypatch.setattr(logs, "JOURNAL_SOCKET", str(socket_path))
    assert isinstance(configure_logging(), logging.StreamHandler)  # no socket: stderr

    socket_path.touch()
    handler = configure_logging()
    assert not isinstance(handler, logging.StreamHandler)
    log_event("device_added", kind="camera")
    logging.getLogger("kivy.core").info("library chatter")
    assert [m for m, _ in sent] == ["device_added kind=camera"]
    fields = sent[0][1]
    assert fields["SYSLOG_IDENTIFIER"] == "telehealth-kiosk"
    assert fields["KIOSK_EVENT"] == "device_added"
    assert fields["KIOSK_KIND"] == "camera"


def test_journal_forced_even_without_socket(
    root_logging: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = logging.NullHandler()
    monkeypatch.setattr(hardware.systemd, "journal_handler", lambda: chosen)
    monkeypatch.setattr(logs, "JOURNAL_SOCKET", "/nonexistent/journal/socket")
    assert configure_logging(journal=True) is chosen
    assert any(isinstance(f, logs.ThirdPartyCap) for f in chosen.filters)
    assert isinstance(configure_logging(journal=False), logging.StreamHandler)
