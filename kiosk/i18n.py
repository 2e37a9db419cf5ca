"""Translations of :mod:`kiosk.texts`: gettext catalogs, and the tool that keeps them.

At run time the booth reads ``kiosk/locales/<lang>/LC_MESSAGES/kiosk.mo``
through :func:`translations`, :func:`gettext_for` or a :class:`Translator`
(translate, then fill in placeholders, never crashing a screen over a
broken translation).

``python -m kiosk.i18n`` keeps the catalogs in step with the texts:

1. walks :data:`kiosk.texts.ROOTS` (:func:`extract`), exact and with no
   source parsing;
2. updates each ``kiosk.po``: new ids are added untranslated (English, the
   source language, is filled with the id itself), translations are kept,
   ids no longer used stay at the end as obsolete ``#~`` entries so a
   translator can reuse them;
3. checks every catalog (:func:`check_catalog`): each id translated, the
   ``{placeholders}`` of each translation the same as its id's;
4. compiles each ``kiosk.mo`` with :func:`compile_po`, a small msgfmt of our
   own (no Babel: one less dependency on the booth), which refuses a
   translation whose placeholders differ from its id's.

``--check`` writes nothing and exits 1 if any file is out of date or any
catalog has a problem, for CI.
"""

from __future__ import annotations

import argparse
import functools
import gettext
import logging
import os
import re
import string
import struct
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

from kiosk.errors import KioskError
from kiosk.texts import LANGUAGE_NAMES, ROOTS, Plural

__all__ = [
    "DOMAIN",
    "LOCALES",
    "SOURCE_LANGUAGE",
    "CatalogError",
    "Entry",
    "Source",
    "Translator",
    "check_catalog",
    "compile_po",
    "extract",
    "gettext_for",
    "languages",
    "main",
    "mo_bytes",
    "parse_po",
    "placeholders",
    "render_po",
    "spoken_digits",
    "translations",
    "update_catalog",
]

_log = logging.getLogger(__name__)

DOMAIN: Final = "kiosk"
SOURCE_LANGUAGE: Final = "en"
LOCALES: Final = Path(__file__).resolve().parent / "locales"
"""Where the tool writes catalogs; the booth reads them with importlib.resources."""
DEFAULT_LANGUAGES: Final = ("en", "es")
NUMBER_PLACEHOLDERS: Final = ("emergency_number", "crisis_number")
_DEFAULT_PLURAL_FORMS = "nplurals=2; plural=(n != 1);"
_PLURAL_FORMS: Final[Mapping[str, str]] = {"en": _DEFAULT_PLURAL_FORMS, "es": _DEFAULT_PLURAL_FORMS}
_MO_MAGIC = 0x950412DE


