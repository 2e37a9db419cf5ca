"""Typed, frozen booth configuration: one TOML file in, clear errors out.

Every problem in a file is reported at once, each line naming the dotted key
path, what was expected and what was found, e.g.
``hardware.pins.door: must be a GPIO number 0-27, not "GPIO99"``, so a
technician can fix a file in one pass. Unknown keys are errors too: a typo
must never silently fall back to a default.

A key that is not a TOML bare key is shown quoted (``booth."my key"``) and a
table in an array of tables by its index (``ice_servers[0].urls``), so every
problem line starts with an unambiguous key path followed by ``": "``.
Problems about the file itself (missing, unreadable, not TOML) start with the
file's path instead.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
import re
import stat
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from kiosk import technician
from kiosk.errors import ConfigError

DEFAULT_PATH = Path("/etc/telehealth-kiosk/booth.toml")


def _shipped_languages() -> tuple[str, ...]:
    """Languages that have a catalog: adding one is a catalog and a line of config."""
    from kiosk.i18n import languages

    return languages()


SHIPPED_LANGUAGES = _shipped_languages()
GPIO_MAX = 27
# A booth file is a few kilobytes; anything this big is the wrong file.
MAX_FILE_BYTES = 1 << 20
# The panels booths are built with; the last is the Touch Display 2 upright.
DISPLAY_SIZES = ("800x480", "1024x600", "1280x720", "720x1280")
DISPLAY_SIDE_PX = (240, 3840)
MM_PER_INCH = 25.4

T = TypeVar("T")


class Backend(StrEnum):
    """Which hardware the booth drives."""

    PI = "pi"
    SIM = "sim"


class CameraChoice(StrEnum):
    """Which camera the booth uses (``hardware.camera.make_camera`` builds it)."""

    AUTO = "auto"  # the Pi camera module if libcamera finds one, else a USB camera, else none
    PICAMERA = "picamera"
    USB = "usb"
    TEST_CARD = "test_card"


class Contact(StrEnum):
    """How an input switch is wired: normally closed (supervisable) or normally open."""

    NC = "nc"
    NO = "no"


@dataclass(frozen=True)
class BoothIdentity:
    id: str
    name: str


@dataclass(frozen=True)
class Site:
    name: str
    street_address: str
    room: str
    time_zone: str
    languages: tuple[str, ...]

    @property
    def default_language(self) -> str:
        return self.languages[0]


@dataclass(frozen=True)
class Hub:
    url: str
    certificate_sha256: str
    credential_file: Path | None = None
    """Where the booth's hub credential is kept (0600); None runs the booth without a hub."""


@dataclass(frozen=True)
class IceServer:
    urls: tuple[str, ...]


@dataclass(frozen=True)
class Pins:
    door: int
    emergency_button: int
    occupancy_light: int
    alarm_light: int
    buzzer: int
    door_supervision: int | None = None
    emergency_button_supervision: int | None = None


@dataclass(frozen=True)
class Contacts:
    door: Contact = Contact.NC
    emergency_button: Contact = Contact.NC


@dataclass(frozen=True)
class Audio:
    """``[hardware.audio]``: where call audio and prompts go, and how loud they may get.

    ``speaker`` and ``microphone``: ``auto`` (PipeWire's echo-cancelled sink
    and source when the install made them, else the default), ``default``, or
    a PipeWire node name or ALSA device. A headset plugged in takes over both.
    """

    speaker: str = "auto"
    microphone: str = "auto"
    volume: int = 6
    max_volume: int = 10
    headset_max_volume: int = 7


@dataclass(frozen=True)
class Hardware:
    backend: Backend
    pins: Pins
    contacts: Contacts
    emergency_hold_seconds: float = 1.0
    wiring_fault_seconds: float = 3.0
    camera: CameraChoice = CameraChoice.AUTO
    audio: Audio = field(default_factory=Audio)


@dataclass(frozen=True)
class Timeouts:
    idle_warning_seconds: float = 90.0
    idle_reset_seconds: float = 30.0
    longest_wait_seconds: float = 1800.0
    wrap_up_seconds: float = 20.0
    network_grace_seconds: float = 60.0


