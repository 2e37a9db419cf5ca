"""The headless simulator: command parsing, and the booth run as a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.simulator import Command, CommandError, parse

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "examples" / "demo-booth.toml"
CANARY_CODE = "CANARY7731"


def test_commands_parse() -> None:
    assert parse("door open") == Command("door", ("open",))
    assert parse("  Touch language es  # choose Spanish") == Command("touch", ("language", "es"))
    assert parse("device add CAMERA") == Command("device", ("add", "camera"))
    assert parse("wait 0.5") == Command("wait", ("0.5",))
    assert parse("# only a comment") is None
    assert parse("") is None


@pytest.mark.parametrize(
    ("line", "reason", "words"),
    [
        ("dance now", "unknown_command", "unknown command 'dance'"),
        ("door ajar", "bad_argument", "door must be one of open, close"),
        ("door", "bad_argument", "usage: door open | door close"),
        ("touch fly", "bad_argument", "intent must be one of"),
        ("device add toaster", "bad_argument", "device kind must be one of"),
        ("wait soon", "bad_argument", "wait takes seconds"),
        ("wait -1", "bad_argument", "wait takes 0-3600 seconds"),
        ("wire cut buzzer", "bad_argument", "wire role must be one of door, emergency_button"),
        ("x" * 201, "too_long", "longer than 200"),
    ],
)
def test_bad_commands_are_explained(line: str, reason: str, words: str) -> None:
    with pytest.raises(CommandError) as err:
        parse(line)
    assert err.value.reason == reason
    assert words in str(err.value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=250))
def test_any_line_parses_or_is_refused_with_a_reason(line: str) -> None:
    try:
        parse(line)
    except CommandError as exc:
        assert exc.reason in {"unknown_command", "bad_argument", "too_long"}


# ---------------------------------------------------------------- as a process


def _run_booth(
    script: str,
    *,
    env: dict[str, str] | None = None,
    config: Path = DEMO_CONFIG,
    timeout: float = 60,
) -> tuple[list[dict[str, object]], str, int]:
    proc = subprocess.run(
        [sys.executable, "-m", "kiosk", "--simulate", "--headless", "--config", str(config)],
        input=script,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    return lines, proc.stderr, proc.returncode


def _states(lines: list[dict[str, object]]) -> list[object]:
    return [m["state"] for m in lines if m["type"] == "state"]


def _effects(lines: list[dict[str, object]]) -> list[object]:
    return [m["effect"] for m in lines if m["type"] == "effect"]


VISIT = f"""
touch start
touch language es
touch accept
touch appointment {CANARY_CODE}
touch devices_ok
hub answer
door open
wait 0.1
door close
wait 0.1
touch end_call
touch done
"""


def test_a_whole_visit_through_the_headless_booth() -> None:
    lines, stderr, code = _run_booth(VISIT)
    assert code == 0, stderr
    assert lines[0] == {"type": "ready", "state": "attract"}
    assert _states(lines) == [
        "notice",
        "check_in",
        "device_check",
        "waiting",
        "in_call",
        "privacy_pause",
        "in_call",
        "wrap_up",
        "wiping",
        "attract",
    ]
    assert {"type": "state", "state": "notice", "previous": "attract"} in lines
    effects = _effects(lines)
    for expected in ("occupancy_light_on", "join_queue", "accept_call", "pause_media", "wipe"):
        assert expected in effects
    assert effects[-1] == "occupancy_light_off"


def test_emergency_needs_the_hold_time_and_raises_the_alarm() -> None:
    lines, stderr, code = _run_booth(
        "emergency press\nwait 0.3\nemergency release\nwait 0.2\nstate\n"
        "emergency press\nwait 1.2\nemergency release\nstate\n"
    )
    assert code == 0, stderr
    statuses = [m for m in lines if m["type"] == "status"]
    assert statuses[0]["state"] == "attract"
    assert statuses[1]["state"] == "emergency"
    assert _effects(lines)[:2] == ["alarm_on", "alert_staff"]


def test_unknown_commands_get_an_error_line_and_the_booth_carries_on() -> None:
    lines, stderr, code = _run_booth("dance now\ndoor ajar\ntouch start\n")
    assert code == 0
    errors = [m for m in lines if m["type"] == "error"]
    assert [e["line"] for e in errors] == [1, 2]
    assert "unknown command" in str(errors[0]["error"])
    assert "notice" in _states(lines)
    assert "Traceback" not in stderr


def test_resident_data_never_reaches_a_log() -> None:
    """P1: an appointment code typed in a visit is in no log line the booth writes."""
    lines, stderr, code = _run_booth(VISIT + f"touch language {CANARY_CODE}\nbogus {CANARY_CODE}\n")
    assert code == 0
    assert "state_changed" in stderr, "the booth should have logged its states"
    assert CANARY_CODE not in stderr
    # The simulator's own error echo shows only the command word, never its arguments.
    assert CANARY_CODE not in json.dumps([m for m in lines if m["type"] != "status"])


def test_an_invalid_config_stops_the_booth_with_the_same_lines_as_check(tmp_path: Path) -> None:
    bad = tmp_path / "booth.toml"
    bad.write_text(DEMO_CONFIG.read_text().replace("door = 17", 'door = "GPIO99"'))
    lines, stderr, code = _run_booth("", config=bad)
    assert code == 2 and lines == []
    assert 'hardware.pins.door: must be a GPIO number 0-27, not "GPIO99"' in stderr
    assert "Traceback" not in stderr
    check = subprocess.run(
        [sys.executable, "-m", "provisioning.cli", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 1
    assert check.stderr.strip() in stderr


def test_a_missing_config_is_explained() -> None:
    lines, stderr, code = _run_booth("", config=Path("/nonexistent/booth.toml"))
    assert code == 2
    assert "/nonexistent/booth.toml: no such file" in stderr


# ---------------------------------------------------------------- under systemd


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(10)
        yield sock


def _messages(sock: socket.socket, until: str, deadline: float) -> list[str]:
    got: list[str] = []
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if until in got[-1]:
            break
    return got


def test_ready_status_watchdog_and_a_clean_stop_on_sigterm(notify_socket: socket.socket) -> None:
    env = {
        **os.environ,
        "NOTIFY_SOCKET": notify_socket.getsockname(),
        "WATCHDOG_USEC": "400000",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiosk", "--simulate", "--headless", "--config", str(DEMO_CONFIG)],
        env=env,
        stdin=subprocess.PIPE,  # kept open: the booth waits for commands until SIGTERM
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        got = _messages(notify_socket, "READY=1", time.monotonic() + 30)
        assert any("READY=1" in m for m in got), got
        got = _messages(notify_socket, "WATCHDOG=1", time.monotonic() + 5)
        assert any("WATCHDOG=1" in m for m in got), got
        stopping_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        got = _messages(notify_socket, "STOPPING=1", time.monotonic() + 5)
        assert any("STOPPING=1" in m for m in got), got
        code = proc.wait(timeout=5)
        assert time.monotonic() - stopping_at < 5
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None and proc.stdin is not None
    proc.stdin.close()
    with proc.stderr:
        assert "Traceback" not in proc.stderr.read()


def test_safe_mode_is_out_of_service_with_the_emergency_path_up() -> None:
    """R2: after a crash loop systemd starts --safe-mode: no visits, 911/988, alarm still works."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kiosk",
            "--simulate",
            "--headless",
            "--safe-mode",
            "--config",
            str(DEMO_CONFIG),
        ],
        input="state\ntouch start\nstate\nemergency press\nwait 1.2\nstate\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    statuses = [json.loads(line) for line in proc.stdout.splitlines()]
    statuses = [m for m in statuses if m["type"] == "status"]
    assert statuses[0]["state"] == "out_of_service" and "booth" in statuses[0]["faults"]
    assert statuses[1]["state"] == "out_of_service", "no visit can start in safe mode"
    assert statuses[2]["state"] == "emergency" and statuses[2]["emergency"] is True