class CatalogError(KioskError):
    """A catalog cannot be read, or holds a translation that would break a screen."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# ---------------------------------------------------------------- run time


def _locales() -> Traversable:
    return resources.files("kiosk") / "locales"


def languages() -> tuple[str, ...]:
    """The languages with a compiled catalog in this installation, sorted."""
    root = _locales()
    if not root.is_dir():
        return ()
    found = (d.name for d in root.iterdir() if (d / "LC_MESSAGES" / f"{DOMAIN}.mo").is_file())
    return tuple(sorted(found))


@functools.cache
def translations(language: str) -> gettext.GNUTranslations:
    """The compiled catalog of ``language``; raises :class:`CatalogError` if not shipped."""
    shipped = languages()
    if language not in shipped:
        listed = ", ".join(repr(lang) for lang in shipped)
        raise CatalogError([f"language must be one of {listed}, not {language!r}"])
    try:
        with (_locales() / language / "LC_MESSAGES" / f"{DOMAIN}.mo").open("rb") as mo:
            return gettext.GNUTranslations(mo)
    except (OSError, UnicodeDecodeError, struct.error) as exc:
        raise CatalogError([f"{language}/LC_MESSAGES/{DOMAIN}.mo: unreadable ({exc})"]) from exc


def language_name(language: str) -> str:
    """A language in its own words, from its catalog's ``Language-Name`` header,
    so adding a language is a catalog and a line of config."""
    try:
        name = translations(language).info().get("language-name", "")
    except CatalogError:
        name = ""
    return name or LANGUAGE_NAMES.get(language, language)


def gettext_for(language: str) -> Callable[[str], str]:
    """The ``_()`` of ``language``: message id in, translated text out (placeholders unfilled)."""
    return translations(language).gettext


def spoken_digits(number: str) -> str:
    """A phone number as separate digits: espeak reads "911" as "nine hundred eleven"."""
    return " ".join(number.replace(" ", ""))


class Translator:
    """One language's words, translated and filled in; what a screen holds.

    ``values`` given here (the numbers and staff words from the booth
    configuration) are used for every text; values given per call win. A
    translation that cannot be filled in falls back to the English id, so a
    bad catalog costs a language, never a screen.
    """

    def __init__(self, language: str, **values: object) -> None:
        self.language = language
        self._catalog = translations(language)
        self._values = dict(values)

    def __call__(self, msgid: str, /, **values: object) -> str:
        """``msgid`` translated, with its placeholders filled."""
        return self._fill(self._catalog.gettext(msgid), msgid, values)

    def plural(self, message: Plural, n: int, /, **values: object) -> str:
        """The form of ``message`` for count ``n`` (pass the count as its placeholder too)."""
        english = message.singular if n == 1 else message.plural
        return self._fill(
            self._catalog.ngettext(message.singular, message.plural, n), english, values
        )

    def spoken(self, msgid: str, /, **values: object) -> str:
        """Like calling the translator, with phone numbers spelled digit by digit for speech."""
        merged = {**self._values, **values}
        for name in NUMBER_PLACEHOLDERS:
            if name in merged:
                merged[name] = spoken_digits(str(merged[name]))
        return self._fill(self._catalog.gettext(msgid), msgid, merged)

    def _fill(self, text: str, english: str, values: Mapping[str, object]) -> str:
        merged = {**self._values, **values}
        for template in (text, english):
            try:
                return template.format_map(merged)
            except (KeyError, IndexError, ValueError, AttributeError) as exc:
                # Never the text or the values in a log: only which language and why.
                _log.error(
                    "a %s text could not be filled in (%s)", self.language, type(exc).__name__
                )
        return english


# ---------------------------------------------------------------- message ids from kiosk.texts


@dataclass(frozen=True)
class Source:
    """One message id as :mod:`kiosk.texts` uses it, and where (for translators)."""

    msgid: str
    plural: str | None = None
    where: tuple[str, ...] = ()


def extract(roots: Mapping[str, object] = ROOTS) -> list[Source]:
    """Every message id under ``roots``, in the order the structures list them."""
    found: dict[str, Source] = {}

    def add(msgid: str, plural: str | None, path: str) -> None:
        if not msgid:
            return  # "" is the catalog header, and means "nothing to say" in the texts
        known = found.get(msgid)
        if known is None:
            found[msgid] = Source(msgid, plural, (path,))
        elif known.plural != plural:
            raise CatalogError([f"{path}: {msgid!r} is used both with and without a plural"])
        elif path not in known.where:
            found[msgid] = replace(known, where=(*known.where, path))

    def walk(obj: object, path: str) -> None:
        if isinstance(obj, str):
            add(obj, None, path)
        elif isinstance(obj, Plural):
            add(obj.singular, obj.plural, path)
        elif is_dataclass(obj) and not isinstance(obj, type):
            for f in fields(obj):
                walk(getattr(obj, f.name), f"{path}.{f.name}")
        elif isinstance(obj, Mapping):
            for key, value in obj.items():
                walk(value, f"{path}.{key}")
        elif isinstance(obj, tuple):
            for i, value in enumerate(obj):
                walk(value, f"{path}[{i}]")
        else:
            raise CatalogError([f"{path}: {type(obj).__name__} is not text"])

    for name, root in roots.items():
        walk(root, name)
    return list(found.values())


# ---------------------------------------------------------------- .po files


@dataclass(frozen=True)
class Entry:
    """One entry of a .po file. ``msgstr`` has one form, or one per plural form."""

    msgid: str
    msgstr: tuple[str, ...] = ("",)
    msgid_plural: str | None = None
    msgctxt: str | None = None
    notes: tuple[str, ...] = ()  # "# " translator comments
    comments: tuple[str, ...] = ()  # "#." where the id is used
    flags: tuple[str, ...] = ()  # "#," such as fuzzy
    obsolete: bool = False
    line: int = field(default=0, compare=False)

    @property
    def key(self) -> tuple[str | None, str]:
        return (self.msgctxt, self.msgid)

    @property
    def translated(self) -> bool:
        return all(self.msgstr) and "fuzzy" not in self.flags

    def where(self, source: str) -> str:
        """``file:line`` when read from a file, else the file alone."""
        return f"{source}:{self.line}" if self.line else source


_KEYWORD = re.compile(r"(msgctxt|msgid_plural|msgid|msgstr)(?:\[(\d+)\])?\s+(\".*)$")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))")
_SIMPLE_ESCAPES: Final = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "?": "?",
}
_ESCAPES_OUT: Final = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _unquote(text: str) -> str:
    match = _QUOTED.fullmatch(text.strip())
    if match is None:
        raise ValueError("expected one string in double quotes")

    def one(m: re.Match[str]) -> str:
        octal, hexa, char = m.groups()
        if octal is not None:
            return chr(int(octal, 8))
        if hexa is not None:
            return chr(int(hexa, 16))
        if char in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[char]
        raise ValueError(f"unknown escape \\{char}")

    return _ESCAPE.sub(one, match.group(1))


def _quote(text: str) -> str:
    out = "".join(
        _ESCAPES_OUT.get(c) or (f"\\{ord(c):03o}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
        for c in text
    )
    return f'"{out}"'


@dataclass
class _Draft:
    line: int = 0
    obsolete: bool = False
    notes: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    parts: dict[str, list[str]] = field(default_factory=dict)  # "msgid", "msgstr[1]", ...

    @property
    def has_msgstr(self) -> bool:
        return any(k.startswith("msgstr") for k in self.parts)

    @property
    def empty(self) -> bool:
        return not (self.parts or self.notes or self.comments or self.flags)


def _finish(d: _Draft) -> Entry:
    parts = {k: "".join(v) for k, v in d.parts.items()}
    if "msgid" not in parts:
        raise ValueError("an entry has no msgid")
    plural = parts.get("msgid_plural")
    if plural is None:
        if set(parts) - {"msgctxt", "msgid", "msgstr"} or "msgstr" not in parts:
            raise ValueError("an entry without msgid_plural needs exactly one plain msgstr")
        msgstr: tuple[str, ...] = (parts["msgstr"],)
    else:
        count = sum(k.startswith("msgstr[") for k in parts)
        wanted = {f"msgstr[{i}]" for i in range(count)}
        if "msgstr" in parts or count == 0 or not wanted <= set(parts):
            raise ValueError("a plural entry needs msgstr[0], msgstr[1], ... in order")
        msgstr = tuple(parts[f"msgstr[{i}]"] for i in range(count))
    return Entry(
        msgid=parts["msgid"],
        msgstr=msgstr,
        msgid_plural=plural,
        msgctxt=parts.get("msgctxt"),
        notes=tuple(d.notes),
        comments=tuple(d.comments),
        flags=tuple(d.flags),
        obsolete=d.obsolete,
        line=d.line,
    )


def parse_po(text: str, source: str = "<po>") -> list[Entry]:
    """Read a .po file's text; every problem is reported at once as ``source:line: why``."""
    entries: list[Entry] = []
    problems: list[str] = []
    draft = _Draft()
    current: str | None = None  # the field continuation strings belong to

    def flush() -> None:
        nonlocal draft, current
        if not draft.empty:
            try:
                entries.append(_finish(draft))
            except ValueError as exc:
                problems.append(f"{source}:{draft.line}: {exc}")
        draft, current = _Draft(), None

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        obsolete = line.startswith("#~")
        if obsolete:
            line = line[2:].strip()
        if not line:
            continue
        if line.startswith("#"):
            if draft.has_msgstr:
                flush()
            if line.startswith("#."):
                draft.comments.append(line[2:].strip())
            elif line.startswith("#,"):
                draft.flags += [f.strip() for f in line[2:].split(",") if f.strip()]
            elif line[:2] in ("# ", "#"):
                draft.notes.append(line[2:])
            continue  # "#:" references and "#|" previous ids are not kept
        keyword = _KEYWORD.match(line)
        try:
            if keyword:
                name, index, rest = keyword.groups()
                if name in ("msgctxt", "msgid") and (draft.has_msgstr or name in draft.parts):
                    flush()
                draft.line = draft.line or number
                current = f"{name}[{index}]" if index is not None else name
                if current in draft.parts:
                    raise ValueError(f"{current} given twice")
                draft.obsolete = obsolete
                draft.parts[current] = [_unquote(rest)]
            elif line.startswith('"') and current is not None:
                draft.parts[current].append(_unquote(line))
            else:
                raise ValueError("expected msgctxt, msgid, msgstr, a quoted string or a comment")
        except ValueError as exc:
            problems.append(f"{source}:{number}: {exc}")
    flush()
    seen: dict[tuple[str | None, str], Entry] = {}
    for entry in entries:
        if entry.obsolete:
            continue
        if entry.key in seen:
            problems.append(
                f"{source}:{entry.line}: {entry.msgid!r} is already on line {seen[entry.key].line}"
            )
        seen[entry.key] = entry
    if problems:
        raise CatalogError(problems)
    return entries


