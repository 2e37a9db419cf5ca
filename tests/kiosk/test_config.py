"""The booth file: the shipped examples load, defaults hold, and every bad input
gets a clear message naming its key path, never another exception."""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import tempfile
import tomllib
from datetime import UTC, time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk import config
from kiosk.config import (
    Backend,
    BoothConfig,
    Contact,
    Contacts,
    Display,
    Emergency,
    Hardware,
    MaintenanceWindow,
    Pins,
    Technician,
    Timeouts,
    Updates,
    from_dict,
    load,
    loads,
    problem_report,
)
from kiosk.errors import ConfigError
from kiosk.technician import hash_pin, verify_pin

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BOOTH_TOML = EXAMPLES / "booth.toml"
DEMO_TOML = EXAMPLES / "demo-booth.toml"
FINGERPRINT = "ab" * 32
PIN_HASH = hash_pin("7391", salt=bytes(16))

# A problem line starts with a key path: bare or "quoted" keys joined by dots,
# with [i] after an array of tables, then ": ".
_SEG = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")(?:\[\d+\])*'
PROBLEM_LINE = re.compile(rf"{_SEG}(?:\.{_SEG})*: \S")


def example(path: Path = BOOTH_TOML) -> dict[str, Any]:
    """A fresh, mutable copy of an example file's TOML."""
    return tomllib.loads(path.read_text(encoding="utf-8"))


def minimal() -> dict[str, Any]:
    """Only the required keys, so everything else takes its default."""
    return {
        "booth": {"id": "b-1", "name": "Booth 1"},
        "site": {
            "name": "Riverside Library",
            "street_address": "1 Main St",
            "room": "Room 2",
            "time_zone": "America/Chicago",
        },
        "hub": {"url": "wss://hub.example.org/booth", "certificate_sha256": FINGERPRINT},
        "hardware": {
            "pins": {
                "door": 17,
                "emergency_button": 22,
                "occupancy_light": 5,
                "alarm_light": 6,
                "buzzer": 13,
            }
        },
    }


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        from_dict(data)
    return caught.value.problems


def only_problem(data: dict[str, Any]) -> str:
    found = problems(data)
    assert len(found) == 1, found
    return found[0]


