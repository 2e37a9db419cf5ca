"""``kiosk-provision``: ``check`` says OK for a good file and every problem for a
bad one; ``hash-pin`` prints a line to paste and never shows the PIN; both give
a plain message, never a traceback, for anything else they are given."""

from __future__ import annotations

import getpass
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.config import load
from kiosk.technician import verify_pin
from provisioning import cli
from provisioning.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BOOTH_TOML = EXAMPLES / "booth.toml"

BAD = """\
[booth]
id = "riverside-library-1"
name = "Riverside Library, Booth 1"

[site]
name = "Riverside Public Library"
street_address = "100 Example Street, Riverside, CA 92501"
time_zone = "Mars/Olympus"

[hub]
url = "wss://hub.example.org/booth"
certificate_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[hardware.pins]
door = "GPIO99"
emergency_button = 22
occupancy_light = 5
alarm_light = 6
buzzer = 13
"""
BAD_PROBLEMS = [
    "site.room: required (where in the building the booth stands)",
    'site.time_zone: must be an IANA time zone such as "America/Chicago", not "Mars/Olympus"',
    'hardware.pins.door: must be a GPIO number 0-27, not "GPIO99"',
]


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "booth.toml"
    path.write_text(BAD, encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def provisioned(tmp_path: Path) -> Path:
    """The example booth file with its hub credential in place, as on a provisioned booth."""
    credential = tmp_path / "hub-credential"
    credential.write_text("Abcdefghijklmnop_-0123456789\n")
    credential.chmod(0o600)
    path = tmp_path / "booth.toml"
    path.write_text(
        BOOTH_TOML.read_text().replace(
            'credential_file = "/etc/telehealth-kiosk/hub-credential"',
            f'credential_file = "{credential}"',
        )
    )
    return path


def test_example_is_ok_once_its_credential_is_in_place(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(capsys, "check", str(provisioned(tmp_path))) == (0, "OK\n", "")


def test_example_without_its_credential_says_where_to_put_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "check", str(BOOTH_TOML))
    assert (code, out) == (1, "")
    assert err == (
        "/etc/telehealth-kiosk/hub-credential (hub.credential_file): no such file; write the "
        "credential `clinic-hub add-booth` printed into it (chmod 600)\n"
    )


def test_demo_example_is_ok_without_a_hub(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", str(EXAMPLES / "demo-booth.toml"))
    assert (code, err) == (0, "")
    assert out.startswith("OK, but hub.credential_file is not set: this booth cannot reach")


def test_bad_file_lists_every_problem(capsys: pytest.CaptureFixture[str], bad_file: Path) -> None:
    code, out, err = run(capsys, "check", str(bad_file))
    assert (code, out) == (1, "")
    assert err.splitlines() == [f"{bad_file}: 3 problems", *BAD_PROBLEMS]


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "booth.toml"
    code, out, err = run(capsys, "check", str(path))
    assert (code, out) == (1, "")
    assert err == (
        f"{path}: no such file; check the path, or copy examples/booth.toml there and edit it\n"
    )


def test_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "check", str(tmp_path))
    assert code == 1
    assert err.startswith(f"{tmp_path}: is a folder")


def test_binary_garbage(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "booth.toml"
    path.write_bytes(bytes(range(256)) * 4)
    code, _, err = run(capsys, "check", str(path))
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith(f"{path}: ")


def test_toml_syntax_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "booth.toml"
    path.write_text("[hardware.pins]\ndoor = GPIO17\n", encoding="utf-8")
    code, _, err = run(capsys, "check", str(path))
    assert code == 1
    assert err.startswith(f"{path}: not valid TOML: Invalid value (at line 2, column 8)")


def test_permission_denied(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root reads anything, so the refusal is simulated where the file is opened."""
    path = tmp_path / "booth.toml"
    path.write_text("", encoding="utf-8")

    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", refuse)
    code, _, err = run(capsys, "check", str(path))
    assert code == 1
    assert err == f"{path}: cannot be read (permission denied); check its owner and permissions\n"


def test_check_defaults_to_the_booth_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = provisioned(tmp_path)
    monkeypatch.setattr(cli, "DEFAULT_PATH", default)
    assert run(capsys, "check") == (0, "OK\n", "")


def test_ctrl_c_exits_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(path: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load", interrupted)
    assert run(capsys, "check", str(BOOTH_TOML)) == (130, "", "kiosk-provision: interrupted\n")


def test_a_bug_is_reported_without_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "load", broken)
    code, out, err = run(capsys, "check", str(BOOTH_TOML))
    assert (code, out) == (70, "")
    assert err.startswith("kiosk-provision: internal error (RuntimeError: boom); this is a bug")
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", "check", str(BOOTH_TOML)])


@pytest.mark.parametrize(
    ("argv", "code"),
    [([], 2), (["bogus"], 2), (["check", "a", "b"], 2), (["--help"], 0), (["--version"], 0)],
)
def test_usage(capsys: pytest.CaptureFixture[str], argv: list[str], code: int) -> None:
    assert run(capsys, *argv)[0] == code


# ---------------------------------------------------------------- hash-pin

PIN_HASH_LINE = re.compile(r'pin_hash = "scrypt\$16384\$8\$1\$[0-9a-f]{32}\$[0-9a-f]{64}"\n')
PASTE_HINT = "Paste that line into the [technician] section of /etc/telehealth-kiosk/booth.toml.\n"


def printed_hash(out: str) -> str:
    assert PIN_HASH_LINE.fullmatch(out), out
    return out.split('"')[1]


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


def test_hash_pin_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin(monkeypatch, "7391\n")
    code, out, err = run(capsys, "hash-pin", "--stdin")
    assert code == 0
    assert verify_pin("7391", printed_hash(out))
    assert err == PASTE_HINT
    assert "7391" not in out + err


def test_printed_line_pasted_into_the_example_loads(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """[technician] ends the example, so the line can simply be appended to the file."""
    stdin(monkeypatch, "7391\n")
    _, out, _ = run(capsys, "hash-pin", "--stdin")
    path = tmp_path / "booth.toml"
    path.write_text(BOOTH_TOML.read_text(encoding="utf-8") + out, encoding="utf-8")
    pin_hash = load(path).technician.pin_hash
    assert pin_hash is not None and verify_pin("7391", pin_hash)


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("12a4\n", "a PIN must be digits 0-9 only"),
        ("12 34\n", "a PIN must be digits 0-9 only"),
        ("123\n", "a PIN must be 4-8 digits long, not 3"),
        ("123456789\n", "a PIN must be 4-8 digits long, not 9"),
        ("\n", "no PIN on standard input"),
        ("", "no PIN on standard input"),
    ],
)
def test_hash_pin_refuses_a_bad_pin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, given: str, problem: str
) -> None:
    stdin(monkeypatch, given)
    assert run(capsys, "hash-pin", "--stdin") == (
        1,
        "",
        f"kiosk-provision hash-pin: {problem}; nothing was printed\n",
    )


def test_hash_pin_refuses_bytes_that_are_not_text(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe12\n"), "utf-8"))
    assert run(capsys, "hash-pin", "--stdin") == (
        1,
        "",
        "kiosk-provision hash-pin: a PIN must be digits 0-9 only; nothing was printed\n",
    )


def test_hash_pin_warns_about_an_obvious_pin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin(monkeypatch, "1234\n")
    code, out, err = run(capsys, "hash-pin", "--stdin")
    assert code == 0
    assert verify_pin("1234", printed_hash(out))
    assert err.startswith("kiosk-provision hash-pin: warning: this PIN is among the first")


def test_hash_pin_asks_twice_without_echo(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = typed(monkeypatch, "7391", "7391")
    code, out, err = run(capsys, "hash-pin")
    assert code == 0
    assert prompts == ["New technician PIN (4-8 digits): ", "The same PIN again: "]
    assert verify_pin("7391", printed_hash(out))
    assert err == PASTE_HINT


def test_hash_pin_refuses_two_different_pins(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    typed(monkeypatch, "7391", "7392")
    assert run(capsys, "hash-pin") == (
        1,
        "",
        "kiosk-provision hash-pin: the two PINs differ; nothing was printed\n",
    )


def test_hash_pin_refuses_a_bad_pin_before_asking_again(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = typed(monkeypatch, "12")
    code, out, err = run(capsys, "hash-pin")
    assert (code, out, len(prompts)) == (1, "", 1)
    assert err == (
        "kiosk-provision hash-pin: a PIN must be 4-8 digits long, not 2; nothing was printed\n"
    )


def test_hash_pin_without_a_terminal_refuses_to_echo(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """getpass falls back to reading with echo (and a warning) when there is no terminal."""
    monkeypatch.setattr(getpass, "getpass", getpass.fallback_getpass)  # type: ignore[attr-defined]
    stdin(monkeypatch, "7391\n")
    code, out, err = run(capsys, "hash-pin")
    assert (code, out) == (1, "")
    assert err == (
        "kiosk-provision hash-pin: no terminal to type the PIN into without showing it; "
        "run this in a terminal, or pipe the PIN in with --stdin; nothing was printed\n"
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (EOFError(), (1, "", "kiosk-provision hash-pin: no PIN given; nothing was printed\n")),
        (KeyboardInterrupt(), (130, "", "kiosk-provision: interrupted\n")),
    ],
)
def test_hash_pin_ctrl_d_and_ctrl_c(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: BaseException,
    expected: tuple[int, str, str],
) -> None:
    typed(monkeypatch, answer)
    assert run(capsys, "hash-pin") == expected


def test_hash_pin_takes_no_pin_argument(capsys: pytest.CaptureFixture[str]) -> None:
    """A PIN on the command line would land in shell history and the process list."""
    code, _, err = run(capsys, "hash-pin", "7391")
    assert code == 2
    assert "unrecognized arguments" in err


# ------------------------------------------------- the installed command


def _installed() -> str:
    beside_python = Path(sys.executable).parent / "kiosk-provision"
    found = str(beside_python) if beside_python.exists() else shutil.which("kiosk-provision")
    if found is None:
        pytest.fail("kiosk-provision is not installed; run `pip install -e .` in the venv")
    return found


def _run_installed(*args: str, given: str = "") -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [_installed(), *args], input=given, capture_output=True, text=True, timeout=60, check=False
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result


def test_installed_command_ok(tmp_path: Path) -> None:
    result = _run_installed("check", str(provisioned(tmp_path)))
    assert (result.returncode, result.stdout, result.stderr) == (0, "OK\n", "")


def test_installed_command_lists_problems(bad_file: Path) -> None:
    result = _run_installed("check", str(bad_file))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [f"{bad_file}: 3 problems", *BAD_PROBLEMS]


def test_installed_command_does_not_hang_on_a_fifo(tmp_path: Path) -> None:
    """A FIFO nobody writes to must be refused, not read forever (the timeout catches a hang)."""
    fifo = tmp_path / "booth.toml"
    os.mkfifo(fifo)
    result = _run_installed("check", str(fifo))
    assert result.returncode == 1
    assert result.stderr.startswith(f"{fifo}: is not a regular file")


def test_installed_hash_pin_from_stdin() -> None:
    result = _run_installed("hash-pin", "--stdin", given="7391\n")
    assert result.returncode == 0, result.stderr
    assert verify_pin("7391", printed_hash(result.stdout))