def _field(keyword: str, value: str) -> list[str]:
    if "\n" in value[:-1]:  # several lines: gettext's usual layout, one string per line
        return [
            f'{keyword} ""',
            *(_quote(piece) for piece in re.findall(r"[^\n]*\n|[^\n]+", value)),
        ]
    return [f"{keyword} {_quote(value)}"]


def render_po(entries: Iterable[Entry]) -> str:
    """The text of a .po file; :func:`parse_po` reads it back to the same entries."""
    blocks = []
    for e in entries:
        lines = [f"# {n}".rstrip() for n in e.notes] + [f"#. {c}" for c in e.comments]
        if e.flags:
            lines.append("#, " + ", ".join(e.flags))
        body: list[str] = []
        if e.msgctxt is not None:
            body += _field("msgctxt", e.msgctxt)
        body += _field("msgid", e.msgid)
        if e.msgid_plural is None:
            body += _field("msgstr", e.msgstr[0])
        else:
            body += _field("msgid_plural", e.msgid_plural)
            for i, form in enumerate(e.msgstr):
                body += _field(f"msgstr[{i}]", form)
        lines += [f"#~ {b}" for b in body] if e.obsolete else body
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _header(language: str) -> Entry:
    fields_ = {
        "Project-Id-Version": "telehealth-kiosk",
        "Language": language,
        "Language-Name": LANGUAGE_NAMES.get(language, language),
        "MIME-Version": "1.0",
        "Content-Type": "text/plain; charset=UTF-8",
        "Content-Transfer-Encoding": "8bit",
        "Plural-Forms": _PLURAL_FORMS.get(language, _DEFAULT_PLURAL_FORMS),
    }
    return Entry(
        msgid="",
        msgstr=("".join(f"{k}: {v}\n" for k, v in fields_.items()),),
        notes=(
            "Texts a resident of a telehealth booth sees and hears; source: kiosk/texts.py.",
            "Plain, short and warm. Keep every {placeholder} exactly as it is.",
            "Update with: python -m kiosk.i18n",
        ),
    )