@dataclass(frozen=True)
class Emergency:
    emergency_number: str = "911"
    crisis_number: str = "988"
    staff: Mapping[str, str] = field(default_factory=dict)
    auto_clear_minutes: float = 0.0


@dataclass(frozen=True)
class MaintenanceWindow:
    start: time
    end: time

    def contains(self, now: time) -> bool:
        """True when ``now`` falls in the window; windows may wrap past midnight."""
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end


@dataclass(frozen=True)
class Updates:
    channel: str = "stable"
    maintenance_window: MaintenanceWindow = field(
        default_factory=lambda: MaintenanceWindow(time(2, 0), time(5, 0))
    )


@dataclass(frozen=True)
class Display:
    """The touch screen: its size turns the theme's millimetres into pixels.

    ``high_contrast``, ``large_text`` and ``read_aloud`` are what each visit
    starts with; residents can change them for their own visit.
    """

    size: str = "800x480"
    diagonal_inches: float = 7.0
    high_contrast: bool = False
    large_text: bool = False
    read_aloud: bool = False
    maxfps: int = 10

    @property
    def width(self) -> int:
        return int(self.size.partition("x")[0])

    @property
    def height(self) -> int:
        return int(self.size.partition("x")[2])

    @property
    def portrait(self) -> bool:
        return self.height > self.width

    @property
    def px_per_mm(self) -> float:
        """Pixels per millimetre on the glass, assuming square pixels."""
        return math.hypot(self.width, self.height) / (self.diagonal_inches * MM_PER_INCH)

    def px(self, mm: float) -> int:
        """Whole pixels for a length on the glass, rounded up so a target is never smaller."""
        return max(0, math.ceil(mm * self.px_per_mm - 1e-9))


@dataclass(frozen=True)
class Technician:
    """Technician mode behind a PIN; ``pin_hash`` None means it cannot be unlocked on screen."""

    pin_hash: str | None = None
    lockout_minutes: float = 5.0
    max_attempts: int = 3

    @property
    def lockout_seconds(self) -> float:
        return self.lockout_minutes * 60

    def __repr__(self) -> str:
        # Not the PIN, but a 4-digit PIN falls to anyone holding its hash: keep it out of logs.
        shown = "None" if self.pin_hash is None else "'scrypt$…'"
        return (
            f"Technician(pin_hash={shown}, lockout_minutes={self.lockout_minutes!r}, "
            f"max_attempts={self.max_attempts!r})"
        )


@dataclass(frozen=True)
class BoothConfig:
    booth: BoothIdentity
    site: Site
    hub: Hub
    ice_servers: tuple[IceServer, ...]
    hardware: Hardware
    timeouts: Timeouts
    emergency: Emergency
    updates: Updates
    display: Display = field(default_factory=Display)
    technician: Technician = field(default_factory=Technician)


# ---------------------------------------------------------------- validation


class _InvalidValueError(Exception):
    """A value failed its check; the message says what was expected.

    ``at`` names a part inside the value (``".en"``) when the problem is there,
    so the reported key path points at it.
    """

    def __init__(self, message: str, at: str = "") -> None:
        super().__init__(message)
        self.at = at


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SHOW_MAX = 60


def _key_part(name: object) -> str:
    """One key of a dotted path, quoted as TOML would need it."""
    name = str(name)
    if _BARE_KEY.fullmatch(name):
        return name
    return json.dumps(name, ensure_ascii=False)


def _show(value: object) -> str:
    """Render a TOML value the way the technician typed it (long text cut short)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if len(value) > _SHOW_MAX:
            value = value[: _SHOW_MAX - 1] + "…"
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return str(value)[:_SHOW_MAX]


def _suggest(word: str, options: list[str] | tuple[str, ...] | frozenset[str]) -> str:
    """A ``did you mean`` hint for a near miss, or nothing."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {json.dumps(close[0], ensure_ascii=False)}?)" if close else ""


Parser = Callable[[Any], T]