def put(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *parents, last = dotted.split(".")
    node = data
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = value
    return data


def drop(data: dict[str, Any], dotted: str) -> dict[str, Any]:
    *parents, last = dotted.split(".")
    node = data
    for name in parents:
        node = node[name]
    del node[last]
    return data


# ------------------------------------------------------------------ examples


def test_booth_example_loads_with_the_default_pin_map() -> None:
    cfg = load(BOOTH_TOML)
    assert cfg.booth.id == "riverside-library-1"
    assert cfg.hub.url == "wss://hub.example.org/booth"
    assert re.fullmatch(r"[0-9a-f]{64}", cfg.hub.certificate_sha256)
    assert [s.urls for s in cfg.ice_servers] == [("turn:turn.example.org:3478",)]
    assert cfg.hardware.backend is Backend.PI
    assert cfg.hardware.pins == Pins(
        door=17, emergency_button=22, occupancy_light=5, alarm_light=6, buzzer=13
    )
    assert cfg.emergency.emergency_number == "911"
    assert cfg.emergency.crisis_number == "988"
    assert set(cfg.emergency.staff) == set(cfg.site.languages)
    assert cfg.display == Display()
    assert cfg.technician == Technician()


def test_booth_example_ships_no_pin() -> None:
    """A PIN hash in the example would be the same known PIN on every booth copied from it."""
    assert load(BOOTH_TOML).technician.pin_hash is None
    text = BOOTH_TOML.read_text(encoding="utf-8")
    assert re.search(r"(?m)^# pin_hash = ", text)
    assert "kiosk-provision hash-pin" in text


def test_demo_example_is_simulated_local_and_fast() -> None:
    cfg = load(DEMO_TOML)
    assert cfg.hardware.backend is Backend.SIM
    assert cfg.hub.url == "wss://localhost:8443/booth"
    assert cfg.hardware.pins.door_supervision == 27
    assert cfg.hardware.pins.emergency_button_supervision == 23
    assert cfg.timeouts.idle_warning_seconds == 10
    assert cfg.timeouts.longest_wait_seconds < Timeouts().longest_wait_seconds
    assert cfg.display.size == "1024x600" and not cfg.display.portrait
    assert cfg.technician.lockout_minutes == 1


def test_demo_pin_is_the_documented_one() -> None:
    cfg = load(DEMO_TOML)
    assert cfg.technician.pin_hash is not None
    assert "The demo PIN is 2468." in DEMO_TOML.read_text(encoding="utf-8")
    assert verify_pin("2468", cfg.technician.pin_hash)


def test_booth_example_documents_every_key() -> None:
    """A technician copies this file: every key must be there, set or commented out."""
    text = BOOTH_TOML.read_text(encoding="utf-8")
    sections = {
        "booth": config.BoothIdentity,
        "site": config.Site,
        "hub": config.Hub,
        "ice_servers": config.IceServer,
        "hardware": Hardware,
        "pins": Pins,
        "contacts": Contacts,
        "audio": config.Audio,
        "timeouts": Timeouts,
        "emergency": Emergency,
        "updates": Updates,
        "display": Display,
        "technician": Technician,
    }
    keys = {f.name for cls in sections.values() for f in dataclasses.fields(cls)}
    keys -= {"pins", "contacts", "audio"}  # tables, checked by their own headers
    missing = [k for k in sorted(keys) if not re.search(rf"(?m)^\s*#?\s*{k}\s*=", text)]
    assert missing == []
    headers = ("[booth]", "[site]", "[hub]", "[[ice_servers]]", "[hardware]", "[display]")
    for header in (*headers, "[technician]"):
        assert header in text
    assert "[hardware.pins]" in text and "[hardware.contacts]" in text
    assert "[hardware.audio]" in text
    assert re.search(r"(?m)^# door_supervision = \d+", text), "supervision pins commented out"


# ------------------------------------------------------------------ defaults


def test_minimal_file_is_valid() -> None:
    assert isinstance(from_dict(minimal()), BoothConfig)


def test_site_defaults_to_english_then_spanish() -> None:
    cfg = from_dict(minimal())
    assert cfg.site.languages == ("en", "es")
    assert cfg.site.default_language == "en"


def test_no_ice_servers_by_default() -> None:
    assert from_dict(minimal()).ice_servers == ()


def test_hardware_defaults() -> None:
    hw = from_dict(minimal()).hardware
    assert hw.backend is Backend.PI
    assert hw.contacts == Contacts(door=Contact.NC, emergency_button=Contact.NC)
    assert hw.emergency_hold_seconds == 1.0
    assert hw.wiring_fault_seconds == 3.0
    assert hw.pins.door_supervision is None
    assert hw.pins.emergency_button_supervision is None


def test_timeout_defaults() -> None:
    assert from_dict(minimal()).timeouts == Timeouts(
        idle_warning_seconds=90,
        idle_reset_seconds=30,
        longest_wait_seconds=1800,
        wrap_up_seconds=20,
        network_grace_seconds=60,
    )


def test_emergency_defaults_show_911_and_988() -> None:
    em = from_dict(minimal()).emergency
    assert (em.emergency_number, em.crisis_number) == ("911", "988")
    assert em.staff == {"en": "staff", "es": "el personal"}
    assert em.auto_clear_minutes == 0


def test_default_staff_follows_site_languages() -> None:
    cfg = from_dict(put(minimal(), "site.languages", ["es"]))
    assert cfg.emergency.staff == {"es": "el personal"}


def test_update_defaults() -> None:
    up = from_dict(minimal()).updates
    assert up.channel == "stable"
    assert up.maintenance_window == MaintenanceWindow(time(2, 0), time(5, 0))


def test_display_defaults_to_the_7_inch_touch_display() -> None:
    display = from_dict(minimal()).display
    assert display == Display(
        size="800x480",
        diagonal_inches=7.0,
        high_contrast=False,
        large_text=False,
        read_aloud=False,
        maxfps=10,
    )
    assert (display.width, display.height, display.portrait) == (800, 480, False)


def test_technician_defaults_to_no_pin() -> None:
    tech = from_dict(minimal()).technician
    assert tech == Technician(pin_hash=None, lockout_minutes=5, max_attempts=3)
    assert tech.lockout_seconds == 300


def test_display_settings_are_read() -> None:
    data = put(minimal(), "display", {"size": "720x1280", "diagonal_inches": 7})
    put(data, "display.high_contrast", True)
    put(data, "display.large_text", True)
    put(data, "display.read_aloud", True)
    put(data, "display.maxfps", 60)
    display = from_dict(data).display
    assert display == Display("720x1280", 7.0, True, True, True, 60)
    assert (display.width, display.height, display.portrait) == (720, 1280, True)


@pytest.mark.parametrize(
    ("size", "diagonal", "px_per_mm"),
    [
        ("800x480", 7.0, 5.247),  # Raspberry Pi Touch Display
        ("720x1280", 7.0, 8.260),  # Touch Display 2, upright
        ("1024x600", 7.0, 6.675),
        ("1280x720", 10.1, 5.725),
        ("1920x1080", 21.5, 4.034),
    ],
)
def test_pixels_per_millimetre(size: str, diagonal: float, px_per_mm: float) -> None:
    display = Display(size=size, diagonal_inches=diagonal)
    assert display.px_per_mm == pytest.approx(px_per_mm, abs=0.001)


def test_px_rounds_up_so_targets_are_never_smaller() -> None:
    display = Display()  # 5.247 px/mm
    assert display.px(20.0) == 105  # 104.9 rounded up
    assert display.px(0) == 0
    assert display.px(-3) == 0
    assert display.px(20.0) / display.px_per_mm >= 20.0
    assert Display(size="720x1280").px(20.0) == 166  # 165.2 rounded up


def test_size_is_tidied() -> None:
    assert from_dict(put(minimal(), "display.size", " 1024X600 ")).display.size == "1024x600"


def test_pin_hash_is_read_and_tidied() -> None:
    cfg = from_dict(put(minimal(), "technician.pin_hash", f"  {PIN_HASH.upper()} "))
    assert cfg.technician.pin_hash == PIN_HASH


def test_pin_hash_stays_out_of_reprs() -> None:
    cfg = from_dict(put(minimal(), "technician.pin_hash", PIN_HASH))
    assert PIN_HASH.split("$")[-1] not in repr(cfg)
    assert "pin_hash='scrypt$…'" in repr(cfg.technician)
    assert "pin_hash=None" in repr(Technician())


def test_config_is_frozen() -> None:
    cfg = from_dict(minimal())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.hardware.pins.door = 4  # type: ignore[misc]


def test_fingerprint_accepts_colons_and_capitals() -> None:
    colons = ":".join(["AB"] * 32)
    cfg = from_dict(put(minimal(), "hub.certificate_sha256", colons))
    assert cfg.hub.certificate_sha256 == FINGERPRINT


# -------------------------------------------------------------------- errors


def test_missing_required_key_says_why() -> None:
    assert only_problem(drop(minimal(), "site.street_address")) == (
        "site.street_address: required (staff and clinicians are sent it in an emergency)"
    )


def test_missing_section_lists_its_required_keys() -> None:
    assert problems(drop(minimal(), "hub")) == [
        'hub.url: required (such as "wss://hub.example.org/booth")',
        "hub.certificate_sha256: required "
        "(the hub certificate's SHA-256 fingerprint, 64 hex digits)",
    ]


def test_unknown_key_lists_the_expected_ones() -> None:
    assert only_problem(put(minimal(), "booth.nmae", "x")) == (
        'booth.nmae: unknown key (did you mean "name"?); expected one of: id, name'
    )


def test_unknown_section_is_named() -> None:
    problem = only_problem(put(minimal(), "timeout", {}))
    assert problem.startswith('timeout: unknown key (did you mean "timeouts"?); expected one of: ')
    assert "hardware" in problem


def test_odd_key_names_are_quoted_in_the_path() -> None:
    problem = only_problem(put(minimal(), "booth", {"id": "b", "name": "n", "my key": 1}))
    assert problem.startswith('booth."my key": unknown key')


def test_wrong_type() -> None:
    assert only_problem(put(minimal(), "timeouts.idle_warning_seconds", "90")) == (
        'timeouts.idle_warning_seconds: must be a number of seconds 10-3600, not "90"'
    )


def test_true_is_not_a_number() -> None:
    assert only_problem(put(minimal(), "hardware.emergency_hold_seconds", True)) == (
        "hardware.emergency_hold_seconds: must be a number of seconds 0.5-5, not true"
    )


def test_phone_number_must_be_quoted() -> None:
    assert only_problem(put(minimal(), "emergency.emergency_number", 911)).startswith(
        "emergency.emergency_number: must be text in quotes"
    )


def test_section_that_is_not_a_table_is_one_problem() -> None:
    """Its keys are not also reported missing: that would bury the real mistake."""
    assert only_problem(put(minimal(), "hardware", "pi")) == ('hardware: must be a table, not "pi"')


def test_out_of_range_number() -> None:
    assert only_problem(put(minimal(), "hardware.emergency_hold_seconds", 10)) == (
        "hardware.emergency_hold_seconds: must be a number of seconds 0.5-5, not 10"
    )


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1])
def test_non_finite_or_negative_timeout(value: float) -> None:
    problem = only_problem(put(minimal(), "timeouts.wrap_up_seconds", value))
    assert problem.startswith("timeouts.wrap_up_seconds: must be a number of seconds 3-300, not ")


