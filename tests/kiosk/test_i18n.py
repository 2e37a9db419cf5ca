"""Catalogs: complete in every language, placeholders intact, .mo files compiled and readable."""

from __future__ import annotations

import ast
import gettext
import io
import logging
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from kiosk import config, i18n, texts
from kiosk.i18n import (
    CatalogError,
    Entry,
    Source,
    Translator,
    check_catalog,
    compile_po,
    extract,
    languages,
    mo_bytes,
    parse_po,
    placeholders,
    render_po,
    update_catalog,
)
from kiosk.session import Message, State

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ROOT / "kiosk" / "locales"
SHIPPED = ("en", "es")
CONFIG = {"emergency_number": "911", "crisis_number": "988"}
STAFF = {"en": "library staff", "es": "el personal de la biblioteca"}


def po_path(language: str, locales: Path = LOCALES) -> Path:
    return locales / language / "LC_MESSAGES" / "kiosk.po"


def catalog(language: str) -> list[Entry]:
    path = po_path(language)
    return parse_po(path.read_text(encoding="utf-8"), str(path))


# ---------------------------------------------------------------- completeness


def test_languages_are_english_and_spanish() -> None:
    assert languages() == SHIPPED
    assert set(config.SHIPPED_LANGUAGES) == set(languages())


@pytest.mark.parametrize("language", SHIPPED)
def test_every_message_is_translated(language: str) -> None:
    assert check_catalog(catalog(language), extract(), language) == []


def test_the_check_reports_a_missing_translation() -> None:
    """Twin of the test above: blank one translation, drop another; both are named."""
    blanked, dropped = texts.SAFETY.crisis, texts.IDLE_WARNING.still_here
    entries = [
        replace(e, msgstr=("",)) if e.msgid == blanked else e
        for e in catalog("es")
        if e.msgid != dropped
    ]
    problems = check_catalog(entries, extract(), "es")
    assert len(problems) == 2
    assert any(blanked in p and "no translation" in p for p in problems)
    assert any(dropped in p and "missing" in p for p in problems)


def test_the_check_reports_an_incomplete_plural_and_a_fuzzy_entry() -> None:
    waited = texts.WAITING.waited.singular
    entries = [
        replace(e, msgstr=(e.msgstr[0], ""))
        if e.msgid == waited
        else replace(e, flags=("fuzzy",))
        if e.msgid == texts.COMMON.cancel
        else e
        for e in catalog("es")
    ]
    problems = check_catalog(entries, extract(), "es")
    assert len(problems) == 2
    assert all("no translation" in p for p in problems)


@pytest.mark.parametrize("language", SHIPPED)
def test_po_files_are_up_to_date_with_the_texts(language: str) -> None:
    text = po_path(language).read_text(encoding="utf-8")
    entries = parse_po(text)
    assert render_po(update_catalog(entries, extract(), language)) == text, (
        "run: python -m kiosk.i18n"
    )


@pytest.mark.parametrize("language", SHIPPED)
def test_committed_mo_is_compiled_from_the_po(language: str) -> None:
    po = po_path(language)
    assert po.with_suffix(".mo").read_bytes() == compile_po(po), "run: python -m kiosk.i18n"


def test_the_command_checks_the_shipped_catalogs() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "kiosk.i18n", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


# ---------------------------------------------------------------- placeholders


def test_placeholders_are_parsed_by_name() -> None:
    assert placeholders("Call {emergency_number} or {crisis_number}.") == {
        "emergency_number",
        "crisis_number",
    }
    assert placeholders("{{not one}} {minutes:d}") == {"minutes"}
    for bad in ("{}", "{0}", "{unclosed", "stray }"):
        with pytest.raises(ValueError):
            placeholders(bad)


@pytest.mark.parametrize("language", SHIPPED)
def test_translations_keep_the_placeholders_of_their_id(language: str) -> None:
    for e in catalog(language):
        if e.msgid:
            wanted = placeholders(e.msgid) | placeholders(e.msgid_plural or "")
            assert all(placeholders(form) == wanted for form in e.msgstr), e.msgid


