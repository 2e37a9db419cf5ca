"""``clinic-hub``: each subcommand does its one thing, prints secrets once, and refuses
anything else with a sentence naming what to fix, never a traceback.

In-process runs use a tiny scrypt cost and a frozen clock through ``main``'s
parameters; the last tests run the installed console script as an operator would.
"""

from __future__ import annotations

import argparse
import getpass
import io
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clinic import cli
from clinic.cli import main
from clinic.store import LATEST_VERSION, Booth, Clinician, ScryptParams, Store

FAST = ScryptParams(n=16, r=1, p=1)
T0 = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC
PASSWORD = "correct horse battery staple"
CREDENTIAL = re.compile(r"[A-Za-z0-9_-]{43}\n")
ENROLL_CODE = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}\n")
BOOTH = (
    "--name 'Riverside Library, Booth 1' --site 'Riverside Public Library' "
    "--address '100 Example Street, Riverside, CA 92501' --room 'Room 204'"
)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times print in the hub's local zone; pin it, and put it back afterwards."""
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv(cli.DB_ENV, raising=False)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "hub.sqlite3"


def fast_store(path: Path) -> Store:
    return Store(path, password_params=FAST)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), store_factory=fast_store, clock=lambda: T0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def hub(capsys: pytest.CaptureFixture[str], db: Path, command: str) -> tuple[int, str, str]:
    """``clinic-hub --db DB COMMAND``, the command written as in a shell."""
    return run(capsys, "--db", str(db), *shlex.split(command))


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def typed(monkeypatch: pytest.MonkeyPatch, *answers: str | BaseException) -> list[str]:
    """Answer getpass prompts in turn; returns the prompts shown."""
    prompts: list[str] = []
    pending = list(answers)

    def fake_getpass(prompt: str = "Password: ", stream: object = None) -> str:
        prompts.append(prompt)
        answer = pending.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    return prompts