def test_gpio_written_as_text() -> None:
    assert only_problem(put(minimal(), "hardware.pins.door", "GPIO99")) == (
        'hardware.pins.door: must be a GPIO number 0-27, not "GPIO99"'
    )


@pytest.mark.parametrize(("value", "shown"), [(28, "28"), (-1, "-1"), (17.0, "17.0")])
def test_gpio_out_of_range(value: object, shown: str) -> None:
    assert only_problem(put(minimal(), "hardware.pins.buzzer", value)) == (
        f"hardware.pins.buzzer: must be a GPIO number 0-27, not {shown}"
    )


def test_duplicate_pin() -> None:
    assert only_problem(put(minimal(), "hardware.pins.buzzer", 17)) == (
        "hardware.pins.buzzer: GPIO 17 is already used by hardware.pins.door; "
        "give each device its own pin"
    )


def test_supervision_pin_may_not_share_a_pin() -> None:
    problem = only_problem(put(minimal(), "hardware.pins.door_supervision", 5))
    assert problem.startswith("hardware.pins.door_supervision: GPIO 5 is already used by")


def test_bad_time_zone_suggests_the_near_one() -> None:
    assert only_problem(put(minimal(), "site.time_zone", "America/Chicgo")) == (
        'site.time_zone: must be an IANA time zone such as "America/Chicago", '
        'not "America/Chicgo" (did you mean "America/Chicago"?)'
    )