def text(max_len: int = 200, pattern: str | None = None, what: str = "") -> Parser[str]:
    """Non-empty text, stripped; ``what`` (' (digits, such as "911")') describes it."""
    rx = re.compile(pattern) if pattern else None

    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise _InvalidValueError(f"must be text in quotes{what}, not {_show(value)}")
        stripped = value.strip()
        if not stripped:
            raise _InvalidValueError("must not be empty")
        if len(stripped) > max_len:
            raise _InvalidValueError(f"must be at most {max_len} characters, not {len(stripped)}")
        if rx is not None and not rx.fullmatch(stripped):
            expected = f"text{what}" if what else f"text matching {pattern}"
            raise _InvalidValueError(f"must be {expected}, not {_show(value)}")
        return stripped

    return parse


def number(lo: float, hi: float, unit: str = "seconds") -> Parser[float]:
    """A number within ``lo``-``hi``; TOML integers and floats both count."""

    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise _InvalidValueError(
                f"must be a number of {unit} {lo:g}-{hi:g}, not {_show(value)}"
            )
        return float(value)

    return parse


def whole_number(lo: int, hi: int, unit: str) -> Parser[int]:
    """An integer within ``lo``-``hi``; 20.0 is refused, as for GPIO numbers."""

    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise _InvalidValueError(
                f"must be a whole number of {unit} {lo}-{hi}, not {_show(value)}"
            )
        return value

    return parse


def flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _InvalidValueError(f"must be true or false (without quotes), not {_show(value)}")
    return value


def gpio(value: Any) -> int:
    """A Broadcom (BCM) GPIO number as gpiozero uses it, not a header pin number."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= GPIO_MAX:
        raise _InvalidValueError(f"must be a GPIO number 0-{GPIO_MAX}, not {_show(value)}")
    return value


def choice(enum: type[StrEnum]) -> Parser[Any]:
    options = [m.value for m in enum]

    def parse(value: Any) -> Any:
        if not isinstance(value, str) or value not in options:
            listed = ", ".join(json.dumps(o) for o in options)
            raise _InvalidValueError(f"must be one of {listed}, not {_show(value)}")
        return enum(value)

    return parse


def list_of(item: Parser[T], min_len: int = 1, what: str = "") -> Parser[tuple[T, ...]]:
    """A TOML array whose items each pass ``item``; a bad item is named by its position."""

    def parse(value: Any) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise _InvalidValueError(f"must be a list{what}, not {_show(value)}")
        if len(value) < min_len:
            items = "one item" if min_len == 1 else f"{min_len} items"
            raise _InvalidValueError(f"must be a list{what} with at least {items}, not []")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except _InvalidValueError as exc:
                raise _InvalidValueError(f"item {i + 1}: {exc}") from None
        return tuple(out)

    return parse


def language(value: Any) -> str:
    if not isinstance(value, str) or value not in SHIPPED_LANGUAGES:
        listed = ", ".join(json.dumps(lang) for lang in SHIPPED_LANGUAGES)
        raise _InvalidValueError(
            f"must be one of the shipped languages {listed}, not {_show(value)}"
        )
    return value


@functools.cache
def _known_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zone(value: Any) -> str:
    """An IANA zone this machine's tz database knows (the booth's clock shows it)."""
    name = text(64)(value)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError, UnicodeError):
        raise _InvalidValueError(
            f'must be an IANA time zone such as "America/Chicago", not {_show(value)}'
            + _suggest(name, _known_time_zones())
        ) from None
    return name


def hub_url(value: Any) -> str:
    """The hub's WebSocket address; plain ws:// is refused so the pin always applies."""
    url = text(300)(value)
    problem = f'must be a wss:// address such as "wss://hub.example.org/booth", not {_show(value)}'
    if not re.fullmatch(r"wss://[A-Za-z0-9.\-\[\]:]+(/\S*)?", url):
        raise _InvalidValueError(problem)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _InvalidValueError(problem + " (the port must be 1-65535)") from None
    if not parts.hostname or port == 0:
        raise _InvalidValueError(problem)
    return url


def absolute_path(value: Any) -> Path:
    """A file named from the filesystem's root, so it never depends on the working directory."""
    name = text(400)(value)
    if not name.startswith("/") or "\0" in name:
        raise _InvalidValueError(
            f'must be an absolute path such as "/etc/telehealth-booth/hub-credential", '
            f"not {_show(value)}"
        )
    return Path(name)