def _header_of(entries: Iterable[Entry]) -> Entry | None:
    return next((e for e in entries if e.key == (None, "") and not e.obsolete), None)


def _nplurals(header: Entry | None) -> int:
    match = re.search(r"nplurals\s*=\s*(\d+)", header.msgstr[0] if header else "")
    return int(match.group(1)) if match else 2


def update_catalog(
    entries: Sequence[Entry], sources: Sequence[Source], language: str
) -> list[Entry]:
    """``entries`` brought in line with ``sources``: new ids added, translations kept."""
    header = _header_of(entries) or _header(language)
    nplurals = _nplurals(header)
    # Live entries win over obsolete ones with the same id.
    old = {e.key: e for e in sorted(entries, key=lambda e: not e.obsolete) if e.msgid}
    out = [header]
    retired: list[Entry] = []
    for s in sources:
        prev = old.pop((None, s.msgid), None)
        if prev is not None and prev.msgid_plural == s.plural and any(prev.msgstr):
            out.append(replace(prev, comments=s.where, obsolete=False))
            continue
        if prev is not None and any(prev.msgstr):
            retired.append(prev)  # a plural added or dropped: the old words are only a hint
        if language == SOURCE_LANGUAGE:
            msgstr = (s.msgid,) if s.plural is None else (s.msgid, *[s.plural] * (nplurals - 1))
        else:
            msgstr = ("",) * (1 if s.plural is None else nplurals)
        out.append(
            Entry(s.msgid, msgstr, s.plural, notes=prev.notes if prev else (), comments=s.where)
        )
    retired += [e for e in old.values() if any(e.msgstr)]
    gone = sorted(retired, key=lambda e: (e.msgid, e.msgctxt or "", e.msgid_plural or ""))
    out += [replace(e, obsolete=True, comments=(), flags=()) for e in gone]
    return out