@pytest.mark.parametrize("zone", ["Central", "../../etc/passwd", "America", "America/", "\0"])
def test_not_a_time_zone(zone: str) -> None:
    assert only_problem(put(minimal(), "site.time_zone", zone)).startswith(
        "site.time_zone: must be an IANA time zone"
    )


@pytest.mark.parametrize(
    "url",
    [
        "ws://hub.example.org/booth",
        "https://hub.example.org/booth",
        "hub.example.org",
        "wss://",
        "wss://hub.example.org:99999/booth",
        "wss://hub.example.org:x/booth",
        "wss://hub example.org/booth",
    ],
)
def test_bad_hub_url(url: str) -> None:
    assert only_problem(put(minimal(), "hub.url", url)).startswith(
        'hub.url: must be a wss:// address such as "wss://hub.example.org/booth", not '
    )


@pytest.mark.parametrize("value", ["abc", "ab" * 31 + "a", "zz" * 32, 1234])
def test_bad_fingerprint(value: object) -> None:
    assert only_problem(put(minimal(), "hub.certificate_sha256", value)).startswith(
        "hub.certificate_sha256: must be a SHA-256 fingerprint (64 hex digits"
    )


def test_bad_ice_url_is_named_by_server_and_item() -> None:
    data = minimal()
    data["ice_servers"] = [
        {"urls": ["stun:stun.example.org"]},
        {"urls": ["turn:turn.example.org:3478", "http://turn.example.org"]},
    ]
    assert only_problem(data) == (
        "ice_servers[1].urls: item 2: must be a stun:, turn: or turns: address such as "
        '"turn:turn.example.org:3478", not "http://turn.example.org"'
    )


def test_ice_servers_must_be_an_array_of_tables() -> None:
    data = put(minimal(), "ice_servers", {"urls": ["stun:stun.example.org"]})
    assert only_problem(data) == (
        "ice_servers: must be a list of [[ice_servers]] tables, not a table"
    )


def test_ice_server_without_urls() -> None:
    data = put(minimal(), "ice_servers", [{"url": "stun:stun.example.org"}])
    found = problems(data)
    assert found[0] == "ice_servers[0].urls: required"
    assert found[1].startswith('ice_servers[0].url: unknown key (did you mean "urls"?)')


def test_staff_text_missing_a_language() -> None:
    data = put(minimal(), "emergency.staff", {"en": "library staff"})
    assert only_problem(data) == (
        'emergency.staff: needs text for every language in site.languages; add es = "…"'
    )


def test_staff_text_for_a_language_the_site_does_not_offer() -> None:
    data = put(minimal(), "site.languages", ["en"])
    put(data, "emergency.staff", {"en": "staff", "es": "el personal"})
    assert only_problem(data) == (
        'emergency.staff: has text for "es", which site.languages does not list'
    )


def test_empty_staff_text_is_named_by_language() -> None:
    data = put(minimal(), "emergency.staff", {"en": "staff", "es": "  "})
    assert only_problem(data) == "emergency.staff.es: must not be empty"