def fingerprint(value: Any) -> str:
    """The hub certificate's SHA-256, stored as 64 lowercase hex digits."""
    if not isinstance(value, str):
        raise _InvalidValueError(
            f"must be a SHA-256 fingerprint (64 hex digits in quotes), not {_show(value)}"
        )
    digits = value.replace(":", "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digits):
        raise _InvalidValueError(
            "must be a SHA-256 fingerprint (64 hex digits, colons allowed; "
            f"`clinic-hub --dev` prints it), not {_show(value)}"
        )
    return digits


def ice_url(value: Any) -> str:
    url = text(300)(value)
    if not re.fullmatch(r"(stun|turn|turns):[A-Za-z0-9.\-\[\]:]+(\?transport=(udp|tcp))?", url):
        raise _InvalidValueError(
            'must be a stun:, turn: or turns: address such as "turn:turn.example.org:3478", '
            f"not {_show(value)}"
        )
    return url


def phone_number(value: Any) -> str:
    """A number the screen shows; kept as text so leading zeros and * # + survive."""
    return text(20, r"[0-9*#+]{2,20}", ' (2-20 digits, * # or +, such as "911")')(value)


def clock_window(value: Any) -> MaintenanceWindow:
    if not isinstance(value, str) or not (
        m := re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)", value.strip())
    ):
        raise _InvalidValueError(
            f'must be a time range "HH:MM-HH:MM" such as "02:00-05:00", not {_show(value)}'
        )
    start = time(int(m[1]), int(m[2]))
    end = time(int(m[3]), int(m[4]))
    if start == end:
        raise _InvalidValueError(f"must not start and end at the same time, not {_show(value)}")
    return MaintenanceWindow(start, end)


_REQUIRED: Any = object()
_SLUG = ' (lowercase letters, digits and -, such as "%s")'


class _Section:
    """Reads one TOML table, collecting problems instead of stopping at the first.

    A section that is not a table is reported once; its keys are then not
    reported as missing too, which would only bury the real problem.
    """

    def __init__(
        self, data: object, path: str, problems: list[str], *, broken: bool = False
    ) -> None:
        self.path = path
        self.problems = problems
        self.broken = broken
        if data is None:
            data = {}
        if not isinstance(data, dict):
            problems.append(f"{path}: must be a table, not {_show(data)}")
            self.broken = True
            data = {}
        self.data: dict[str, Any] = data
        self.known: list[str] = []

    def key(self, name: str) -> str:
        return f"{self.path}.{_key_part(name)}" if self.path else _key_part(name)

    def get(self, name: str, parse: Parser[T], default: T = _REQUIRED, why: str = "") -> T:
        self.known.append(name)
        if name not in self.data:
            if default is _REQUIRED:
                if not self.broken:
                    self.problems.append(f"{self.key(name)}: required{why}")
                return None  # type: ignore[return-value]
            return default
        try:
            return parse(self.data[name])
        except _InvalidValueError as exc:
            self.problems.append(f"{self.key(name)}{exc.at}: {exc}")
            return default if default is not _REQUIRED else None  # type: ignore[return-value]

    def table(self, name: str) -> _Section:
        self.known.append(name)
        return _Section(self.data.get(name), self.key(name), self.problems, broken=self.broken)

    def done(self) -> None:
        """Report every key the section did not ask for."""
        for name in self.data:
            if name not in self.known:
                expected = ", ".join(self.known)
                hint = _suggest(str(name), self.known)
                self.problems.append(
                    f"{self.key(name)}: unknown key{hint}; expected one of: {expected}"
                )


def _booth(s: _Section) -> BoothIdentity:
    out = BoothIdentity(
        id=s.get(
            "id",
            text(63, r"[a-z0-9][a-z0-9-]{0,62}", _SLUG % "riverside-1"),
            why=" (the name this booth enrolls with at the hub)",
        ),
        name=s.get("name", text(100), why=" (the booth's name as staff see it)"),
    )
    s.done()
    return out