def test_a_translation_with_other_placeholders_is_refused(tmp_path: Path) -> None:
    text = po_path("es").read_text(encoding="utf-8")
    good = "Si es una emergencia, llame al {emergency_number}."
    assert good in text
    po = tmp_path / "kiosk.po"
    broken = text.replace(f'msgstr "{good}"', 'msgstr "Si es una emergencia, llame al {numero}."')
    po.write_text(broken, encoding="utf-8")
    with pytest.raises(CatalogError) as refused:
        compile_po(po)
    (problem,) = refused.value.problems
    assert "{numero}" in problem and "{emergency_number}" in problem
    assert re.match(rf"{re.escape(str(po))}:\d+: msgstr", problem)
    problems = check_catalog(parse_po(po.read_text(encoding="utf-8")), extract(), "es")
    assert len(problems) == 1
    # Twin: the same file with the placeholder put back compiles.
    po.write_text(text, encoding="utf-8")
    assert compile_po(po) == po_path("es").with_suffix(".mo").read_bytes()


def test_every_placeholder_is_one_the_booth_fills() -> None:
    for source in extract():
        found = placeholders(source.msgid) | placeholders(source.plural or "")
        assert found <= texts.PLACEHOLDERS, source.msgid
        if source.plural is not None:
            assert found & {"minutes", "seconds"}, f"{source.msgid!r} shows no count"


# ---------------------------------------------------------------- the texts


def test_every_state_and_message_has_words() -> None:
    assert set(texts.SCREENS) == set(State)
    assert set(texts.MESSAGES) == set(Message)
    for state, screen in texts.SCREENS.items():
        assert screen.title, state
    for message in Message:
        assert texts.message_text(State.WRAP_UP, message).title
    assert texts.message_text(State.IN_CALL, Message.CONNECTION_LOST) is not (
        texts.message_text(State.WRAP_UP, Message.CONNECTION_LOST)
    )