def test_invalid_languages_do_not_also_blame_staff() -> None:
    data = put(minimal(), "site.languages", ["en", "fr"])
    put(data, "emergency.staff", {"en": "staff", "fr": "le personnel"})
    assert only_problem(data) == (
        'site.languages: item 2: must be one of the shipped languages "en", "es", not "fr"'
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([], 'must be a list of language codes such as ["en", "es"] with at least one item'),
        (["en", "en"], 'lists "en" twice'),
        ("en", 'must be a list of language codes such as ["en", "es"], not "en"'),
    ],
)
def test_bad_languages(value: object, expected: str) -> None:
    data = put(minimal(), "site.languages", value)
    assert only_problem(data).startswith(f"site.languages: {expected}")


@pytest.mark.parametrize(("contact", "pin"), [("door", 27), ("emergency_button", 23)])
def test_supervision_pin_needs_a_normally_closed_contact(contact: str, pin: int) -> None:
    data = put(minimal(), f"hardware.pins.{contact}_supervision", pin)
    put(data, f"hardware.contacts.{contact}", "no")
    problem = only_problem(data)
    assert problem.startswith(
        f"hardware.pins.{contact}_supervision: supervision needs a normally-closed"
    )
    assert f'set hardware.contacts.{contact} = "nc"' in problem


def test_normally_open_contact_without_supervision_is_fine() -> None:
    cfg = from_dict(put(minimal(), "hardware.contacts.door", "no"))
    assert cfg.hardware.contacts.door is Contact.NO


def test_bad_contact_and_backend_list_the_choices() -> None:
    data = put(minimal(), "hardware.contacts.door", "NC")
    put(data, "hardware.backend", "raspberry")
    assert problems(data) == [
        'hardware.backend: must be one of "pi", "sim", not "raspberry"',
        'hardware.contacts.door: must be one of "nc", "no", not "NC"',
    ]


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("2am-5am", 'must be a time range "HH:MM-HH:MM" such as "02:00-05:00", not "2am-5am"'),
        ("24:00-05:00", 'must be a time range "HH:MM-HH:MM"'),
        ("02:00", 'must be a time range "HH:MM-HH:MM"'),
        (time(2, 0), 'must be a time range "HH:MM-HH:MM"'),
        ("02:00-02:00", 'must not start and end at the same time, not "02:00-02:00"'),
    ],
)
def test_bad_maintenance_window(window: object, expected: str) -> None:
    data = put(minimal(), "updates.maintenance_window", window)
    assert only_problem(data).startswith(f"updates.maintenance_window: {expected}")


@pytest.mark.parametrize(
    "size", ["800*480", "800x", "big", "100x480", "800x5000", "-800x480", "800x480x2", 800, ""]
)
def test_bad_display_size(size: object) -> None:
    assert only_problem(put(minimal(), "display.size", size)).startswith(
        'display.size: must be a screen size "WIDTHxHEIGHT" in pixels such as "800x480", '
        '"1024x600", "1280x720", "720x1280" (each side 240-3840), not '
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("diagonal_inches", 4, "must be a number of inches 5-32, not 4"),
        ("diagonal_inches", "7", 'must be a number of inches 5-32, not "7"'),
        ("high_contrast", "true", 'must be true or false (without quotes), not "true"'),
        ("large_text", 1, "must be true or false (without quotes), not 1"),
        ("read_aloud", "yes", 'must be true or false (without quotes), not "yes"'),
        ("maxfps", 4, "must be a whole number of frames a second 5-60, not 4"),
        ("maxfps", 61, "must be a whole number of frames a second 5-60, not 61"),
        ("maxfps", 20.0, "must be a whole number of frames a second 5-60, not 20.0"),
        ("maxfps", True, "must be a whole number of frames a second 5-60, not true"),
    ],
)
def test_bad_display_setting(key: str, value: object, expected: str) -> None:
    assert only_problem(put(minimal(), f"display.{key}", value)) == f"display.{key}: {expected}"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("lockout_minutes", 0, "must be a number of minutes 1-1440, not 0"),
        ("lockout_minutes", 2000, "must be a number of minutes 1-1440, not 2000"),
        ("max_attempts", 0, "must be a whole number of attempts 1-10, not 0"),
        ("max_attempts", 11, "must be a whole number of attempts 1-10, not 11"),
        ("max_attempts", 2.5, "must be a whole number of attempts 1-10, not 2.5"),
    ],
)
def test_bad_technician_setting(key: str, value: object, expected: str) -> None:
    assert only_problem(put(minimal(), f"technician.{key}", value)) == (
        f"technician.{key}: {expected}"
    )


