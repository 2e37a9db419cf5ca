"""``kiosk-provision init``: write the booth's configuration, asked for or from a file.

Asked for (the default): one question per setting a booth cannot guess, each
answer checked the moment it is typed by the very validation the booth runs
at start-up (:func:`kiosk.config.from_dict` on the configuration as it would
be written, keeping only the problems of the key just asked), so a wrong
answer is asked again at once with the reason, and a problem a setting makes
with an earlier one (two devices on one GPIO) is caught too. The current
value, or the usual one, is the default: Enter keeps it. Settings not asked
for keep their current value. The questions are read from a text stream, so
a script or a test can pipe the answers in.

From a file (``--from FILE``): the file is checked whole, every problem
listed with its key path, and copied as it is (comments kept).

Either way the file is written atomically (a temporary file beside it,
fsync, rename), mode 0640, and owned by root and the ``kiosk`` group when run
as root: it holds the technician PIN's hash.

The helpers here (:func:`write_atomic`, :func:`dump_toml`, :func:`add_root`)
are shared by ``enroll``, ``status`` and ``reset``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import pwd
import re
import sys
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from kiosk.commandline import EXIT_OK, EXIT_PROBLEMS, Command, err
from kiosk.config import SHIPPED_LANGUAGES, from_dict, load, problem_report
from kiosk.errors import ConfigError, KioskError
from provisioning.layout import USER, Layout

PROG: Final = "kiosk-provision"
CONFIG_MODE: Final = 0o640
PRIVATE_MODE: Final = 0o600


class ProvisionError(KioskError):
    """A provisioning step cannot go ahead; the message says what to fix."""


# ------------------------------------------------------------- shared helpers


def add_root(parser: argparse.ArgumentParser) -> None:
    """``--root DIR``: act on a booth laid out under DIR instead of / (for tests)."""
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        metavar="DIR",
        help="the booth's filesystem root (default: /; a temporary folder in tests)",
    )


def _booth_user() -> pwd.struct_passwd | None:
    """The booth's account when running as root (files are handed to it), else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        return None


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` whole or not at all, even across a power cut.

    Mode 0600 files go to the booth's user, 0640 ones to root and its group,
    when run as root and that user exists.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ProvisionError(
            f"cannot write in {path.parent} ({exc.strerror or exc}); run as root "
            "(sudo), or check that the folder is writable"
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            user = _booth_user()
            if user is not None:
                owner = user.pw_uid if mode & 0o077 == 0 else 0
                os.fchown(f.fileno(), owner, user.pw_gid)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ProvisionError(f"cannot write {path} ({exc.strerror or exc})") from None


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else _toml_string(name)


def _toml_string(text: str) -> str:
    # JSON escapes are TOML escapes; TOML also wants DEL escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write a {type(value).__name__} as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _emit(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any], array: bool) -> None:
    dotted = ".".join(_toml_key(p) for p in path)
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and not _is_table_array(v)}
    if path:
        lines.append("")
        lines.append(f"[[{dotted}]]" if array else f"[{dotted}]")
    for key, value in scalars.items():
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            _emit(lines, (*path, key), value, False)
        elif _is_table_array(value):
            for item in value:
                _emit(lines, (*path, key), item, True)


def dump_toml(data: Mapping[str, Any], header: str = "") -> str:
    """TOML text for parsed TOML data (what :func:`tomllib.loads` gives back, exactly)."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    top = {k: v for k, v in data.items() if not isinstance(v, dict) and not _is_table_array(v)}
    if top:  # a booth file has none, but keys before the first table must come first
        _emit(lines, (), top, False)
    _emit(lines, (), {k: v for k, v in data.items() if k not in top}, False)
    document = "\n".join(lines).lstrip("\n") + "\n"
    if tomllib.loads(document) != data:  # pragma: no cover - a bug in the writer
        raise ProvisionError("internal error: the configuration did not survive writing it out")
    return document


def read_raw(path: Path) -> dict[str, Any]:
    """A booth file's TOML as it is, valid or not, for its current values; {} if unreadable."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return {}


# ---------------------------------------------------------------- questions

ToToml = Callable[[str], Any]


def _as_text(answer: str) -> Any:
    return answer


def _as_int(answer: str) -> Any:
    """A whole number if it looks like one; otherwise the text, for the validator to name."""
    try:
        return int(answer)
    except ValueError:
        return answer


def _as_list(answer: str) -> Any:
    return [part.strip() for part in answer.split(",") if part.strip()]


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class Question:
    """One setting to ask for: its key path, what it is, how a typed answer becomes TOML."""

    key: str
    about: str
    convert: ToToml = _as_text
    usual: Any = None
    """The default when the file has no value (None: the setting is required)."""


# What a booth cannot guess, in the order a technician knows it; the usual
# wiring is examples/booth.toml's.
QUESTIONS: Final = (
    Question("booth.id", 'this booth\'s id at the hub, e.g. "riverside-1"'),
    Question("booth.name", 'the booth\'s name as staff see it, e.g. "Riverside Library, Booth 1"'),
    Question("site.name", "the library or clinic the booth is in"),
    Question(
        "site.street_address",
        "the full street address; staff and clinicians are sent it in an emergency",
    ),
    Question("site.room", 'where in the building the booth stands, e.g. "Second floor, Room 204"'),
    Question("site.time_zone", 'the site\'s time zone, e.g. "America/Chicago"'),
    Question(
        "site.languages",
        "languages residents can choose, separated by commas, the first one the default",
        _as_list,
        list(SHIPPED_LANGUAGES),
    ),
    Question("hub.url", 'the clinic hub\'s booth address, e.g. "wss://hub.example.org/booth"'),
    Question(
        "hub.certificate_sha256",
        "the hub certificate's SHA-256 fingerprint (`clinic-hub serve` prints it)",
    ),
    Question("hardware.backend", '"pi" for the booth\'s hardware, "sim" for a demo', usual="pi"),
    Question("hardware.pins.door", "GPIO (BCM number) of the door switch", _as_int, 17),
    Question("hardware.pins.emergency_button", "GPIO of the emergency button", _as_int, 22),
    Question("hardware.pins.occupancy_light", 'GPIO of the "in use" light', _as_int, 5),
    Question("hardware.pins.alarm_light", "GPIO of the emergency light", _as_int, 6),
    Question("hardware.pins.buzzer", "GPIO of the emergency buzzer", _as_int, 13),
    Question("emergency.emergency_number", "the emergency services number shown", usual="911"),
    Question("emergency.crisis_number", "the mental-health crisis line shown", usual="988"),
)
_STAFF_USUAL: Final = {"en": "staff", "es": "el personal"}


def _staff_question(language: str) -> Question:
    return Question(
        f"emergency.staff.{language}",
        f'who comes when the emergency button is held, in "{language}"',
        usual=_STAFF_USUAL.get(language),
    )


def _get(data: Mapping[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def problems_of(data: Mapping[str, Any]) -> list[str]:
    """Every problem the booth would report for this configuration (none: it is valid)."""
    try:
        from_dict(data)
    except ConfigError as exc:
        return exc.problems
    return []


def problems_at(data: Mapping[str, Any], key: str) -> list[str]:
    """The problems of ``key`` alone (and inside it), as the booth would report them."""
    return [p for p in problems_of(data) if p.startswith((f"{key}: ", f"{key}.", f"{key}["))]


class _InputEndedError(ProvisionError):
    """The answers ran out before every question was answered."""


class Prompter:
    """Asks questions on a pair of text streams, a terminal's or a test's pipe."""

    def __init__(self, answers: TextIO, out: TextIO) -> None:
        self.answers = answers
        self.out = out

    def line(self, prompt: str) -> str:
        self.out.write(prompt)
        self.out.flush()
        answer = self.answers.readline()
        if not answer:
            self.out.write("\n")
            raise _InputEndedError("the answers ended before every question was answered")
        return answer.strip()

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def ask(self, draft: dict[str, Any], question: Question) -> None:
        """Ask until the answer passes the booth's own checks; put it into ``draft``."""
        current = _get(draft, question.key)
        default = current if current is not None else question.usual
        hint = f" [{_shown(default)}]" if default is not None else ""
        self.say(f"{question.key}: {question.about}")
        while True:
            typed = self.line(f"  {question.key}{hint}: ")
            if not typed and default is None:
                self.say(f"  {question.key}: required; type a value")
                continue
            value = copy.deepcopy(default) if not typed else question.convert(typed)
            trial = copy.deepcopy(draft)
            _set(trial, question.key, value)
            problems = problems_at(trial, question.key)
            if not problems:
                _set(draft, question.key, value)
                return
            for problem in problems:
                self.say(f"  {problem}")


def ask_config(existing: Mapping[str, Any], prompter: Prompter) -> dict[str, Any]:
    """The configuration after asking every question, starting from ``existing``'s values."""
    draft: dict[str, Any] = copy.deepcopy(dict(existing))
    for question in QUESTIONS:
        prompter.ask(draft, question)
    languages = _get(draft, "site.languages") or []
    old_staff = _get(draft, "emergency.staff")
    staff = {
        lang: old_staff[lang]
        for lang in languages
        if isinstance(old_staff, dict) and lang in old_staff
    }
    _set(draft, "emergency.staff", staff)
    for lang in languages:
        prompter.ask(draft, _staff_question(lang))
    return draft


# ------------------------------------------------------------------ command

HEADER: Final = """\
Telehealth booth configuration, written by `kiosk-provision init`.
Run `kiosk-provision init` again to change it (your values are the defaults),
or edit it and check it with `kiosk-provision check`. examples/booth.toml
describes every setting."""


def _init_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="FILE",
        help="take the whole configuration from FILE (checked first) instead of asking",
    )
    add_root(parser)


def init_from_file(source: Path, target: Path) -> None:
    """Check ``source`` as the booth would and copy it to ``target``; ConfigError lists all."""
    load(source)  # raises ConfigError naming every problem's key
    try:
        data = source.read_bytes()
    except OSError as exc:  # pragma: no cover - load() just read it
        raise ProvisionError(f"cannot read {source} ({exc.strerror or exc})") from None
    write_atomic(target, data, CONFIG_MODE)


def init_interactive(target: Path, answers: TextIO, out: TextIO) -> None:
    """Ask for the configuration (``target``'s values as defaults) and write it."""
    existing = read_raw(target)
    prompter = Prompter(answers, out)
    if existing:
        prompter.say(f"Changing {target}; press Enter to keep a value in [brackets].")
    else:
        prompter.say(f"Writing {target}; press Enter to take a value in [brackets].")
    draft = ask_config(existing, prompter)
    problems = problems_of(draft)
    if problems:  # settings not asked for, wrong in the file already
        raise ConfigError(
            [*problems, f"(fix these in a copy of {target} and use `{PROG} init --from FILE`)"],
            str(target),
        )
    write_atomic(target, dump_toml(draft, HEADER).encode("utf-8"), CONFIG_MODE)


def _init(args: argparse.Namespace) -> int:
    """Write the booth configuration, asked for or from ``--from FILE``."""
    target = Layout(args.root).config
    try:
        if args.source is not None:
            init_from_file(args.source, target)
        else:
            init_interactive(target, sys.stdin, sys.stdout)
    except ConfigError as exc:
        for line in problem_report(exc):
            err(line)
        err(f"{PROG} init: nothing was written to {target}")
        return EXIT_PROBLEMS
    except ProvisionError as exc:
        err(f"{PROG} init: {exc}; nothing was written to {target}")
        return EXIT_PROBLEMS
    print(f"Wrote {target}. Next: `{PROG} enroll` with a code from `clinic-hub enroll-code`.")
    return EXIT_OK


COMMAND: Final = Command(
    "init",
    "write the booth configuration: asks each setting (checked as typed), or --from FILE",
    _init_args,
    _init,
)