# ---------------------------------------------------------------- checks


def placeholders(text: str) -> frozenset[str]:
    """The ``{names}`` in a str.format template; ValueError if it is not a valid one."""
    names: set[str] = set()
    for _, name, spec, _ in string.Formatter().parse(text):
        if name is None:
            continue
        base = re.split(r"[.\[]", name, maxsplit=1)[0]
        if not base or base.isdigit():
            raise ValueError("placeholders must have names, such as {minutes}")
        names.add(base)
        if spec:
            names |= placeholders(spec)
    return frozenset(names)


def _placeholder_problems(e: Entry, source: str) -> list[str]:
    if e.obsolete or not e.msgid:
        return []
    try:
        wanted = placeholders(e.msgid) | placeholders(e.msgid_plural or "")
    except ValueError as exc:
        return [f"{e.where(source)}: the msgid {e.msgid!r} is not a valid template: {exc}"]
    problems = []
    for i, form in enumerate(e.msgstr):
        if not form:
            continue
        what = "msgstr" if e.msgid_plural is None else f"msgstr[{i}]"
        try:
            found = placeholders(form)
        except ValueError as exc:
            problems.append(
                f"{e.where(source)}: {what} of {e.msgid!r} is not a valid template: {exc}"
            )
            continue
        if found != wanted:
            problems.append(
                f"{e.where(source)}: {what} has placeholders {_names(found)} "
                f"but its msgid {e.msgid!r} has {_names(wanted)}"
            )
    return problems


def _header_problems(entries: Iterable[Entry], source: str) -> list[str]:
    """The header must say UTF-8: without it gettext decodes the catalog as ASCII."""
    header = _header_of(entries)
    if header is None or "charset=utf-8" not in header.msgstr[0].lower():
        return [f'{source}: needs a header entry (msgid "") declaring charset=UTF-8']
    return []


def _names(names: frozenset[str]) -> str:
    return "{" + ", ".join(sorted(names)) + "}" if names else "none"


def check_catalog(entries: Sequence[Entry], sources: Sequence[Source], source: str) -> list[str]:
    """Every problem that would leave a resident without words: ``[]`` when complete."""
    problems = _header_problems(entries, source)
    header = _header_of(entries)
    nplurals = _nplurals(header)
    live = {e.key: e for e in entries if not e.obsolete and e.msgid}
    for s in sources:
        e = live.pop((None, s.msgid), None)
        if e is None:
            problems.append(f"{source}: {s.msgid!r} is missing; run python -m kiosk.i18n")
        elif e.msgid_plural != s.plural:
            problems.append(f"{e.where(source)}: {s.msgid!r} must have msgid_plural {s.plural!r}")
        elif s.plural is not None and len(e.msgstr) != nplurals:
            problems.append(f"{e.where(source)}: {s.msgid!r} needs {nplurals} plural forms")
        elif not e.translated:
            problems.append(f"{e.where(source)}: {s.msgid!r} has no translation")
    problems += [
        f"{e.where(source)}: {e.msgid!r} is not used by kiosk.texts" for e in live.values()
    ]
    problems += [p for e in entries for p in _placeholder_problems(e, source)]
    return problems


# ---------------------------------------------------------------- .mo files