@pytest.mark.parametrize(
    "value",
    [
        "4821",  # the PIN itself, typed where its hash belongs
        "scrypt$16384$8$1$00$00",
        PIN_HASH.replace("16384", "16", 1),
        PIN_HASH[:-1],
    ],
)
def test_bad_pin_hash_says_how_to_make_one_and_never_shows_the_value(value: str) -> None:
    problem = only_problem(put(minimal(), "technician.pin_hash", value))
    assert problem == (
        'technician.pin_hash: must be a PIN hash "scrypt$16384$8$1$<salt hex>$<hash hex>" '
        "as printed by `kiosk-provision hash-pin` (the PIN itself never goes in the file)"
    )
    assert value not in problem


def test_pin_hash_as_a_number_is_not_shown() -> None:
    problem = only_problem(put(minimal(), "technician.pin_hash", 4821))
    assert problem == (
        "technician.pin_hash: must be text in quotes: a PIN hash as printed by "
        "`kiosk-provision hash-pin`"
    )


def test_unknown_display_key_is_named() -> None:
    assert only_problem(put(minimal(), "display.fps", 30)).startswith(
        'display.fps: unknown key (did you mean "maxfps"?); expected one of: size, '
    )


def test_long_values_are_shown_cut_short() -> None:
    problem = only_problem(put(minimal(), "hub.url", "x" * 250))
    assert len(problem) < 200
    assert "…" in problem


def test_many_problems_are_all_listed_at_once() -> None:
    data = example()
    put(data, "booth.id", "Riverside Library")
    drop(data, "site.room")
    put(data, "site.time_zone", "Mars/Olympus")
    put(data, "hub.url", "http://hub.example.org")
    put(data, "hardware.pins.door", "GPIO99")
    put(data, "hardware.pins.buzzer", 22)
    put(data, "timeouts.idle_reset_seconds", 0)
    put(data, "emergency.staff", {"en": "staff"})
    put(data, "updates.maintenance_window", "late")
    put(data, "updates.colour", "blue")
    put(data, "display.size", "huge")
    put(data, "technician.pin_hash", "1234")
    found = problems(data)
    paths = [p.split(": ", 1)[0] for p in found]
    assert paths == [
        "booth.id",
        "site.room",
        "site.time_zone",
        "hub.url",
        "hardware.pins.door",
        "hardware.pins.buzzer",
        "timeouts.idle_reset_seconds",
        "emergency.staff",
        "updates.maintenance_window",
        "updates.colour",
        "display.size",
        "technician.pin_hash",
    ]


def test_from_dict_refuses_a_non_table() -> None:
    with pytest.raises(ConfigError) as caught:
        from_dict(["booth"])  # type: ignore[arg-type]
    assert caught.value.problems == ["booth configuration: must be a table of sections, not a list"]


# ---------------------------------------------------------------- the file


def test_toml_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ConfigError) as caught:
        loads("[booth]\nid = riverside\n", "booth.toml")
    assert caught.value.problems == [
        "booth.toml: not valid TOML: Invalid value (at line 2, column 6) in `id = riverside`; "
        'text needs quotes, e.g. name = "Riverside Library"'
    ]
    assert caught.value.source == "booth.toml"


def test_toml_nested_too_deep_is_a_problem_not_a_crash() -> None:
    with pytest.raises(ConfigError) as caught:
        loads("a = " + "[" * 100_000, "deep.toml")
    assert caught.value.problems == [
        "deep.toml: not valid TOML: arrays or tables nested too deeply"
    ]


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "booth.toml"
    path.write_bytes(b'[site]\nname = "Caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.problems == [
        f"{path}: not UTF-8 text (line 2, byte 18); save the file as UTF-8"
    ]


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "booth.toml"
    path.write_bytes(b"\xef\xbb\xbf" + BOOTH_TOML.read_bytes())
    assert load(path) == load(BOOTH_TOML)


