"""``kiosk-provision selftest``: every check passes on healthy simulated hardware, each
broken device is reported as failing (exit 1), the JSON says what the text says, and
the hub check connects to a real TLS server on loopback with right and wrong pins.

The machine the checks look at is a folder (``--root``) with a device-tree model and
a thermal zone, plus fake ``timedatectl`` and ``vcgencmd`` programs on PATH that
print what the real ones print; the hardware is gpiozero's MockFactory under the
booth's own BoothGpio, the test card, and the simulated microphone and speaker."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from clinic.server import dev_certificate
from hardware.audio import SimulatedMicrophone, SimulatedSpeaker
from hardware.camera import TestCard
from hardware.gpio import SimulatedWiring
from kiosk.config import BoothConfig, Contact, Hub, load
from provisioning import selftest
from provisioning.cli import main
from provisioning.selftest import (
    Check,
    Outcome,
    Report,
    check_camera,
    check_clock,
    check_disk,
    check_hub,
    check_ice_server,
    check_microphone,
    check_speaker,
    check_temperature,
    check_throttling,
    gpio_checks,
    run_command,
    simulated_devices,
    simulated_technician,
)
from tests.turn_server import TurnServer, turn_server

__all__ = ["turn_server"]  # the fixture

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo-booth.toml"
FAULT_S = 0.5
"""The demo's supervised wiring, judged as fast as a booth file allows (the demo: 3 s)."""


def demo_config(*, supervised: bool = True, hold_s: float = 1.0) -> BoothConfig:
    config = load(DEMO)
    hw = replace(config.hardware, wiring_fault_seconds=FAULT_S, emergency_hold_seconds=hold_s)
    if not supervised:
        hw = replace(
            hw, pins=replace(hw.pins, door_supervision=None, emergency_button_supervision=None)
        )
    return replace(config, hardware=hw)


# ---------------------------------------------------------------- a machine and a hub


def fake_program(bin_dir: Path, name: str, output: str, code: int = 0) -> None:
    path = bin_dir / name
    path.write_text(
        f"#!{sys.executable}\nimport sys\nsys.stdout.write({output!r})\nsys.exit({code})\n"
    )
    path.chmod(0o755)