def _site(s: _Section) -> Site:
    out = Site(
        name=s.get("name", text(100), why=" (the library or clinic the booth is in)"),
        street_address=s.get(
            "street_address",
            text(200),
            why=" (staff and clinicians are sent it in an emergency)",
        ),
        room=s.get("room", text(100), why=" (where in the building the booth stands)"),
        time_zone=s.get(
            "time_zone", time_zone, why=' (an IANA time zone such as "America/Chicago")'
        ),
        languages=s.get(
            "languages",
            list_of(language, what=' of language codes such as ["en", "es"]'),
            SHIPPED_LANGUAGES,
        ),
    )
    if out.languages:
        seen: set[str] = set()
        for lang in out.languages:
            if lang in seen:
                s.problems.append(f"{s.key('languages')}: lists {json.dumps(lang)} twice")
            seen.add(lang)
    s.done()
    return out


def _hub(s: _Section) -> Hub:
    out = Hub(
        url=s.get("url", hub_url, why=' (such as "wss://hub.example.org/booth")'),
        certificate_sha256=s.get(
            "certificate_sha256",
            fingerprint,
            why=" (the hub certificate's SHA-256 fingerprint, 64 hex digits)",
        ),
        credential_file=s.get("credential_file", absolute_path, None),
    )
    s.done()
    return out