def test_key_problems_carry_the_file_as_source(tmp_path: Path) -> None:
    path = tmp_path / "booth.toml"
    path.write_text('[booth]\nid = "b"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(str(path))
    assert caught.value.source == str(path)
    assert caught.value.problems[0] == "booth.name: required (the booth's name as staff see it)"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.problems == [
        f"{path}: no such file; check the path, or copy examples/booth.toml there and edit it"
    ]


def test_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder, not a configuration file"):
        load(tmp_path)


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """Reading a FIFO nobody writes to would hang the booth's start forever."""
    fifo = tmp_path / "booth.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"is not a regular file \(a pipe, socket or device\)"):
        load(fifo)


def test_device_is_refused() -> None:
    with pytest.raises(ConfigError, match="is not a regular file"):
        load(Path("/dev/zero"))


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root reads anything, so the refusal is simulated where the file is opened."""
    path = tmp_path / "booth.toml"
    path.write_text("", encoding="utf-8")

    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.problems == [
        f"{path}: cannot be read (permission denied); check its owner and permissions"
    ]


def test_path_through_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot be read"):
        load(tmp_path / "file" / "booth.toml")


def test_huge_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "booth.toml"
    path.write_bytes(b"#" * (config.MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="far too big for a booth configuration"):
        load(path)


def test_problem_report_heads_key_problems_with_the_file() -> None:
    error = ConfigError(["booth.id: required", "booth.name: required"], "/etc/b.toml")
    assert problem_report(error) == [
        "/etc/b.toml: 2 problems",
        "booth.id: required",
        "booth.name: required",
    ]
    assert problem_report(ConfigError(["a: x"], "f"))[0] == "f: 1 problem"


def test_problem_report_does_not_repeat_a_file_problem() -> None:
    error = ConfigError(["/etc/b.toml: no such file"], "/etc/b.toml")
    assert problem_report(error) == ["/etc/b.toml: no such file"]


# ------------------------------------------------------ maintenance window


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        (time(1, 59), False),
        (time(2, 0), True),
        (time(3, 30), True),
        (time(4, 59, 59), True),
        (time(5, 0), False),
        (time(23, 0), False),
    ],
)
def test_window_within_a_day(now: time, inside: bool) -> None:
    assert MaintenanceWindow(time(2, 0), time(5, 0)).contains(now) is inside


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        (time(22, 59), False),
        (time(23, 0), True),
        (time(23, 59, 59), True),
        (time(0, 0), True),
        (time(0, 59), True),
        (time(1, 0), False),
        (time(12, 0), False),
    ],
)
def test_window_wrapping_midnight(now: time, inside: bool) -> None:
    window = from_dict(put(minimal(), "updates.maintenance_window", "23:00-01:00"))
    assert window.updates.maintenance_window.contains(now) is inside


# ----------------------------------------------------------------- properties

KNOWN_KEYS = sorted(
    {f.name for cls in (Pins, Contacts, Hardware, Timeouts, Emergency, Updates, Display,
     Technician) for f in dataclasses.fields(cls)}
    | {"booth", "site", "hub", "ice_servers", "urls", "id", "name", "street_address", "room",
       "time_zone", "languages", "url", "certificate_sha256", "en", "es", "display",
       "technician"}
)  # fmt: skip

plausible = st.sampled_from(
    [
        "pi", "sim", "nc", "no", "en", "es", "America/Chicago", "wss://hub.example.org/b",
        "turn:turn.example.org:3478", "02:00-05:00", "911", FINGERPRINT, 17, 0, 27, 1.0, 90,
        "800x480", "720x1280", True, False, 7.0, 20, 3, PIN_HASH,
    ]
)  # fmt: skip
scalars = st.one_of(
    plausible,
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
    st.datetimes(timezones=st.none() | st.just(UTC)),
    st.dates(),
    st.times(),
)
keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=12)
toml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=25,
)
documents = st.dictionaries(keys, toml_values, max_size=10)


def _check_problem_lines(error: ConfigError) -> None:
    assert error.problems
    for line in error.problems:
        assert PROBLEM_LINE.match(line), line
        assert "\n" not in line


@settings(max_examples=300, deadline=None)
@given(documents)
def test_any_document_gives_a_config_or_clear_problems(data: dict[str, Any]) -> None:
    try:
        from_dict(data)
    except ConfigError as exc:
        _check_problem_lines(exc)


@st.composite
def scrambled(draw: st.DrawFn, node: Any) -> Any:
    """The example's shape with many values kept, replaced or dropped at once."""
    if isinstance(node, list) and all(isinstance(v, dict) for v in node):
        return [draw(scrambled(v)) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for name, value in node.items():
        what = draw(st.sampled_from(["keep", "keep", "scramble", "replace", "drop"]))
        if what == "scramble":
            out[name] = draw(scrambled(value))
        elif what == "replace":
            out[name] = draw(toml_values)
        elif what == "keep":
            out[name] = value
    if draw(st.booleans()):
        out.update(draw(st.dictionaries(keys, toml_values, max_size=2)))
    return out


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([BOOTH_TOML, DEMO_TOML]).map(example).flatmap(scrambled))
def test_many_changes_to_an_example_give_a_config_or_clear_problems(data: dict[str, Any]) -> None:
    try:
        from_dict(data)
    except ConfigError as exc:
        _check_problem_lines(exc)


Path_ = tuple[str | int, ...]


def _paths(node: dict[str, Any], prefix: Path_ = ()) -> list[Path_]:
    """Every key path in a document; the staff table is one value to the parser."""
    out: list[Path_] = []
    for name, value in node.items():
        here = (*prefix, name)
        out.append(here)
        if isinstance(value, dict) and here != ("emergency", "staff"):
            out += _paths(value, here)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                out.append((*here, i))
                out += _paths(item, (*here, i))
    return out


def _tables(node: dict[str, Any], prefix: Path_ = ()) -> list[Path_]:
    out: list[Path_] = [prefix]
    for p in _paths(node, prefix):
        value = _at(node, p[len(prefix) :])
        if isinstance(value, dict) and p[-1:] != ("staff",):
            out.append(p)
    return out


def _at(node: Any, path: Path_) -> Any:
    for part in path:
        node = node[part]
    return node


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


@st.composite
def mutated_examples(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    data = copy.deepcopy(draw(st.sampled_from([EXAMPLE, DEMO])))
    how = draw(st.sampled_from(["drop", "replace", "add"]))
    if how == "add":
        table = draw(st.sampled_from(_tables(data)))
        name = "zz_" + draw(st.from_regex(r"[a-z_]{0,8}", fullmatch=True))
        _at(data, table)[name] = draw(toml_values)
        return data, how, _dotted((*table, name))
    path = draw(st.sampled_from(_paths(data)))
    parent = _at(data, path[:-1])
    if how == "drop":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(toml_values)
    return data, how, _dotted(path)


EXAMPLE = example(BOOTH_TOML)
DEMO = example(DEMO_TOML)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_examples())
def test_one_change_to_an_example_is_accepted_or_named(
    case: tuple[dict[str, Any], str, str],
) -> None:
    data, how, dotted = case
    try:
        from_dict(data)
    except ConfigError as exc:
        _check_problem_lines(exc)
        named = re.compile(re.escape(dotted) + r"(?![A-Za-z0-9_-])")
        assert any(named.search(p) for p in exc.problems), (how, dotted, exc.problems)
    else:
        assert how != "add", "an unknown key was accepted"


example_bytes = BOOTH_TOML.read_bytes()


@st.composite
def damaged_files(draw: st.DrawFn) -> bytes:
    """The example with bytes flipped, cut short or spliced: mostly-valid TOML."""
    raw = bytearray(example_bytes)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            raw[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del raw[at:]
            if not raw:
                break
        else:
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | damaged_files())
def test_any_bytes_on_disk_give_a_config_or_a_config_error(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "booth.toml"
        path.write_bytes(raw)
        try:
            load(path)
        except ConfigError as exc:
            assert exc.problems
            assert all("Traceback" not in p for p in exc.problems)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300) | damaged_files().map(lambda b: b.decode("utf-8", "replace")))