def machine(tmp_path: Path, *, pi: bool = True, millideg: int = 48312) -> Path:
    root = tmp_path / "root"
    (root / "var/lib").mkdir(parents=True)
    if pi:
        (root / "proc/device-tree").mkdir(parents=True)
        (root / "proc/device-tree/model").write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\0")
    zone = root / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text(f"{millideg}\n")
    (zone / "type").write_text("cpu-thermal\n")
    return root


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A synchronised clock and an unthrottled Pi, as their own programs report them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_program(bin_dir, "timedatectl", "yes\n")
    fake_program(bin_dir, "vcgencmd", "throttled=0x0\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


class TlsServer:
    """A real TLS server on 127.0.0.1 with the hub's development certificate."""

    def __init__(self, folder: Path) -> None:
        cert, key, self.fingerprint = dev_certificate(folder)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # so close() is noticed: a blocked accept never wakes
        self._stop = threading.Event()
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                with self._context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(0.5)
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def hub(self, pin: str | None = None) -> Hub:
        return Hub(f"wss://127.0.0.1:{self.port}/booth", pin or self.fingerprint)


@pytest.fixture
def tls_hub(tmp_path: Path) -> Iterator[TlsServer]:
    server = TlsServer(tmp_path / "hub")
    yield server
    server.close()


def booth_file(tmp_path: Path, hub: Hub, turn_url: str | None) -> Path:
    text = (
        DEMO.read_text()
        .replace("wiring_fault_seconds = 3.0", f"wiring_fault_seconds = {FAULT_S}")
        .replace('url = "wss://localhost:8443/booth"', f'url = "{hub.url}"')
        .replace(
            f'certificate_sha256 = "{"0" * 64}"',
            f'certificate_sha256 = "{hub.certificate_sha256}"\n'
            + (f'\n[[ice_servers]]\nurls = ["{turn_url}"]\n' if turn_url else ""),
        )
    )
    path = tmp_path / "booth.toml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------- the whole command

ALL_CHECKS = [
    "camera", "microphone", "speaker", "door", "emergency_button", "occupancy_light",
    "alarm_light", "hub", "turn", "clock", "disk", "power", "throttling", "temperature",
]  # fmt: skip


def _selftest(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["selftest", "--simulate", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _numbers_blurred(text: str) -> str:
    return re.sub(r"\d+(\.\d+)?", "N", text)


def test_simulated_booth_passes_everything_and_json_says_the_same(
    tmp_path: Path,
    tools: Path,
    tls_hub: TlsServer,
    turn_server: TurnServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = booth_file(tmp_path, tls_hub.hub(), turn_server.url)
    argv = ["--config", str(config), "--root", str(machine(tmp_path)), "--timeout", "5"]
    code, out, err = _selftest(capsys, *argv)
    assert code == 0, out
    lines = out.splitlines()
    assert [line.split()[1] for line in lines[:-1]] == ALL_CHECKS
    assert all(line.startswith("PASS  ") for line in lines[:-1]), out
    assert lines[-1] == "Summary: booth OK (14 pass, 0 fail, 0 skip)"
    assert ">>> Open the booth door." in err
    assert "turn:127.0.0.1" in out and "TURN Allocate" in out

    code, out_json, _ = _selftest(capsys, *argv, "--json")
    assert code == 0
    report = Report.from_json(json.loads(out_json))
    assert json.loads(out_json)["ok"] is True
    # The same checks with the same outcomes and wording; only measurements (frame
    # counts, levels, free megabytes) differ between two runs.
    assert _numbers_blurred(report.text()) == _numbers_blurred(out)


def test_a_failing_device_fails_the_command(
    tmp_path: Path, tools: Path, tls_hub: TlsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The door switch that never changes: FAIL, with the pin and what to check; exit 1."""
    script = tmp_path / "script.toml"
    script.write_text('door = "ignore"\nalarm_light = "no"\n')
    config = booth_file(tmp_path, tls_hub.hub(), None)
    code, out, _ = _selftest(
        capsys, "--config", str(config), "--root", str(machine(tmp_path, pi=False)),
        "--timeout", "0.3", "--script", str(script), "--json",
    )  # fmt: skip
    assert code == 1
    report = Report.from_json(json.loads(out))
    outcome = {c.name: c for c in report.checks}
    assert outcome["door"].outcome is Outcome.FAIL
    assert outcome["door"].detail == (
        "door switch (GPIO 17) did not report the door opening within 0.3 s"
    )
    assert "GPIO 17" in outcome["door"].fix
    assert outcome["alarm_light"].outcome is Outcome.FAIL
    assert outcome["emergency_button"].outcome is Outcome.PASS
    assert outcome["power"].outcome is Outcome.SKIP
    assert outcome["power"].detail.startswith("not a Raspberry Pi: skipped")
    assert outcome["turn"].outcome is Outcome.SKIP
    assert not report.ok


def test_no_prompt_skips_what_needs_a_person(
    tmp_path: Path, tools: Path, tls_hub: TlsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = booth_file(tmp_path, tls_hub.hub(), None)
    code, out, _ = _selftest(
        capsys, "--config", str(config), "--root", str(machine(tmp_path)), "--no-prompt", "--json"
    )
    assert code == 0
    checks = {c.name: c for c in Report.from_json(json.loads(out)).checks}
    for name in ("speaker", "door", "emergency_button", "occupancy_light", "alarm_light"):
        assert checks[name].outcome is Outcome.SKIP, name
        assert "--interactive" in checks[name].fix
    assert checks["camera"].outcome is Outcome.PASS


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--script", "x.toml"], "--script answers for the simulated technician"),
        (["--simulate", "--timeout", "0"], "--timeout must be more than 0"),
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(["selftest", "--config", str(DEMO), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_script_names_key_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "script.toml"
    script.write_text('door = "slam"\n')
    assert main(["selftest", "--simulate", "--config", str(DEMO), "--script", str(script)]) == 1
    err = capsys.readouterr().err
    assert f'{script}: door: must be one of "act", "ignore", "cut", "short", not ' in err


# ---------------------------------------------------------------- each device failing


def test_camera_checks() -> None:
    assert check_camera(TestCard(), 0.3).outcome is Outcome.PASS
    frozen = check_camera(TestCard(clock=lambda: 12.0), 0.3)  # a stopped clock: same picture
    assert frozen.outcome is Outcome.FAIL
    assert "the picture never changes (frozen)" in frozen.detail

    class DeadCamera(TestCard):
        def open(self) -> None:
            pass  # never starts: latest() stays None

    dead = check_camera(DeadCamera(), 0.3)
    assert (dead.outcome, dead.detail) == (Outcome.FAIL, "no frames in 0.3 s")
    missing = check_camera(None, choice="auto")
    assert missing.outcome is Outcome.FAIL and "no camera found" in missing.detail


def test_microphone_checks() -> None:
    hears = check_microphone(SimulatedMicrophone(), selftest.Nobody(), 0.3)
    assert hears.outcome is Outcome.PASS
    silent = check_microphone(SimulatedMicrophone(clock=lambda: 0.0), selftest.Nobody(), 0.3)
    assert silent.outcome is Outcome.FAIL
    assert silent.detail.startswith("silent: the loudest level in 0.3 s was 0.000")


@pytest.mark.parametrize(("max_volume", "outcome"), [(10, Outcome.PASS), (0, Outcome.FAIL)])
def test_speaker_heard_only_when_it_sounds(max_volume: int, outcome: Outcome) -> None:
    """The simulated technician 'hears' from what the simulated speaker played."""
    config = load(DEMO)
    devices, _ = simulated_devices(config)
    speaker = SimulatedSpeaker(max_volume=max_volume)  # 0: a speaker with its volume at zero
    devices.speaker = speaker
    tech = selftest.simulated_technician(devices, config.hardware)
    assert check_speaker(speaker, tech, 0.2).outcome is outcome


def _gpio(
    script: dict[str, str],
    timeout: float = 0.3,
    *,
    config: BoothConfig | None = None,
    wiring: type[SimulatedWiring] | None = None,
    hold_door: bool = True,
) -> dict[str, Check]:
    config = config or demo_config()
    devices, tech = simulated_devices(config, script)
    if wiring is not None:  # the technician's hands on a switch wired otherwise
        hands = wiring(devices.pin_factory, config.hardware)
        tech = simulated_technician(devices, config.hardware, script, wiring=hands)
    checks = asyncio.run(
        gpio_checks(config.hardware, tech, timeout, devices.pin_factory, hold_door=hold_door)
    )
    tech.close()
    for cleanup in devices.cleanup:
        cleanup()
    return {c.name: c for c in checks}


def test_gpio_all_pass_and_the_emergency_hold_sounds_the_alarm() -> None:
    checks = _gpio({})
    assert all(c.outcome is Outcome.PASS for c in checks.values()), checks


@pytest.mark.parametrize(
    ("script", "name", "detail"),
    [
        ({"door": "ignore"}, "door",
         "door switch (GPIO 17) did not report the door opening within 0.3 s"),
        ({"emergency_button": "ignore"}, "emergency_button",
         "emergency button (GPIO 22) was not held for 1 s within 0.3 s"),
        ({"occupancy_light": "no"}, "occupancy_light",
         "occupancy light (GPIO 5) was switched on and not seen"),
    ],
)  # fmt: skip
def test_gpio_device_that_does_not_respond_fails(
    script: dict[str, str], name: str, detail: str
) -> None:
    check = _gpio(script)[name]
    assert (check.outcome, check.detail) == (Outcome.FAIL, detail)


# ------------------------------------------------------- broken wiring of a supervised door


@pytest.mark.parametrize("broken", ["cut", "short"])
@pytest.mark.parametrize("supervised", [True, False], ids=["supervised", "twin-unsupervised"])
def test_a_door_wire_broken_before_start_fails_as_a_wiring_fault(
    broken: str, supervised: bool
) -> None:
    """Cut or shorted before the booth's GPIO starts, the door switch never moves; the
    supervision names the cause. Twin: without a supervision pin it still fails (the door
    never moved) but nothing can say that the wiring is why."""
    config = demo_config(supervised=supervised, hold_s=0.5)
    check = _gpio({"door": broken}, config=config)["door"]
    assert check.outcome is Outcome.FAIL
    if supervised:
        assert check.detail == f"door switch (GPIO 17): wiring fault ({broken})"
        assert "GPIO 17 and its supervision GPIO 27" in check.fix
    else:
        assert "wiring fault" not in check.detail


def test_a_wire_cut_through_other_hands_is_mended_by_the_technician() -> None:
    """Why "cut the door wire before start" once passed: the wire was cut through a second
    SimulatedWiring, and the technician's own (which knows of no cut) drove the pins as a
    sound switch on the first door move. Cut through the technician's hands, it fails."""
    config = demo_config(hold_s=0.5)
    devices, tech = simulated_devices(config, {})
    SimulatedWiring(devices.pin_factory, config.hardware).cut("door")  # other hands
    mended = asyncio.run(gpio_checks(config.hardware, tech, 0.3, devices.pin_factory))[0]
    tech.close()
    assert mended.outcome is Outcome.PASS
    devices, tech = simulated_devices(config, {})
    tech.wiring.cut("door")
    kept = asyncio.run(gpio_checks(config.hardware, tech, 0.3, devices.pin_factory))[0]
    tech.close()
    assert kept.outcome is Outcome.FAIL
    assert kept.detail == "door switch (GPIO 17): wiring fault (cut)"


class CutSupervisionWire(SimulatedWiring):
    """A door switch whose supervision wire is cut: its contact never closes, so the
    wiring reads "cut" only while the (normally closed) door contact is open."""

    def contacts_closed(self, role: str) -> tuple[bool, bool | None]:
        main, check = super().contacts_closed(role)
        return (main, False) if role == "door" else (main, check)


@pytest.mark.parametrize("hold", [True, False], ids=["held", "twin-not-held"])
def test_a_cut_supervision_wire_is_found_by_holding_the_door_open(hold: bool) -> None:
    """Opening and closing alone passes (twin); holding each position for the wiring's
    fault time lets the supervision report the cut, and the door check fails."""
    assert demo_config().hardware.contacts.door is Contact.NC
    config = demo_config(hold_s=0.5)
    check = _gpio({}, config=config, wiring=CutSupervisionWire, hold_door=hold)["door"]
    if hold:
        assert (check.outcome, check.detail) == (
            Outcome.FAIL,
            "door switch (GPIO 17): wiring fault (cut)",
        )
    else:
        assert check.outcome is Outcome.PASS


def test_a_rehearsed_cut_door_wire_fails_the_command(
    tmp_path: Path, tools: Path, tls_hub: TlsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "script.toml"
    script.write_text('door = "cut"\n')
    config = booth_file(tmp_path, tls_hub.hub(), None)
    code, out, _ = _selftest(
        capsys, "--config", str(config), "--root", str(machine(tmp_path)),
        "--timeout", "0.3", "--script", str(script),
    )  # fmt: skip
    assert code == 1
    assert "FAIL  door              door switch (GPIO 17): wiring fault (cut)" in out


# ---------------------------------------------------------------- hub and TURN


def test_hub_with_the_right_pin(tls_hub: TlsServer) -> None:
    check = check_hub(tls_hub.hub())
    assert check.outcome is Outcome.PASS
    assert (
        check.detail
        == f"hub 127.0.0.1:{tls_hub.port}: TLS connects and the certificate matches the pin"
    )


@pytest.mark.parametrize("pinned", [True, False], ids=["pin-checked", "twin-any-certificate"])
def test_hub_with_a_wrong_pin_fails(tls_hub: TlsServer, pinned: bool) -> None:
    """The twin: a check that took any certificate would call an impostor hub fine."""
    wrong = "ab" * 32
    check = check_hub(tls_hub.hub(wrong if pinned else tls_hub.fingerprint))
    if pinned:
        assert check.outcome is Outcome.FAIL
        assert (
            f"its certificate's SHA-256 is {tls_hub.fingerprint}, not the {wrong}" in check.detail
        )
        assert "[hub] certificate_sha256" in check.fix
    else:
        assert check.outcome is Outcome.PASS


def test_hub_that_is_not_running() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    check = check_hub(Hub(f"wss://127.0.0.1:{port}/booth", "ab" * 32))
    assert (check.outcome, check.detail) == (
        Outcome.FAIL,
        f"hub 127.0.0.1:{port}: connection refused",
    )


def test_turn_server_answers_stun_and_allocate(turn_server: TurnServer) -> None:
    check = check_ice_server(turn_server.url, timeout=2)
    assert check.outcome is Outcome.PASS, check
    stun = check_ice_server(turn_server.url.replace("turn:", "stun:"), timeout=2)
    assert stun.outcome is Outcome.PASS and "answers STUN Binding" in stun.detail


def test_turn_server_that_is_not_there() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    check = check_ice_server(f"turn:127.0.0.1:{port}", timeout=0.6)
    assert check.outcome is Outcome.FAIL
    assert check.detail.startswith(f"turn:127.0.0.1:{port} (UDP 127.0.0.1:{port}): ")
    assert f"UDP port {port}" in check.fix


# ---------------------------------------------------------------- the machine


def test_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    fake_program(bin_dir, "timedatectl", "yes\n")
    assert check_clock().outcome is Outcome.PASS
    fake_program(bin_dir, "timedatectl", "no\n")
    unsynced = check_clock()
    assert unsynced.outcome is Outcome.FAIL and "NTPSynchronized=no" in unsynced.detail


def test_clock_without_timedatectl_asks_the_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    check = check_clock()
    assert "(kernel adjtimex; timedatectl unavailable)" in check.detail
    assert check.outcome is (Outcome.PASS if selftest.kernel_clock_synchronised() else Outcome.FAIL)


def test_disk(tmp_path: Path) -> None:
    assert check_disk(tmp_path, min_free=1).outcome is Outcome.PASS
    import shutil

    full = check_disk(tmp_path, min_free=shutil.disk_usage(tmp_path).total + 1)
    assert full.outcome is Outcome.FAIL and "is needed for updates" in full.detail


@pytest.mark.parametrize(
    ("value", "power", "throttling"),
    [
        ("0x0", Outcome.PASS, Outcome.PASS),
        ("0x50005", Outcome.FAIL, Outcome.FAIL),
        ("0x10000", Outcome.FAIL, Outcome.PASS),
        ("0x80000", Outcome.PASS, Outcome.FAIL),
    ],
)
def test_throttling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, power: Outcome, throttling: Outcome
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_program(bin_dir, "vcgencmd", f"throttled={value}\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    checks = check_throttling(machine(tmp_path), run_command)
    assert [(c.name, c.outcome) for c in checks] == [("power", power), ("throttling", throttling)]
    if value == "0x50005":
        assert (
            checks[0].detail
            == "under-voltage now, under-voltage since boot (vcgencmd: throttled=0x50005)"
        )


def test_not_a_pi_skips_throttling_instead_of_passing(tmp_path: Path) -> None:
    checks = check_throttling(machine(tmp_path, pi=False))
    assert [c.outcome for c in checks] == [Outcome.SKIP, Outcome.SKIP]
    assert checks[0].detail.startswith("not a Raspberry Pi: skipped")


def test_temperature(tmp_path: Path) -> None:
    assert check_temperature(machine(tmp_path)).detail == "48.3 °C (cpu-thermal)"
    hot = check_temperature(machine(tmp_path / "hot", millideg=85000))
    assert hot.outcome is Outcome.FAIL
    none = check_temperature(tmp_path / "nothing")
    assert none.outcome is Outcome.SKIP