def mo_bytes(entries: Iterable[Entry]) -> bytes:
    """A GNU .mo file (no hash table, like ``msgfmt --no-hash``) of the translated entries."""
    catalog: dict[bytes, bytes] = {}
    for e in entries:
        if e.obsolete or not e.translated:
            continue  # as msgfmt: untranslated and fuzzy entries fall back to the id
        key = e.msgid if e.msgctxt is None else f"{e.msgctxt}\x04{e.msgid}"
        if e.msgid_plural is not None:
            key += f"\x00{e.msgid_plural}"
        catalog[key.encode()] = "\x00".join(e.msgstr).encode()
    keys = sorted(catalog)
    n = len(keys)
    ids_start = 28 + 16 * n
    strs_start = ids_start + sum(len(k) + 1 for k in keys)
    ids, strs, id_table, str_table = b"", b"", [], []
    for k in keys:
        id_table += [len(k), ids_start + len(ids)]
        str_table += [len(catalog[k]), strs_start + len(strs)]
        ids += k + b"\0"
        strs += catalog[k] + b"\0"
    head = struct.pack("<7I", _MO_MAGIC, 0, n, 28, 28 + 8 * n, 0, 28 + 16 * n)
    return head + struct.pack(f"<{4 * n}I", *id_table, *str_table) + ids + strs


def _compile(text: str, source: str) -> bytes:
    entries = parse_po(text, source)
    problems = _header_problems(entries, source)
    problems += [p for e in entries for p in _placeholder_problems(e, source)]
    if problems:
        raise CatalogError(problems)
    return mo_bytes(entries)


def compile_po(po_path: str | os.PathLike[str]) -> bytes:
    """The .mo bytes of a .po file; :class:`CatalogError` on bad syntax or placeholders."""
    path = Path(po_path)
    return _compile(path.read_text(encoding="utf-8"), str(path))


# ---------------------------------------------------------------- the command


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` whole, so a reader never sees half a catalog."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _sync(language: str, locales: Path, sources: Sequence[Source], check: bool) -> list[str]:
    """Update, check and compile one language; returns its problems."""
    po = locales / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    mo = po.with_suffix(".mo")
    try:
        old_text = po.read_text(encoding="utf-8") if po.exists() else ""
        entries = update_catalog(parse_po(old_text, str(po)), sources, language)
    except CatalogError as exc:
        return exc.problems
    new_text = render_po(entries)
    problems = check_catalog(entries, sources, str(po))
    try:
        mo_data: bytes | None = _compile(new_text, str(po))
    except CatalogError as exc:
        mo_data = None
        problems += [p for p in exc.problems if p not in problems]
    old_mo = mo.read_bytes() if mo.exists() else None
    if check:
        if new_text != old_text:
            problems.append(f"{po}: out of date with kiosk/texts.py; run python -m kiosk.i18n")
        if mo_data is not None and mo_data != old_mo:
            problems.append(f"{mo}: not compiled from {po.name}; run python -m kiosk.i18n")
        return problems
    if new_text != old_text:
        _write(po, new_text.encode())
        print(f"{po}: updated")
    if mo_data is not None and mo_data != old_mo:
        _write(mo, mo_data)
        print(f"{mo}: compiled")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kiosk.i18n [--check] [--add LANG] [--locales DIR]``; 0 when all is well."""
    parser = argparse.ArgumentParser(
        prog="python -m kiosk.i18n",
        description="Update the .po catalogs from kiosk/texts.py, check and compile them.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a catalog is out of date, incomplete or wrong",
    )
    parser.add_argument(
        "--add", metavar="LANG", action="append", default=[], help="start a new language"
    )
    parser.add_argument(
        "--locales", type=Path, default=LOCALES, help=f"catalog folder (default {LOCALES})"
    )
    args = parser.parse_args(argv)
    locales: Path = args.locales
    existing = {p.parent.parent.name for p in locales.glob(f"*/LC_MESSAGES/{DOMAIN}.po")}
    sources = extract()
    failed = False
    for language in sorted(existing | set(DEFAULT_LANGUAGES) | set(args.add)):
        problems = _sync(language, locales, sources, args.check)
        for problem in problems:
            print(problem, file=sys.stderr)
        failed = failed or bool(problems)
        print(
            f"{language}: {len(sources)} messages, {'problems above' if problems else 'complete'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