def test_any_text_gives_a_config_or_a_config_error(document: str) -> None:
    try:
        loads(document, "booth.toml")
    except ConfigError as exc:
        assert exc.problems
        for line in exc.problems:
            assert line.startswith("booth.toml: ") or PROBLEM_LINE.match(line), line


# ------------------------------------------------------------ hub credential


def test_credential_file_is_optional_and_absolute() -> None:
    assert from_dict(minimal()).hub.credential_file is None
    data = put(minimal(), "hub.credential_file", "/etc/telehealth-kiosk/hub-credential")
    assert from_dict(data).hub.credential_file == Path("/etc/telehealth-kiosk/hub-credential")
    problem = only_problem(put(minimal(), "hub.credential_file", "hub-credential"))
    assert problem.startswith("hub.credential_file: must be an absolute path")


def _hub_with(path: Path) -> config.Hub:
    return config.Hub(
        url="wss://hub.example.org/booth", certificate_sha256=FINGERPRINT, credential_file=path
    )


def test_credential_is_read_from_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "cred"
    path.write_text("Abcdefghijklmnop_-0123456789\n")
    path.chmod(0o600)
    assert config.read_credential(_hub_with(path)) == "Abcdefghijklmnop_-0123456789"
    assert config.read_credential(config.Hub("wss://h/booth", FINGERPRINT)) is None


@pytest.mark.parametrize(
    ("content", "mode", "expected"),
    [
        (None, 0o600, "no such file; write the credential"),
        ("short", 0o600, "does not hold a credential"),
        ("Abcdefghijklmnop_-0123456789", 0o644, "can be read by any user; make it private"),
        ("bad token with spaces!!", 0o600, "does not hold a credential"),
    ],
)
def test_credential_problems_name_the_key_and_the_fix(
    tmp_path: Path, content: str | None, mode: int, expected: str
) -> None:
    path = tmp_path / "cred"
    if content is not None:
        path.write_text(content)
        path.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        config.read_credential(_hub_with(path))
    (line,) = caught.value.problems
    assert line.startswith(f"{path} (hub.credential_file): ")
    assert expected in line
    if content is not None:
        assert content not in line, "a credential is never repeated back"