def _ice_servers(value: object, problems: list[str]) -> tuple[IceServer, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append(
            f"ice_servers: must be a list of [[ice_servers]] tables, not {_show(value)}"
        )
        return ()
    out = []
    for i, item in enumerate(value):
        s = _Section(item, f"ice_servers[{i}]", problems)
        urls = s.get(
            "urls",
            list_of(ice_url, what=' of stun:/turn: addresses such as ["turn:turn.example.org"]'),
        )
        out.append(IceServer(urls=urls))
        s.done()
    return tuple(out)


_PIN_NAMES = (
    "door",
    "emergency_button",
    "occupancy_light",
    "alarm_light",
    "buzzer",
    "door_supervision",
    "emergency_button_supervision",
)


def _pins(s: _Section) -> Pins:
    values: dict[str, int | None] = {}
    for name in _PIN_NAMES:
        if name.endswith("_supervision"):
            values[name] = s.get(name, gpio, None)
        else:
            values[name] = s.get(name, gpio, why=" (the BCM GPIO number it is wired to)")
    used: dict[int, str] = {}
    for name in _PIN_NAMES:
        pin = values[name]
        if pin is None:
            continue
        if pin in used:
            s.problems.append(
                f"{s.key(name)}: GPIO {pin} is already used by {s.key(used[pin])}; "
                "give each device its own pin"
            )
        else:
            used[pin] = name
    s.done()
    return Pins(**values)  # type: ignore[arg-type]


def _contacts(s: _Section) -> Contacts:
    out = Contacts(
        door=s.get("door", choice(Contact), Contact.NC),
        emergency_button=s.get("emergency_button", choice(Contact), Contact.NC),
    )
    s.done()
    return out


_AUDIO_DEVICE = r"[A-Za-z0-9_.:,=-]{1,120}"


def _audio(s: _Section) -> Audio:
    d = Audio()
    device = text(120, _AUDIO_DEVICE, ' ("auto", "default", a PipeWire node or an ALSA device)')
    step = whole_number(0, 10, "volume steps")
    out = Audio(
        speaker=s.get("speaker", device, d.speaker),
        microphone=s.get("microphone", device, d.microphone),
        volume=s.get("volume", step, d.volume),
        max_volume=s.get("max_volume", step, d.max_volume),
        headset_max_volume=s.get("headset_max_volume", step, d.headset_max_volume),
    )
    s.done()
    if out.volume > out.max_volume:
        s.problems.append(
            f"{s.key('volume')}: {out.volume} is above {s.key('max_volume')} = {out.max_volume}; "
            "lower the volume or raise the cap"
        )
    return out


def _hardware(s: _Section) -> Hardware:
    backend = s.get("backend", choice(Backend), Backend.PI)
    pins = _pins(s.table("pins"))
    contacts = _contacts(s.table("contacts"))
    hold = s.get("emergency_hold_seconds", number(0.5, 5.0), 1.0)
    fault = s.get("wiring_fault_seconds", number(0.5, 10.0), 3.0)
    camera = s.get("camera", choice(CameraChoice), CameraChoice.AUTO)
    audio = _audio(s.table("audio"))
    s.done()
    if pins.door_supervision is not None and contacts.door is not Contact.NC:
        s.problems.append(
            f"{s.key('pins')}.door_supervision: supervision needs a normally-closed door "
            f'contact; set {s.key("contacts")}.door = "nc" or remove the supervision pin'
        )
    if (
        pins.emergency_button_supervision is not None
        and contacts.emergency_button is not Contact.NC
    ):
        s.problems.append(
            f"{s.key('pins')}.emergency_button_supervision: supervision needs a normally-closed "
            f'button contact; set {s.key("contacts")}.emergency_button = "nc" '
            "or remove the supervision pin"
        )
    return Hardware(backend, pins, contacts, hold, fault, camera, audio)


def _timeouts(s: _Section) -> Timeouts:
    d = Timeouts()
    out = Timeouts(
        idle_warning_seconds=s.get(
            "idle_warning_seconds", number(10, 3600), d.idle_warning_seconds
        ),
        idle_reset_seconds=s.get("idle_reset_seconds", number(5, 600), d.idle_reset_seconds),
        longest_wait_seconds=s.get(
            "longest_wait_seconds", number(60, 14400), d.longest_wait_seconds
        ),
        wrap_up_seconds=s.get("wrap_up_seconds", number(3, 300), d.wrap_up_seconds),
        network_grace_seconds=s.get(
            "network_grace_seconds", number(10, 600), d.network_grace_seconds
        ),
    )
    s.done()
    return out


def _staff(languages: tuple[str, ...] | None) -> Parser[Mapping[str, str]]:
    """Who is called, in every site language (``None``: the languages were invalid)."""

    def parse(value: Any) -> Mapping[str, str]:
        if not isinstance(value, dict):
            raise _InvalidValueError(
                'must be a table of text per language, e.g. { en = "library staff", '
                f'es = "el personal de la biblioteca" }}, not {_show(value)}'
            )
        out: dict[str, str] = {}
        for lang, words in value.items():
            if languages is not None and lang not in languages:
                raise _InvalidValueError(
                    f"has text for {json.dumps(lang, ensure_ascii=False)}, "
                    "which site.languages does not list"
                )
            try:
                out[lang] = text(80)(words)
            except _InvalidValueError as exc:
                raise _InvalidValueError(str(exc), at=f".{_key_part(lang)}") from None
        missing = [lang for lang in languages or () if lang not in out]
        if missing:
            raise _InvalidValueError(
                "needs text for every language in site.languages; add "
                + ", ".join(f'{lang} = "…"' for lang in missing)
            )
        return out

    return parse


def _emergency(s: _Section, languages: tuple[str, ...] | None) -> Emergency:
    default_staff = {"en": "staff", "es": "el personal"}
    out = Emergency(
        emergency_number=s.get("emergency_number", phone_number, "911"),
        crisis_number=s.get("crisis_number", phone_number, "988"),
        staff=s.get(
            "staff",
            _staff(languages),
            {k: v for k, v in default_staff.items() if k in (languages or ("en",))},
        ),
        auto_clear_minutes=s.get("auto_clear_minutes", number(0, 240, "minutes"), 0.0),
    )
    s.done()
    return out


def screen_size(value: Any) -> str:
    """A panel size "WIDTHxHEIGHT" in pixels, as the panel is mounted (portrait if taller)."""
    lo, hi = DISPLAY_SIDE_PX
    m = re.fullmatch(r"(\d{1,5})[xX](\d{1,5})", value.strip()) if isinstance(value, str) else None
    if m is None or not all(lo <= int(side) <= hi for side in m.groups()):
        listed = ", ".join(json.dumps(size) for size in DISPLAY_SIZES)
        raise _InvalidValueError(
            f'must be a screen size "WIDTHxHEIGHT" in pixels such as {listed} '
            f"(each side {lo}-{hi}), not {_show(value)}"
        )
    return f"{int(m[1])}x{int(m[2])}"


def pin_hash(value: Any) -> str:
    """An scrypt PIN hash; the value is never shown back, as it may be a PIN typed in by mistake."""
    if not isinstance(value, str):
        raise _InvalidValueError(
            f"must be text in quotes: a PIN hash as printed by `{technician.HASH_PIN_COMMAND}`"
        )
    try:
        technician.decode_pin_hash(value)
    except ValueError as exc:
        raise _InvalidValueError(str(exc)) from None
    return value.strip().lower()


def _display(s: _Section) -> Display:
    d = Display()
    out = Display(
        size=s.get("size", screen_size, d.size),
        diagonal_inches=s.get("diagonal_inches", number(5, 32, "inches"), d.diagonal_inches),
        high_contrast=s.get("high_contrast", flag, d.high_contrast),
        large_text=s.get("large_text", flag, d.large_text),
        read_aloud=s.get("read_aloud", flag, d.read_aloud),
        maxfps=s.get("maxfps", whole_number(5, 60, "frames a second"), d.maxfps),
    )
    s.done()
    return out


def _technician(s: _Section) -> Technician:
    d = Technician()
    out = Technician(
        pin_hash=s.get("pin_hash", pin_hash, d.pin_hash),
        lockout_minutes=s.get("lockout_minutes", number(1, 1440, "minutes"), d.lockout_minutes),
        max_attempts=s.get("max_attempts", whole_number(1, 10, "attempts"), d.max_attempts),
    )
    s.done()
    return out


def _updates(s: _Section) -> Updates:
    d = Updates()
    out = Updates(
        channel=s.get(
            "channel",
            text(32, r"[a-z0-9][a-z0-9-]*", _SLUG % "stable"),
            d.channel,
        ),
        maintenance_window=s.get("maintenance_window", clock_window, d.maintenance_window),
    )
    s.done()
    return out


def from_dict(data: Mapping[str, Any]) -> BoothConfig:
    """Build a configuration from parsed TOML, or raise :class:`ConfigError` listing all."""
    if not isinstance(data, Mapping):
        raise ConfigError([f"booth configuration: must be a table of sections, not {_show(data)}"])
    problems: list[str] = []
    root = _Section(dict(data), "", problems)
    booth = _booth(root.table("booth"))
    site = _site(root.table("site"))
    hub = _hub(root.table("hub"))
    root.known.append("ice_servers")
    ice = _ice_servers(root.data.get("ice_servers"), problems)
    hardware = _hardware(root.table("hardware"))
    timeouts = _timeouts(root.table("timeouts"))
    # Staff text is checked against the site's languages only when those are valid.
    languages_ok = not any(p.startswith("site.languages: ") for p in problems)
    emergency = _emergency(root.table("emergency"), site.languages if languages_ok else None)
    updates = _updates(root.table("updates"))
    display = _display(root.table("display"))
    tech = _technician(root.table("technician"))
    root.done()
    if problems:
        raise ConfigError(problems)
    return BoothConfig(booth, site, hub, ice, hardware, timeouts, emergency, updates, display, tech)


def _syntax_problem(document: str, source: str, exc: tomllib.TOMLDecodeError) -> str:
    """tomllib's message plus the offending line, so the technician sees what to fix."""
    message = f"{source}: not valid TOML: {exc}"
    where = re.search(r"\(at line (\d+), column \d+\)", str(exc))
    if where:
        lines = document.splitlines()
        n = int(where[1])
        line = lines[n - 1].strip() if 1 <= n <= len(lines) else ""
        if line:
            shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
            if len(shown) > _SHOW_MAX:
                shown = shown[: _SHOW_MAX - 1] + "…"
            message += f" in `{shown}`"
        # The commonest slip: text without quotes, e.g. door = GPIO17.
        bare_word = re.match(r"[\w.\"-]+\s*=\s*([A-Za-z][^\s,\]}#]*)", line)
        if bare_word and bare_word[1] not in ("true", "false", "inf", "nan"):
            message += '; text needs quotes, e.g. name = "Riverside Library"'
    return message


def loads(document: str, source: str = "<text>") -> BoothConfig:
    """Parse TOML text; syntax errors name the line and column."""
    try:
        data = tomllib.loads(document)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(document, source, exc)], source) from None
    except RecursionError:
        raise ConfigError(
            [f"{source}: not valid TOML: arrays or tables nested too deeply"], source
        ) from None
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(exc.problems, source) from None