# ---------------------------------------------------------------- the call command


def test_call_parses_and_takes_no_argument() -> None:
    assert parse("call") == Command("call", ())
    with pytest.raises(CommandError, match="usage: call"):
        parse("call now")


def test_call_without_a_hub_is_an_error_and_the_booth_carries_on() -> None:
    lines, stderr, code = _run_booth("call\ntouch start\n")
    assert code == 0, stderr
    errors = [m for m in lines if m["type"] == "error"]
    assert len(errors) == 1 and errors[0]["line"] == 1
    assert "no hub credential" in str(errors[0]["error"])
    assert "credential_file" in str(errors[0]["error"])
    assert "notice" in _states(lines)


def test_the_call_line_follows_a_real_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """``describe_call`` on a live engine: idle, answered, then the clinician's media counted."""
    import asyncio

    import aioice.ice

    from clinic.protocol import CallEvent, CallState, new_id
    from kiosk.simulator import describe_call
    from tests.kiosk.call.peers import booth_call, eventually

    # One process, no network: the peers meet on 127.0.0.1, which aioice leaves out by itself.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])

    async def main() -> None:
        async with booth_call() as booth:
            idle = describe_call(booth.engine, booth.speaker)
            assert idle == {
                "type": "call",
                "status": "idle",
                "call_id": None,
                "offers": 0,
                "failures": 0,
                "video_frames": 0,
                "audio_frames": 0,
                "audio_samples": 0,
                "remote_video": False,
                "remote_size": None,
                "clinician_state": {"muted": False, "camera_off": False},
            }
            json.dumps(idle)  # one JSON line as it is

            await booth.connected()
            await eventually(lambda: booth.engine.video_frames_received > 2, 5.0, "frames")
            live = describe_call(booth.engine, booth.speaker)
            assert live["status"] == "connected"
            assert live["call_id"] == booth.hub.call_id
            assert live["offers"] == 1
            assert isinstance(live["video_frames"], int) and live["video_frames"] > 0
            assert isinstance(live["audio_frames"], int) and live["audio_frames"] > 0
            assert isinstance(live["audio_samples"], int) and live["audio_samples"] > 0
            assert live["remote_video"] is True
            assert live["remote_size"] == [320, 240]

            booth.hub.console_says(
                CallState(id=new_id(), call_id=booth.hub.call_id, event=CallEvent.MUTED)
            )
            await eventually(lambda: booth.engine.clinician_state.muted, 2.0, "muted")
            muted = describe_call(booth.engine, None)
            assert muted["clinician_state"] == {"muted": True, "camera_off": False}
            assert muted["audio_samples"] is None  # a real speaker keeps no count

            booth.hub.end_call()
            # The call is forgotten first, then its leg closed, then the status says idle.
            await eventually(lambda: booth.engine.status.value == "idle", 2.0, "ended")
            ended = describe_call(booth.engine, booth.speaker)
            assert (ended["status"], ended["call_id"], ended["remote_video"]) == (
                "idle",
                None,
                False,
            )
            assert ended["video_frames"] == booth.engine.video_frames_received  # kept

    asyncio.run(main())