def add_alice(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    stdin(monkeypatch, PASSWORD + "\n")
    command = "add-clinician a.rivera --name 'Dr. Ana Rivera' --password-stdin"
    assert hub(capsys, db, command)[0] == 0


# --------------------------------------------------------- add-clinician


def test_add_clinician_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    stdin(monkeypatch, PASSWORD + "\n")
    code, out, err = hub(
        capsys, db, "add-clinician a.rivera --name 'Dr. Ana Rivera' --password-stdin"
    )
    assert (code, out, err) == (0, 'Added clinician "a.rivera" (Dr. Ana Rivera).\n', "")
    with fast_store(db) as s:
        assert s.verify_clinician("a.rivera", PASSWORD) == Clinician("a.rivera", "Dr. Ana Rivera")


def test_add_clinician_keeps_spaces_in_a_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    stdin(monkeypatch, f"  {PASSWORD}  \r\n")
    assert hub(capsys, db, "add-clinician a.rivera --password-stdin")[0] == 0
    with fast_store(db) as s:
        assert s.verify_clinician("a.rivera", f"  {PASSWORD}  ") is not None
        assert s.verify_clinician("a.rivera", PASSWORD) is None


def test_add_clinician_asks_twice_without_echo(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    prompts = typed(monkeypatch, PASSWORD, PASSWORD)
    code, out, err = hub(capsys, db, "add-clinician a.rivera")
    assert (code, out, err) == (0, 'Added clinician "a.rivera" (a.rivera).\n', "")
    assert prompts == [
        "Password for a.rivera (at least 15 characters): ",
        "The same password again: ",
    ]
    assert PASSWORD not in out + err


@pytest.mark.parametrize(
    ("answers", "problem"),
    [
        ((PASSWORD, PASSWORD + "x"), "the two passwords differ"),
        (
            ("too short",),
            "a password must be at least 15 characters, not 9 "
            "(a few unrelated words make one easy to type and hard to guess)",
        ),
        ((EOFError(),), "no password given"),
    ],
)
def test_add_clinician_refuses_a_bad_password(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    db: Path,
    answers: tuple[str | BaseException, ...],
    problem: str,
) -> None:
    typed(monkeypatch, *answers)
    assert hub(capsys, db, "add-clinician a.rivera") == (
        1,
        "",
        f"clinic-hub add-clinician: {problem}; nobody was added\n",
    )
    with fast_store(db) as s:
        assert s.clinician("a.rivera") is None


@pytest.mark.parametrize(
    ("given", "problem"),
    [("\n", "no password on standard input"), ("", "no password on standard input")],
)
def test_add_clinician_refuses_an_empty_stdin(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    db: Path,
    given: str,
    problem: str,
) -> None:
    stdin(monkeypatch, given)
    assert hub(capsys, db, "add-clinician a.rivera --password-stdin") == (
        1,
        "",
        f"clinic-hub add-clinician: {problem}; nobody was added\n",
    )


def test_add_clinician_without_a_terminal_refuses_to_echo(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    """getpass falls back to reading with echo (and a warning) when there is no terminal."""
    monkeypatch.setattr(getpass, "getpass", getpass.fallback_getpass)  # type: ignore[attr-defined]
    stdin(monkeypatch, PASSWORD + "\n")
    code, out, err = hub(capsys, db, "add-clinician a.rivera")
    assert (code, out) == (1, "")
    assert err == (
        "clinic-hub add-clinician: no terminal to type the password into without showing it; "
        "run this in a terminal, or pipe the password in with --password-stdin; "
        "nobody was added\n"
    )


def test_a_taken_username_is_refused_before_the_password_is_asked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    add_alice(capsys, monkeypatch, db)
    prompts = typed(monkeypatch)
    assert hub(capsys, db, "add-clinician a.rivera") == (
        1,
        "",
        'clinic-hub add-clinician: there is already a clinician "a.rivera"; '
        "choose another username\n",
    )
    assert prompts == []


def test_a_bad_username_is_refused_before_anything_else(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    prompts = typed(monkeypatch)
    code, out, err = hub(capsys, db, "add-clinician 'Ana Rivera'")
    assert (code, out) == (1, "")
    assert err == (
        "clinic-hub add-clinician: a username must be 1-64 lowercase letters, digits, '.', '_' "
        'or \'-\', starting with a letter or digit (such as "a.rivera"), not "Ana Rivera"\n'
    )
    assert prompts == []
    assert not db.exists()


def test_a_bad_display_name_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    stdin(monkeypatch, PASSWORD + "\n")
    code, _, err = hub(capsys, db, "add-clinician a.rivera --name '' --password-stdin")
    assert (code, err) == (1, "clinic-hub add-clinician: the display name must not be empty\n")


def test_a_password_is_never_an_argument(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    """A password on the command line would land in shell history and the process list."""
    code, _, err = hub(capsys, db, f"add-clinician a.rivera '{PASSWORD}'")
    assert code == 2
    assert "unrecognized arguments" in err


# ------------------------------------------------------------- add-booth


def test_add_booth_prints_the_credential_once(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    code, out, err = hub(capsys, db, f"add-booth riverside-1 {BOOTH}")
    assert code == 0
    assert CREDENTIAL.fullmatch(out), out
    assert err == (
        "That is booth riverside-1's credential: put it in the booth's configuration now. "
        "It will not be shown again (the hub keeps only a hash of it).\n"
    )
    with fast_store(db) as s:
        assert s.verify_booth("riverside-1", out.strip()) == Booth(
            "riverside-1",
            "Riverside Library, Booth 1",
            "Riverside Public Library",
            "100 Example Street, Riverside, CA 92501",
            "Room 204",
        )


def test_a_duplicate_booth_is_refused(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    hub(capsys, db, f"add-booth riverside-1 {BOOTH}")
    assert hub(capsys, db, f"add-booth riverside-1 {BOOTH}") == (
        1,
        "",
        'clinic-hub add-booth: there is already a booth "riverside-1"; choose another booth id\n',
    )


def test_a_bad_booth_id_is_refused(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    assert hub(capsys, db, f"add-booth 'Riverside 1' {BOOTH}") == (
        1,
        "",
        "clinic-hub add-booth: a booth id must be 1-63 lowercase letters, digits and -, "
        'starting with a letter or digit (such as "riverside-1"), not "Riverside 1"\n',
    )
    assert not db.exists()


def test_a_booth_needs_every_detail(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    code, _, err = hub(capsys, db, "add-booth riverside-1 --name B --site S --address A")
    assert code == 2
    assert "the following arguments are required: --room" in err
    code, _, err = hub(capsys, db, "add-booth riverside-1 --name B --site S --address A --room ' '")
    assert (code, err) == (1, "clinic-hub add-booth: the room must not be empty\n")


# ----------------------------------------------------------- enroll-code


def test_enroll_code_prints_a_one_time_code(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    code, out, err = hub(capsys, db, "enroll-code")
    assert code == 0
    assert ENROLL_CODE.fullmatch(out), out
    assert err == (
        "One-time enrollment code, valid for 24 hours (until 2025-06-16 15:06:40 UTC): "
        "type it into `kiosk-provision enroll` on the booth.\n"
    )
    with fast_store(db) as s:
        assert s.redeem_enrollment_code(out.strip(), T0 + 23 * 3600)
        assert not s.redeem_enrollment_code(out.strip(), T0 + 23 * 3600)


def test_each_enroll_code_is_new(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    codes = {hub(capsys, db, "enroll-code")[1] for _ in range(5)}
    assert len(codes) == 5


# ------------------------------------------------------- add-appointment


def test_add_appointment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    add_alice(capsys, monkeypatch, db)
    code, out, err = hub(
        capsys, db, "add-appointment 73914826 --clinician a.rivera --valid-hours 2"
    )
    assert (code, err) == (0, "")
    assert out == (
        'Appointment code added for Dr. Ana Rivera ("a.rivera"), '
        "valid until 2025-06-15 17:06:40 UTC.\n"
    )
    with fast_store(db) as s:
        assert s.lookup_appointment("73914826", T0 + 2 * 3600 - 1) is not None
        assert s.lookup_appointment("73914826", T0 + 2 * 3600) is None


def test_an_appointment_lasts_a_day_by_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    add_alice(capsys, monkeypatch, db)
    hub(capsys, db, "add-appointment 73914826 --clinician a.rivera")
    with fast_store(db) as s:
        assert s.lookup_appointment("73914826", T0 + 24 * 3600 - 1) is not None
        assert s.lookup_appointment("73914826", T0 + 24 * 3600) is None


def test_an_appointment_for_an_unknown_clinician(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    assert hub(capsys, db, "add-appointment 73914826 --clinician b.okafor") == (
        1,
        "",
        'clinic-hub add-appointment: there is no clinician "b.okafor"; '
        "add them first with `clinic-hub add-clinician b.okafor`\n",
    )


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("123", "an appointment code must be 4-12 digits long, not 3"),
        ("12-34", "an appointment code must be 4-12 digits 0-9 only"),
    ],
)
def test_a_bad_appointment_code(
    capsys: pytest.CaptureFixture[str], db: Path, code: str, problem: str
) -> None:
    assert hub(capsys, db, f"add-appointment {code} --clinician a.rivera") == (
        1,
        "",
        f"clinic-hub add-appointment: {problem}\n",
    )
    assert not db.exists()


def test_a_code_in_use_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    add_alice(capsys, monkeypatch, db)
    command = "add-appointment 73914826 --clinician a.rivera"
    assert hub(capsys, db, command)[0] == 0
    assert hub(capsys, db, command) == (
        1,
        "",
        "clinic-hub add-appointment: that appointment code is already in use; choose another\n",
    )


@pytest.mark.parametrize(
    ("hours", "problem"),
    [
        ("0", "must be more than 0 and at most 2160 hours, not 0"),
        ("2161", "must be more than 0 and at most 2160 hours, not 2161"),
        ("soon", "must be a number of hours, not 'soon'"),
        ("nan", "must be more than 0 and at most 2160 hours, not nan"),
    ],
)
def test_valid_hours_must_make_sense(
    capsys: pytest.CaptureFixture[str], db: Path, hours: str, problem: str
) -> None:
    command = f"add-appointment 73914826 --clinician a.rivera --valid-hours {hours}"
    code, _, err = hub(capsys, db, command)
    assert code == 2
    assert f"argument --valid-hours: {problem}" in err


# ---------------------------------------------------------------- alerts


def test_no_alerts(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    assert hub(capsys, db, "alerts") == (0, "No unacknowledged alerts.\n", "")


def test_alerts_lists_what_is_unacknowledged_and_where(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    add_alice(capsys, monkeypatch, db)
    hub(capsys, db, f"add-booth riverside-1 {BOOTH}")
    with fast_store(db) as s:
        s.record_alert("riverside-1", "a1", "emergency", T0, T0 + 2)
        s.record_alert("riverside-1", "a2", "emergency", T0 + 60, T0 + 61)
        s.record_alert("riverside-1", "a3", "emergency", T0 + 120, T0 + 121)
        s.ack_alert("riverside-1", "a2", "a.rivera", T0 + 90)
    code, out, err = hub(capsys, db, "alerts")
    assert (code, err) == (0, "")
    where = (
        "    Riverside Library, Booth 1: Room 204, Riverside Public Library, "
        "100 Example Street, Riverside, CA 92501"
    )
    assert out.splitlines() == [
        "2 unacknowledged alerts, oldest first:",
        "EMERGENCY  booth riverside-1  raised 2025-06-15 15:06:40 UTC  "
        "received 2025-06-15 15:06:42 UTC  (alert a1)",
        where,
        "EMERGENCY  booth riverside-1  raised 2025-06-15 15:08:40 UTC  "
        "received 2025-06-15 15:08:41 UTC  (alert a3)",
        where,
    ]


# ------------------------------------------------------------ the database


def test_db_may_follow_the_subcommand(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    assert run(capsys, "enroll-code", "--db", str(db))[0] == 0  # --db after the subcommand
    assert db.exists()


def test_db_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    monkeypatch.setenv(cli.DB_ENV, str(db))
    assert run(capsys, "enroll-code")[0] == 0
    assert db.exists()


def test_db_on_the_command_line_wins(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(cli.DB_ENV, str(tmp_path / "from-env.sqlite3"))
    assert run(capsys, "--db", str(tmp_path / "typed.sqlite3"), "enroll-code")[0] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["typed.sqlite3"]


def test_the_default_path_says_how_to_choose_another(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    default = tmp_path / "var-lib" / "hub.sqlite3"
    monkeypatch.setattr(cli, "DEFAULT_DB", default)
    assert run(capsys, "alerts") == (
        1,
        "",
        f"clinic-hub alerts: {default}: the folder {default.parent} does not exist; create it "
        "(writable by the user the hub runs as), or use another path "
        "(the default path; choose another with --db PATH or $CLINIC_HUB_DB)\n",
    )


def test_a_path_from_the_environment_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(cli.DB_ENV, str(tmp_path / "missing" / "hub.sqlite3"))
    code, _, err = run(capsys, "alerts")
    assert code == 1
    assert err.endswith("or use another path (the path is from $CLINIC_HUB_DB)\n")


def test_a_folder_nobody_may_write_to(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--db", "/proc/self/hub.sqlite3", "enroll-code")
    assert (code, out) == (1, "")
    assert err.startswith("clinic-hub enroll-code: /proc/self/hub.sqlite3: cannot be created")
    assert "may write to it and to its folder /proc/self" in err
    assert err.count("\n") == 1


def test_a_database_from_a_newer_hub(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    fast_store(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    code, _, err = hub(capsys, db, "alerts")
    assert code == 1
    assert err == (
        f"clinic-hub alerts: {db}: has schema version 99, but this clinic-hub knows versions "
        f"up to {LATEST_VERSION}: it was written by a newer clinic-hub; run that one "
        "(going back a version is not supported)\n"
    )


# ------------------------------------------------------- usage and failures


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        ([], 2),
        (["bogus"], 2),
        (["add-clinician"], 2),
        (["alerts", "extra"], 2),
        (["--help"], 0),
        (["add-booth", "--help"], 0),
        (["--version"], 0),
    ],
)
def test_usage(capsys: pytest.CaptureFixture[str], argv: list[str], code: int) -> None:
    assert run(capsys, *argv)[0] == code


def test_ctrl_c_exits_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    typed(monkeypatch, KeyboardInterrupt())
    assert hub(capsys, db, "add-clinician a.rivera") == (
        130,
        "",
        "clinic-hub: interrupted\n",
    )


def test_a_bug_is_reported_without_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    def broken(self: Store) -> list[object]:
        raise RuntimeError("boom")

    monkeypatch.setattr(Store, "unacked_alerts", broken)
    code, out, err = hub(capsys, db, "alerts")
    assert (code, out) == (70, "")
    assert err.startswith("clinic-hub: internal error (RuntimeError: boom); this is a bug")
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", "--db", str(db), "alerts"], store_factory=fast_store)


def test_commands_come_from_one_registry(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    """How a command is added: one more Command, nothing else to change."""
    assert [c.name for c in cli.COMMANDS] == [
        "add-clinician",
        "add-booth",
        "remove-booth",
        "enroll-code",
        "add-appointment",
        "alerts",
        "serve",
    ]
    seen: list[argparse.Namespace] = []

    def serve_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dev", action="store_true")

    def serve(args: argparse.Namespace) -> int:
        seen.append(args)
        with cli.open_store(args):
            return 0

    extra = cli.Command("serve-test", "run a test command", serve_args, serve)
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, extra))
    assert hub(capsys, db, "serve-test --dev")[0] == 0
    assert seen[0].dev and db.exists()


# --------------------------------------------------------------------- serve


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "turn-secret"
    path.write_text("a-long-random-static-auth-secret-0123\n")
    return path


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            "--turn-url turn:127.0.0.1:3478",
            "--turn-url needs --turn-secret-file PATH, the file holding the secret",
        ),
        ("--turn-secret-file {secret}", "--turn-secret-file needs at least one --turn-url"),
        (
            "--turn-url turn:127.0.0.1:3478 --turn-secret-file {missing}",
            "the TURN secret file {missing} does not exist",
        ),
        (
            "--turn-url turn:127.0.0.1:3478 --turn-secret-file {short}",
            "the TURN secret in {short} is 5 bytes long; it must be at least 16",
        ),
        (
            "--turn-url turn:127.0.0.1:3478 --turn-secret-file {folder}",
            "cannot read the TURN secret file {folder}: Is a directory",
        ),
        (
            "--turn-url http://turn.example.org --turn-secret-file {secret}",
            "--turn-url: must be a TURN URL such as",
        ),
        (
            "--turn-url turns:turn.example.org:5349?transport=udp --turn-secret-file {secret}",
            "turns: runs over TCP only",
        ),
    ],
)
def test_serve_refuses_unusable_turn_settings(
    capsys: pytest.CaptureFixture[str],
    db: Path,
    secret_file: Path,
    options: str,
    message: str,
) -> None:
    tmp_path = secret_file.parent
    short = tmp_path / "short"
    short.write_text("12345\n")
    paths = {
        "secret": secret_file,
        "missing": tmp_path / "nowhere",
        "short": short,
        "folder": tmp_path,
    }
    code, out, err = hub(capsys, db, "serve --dev " + options.format(**paths))
    assert code == 1 and out == ""
    assert message.format(**paths) in err
    assert err.count("\n") == 1  # one sentence, no traceback
    assert "a-long-random" not in err  # the secret itself is never shown


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("--port 0", "must be a port number from 1 to 65535, not 0"),
        ("--port http", "must be a port number, not 'http'"),
        ("--call-grace 0", "must be more than 0 and at most 3600 seconds, not 0"),
        ("--call-grace soon", "must be a number of seconds, not 'soon'"),
    ],
)
def test_serve_usage_errors(
    capsys: pytest.CaptureFixture[str], db: Path, options: str, message: str
) -> None:
    code, _, err = hub(capsys, db, "serve --dev " + options)
    assert code == 2
    assert message in err


def test_serve_prints_where_to_connect_and_uses_the_turn_settings(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    db: Path,
    secret_file: Path,
) -> None:
    from aiohttp import web

    from clinic.server import hub_of

    started: list[tuple[web.Application, dict[str, object]]] = []

    def fake_run_app(app: web.Application, **kw: object) -> None:
        started.append((app, kw))

    monkeypatch.setattr(web, "run_app", fake_run_app)
    command = (
        "serve --dev --port 9443 --call-grace 5 "
        "--turn-url turn:127.0.0.1:3478?transport=udp --turn-url turn:127.0.0.1:3478?transport=tcp "
        f"--turn-secret-file {secret_file}"
    )
    code, out, err = hub(capsys, db, command)
    assert code == 0, err
    assert "Clinicians sign in at https://127.0.0.1:9443/\n" in out
    assert "wss://127.0.0.1:9443/booth" in out
    assert re.search(r'certificate_sha256 = "[0-9a-f]{64}"', out)
    assert "a-long-random" not in out + err
    ((app, kw),) = started
    assert (kw["host"], kw["port"]) == ("127.0.0.1", 9443)
    hub_ = hub_of(app)
    assert hub_.call_grace == 5.0
    assert hub_.turn is not None
    assert hub_.turn.urls == (
        "turn:127.0.0.1:3478?transport=udp",
        "turn:127.0.0.1:3478?transport=tcp",
    )
    assert hub_.turn.secret == b"a-long-random-static-auth-secret-0123"  # without the newline


def test_serve_without_turn_says_what_that_means(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    from aiohttp import web

    monkeypatch.setattr(web, "run_app", lambda app, **kw: None)
    code, out, err = hub(capsys, db, "serve --dev --host 0.0.0.0")
    assert code == 0
    assert "Clinicians sign in at https://127.0.0.1:8443/" in out
    assert "No TURN server (--turn-url)" in err


# ------------------------------------------------------ the installed command


def _installed() -> str:
    beside_python = Path(sys.executable).parent / "clinic-hub"
    found = str(beside_python) if beside_python.exists() else shutil.which("clinic-hub")
    if found is None:
        pytest.fail("clinic-hub is not installed; run `pip install -e . --no-deps` in the venv")
    return found


def _run_installed(
    *args: str, given: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [_installed(), *args],
        input=given,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result


def test_installed_command_sets_up_a_hub(db: Path) -> None:
    """The real scrypt cost, a real clock, the real entry point."""
    env = {cli.DB_ENV: str(db)}
    added = _run_installed(
        "add-clinician", "a.rivera", "--password-stdin", given=PASSWORD + "\n", env=env
    )
    assert (added.returncode, added.stdout) == (0, 'Added clinician "a.rivera" (a.rivera).\n')
    booth = _run_installed("add-booth", "riverside-1", *shlex.split(BOOTH), env=env)
    assert booth.returncode == 0 and CREDENTIAL.fullmatch(booth.stdout)
    appointment = _run_installed("add-appointment", "73914826", "--clinician", "a.rivera", env=env)
    assert appointment.returncode == 0, appointment.stderr
    enroll = _run_installed("enroll-code", env=env)
    assert enroll.returncode == 0 and ENROLL_CODE.fullmatch(enroll.stdout)
    alerts = _run_installed("alerts", env=env)
    assert (alerts.returncode, alerts.stdout) == (0, "No unacknowledged alerts.\n")
    now = time.time()
    with Store(db) as s:
        assert s.verify_clinician("a.rivera", PASSWORD) is not None
        assert s.verify_booth("riverside-1", booth.stdout.strip()) is not None
        assert s.lookup_appointment("73914826", now) == Clinician("a.rivera", "a.rivera")
        assert s.redeem_enrollment_code(enroll.stdout.strip(), now)


def test_installed_command_refusals(tmp_path: Path) -> None:
    missing = tmp_path / "missing" / "hub.sqlite3"
    result = _run_installed("--db", str(missing), "alerts")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"clinic-hub alerts: {missing}: the folder ")
    usage = _run_installed("add-booth", "riverside-1")
    assert usage.returncode == 2
    assert "the following arguments are required" in usage.stderr
