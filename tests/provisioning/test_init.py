"""``kiosk-provision init``: asked for (every answer checked as typed, the current value
the default, a wrong answer asked again with its key and reason) or from a file (checked
whole, every problem named by its key); written whole, mode 0640."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kiosk.config import load
from provisioning.cli import main
from provisioning.initcmd import dump_toml
from provisioning.layout import Layout

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "booth.toml"
FINGERPRINT = "ab" * 32

# One answer a line, in the order the questions come (Enter: keep the default).
GOOD_ANSWERS = [
    "riverside-1",  # booth.id
    "Riverside Library, Booth 1",  # booth.name
    "Riverside Public Library",  # site.name
    "100 Main Street, Riverside",  # site.street_address
    "Room 204",  # site.room
    "America/Chicago",  # site.time_zone
    "",  # site.languages [en, es]
    "wss://hub.example.org/booth",  # hub.url
    FINGERPRINT,  # hub.certificate_sha256
    "",  # hardware.backend [pi]
    "",  # hardware.pins.door [17]
    "",  # emergency_button [22]
    "",  # occupancy_light [5]
    "",  # alarm_light [6]
    "",  # buzzer [13]
    "",  # emergency_number [911]
    "",  # crisis_number [988]
    "library staff",  # emergency.staff.en
    "",  # emergency.staff.es [el personal]
]


def run_init(root: Path, answers: list[str], monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(a + "\n" for a in answers)))
    return main(["init", "--root", str(root), *extra])


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init_asks_and_writes_a_valid_private_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_init(tmp_path, GOOD_ANSWERS, monkeypatch) == 0
    target = Layout(tmp_path).config
    config = load(target)
    assert config.booth.id == "riverside-1"
    assert config.site.street_address == "100 Main Street, Riverside"
    assert config.site.room == "Room 204"
    assert config.site.languages == ("en", "es")
    assert config.hub.certificate_sha256 == FINGERPRINT
    assert config.hardware.pins.door == 17
    assert dict(config.emergency.staff) == {"en": "library staff", "es": "el personal"}
    assert mode(target) == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["booth.toml"]  # no temporary left
    out = capsys.readouterr().out
    assert "site.street_address: the full street address" in out
    assert "hardware.pins.door [17]: " in out


def test_a_wrong_answer_is_asked_again_with_its_key_and_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = list(GOOD_ANSWERS)
    answers[0:1] = ["Riverside 1!", "riverside-1"]
    at = answers.index("100 Main Street, Riverside")
    answers[at:at] = [""]  # no street address: required, asked again
    at = answers.index("America/Chicago")
    answers[at:at] = ["Mars/Olympus"]
    at = answers.index("wss://hub.example.org/booth")
    answers[at:at] = ["http://hub.example.org"]
    at = answers.index(FINGERPRINT)
    answers[at:at] = ["12:34"]
    door = at + 3  # after the fingerprint and the backend
    answers[door : door + 2] = ["GPIO99", "22", "", "23"]  # 22 taken by the door: 23
    assert run_init(tmp_path, answers, monkeypatch) == 0
    out = capsys.readouterr().out
    assert (
        'booth.id: must be text (lowercase letters, digits and -, such as "riverside-1"), '
        'not "Riverside 1!"' in out
    )
    assert "site.street_address: required; type a value" in out
    assert (
        'site.time_zone: must be an IANA time zone such as "America/Chicago", '
        'not "Mars/Olympus"' in out
    )
    assert 'hub.url: must be a wss:// address such as "wss://hub.example.org/booth"' in out
    assert "hub.certificate_sha256: must be a SHA-256 fingerprint" in out
    assert 'hardware.pins.door: must be a GPIO number 0-27, not "GPIO99"' in out
    assert "hardware.pins.emergency_button: GPIO 22 is already used by hardware.pins.door" in out
    config = load(Layout(tmp_path).config)
    assert (config.hardware.pins.door, config.hardware.pins.emergency_button) == (22, 23)
    assert config.site.time_zone == "America/Chicago"


def test_init_again_offers_the_current_values_and_keeps_what_it_does_not_ask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = Layout(tmp_path).config
    target.parent.mkdir(parents=True)
    target.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace("0" * 64, FINGERPRINT), encoding="utf-8"
    )
    before = load(target)
    answers = [""] * 19
    answers[4] = "Room 9"  # site.room changes; Enter keeps everything else
    assert run_init(tmp_path, answers, monkeypatch) == 0
    out = capsys.readouterr().out
    assert "site.street_address [100 Example Street, Riverside, CA 92501]: " in out
    assert "emergency.staff.en [library staff]: " in out
    after = load(target)
    assert after.site.room == "Room 9"
    assert after.site.street_address == before.site.street_address
    assert after.timeouts == before.timeouts  # not asked, kept
    assert after.ice_servers == before.ice_servers
    assert after.hub == before.hub


def test_settings_not_asked_that_are_wrong_are_listed_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = Layout(tmp_path).config
    target.parent.mkdir(parents=True)
    bad = EXAMPLE.read_text(encoding="utf-8").replace("0" * 64, FINGERPRINT)
    bad = bad.replace("idle_warning_seconds = 90", "idle_warning_seconds = 1")
    target.write_text(bad, encoding="utf-8")
    assert run_init(tmp_path, [""] * 19, monkeypatch) == 1
    err = capsys.readouterr().err
    assert "timeouts.idle_warning_seconds: must be a number of seconds 10-3600, not 1" in err
    assert "nothing was written" in err
    assert target.read_text(encoding="utf-8") == bad


def test_answers_that_end_early_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_init(tmp_path, GOOD_ANSWERS[:5], monkeypatch) == 1
    err = capsys.readouterr().err
    assert "the answers ended before every question was answered" in err
    assert "Traceback" not in err
    assert not Layout(tmp_path).config.exists()


def test_init_reads_answers_piped_to_the_real_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "provisioning.cli", "init", "--root", str(tmp_path)],
        input="".join(a + "\n" for a in GOOD_ANSWERS),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert load(Layout(tmp_path).config).site.room == "Room 204"


# ------------------------------------------------------------------ --from


def test_init_from_a_good_file_copies_it_with_its_comments(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert main(["init", "--root", str(root), "--from", str(EXAMPLE)]) == 0
    target = Layout(root).config
    assert target.read_bytes() == EXAMPLE.read_bytes()
    assert mode(target) == 0o640


def test_init_from_a_bad_file_names_every_problem_by_key_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "bad.toml"
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace('street_address = "100 Example Street, Riverside, CA 92501"\n', "")
    text = text.replace('room = "Second floor, Room 204 (beside the quiet reading room)"\n', "")
    text = text.replace("door = 17 ", 'door = "GPIO17" ')
    text = text.replace('channel = "stable"', 'chanel = "stable"')
    source.write_text(text, encoding="utf-8")
    root = tmp_path / "root"
    target = Layout(root).config
    target.parent.mkdir(parents=True)
    target.write_text("# the old file\n", encoding="utf-8")
    assert main(["init", "--root", str(root), "--from", str(source)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{source}: 4 problems",
        "site.street_address: required (staff and clinicians are sent it in an emergency)",
        "site.room: required (where in the building the booth stands)",
        'hardware.pins.door: must be a GPIO number 0-27, not "GPIO17"',
        'updates.chanel: unknown key (did you mean "channel"?); expected one of: '
        "channel, maintenance_window",
        f"kiosk-provision init: nothing was written to {target}",
    ]
    assert target.read_text(encoding="utf-8") == "# the old file\n"


def test_init_from_a_missing_file_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.toml"
    assert main(["init", "--root", str(tmp_path), "--from", str(missing)]) == 1
    assert f"{missing}: no such file" in capsys.readouterr().err


def test_the_writer_gives_back_exactly_what_it_was_given() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    data["site"]["name"] = 'Quote " back\\slash \t tab \x7f del, ñ, 🙂'
    data["weird key"] = {"a.b": [1.5, -2, True, float("inf")]}
    assert tomllib.loads(dump_toml(data, "a header\nof two lines")) == data