def test_everything_marked_is_extracted_and_everything_extracted_is_marked() -> None:
    """What xgettext would find (N_ and NP_ calls) is exactly what the walk finds."""
    tree = ast.parse((ROOT / "kiosk" / "texts.py").read_text(encoding="utf-8"))
    marked: set[tuple[str, str | None]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = [a.value for a in node.args if isinstance(a, ast.Constant)]
            if node.func.id == "N_":
                marked.add((args[0], None))
            elif node.func.id == "NP_":
                marked.add((args[0], args[1]))
    assert {(s.msgid, s.plural) for s in extract()} == marked


def test_language_names_are_in_their_own_language_and_not_translated() -> None:
    assert dict(texts.LANGUAGE_NAMES) == {"en": "English", "es": "Español"}
    assert set(texts.LANGUAGE_NAMES) == set(languages())
    ids = {s.msgid for s in extract()}
    assert not ids & set(texts.LANGUAGE_NAMES.values())


@pytest.mark.parametrize("language", SHIPPED)
def test_emergency_guidance_names_911_and_988_in_every_language(language: str) -> None:
    t = Translator(language, staff=STAFF[language], **CONFIG)
    for screen in (texts.NOTICE, texts.EMERGENCY, texts.OUT_OF_SERVICE):
        shown = " ".join(t(line) for line in screen.body)
        assert "911" in shown and "988" in shown, screen.title
        spoken = t.spoken(screen.spoken)
        assert "9 1 1" in spoken and "9 8 8" in spoken and "911" not in spoken
    crisis = t(texts.SAFETY.crisis)
    assert "988" in crisis and ("text" in crisis or "texto" in crisis)
    assert STAFF[language] in t(texts.EMERGENCY.body[0])


def test_spanish_names_the_crisis_line_by_its_name() -> None:
    t = Translator("es", **CONFIG)
    assert t(texts.SAFETY.crisis_line) == "Línea 988 de Prevención del Suicidio y Crisis"
    assert t(texts.EMERGENCY.title) == "Ya viene ayuda"


def test_numbers_are_never_written_into_a_translation() -> None:
    for language in SHIPPED:
        for e in catalog(language):
            for form in e.msgstr if e.msgid else ():
                assert not re.search(r"\b(911|988)\b", form), form


# ---------------------------------------------------------------- run time


def test_translator_counts_and_fills_in() -> None:
    es = Translator("es")
    assert es.plural(texts.WAITING.waited, 1, minutes=1) == "Ha esperado 1 minuto."
    assert es.plural(texts.WAITING.waited, 5, minutes=5) == "Ha esperado 5 minutos."
    en = Translator("en", staff="staff")
    assert en(texts.OUT_OF_SERVICE.body[1]) == "If you need help, ask staff."
    assert en(texts.OUT_OF_SERVICE.body[1], staff="the nurse") == "If you need help, ask the nurse."
    assert en.plural(texts.IDLE_WARNING.countdown, 1, seconds=1).endswith("in 1 second.")
    assert i18n.gettext_for("es")(texts.COMMON.cancel) == "Cancelar"


def test_a_broken_translation_falls_back_to_english(caplog: pytest.LogCaptureFixture) -> None:
    entries = [
        replace(e, msgstr=("Pídale ayuda a {personal}.",))
        if e.msgid == texts.OUT_OF_SERVICE.body[1]
        else e
        for e in catalog("es")
    ]
    t = Translator("es", staff="el personal")
    t._catalog = gettext.GNUTranslations(io.BytesIO(mo_bytes(entries)))
    with caplog.at_level(logging.INFO):
        assert t(texts.OUT_OF_SERVICE.body[1]) == "If you need help, ask el personal."
    (record,) = caplog.records
    assert "Pídale" not in caplog.text and "el personal" not in caplog.text
    assert record.levelno == logging.ERROR


def test_an_unshipped_language_is_refused_with_the_shipped_ones_named() -> None:
    with pytest.raises(CatalogError, match=r"must be one of 'en', 'es', not 'fr'"):
        i18n.translations("fr")


# ---------------------------------------------------------------- the compiler


SAMPLE = r"""# A translator's note
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\n"

#. where.it.is
msgid "Hello"
msgstr "Hola"

msgctxt "button"
msgid "Hello"
msgstr "¡Hola!"

msgid ""
"Two\n"
"lines"
msgstr ""
"Dos\n"
"líneas"

msgid "Quote \" back\\slash tab\t bell\a octal\101 hex\x42"
msgstr "Comilla \" barra\\ tab\t campana\a octal\101 hex\x42"

msgid "{n} visit"
msgid_plural "{n} visits"
msgstr[0] "{n} consulta"
msgstr[1] "{n} consultas"

#, fuzzy
msgid "Unsure"
msgstr "Inseguro"

msgid "Untranslated"
msgstr ""

#~ msgid "Old"
#~ msgstr "Viejo"
"""


def test_compiled_po_is_read_by_python_gettext(tmp_path: Path) -> None:
    po = tmp_path / "sample.po"
    po.write_text(SAMPLE, encoding="utf-8")
    t = gettext.GNUTranslations(io.BytesIO(compile_po(po)))
    assert t.gettext("Hello") == "Hola"
    assert t.pgettext("button", "Hello") == "¡Hola!"
    assert t.gettext("Two\nlines") == "Dos\nlíneas"
    quoted = 'Quote " back\\slash tab\t bell\a octalA hexB'
    assert t.gettext(quoted) == 'Comilla " barra\\ tab\t campana\a octalA hexB'
    assert [t.ngettext("{n} visit", "{n} visits", n) for n in (1, 2)] == [
        "{n} consulta",
        "{n} consultas",
    ]
    assert t.gettext("Unsure") == "Unsure"  # fuzzy entries are not used, as with msgfmt
    assert t.gettext("Untranslated") == "Untranslated"
    assert t.gettext("Old") == "Old"
    assert t.info()["content-type"] == "text/plain; charset=UTF-8"


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext's msgfmt is not installed")
def test_compile_po_is_byte_identical_to_gnu_msgfmt(tmp_path: Path) -> None:
    sample = tmp_path / "sample.po"
    sample.write_text(SAMPLE, encoding="utf-8")
    for po in (sample, po_path("en"), po_path("es")):
        gnu = subprocess.run(
            ["msgfmt", "--no-hash", "-o", "-", str(po)], capture_output=True, check=True
        ).stdout
        assert compile_po(po) == gnu, po


def test_po_round_trips_through_parse_and_render() -> None:
    entries = parse_po(SAMPLE)
    assert parse_po(render_po(entries)) == entries
    assert [e.msgid for e in entries if e.obsolete] == ["Old"]
    assert entries[0].notes == ("A translator's note",)
    for language in SHIPPED:
        text = po_path(language).read_text(encoding="utf-8")
        assert render_po(parse_po(text)) == text


def test_parse_errors_name_every_line_at_once() -> None:
    bad = "\n".join(
        [
            'msgid "a"',
            'msgstr "unterminated',
            "",
            'msgid "b"',
            'msgstr "bad \\q escape"',
            "",
            'msgid "c"',
            'msgstr "C"',
            "",
            'msgid "c"',
            'msgstr "again"',
            "",
            "garbage",
        ]
    )
    with pytest.raises(CatalogError) as refused:
        parse_po(bad, "bad.po")
    problems = refused.value.problems
    assert "bad.po:2: expected one string in double quotes" in problems
    assert "bad.po:5: unknown escape \\q" in problems
    assert "bad.po:10: 'c' is already on line 7" in problems
    assert any(p.startswith("bad.po:13: expected msgctxt") for p in problems)
    with pytest.raises(CatalogError, match=r"x.po:1: an entry has no msgid"):
        parse_po('msgstr "no id"\n', "x.po")


def test_a_catalog_without_a_utf8_header_is_refused(tmp_path: Path) -> None:
    po = tmp_path / "kiosk.po"
    po.write_text('msgid "Yes"\nmsgstr "Sí"\n', encoding="utf-8")
    with pytest.raises(CatalogError, match="charset=UTF-8"):
        compile_po(po)


# ---------------------------------------------------------------- updating


def test_update_keeps_translations_adds_new_ids_and_keeps_old_ones_obsolete() -> None:
    old = [
        Entry("", ("Content-Type: text/plain; charset=UTF-8\n",)),
        Entry("Kept", ("Guardado",), notes=("from the translator",)),
        Entry("Dropped", ("Quitado",)),
        Entry("Revived", ("Revivido",), obsolete=True),
    ]
    sources = [
        Source("Kept", where=("a",)),
        Source("New", where=("b",)),
        Source("Revived"),
        Source("{n} new", "{n} news"),
    ]
    es = update_catalog(old, sources, "es")
    assert [(e.msgid, e.msgstr, e.obsolete) for e in es[1:]] == [
        ("Kept", ("Guardado",), False),
        ("New", ("",), False),
        ("Revived", ("Revivido",), False),
        ("{n} new", ("", ""), False),
        ("Dropped", ("Quitado",), True),
    ]
    assert es[1].notes == ("from the translator",) and es[1].comments == ("a",)
    en = update_catalog([], sources, "en")
    assert [e.msgstr for e in en[1:]] == [
        ("Kept",),
        ("New",),
        ("Revived",),
        ("{n} new", "{n} news"),
    ]
    assert check_catalog(en, sources, "en") == []
    assert update_catalog(es, sources, "es") == es  # running twice changes nothing


def test_the_command_creates_updates_and_checks_catalogs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = tmp_path / "fresh"
    assert i18n.main(["--locales", str(fresh)]) == 1  # Spanish is not translated yet
    assert "has no translation" in capsys.readouterr().err
    assert check_catalog(parse_po(po_path("en", fresh).read_text()), extract(), "en") == []
    assert po_path("es", fresh).with_suffix(".mo").exists()
    assert i18n.main(["--locales", str(fresh), "--check"]) == 1

    copy = tmp_path / "copy"
    shutil.copytree(LOCALES, copy)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    assert i18n.main(["--locales", str(copy)]) == 0
    assert i18n.main(["--locales", str(copy), "--check"]) == 0
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before

    po_path("es", copy).with_suffix(".mo").unlink()
    assert i18n.main(["--locales", str(copy), "--check"]) == 1
    assert "not compiled" in capsys.readouterr().err
