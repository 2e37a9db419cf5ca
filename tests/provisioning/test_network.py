"""``kiosk-provision network``: exact nmcli command lines, run against a fake ``nmcli``.

NetworkManager does not run on the test machine, so a fake ``nmcli`` on PATH
records each argv and what came on its standard input, and prints canned
output in nmcli's terse (``-t``) format. The Wi-Fi password must reach nmcli on
stdin and never appear on a command line or in our output."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from provisioning import network
from provisioning.cli import main
from provisioning.network import (
    Device,
    NetworkError,
    Nmcli,
    parse_device_show,
    parse_device_status,
    parse_static,
    split_terse,
    status_checks,
    wifi_connect_argv,
    wired_argvs,
)
from provisioning.selftest import Outcome
from tests.provisioning.test_selftest import TlsServer, booth_file

PASSWORD = "correct horse battery"

DEVICE_STATUS = (
    "eth0:ethernet:connected:Wired connection 1\n"
    "wlan0:wifi:disconnected:\n"
    "p2p-dev-wlan0:wifi-p2p:disconnected:\n"
    "lo:loopback:connected (externally):lo\n"
)
ETH0_SHOW = "IP4.ADDRESS[1]:127.0.0.2/8\nIP4.GATEWAY:127.0.0.1\nIP4.DNS[1]:127.0.0.53\n"


class FakeNmcli:
    """A fake nmcli program: canned replies by argv, a log of argv and stdin."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "calls.jsonl"
        self.canned = folder / "canned.json"
        self.replies: dict[str, dict[str, Any]] = {}
        program = folder / "nmcli"
        program.write_text(
            f"#!{sys.executable}\n"
            "import json, sys\n"
            f"log, canned = {str(self.log)!r}, {str(self.canned)!r}\n"
            "given = sys.stdin.read()\n"
            "with open(log, 'a') as f:\n"
            "    f.write(json.dumps({'argv': sys.argv[1:], 'stdin': given}) + '\\n')\n"
            "replies = json.load(open(canned))\n"
            "reply = replies.get(' '.join(sys.argv[1:]), replies.get('*', {}))\n"
            "sys.stdout.write(reply.get('out', ''))\n"
            "sys.stderr.write(reply.get('err', ''))\n"
            "sys.exit(reply.get('code', 0))\n"
        )
        program.chmod(0o755)
        self.program = str(program)
        self.reply("*", out="")

    def reply(self, argv: str, *, out: str = "", err: str = "", code: int = 0) -> None:
        self.replies[argv] = {"out": out, "err": err, "code": code}
        self.canned.write_text(json.dumps(self.replies))

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def nmcli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNmcli:
    fake = FakeNmcli(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    fake.reply("-t -f DEVICE,TYPE,STATE,CONNECTION device status", out=DEVICE_STATUS)
    fake.reply("-t -f IP4.ADDRESS,IP4.GATEWAY,IP4.DNS device show eth0", out=ETH0_SHOW)
    return fake


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["network", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# ---------------------------------------------------------------- pure command lines


def test_wifi_argv() -> None:
    assert wifi_connect_argv("Library Staff", secured=True) == [
        "nmcli", "--ask", "device", "wifi", "connect", "Library Staff",
    ]  # fmt: skip
    assert wifi_connect_argv("Cafe", secured=False, ifname="wlan1", hidden=True) == [
        "nmcli", "device", "wifi", "connect", "Cafe", "ifname", "wlan1", "hidden", "yes",
    ]  # fmt: skip


def test_wired_argvs() -> None:
    assert wired_argvs("eth0", None, exists=False) == [
        ["nmcli", "connection", "add", "type", "ethernet", "con-name", "kiosk-wired",
         "ifname", "eth0", "connection.autoconnect", "yes", "ipv4.method", "auto",
         "ipv4.addresses", "", "ipv4.gateway", "", "ipv4.dns", ""],
        ["nmcli", "connection", "up", "kiosk-wired"],
    ]  # fmt: skip
    static = parse_static("192.168.1.50/24", "192.168.1.1", "192.168.1.1, 9.9.9.9")
    assert wired_argvs("eth0", static, exists=True)[0] == [
        "nmcli", "connection", "modify", "kiosk-wired", "connection.interface-name", "eth0",
        "connection.autoconnect", "yes", "ipv4.method", "manual",
        "ipv4.addresses", "192.168.1.50/24", "ipv4.gateway", "192.168.1.1",
        "ipv4.dns", "192.168.1.1 9.9.9.9",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("address", "gateway", "dns", "problem"),
    [
        (
            "192.168.1.50",
            "192.168.1.1",
            None,
            "--address: give the prefix too, e.g. 192.168.1.50/24",
        ),
        ("192.168.1.500/24", "192.168.1.1", None, "--address: must be an IPv4 address"),
        ("192.168.1.0/24", "192.168.1.1", None, "is not a usable host address"),
        ("192.168.1.50/24", None, None, "--gateway: required with --address"),
        ("192.168.1.50/24", "10.0.0.1", None, "--gateway: 10.0.0.1 is not another address in"),
        ("192.168.1.50/24", "192.168.1.1", "1.1.1.1,dns.example", "--dns: 'dns.example' is not"),
    ],
)
def test_static_settings_are_checked(
    address: str, gateway: str | None, dns: str | None, problem: str
) -> None:
    with pytest.raises(NetworkError, match=problem.replace(".", r"\.")):
        parse_static(address, gateway, dns)


def test_terse_output_is_parsed() -> None:
    assert split_terse(r"wlan0:wifi:connected:Cafe\: 2nd floor\\x") == [
        "wlan0", "wifi", "connected", "Cafe: 2nd floor\\x",
    ]  # fmt: skip
    devices = parse_device_status(DEVICE_STATUS)
    assert [(d.name, d.connected) for d in devices] == [("eth0", True), ("wlan0", False)]
    eth0 = parse_device_show(devices[0], ETH0_SHOW)
    assert (eth0.addresses, eth0.gateway, eth0.dns) == (
        ("127.0.0.2/8",),
        "127.0.0.1",
        ("127.0.0.53",),
    )


# ---------------------------------------------------------------- through the fake nmcli


@pytest.mark.parametrize("on_stdin", [True, False], ids=["password-on-stdin", "twin-on-argv"])
def test_wifi_password_goes_to_stdin_never_argv(nmcli: FakeNmcli, on_stdin: bool) -> None:
    """The twin puts the password on the command line, where the fake's log (like ``ps``)
    shows it: the check below would catch exactly that."""
    if on_stdin:
        network.connect_wifi(Nmcli(), "Library Staff", PASSWORD)
    else:
        Nmcli()(["nmcli", "device", "wifi", "connect", "Library Staff", "password", PASSWORD])
    (call,) = nmcli.calls()
    assert (PASSWORD in " ".join(call["argv"])) is not on_stdin
    assert (call["stdin"] == PASSWORD + "\n") is on_stdin


def test_cli_wifi_with_password_stdin(
    nmcli: FakeNmcli, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    nmcli.reply(
        "--ask device wifi connect Library Staff",
        out="Device 'wlan0' successfully activated with 'f3c1…'.\n",
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    code, out, err = run(capsys, "wifi", "Library Staff", "--password-stdin")
    assert code == 0
    assert out.startswith("Device 'wlan0' successfully activated")
    assert nmcli.calls() == [
        {"argv": ["--ask", "device", "wifi", "connect", "Library Staff"], "stdin": PASSWORD + "\n"}
    ]
    assert PASSWORD not in out + err


def test_cli_wifi_refuses_a_short_password_without_calling_nmcli(
    nmcli: FakeNmcli, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    code, _, err = run(capsys, "wifi", "Library Staff", "--password-stdin")
    assert code == 1
    assert "the Wi-Fi password must be 8-63 printable characters" in err
    assert "short" not in err
    assert nmcli.calls() == []


def test_cli_wifi_wrong_password_says_what_to_do(
    nmcli: FakeNmcli, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    nmcli.reply(
        "--ask device wifi connect Library Staff",
        err="Error: Connection activation failed: Secrets were required, but not provided.\n",
        code=4,
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    code, _, err = run(capsys, "wifi", "Library Staff", "--password-stdin")
    assert code == 1
    assert err == (
        "kiosk-provision: `nmcli --ask device wifi connect Library Staff` failed (exit 4): "
        "Error: Connection activation failed: Secrets were required, but not provided.; "
        "the connection could not be activated; check the password, the cable, or DHCP\n"
    )


def test_cli_wired_dhcp_creates_the_profile(
    nmcli: FakeNmcli, capsys: pytest.CaptureFixture[str]
) -> None:
    nmcli.reply("-t -f NAME connection show", out="Wired connection 1\nlo\n")
    code, _, _ = run(capsys, "wired", "--dhcp")
    assert code == 0
    assert [c["argv"] for c in nmcli.calls()] == [
        ["-t", "-f", "DEVICE,TYPE,STATE,CONNECTION", "device", "status"],
        ["-t", "-f", "NAME", "connection", "show"],
        wired_argvs("eth0", None, exists=False)[0][1:],
        ["connection", "up", "kiosk-wired"],
    ]


def test_cli_wired_static_changes_the_existing_profile(
    nmcli: FakeNmcli, capsys: pytest.CaptureFixture[str]
) -> None:
    nmcli.reply("-t -f NAME connection show", out="kiosk-wired\nlo\n")
    argv = ["wired", "--address", "192.168.1.50/24", "--gateway", "192.168.1.1", "--ifname", "eth1"]
    assert run(capsys, *argv)[0] == 0
    calls = [c["argv"] for c in nmcli.calls()]
    assert calls[1][:6] == ["connection", "modify", "kiosk-wired", "connection.interface-name",
                            "eth1", "connection.autoconnect"]  # fmt: skip
    assert "192.168.1.50/24" in calls[1]


def test_cli_wired_bad_address_names_the_argument(
    nmcli: FakeNmcli, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "wired", "--address", "192.168.1.50", "--gateway", "192.168.1.1")
    assert code == 1
    assert err == (
        "kiosk-provision: --address: give the prefix too, e.g. 192.168.1.50/24 "
        "(ask the site's IT for it)\n"
    )
    assert nmcli.calls() == []


def test_networkmanager_not_running(nmcli: FakeNmcli, capsys: pytest.CaptureFixture[str]) -> None:
    nmcli.reply(
        "-t -f DEVICE,TYPE,STATE,CONNECTION device status",
        err="Error: NetworkManager is not running.\n",
        code=8,
    )
    code, _, err = run(capsys, "status", "--root", "/nonexistent")
    assert code == 1
    assert (
        "Error: NetworkManager is not running.; NetworkManager is not running; start it with" in err
    )


def test_nmcli_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    code, _, err = run(capsys, "wired", "--dhcp")
    assert code == 1
    assert "nmcli is not installed" in err


def test_cli_status_reports_interfaces_gateway_dns_and_hub(
    nmcli: FakeNmcli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = TlsServer(tmp_path / "hub")
    try:
        config = booth_file(tmp_path, hub.hub(), None)
        code, out, _ = run(capsys, "status", "--config", str(config))
    finally:
        hub.close()
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == (
        'PASS  interface         eth0 (ethernet): connected, profile "Wired connection 1" '
        "127.0.0.2/8 via 127.0.0.1"
    )
    assert lines[1].startswith("SKIP  interface         wlan0 (wifi): disconnected")
    assert lines[2] == "PASS  gateway           gateway 127.0.0.1 (eth0): answers ping"
    assert lines[3] == "PASS  dns               127.0.0.1 resolves to 127.0.0.1"
    assert lines[4].startswith("PASS  hub               hub 127.0.0.1:")


def test_status_failures() -> None:
    """Nothing connected, a silent gateway, a name that does not resolve: each a FAIL."""
    from kiosk.config import Hub

    down = [Device("eth0", "ethernet", "unavailable", "")]
    checks = status_checks(down, None)
    assert [(c.name, c.outcome) for c in checks] == [
        ("interface", Outcome.SKIP), ("connected", Outcome.FAIL), ("dns", Outcome.SKIP),
    ]  # fmt: skip
    up = [Device("eth0", "ethernet", "connected", "x", ("192.0.2.5/24",), "192.0.2.1")]

    def no_name(host: str) -> list[str]:
        raise OSError(-2, "Name or service not known")

    checks = status_checks(
        up, Hub("wss://hub.example.org/booth", "ab" * 32), pinger=lambda _: False, resolver=no_name
    )
    outcomes = {c.name: c.outcome for c in checks}
    assert outcomes == {"interface": Outcome.PASS, "gateway": Outcome.FAIL, "dns": Outcome.FAIL}