class _NotARegularFileError(Exception):
    """The path is a pipe, socket or device: reading it could block or never end."""


def _read(path: Path) -> bytes:
    """Read a regular file without ever blocking on a FIFO or device, or reading gigabytes."""
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError
    if not stat.S_ISREG(info.st_mode):
        raise _NotARegularFileError
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise _NotARegularFileError  # swapped between stat and open
        return f.read(MAX_FILE_BYTES + 1)


def load(path: Path | str) -> BoothConfig:
    """Read and validate a booth configuration file."""
    path = Path(path)
    where = str(path)

    def fail(problem: str) -> ConfigError:
        return ConfigError([f"{where}: {problem}"], where)

    try:
        raw = _read(path)
    except FileNotFoundError:
        raise fail(
            "no such file; check the path, or copy examples/booth.toml there and edit it"
        ) from None
    except IsADirectoryError:
        raise fail(
            "is a folder, not a configuration file; give the path of the .toml file"
        ) from None
    except _NotARegularFileError:
        raise fail(
            "is not a regular file (a pipe, socket or device); give the path of the .toml file"
        ) from None
    except PermissionError:
        raise fail("cannot be read (permission denied); check its owner and permissions") from None
    except OSError as exc:
        raise fail(f"cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise fail(f"is not a usable path ({exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise fail(
            f"is over {MAX_FILE_BYTES // 1024} KiB, far too big for a booth configuration; "
            "is this the right file?"
        )
    try:
        # utf-8-sig: editors on Windows may start the file with a byte-order mark.
        document = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise fail(
            f"not UTF-8 text (line {line}, byte {exc.start}); save the file as UTF-8"
        ) from None
    return loads(document, where)


def problem_report(error: ConfigError) -> list[str]:
    """The lines to show a technician: a count naming the file, then one problem a line.

    Shared by ``kiosk-provision check`` and the booth's start-up so both say the
    same thing. Problems about the file itself already name it and stand alone.
    """
    problems = error.problems or ["unknown problem"]
    alone = (f"{error.source}: ", f"{error.source} (")
    if error.source and all(p.startswith(alone) for p in problems):
        return problems
    count = f"{len(problems)} problem" + ("" if len(problems) == 1 else "s")
    return [f"{error.source or 'configuration'}: {count}", *problems]


_CREDENTIAL = re.compile(r"[A-Za-z0-9._~+/=-]{16,512}")


def read_credential(hub: Hub) -> str | None:
    """The booth's hub credential from ``[hub] credential_file``; None when none is configured.

    Read at start-up rather than kept in the TOML, so the configuration can be
    shown and copied without the secret. Refused when anyone but the owner and
    group can read it, as ssh refuses a private key.
    """
    path = hub.credential_file
    if path is None:
        return None
    where = f"{path} (hub.credential_file)"

    def fail(problem: str) -> ConfigError:
        return ConfigError([f"{where}: {problem}"], str(path))

    try:
        raw = _read(path)
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise fail(
            "no such file; write the credential `clinic-hub add-booth` printed into it (chmod 600)"
        ) from None
    except IsADirectoryError:
        raise fail("is a folder; give the path of the credential file") from None
    except _NotARegularFileError:
        raise fail("is not a regular file (a pipe, socket or device)") from None
    except PermissionError:
        raise fail("cannot be read (permission denied); check its owner") from None
    except (OSError, ValueError) as exc:
        raise fail(f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if mode & stat.S_IROTH:
        raise fail("can be read by any user; make it private with chmod 600")
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    if not _CREDENTIAL.fullmatch(token):
        raise fail(
            "does not hold a credential (16-512 letters, digits and ._~+/=-, as "
            "`clinic-hub add-booth` prints it)"
        )
    return token
