"""``kiosk-provision network``: Wi-Fi and wired settings through NetworkManager's ``nmcli``.

Every nmcli command line is built by a pure function (``*_argv``), so tests
check the exact argv, and run through one small runner, :class:`Nmcli`, that
turns nmcli's failures into a sentence naming what to do. A Wi-Fi password
never goes on a command line (where ``ps`` and the journal would show it):
``nmcli --ask`` reads it from its standard input, and nothing here logs it.

``network status`` reports what a technician needs to know, one check a line:
which interface is connected with which address, whether the gateway answers
an ICMP echo, whether DNS resolves the hub's name, and whether the hub itself
answers with its pinned certificate (the same check as the selftest's).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from kiosk.errors import KioskError
from provisioning.selftest import Check, Outcome, Report, check_hub

WIRED_PROFILE: Final = "kiosk-wired"
"""The NetworkManager connection ``network wired`` owns; other profiles are left alone."""
NMCLI_TIMEOUT_S: Final = 60.0
PING_TIMEOUT_S: Final = 2.0


class NetworkError(KioskError):
    """nmcli failed or a setting is unusable; the message says what to do."""


# ---------------------------------------------------------------- nmcli command lines


def device_status_argv() -> list[str]:
    return ["nmcli", "-t", "-f", "DEVICE,TYPE,STATE,CONNECTION", "device", "status"]


def device_show_argv(device: str) -> list[str]:
    return ["nmcli", "-t", "-f", "IP4.ADDRESS,IP4.GATEWAY,IP4.DNS", "device", "show", device]


def connection_names_argv() -> list[str]:
    return ["nmcli", "-t", "-f", "NAME", "connection", "show"]


def wifi_connect_argv(
    ssid: str, *, secured: bool, ifname: str | None = None, hidden: bool = False
) -> list[str]:
    """Join a Wi-Fi network; with ``secured``, nmcli asks for the password on stdin."""
    argv = ["nmcli"]
    if secured:
        argv.append("--ask")
    argv += ["device", "wifi", "connect", ssid]
    if ifname:
        argv += ["ifname", ifname]
    if hidden:
        argv += ["hidden", "yes"]
    return argv


@dataclass(frozen=True)
class StaticIp:
    """A fixed IPv4 address: ``address`` with its prefix, the gateway, DNS servers."""

    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address
    dns: tuple[ipaddress.IPv4Address, ...] = ()


def ipv4_settings(static: StaticIp | None) -> list[str]:
    """nmcli property/value pairs: DHCP (``None``) clears any fixed address left behind."""
    if static is None:
        return ["ipv4.method", "auto", "ipv4.addresses", "", "ipv4.gateway", "", "ipv4.dns", ""]
    return [
        "ipv4.method", "manual",
        "ipv4.addresses", str(static.address),
        "ipv4.gateway", str(static.gateway),
        "ipv4.dns", " ".join(str(d) for d in static.dns),
    ]  # fmt: skip


def wired_argvs(ifname: str, static: StaticIp | None, *, exists: bool) -> list[list[str]]:
    """Create or change the booth's own wired profile, then bring it up."""
    settings = ["connection.autoconnect", "yes", *ipv4_settings(static)]
    if exists:
        change = [
            "nmcli",
            "connection",
            "modify",
            WIRED_PROFILE,
            "connection.interface-name",
            ifname,
            *settings,
        ]
    else:
        change = [
            "nmcli",
            "connection",
            "add",
            "type",
            "ethernet",
            "con-name",
            WIRED_PROFILE,
            "ifname",
            ifname,
            *settings,
        ]
    return [change, ["nmcli", "connection", "up", WIRED_PROFILE]]


def parse_static(address: str, gateway: str | None, dns: str | None) -> StaticIp:
    """The ``--address``/``--gateway``/``--dns`` values, or NetworkError naming the bad one."""
    try:
        interface = ipaddress.IPv4Interface(address)
    except ValueError:
        raise NetworkError(
            f"--address: must be an IPv4 address with its prefix such as 192.168.1.50/24, "
            f"not {address!r}"
        ) from None
    if "/" not in address:
        raise NetworkError(
            f"--address: give the prefix too, e.g. {address}/24 (ask the site's IT for it)"
        )
    if interface.network.prefixlen >= 31 or interface.ip == interface.network.network_address:
        raise NetworkError(f"--address: {address} is not a usable host address in its network")
    if gateway is None:
        raise NetworkError("--gateway: required with --address (the site router's address)")
    try:
        router = ipaddress.IPv4Address(gateway)
    except ValueError:
        raise NetworkError(f"--gateway: must be an IPv4 address, not {gateway!r}") from None
    if router not in interface.network or router == interface.ip:
        raise NetworkError(
            f"--gateway: {router} is not another address in {interface.network}; "
            "check the address's prefix and the gateway"
        )
    servers: list[ipaddress.IPv4Address] = []
    for item in (dns or "").split(","):
        if not item.strip():
            continue
        try:
            servers.append(ipaddress.IPv4Address(item.strip()))
        except ValueError:
            raise NetworkError(
                f"--dns: {item.strip()!r} is not an IPv4 address; give addresses separated "
                "by commas, e.g. 192.168.1.1,9.9.9.9"
            ) from None
    return StaticIp(interface, router, tuple(servers))


def check_ssid(ssid: str) -> str:
    if not ssid or len(ssid.encode("utf-8")) > 32:
        raise NetworkError(f"SSID: must be 1-32 bytes, not {len(ssid.encode('utf-8'))}")
    return ssid


def check_password(password: str) -> str:
    """A WPA passphrase (8-63 characters) or raw key (64 hex digits); never echoed back."""
    if len(password) == 64 and all(c in "0123456789abcdefABCDEF" for c in password):
        return password
    if not 8 <= len(password) <= 63 or not password.isprintable():
        raise NetworkError(
            f"the Wi-Fi password must be 8-63 printable characters (or 64 hex digits), "
            f"not {len(password)} characters"
        )
    return password


# ---------------------------------------------------------------- nmcli's terse output


def split_terse(line: str) -> list[str]:
    """One line of ``nmcli -t``: fields split at ``:``, where ``\\:`` and ``\\\\`` are literal."""
    fields: list[str] = []
    current: list[str] = []
    escaped = False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


@dataclass(frozen=True)
class Device:
    name: str
    type: str
    state: str
    connection: str
    addresses: tuple[str, ...] = ()
    gateway: str = ""
    dns: tuple[str, ...] = ()

    @property
    def connected(self) -> bool:
        return self.state.startswith("connected")  # also "connected (externally)"


def parse_device_status(output: str) -> list[Device]:
    devices = []
    for line in output.splitlines():
        fields = split_terse(line)
        if len(fields) != 4:
            continue
        name, kind, state, connection = fields
        if kind in ("loopback", "bridge", "tun", "wifi-p2p"):
            continue
        devices.append(Device(name, kind, state, connection))
    return devices


def parse_device_show(device: Device, output: str) -> Device:
    addresses: list[str] = []
    dns: list[str] = []
    gateway = ""
    for line in output.splitlines():
        key, _, value = line.partition(":")
        if not value:
            continue
        value = split_terse(value)[0] if "\\" in value else value
        if key.startswith("IP4.ADDRESS"):
            addresses.append(value)
        elif key == "IP4.GATEWAY":
            gateway = value
        elif key.startswith("IP4.DNS"):
            dns.append(value)
    return Device(
        device.name,
        device.type,
        device.state,
        device.connection,
        tuple(addresses),
        gateway,
        tuple(dns),
    )


# ---------------------------------------------------------------- running nmcli

_ADVICE: Final = {
    3: "it timed out; check the signal or cable and try again",
    4: "the connection could not be activated; check the password, the cable, or DHCP",
    8: "NetworkManager is not running; start it with `systemctl enable --now NetworkManager`",
    10: "no such network, device or connection; check the name (`nmcli device wifi list`)",
}


@dataclass
class Nmcli:
    """Runs nmcli; a failure becomes a :class:`NetworkError` with nmcli's words and advice.

    ``secret`` goes to nmcli's standard input and nowhere else.
    """

    program: str = "nmcli"
    timeout: float = NMCLI_TIMEOUT_S
    env: dict[str, str] | None = field(default=None, repr=False)

    def __call__(self, argv: Sequence[str], secret: str | None = None) -> str:
        command = [self.program, *argv[1:]]
        shown = " ".join(argv)
        try:
            result = subprocess.run(
                command,
                input=None if secret is None else secret + "\n",
                stdin=subprocess.DEVNULL if secret is None else None,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
                env=self.env,
            )
        except FileNotFoundError:
            raise NetworkError(
                "nmcli is not installed: the booth's network is set through NetworkManager "
                "(Debian package network-manager, standard on Raspberry Pi OS Bookworm)"
            ) from None
        except subprocess.TimeoutExpired:
            raise NetworkError(f"`{shown}` gave no answer in {self.timeout:g} s") from None
        if result.returncode != 0:
            said = next((ln for ln in result.stderr.splitlines() if ln.strip()), "").strip()
            advice = _ADVICE.get(result.returncode, "see `journalctl -u NetworkManager`")
            raise NetworkError(
                f"`{shown}` failed (exit {result.returncode}): {said or 'no message'}; {advice}"
            )
        return result.stdout


def list_devices(nmcli: Nmcli) -> list[Device]:
    devices = parse_device_status(nmcli(device_status_argv()))
    return [
        parse_device_show(d, nmcli(device_show_argv(d.name))) if d.connected else d for d in devices
    ]


def connect_wifi(
    nmcli: Nmcli,
    ssid: str,
    password: str | None,
    *,
    ifname: str | None = None,
    hidden: bool = False,
) -> str:
    """Join a Wi-Fi network (an open one when ``password`` is None); nmcli's message."""
    check_ssid(ssid)
    if password is not None:
        check_password(password)
    argv = wifi_connect_argv(ssid, secured=password is not None, ifname=ifname, hidden=hidden)
    return nmcli(argv, secret=password).strip()


def set_wired(nmcli: Nmcli, static: StaticIp | None, ifname: str | None = None) -> str:
    """DHCP (``static`` None) or a fixed address on the booth's wired profile."""
    if ifname is None:
        wired = [
            d.name for d in parse_device_status(nmcli(device_status_argv())) if d.type == "ethernet"
        ]
        if not wired:
            raise NetworkError(
                "no wired (ethernet) interface found; plug the cable in, or "
                "name the interface with --ifname"
            )
        ifname = wired[0]
    names = nmcli(connection_names_argv()).splitlines()
    said = ""
    for argv in wired_argvs(ifname, static, exists=WIRED_PROFILE in names):
        said = nmcli(argv).strip()
    return said


# ---------------------------------------------------------------- status checks


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(address: str, timeout: float = PING_TIMEOUT_S) -> bool | None:
    """One ICMP echo; None when this process may not send ICMP (not root, no ping group)."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW):
        try:
            sock = socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP)
            break
        except PermissionError:
            continue
    else:
        return None
    ident = os.getpid() & 0xFFFF
    payload = os.urandom(16)
    header = bytes([8, 0, 0, 0]) + ident.to_bytes(2, "big") + (1).to_bytes(2, "big")
    packet = header[:2] + _checksum(header + payload).to_bytes(2, "big") + header[4:] + payload
    with sock:
        sock.sendto(packet, (address, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            reply = sock.recv(2048)
            if kind == socket.SOCK_RAW:
                reply = reply[(reply[0] & 0x0F) * 4 :]  # skip the IP header
            if reply[:1] == b"\0" and reply[8:] == payload:
                return True
    return False


def resolve(host: str) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})


def status_checks(
    devices: Sequence[Device],
    hub: object | None,
    *,
    pinger: Callable[[str], bool | None] = ping,
    resolver: Callable[[str], list[str]] = resolve,
) -> list[Check]:
    """A check per interface and gateway, then DNS and the hub (a ``kiosk.config.Hub``)."""
    from kiosk.config import Hub

    checks: list[Check] = []
    connected = [d for d in devices if d.connected]
    for d in devices:
        label = f"{d.name} ({d.type})"
        if d.connected:
            via = f" via {d.gateway}" if d.gateway else ", no gateway"
            profile = f' profile "{d.connection}"' if d.connection else ""
            addresses = ", ".join(d.addresses) or "no IPv4 address"
            checks.append(
                Check("interface", Outcome.PASS, f"{label}: {d.state},{profile} {addresses}{via}")
            )
        else:
            checks.append(
                Check(
                    "interface",
                    Outcome.SKIP,
                    f"{label}: {d.state}",
                    "not in use; fine if another interface is connected",
                )
            )
    if not connected:
        checks.append(
            Check(
                "connected",
                Outcome.FAIL,
                "no interface is connected",
                "plug in the cable (`kiosk-provision network wired --dhcp`) or join Wi-Fi "
                "(`kiosk-provision network wifi SSID`)",
            )
        )
    for d in connected:
        if not d.gateway:
            continue
        answered = pinger(d.gateway)
        where = f"gateway {d.gateway} ({d.name})"
        if answered is None:
            checks.append(
                Check(
                    "gateway",
                    Outcome.SKIP,
                    f"{where}: not checked (ICMP needs root)",
                    "run as root (sudo)",
                )
            )
        elif answered:
            checks.append(Check("gateway", Outcome.PASS, f"{where}: answers ping"))
        else:
            checks.append(
                Check(
                    "gateway",
                    Outcome.FAIL,
                    f"{where}: no answer to ping",
                    "check the cable or Wi-Fi signal, and the gateway address",
                )
            )
    if not isinstance(hub, Hub):
        checks.append(
            Check(
                "dns",
                Outcome.SKIP,
                "no booth configuration: the hub's name is unknown",
                "write it with `kiosk-provision init`, or give --config",
            )
        )
        return checks
    host = urlsplit(hub.url).hostname or ""
    try:
        found = resolver(host)
    except (OSError, UnicodeError) as exc:
        checks.append(
            Check(
                "dns",
                Outcome.FAIL,
                f"{host} does not resolve ({exc})",
                "check the DNS servers (`network wired --dns`, or DHCP) and [hub] url",
            )
        )
        return checks
    checks.append(Check("dns", Outcome.PASS, f"{host} resolves to {', '.join(found)}"))
    checks.append(check_hub(hub))
    return checks


# ---------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="network_command", metavar="ACTION", required=True)
    status = sub.add_parser("status", help="interfaces, addresses, gateway, DNS and the hub")
    status.add_argument("--json", action="store_true", help="print the report as JSON")
    status.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="the booth configuration naming the hub (default: the installed one)",
    )
    wifi = sub.add_parser("wifi", help="join a Wi-Fi network (asks for its password)")
    wifi.add_argument("ssid", metavar="SSID", help="the network's name")
    wifi.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    wifi.add_argument("--open", action="store_true", help="the network has no password")
    wifi.add_argument("--hidden", action="store_true", help="the network hides its name")
    wifi.add_argument("--ifname", metavar="IF", help="the Wi-Fi interface (default: any)")
    wired = sub.add_parser("wired", help="set the wired interface to DHCP or a fixed address")
    how = wired.add_mutually_exclusive_group(required=True)
    how.add_argument("--dhcp", action="store_true", help="take an address from the site's DHCP")
    how.add_argument("--address", metavar="CIDR", help="a fixed address, e.g. 192.168.1.50/24")
    wired.add_argument("--gateway", metavar="IP", help="with --address: the router's address")
    wired.add_argument("--dns", metavar="IP,IP", help="with --address: DNS servers, by commas")
    wired.add_argument("--ifname", metavar="IF", help="the wired interface (default: the first)")
    for p in (status, wifi, wired):
        p.add_argument(
            "--root",
            type=Path,
            default=Path("/"),
            metavar="DIR",
            help="the booth's file system root (for tests)",
        )


class _PasswordRefusedError(NetworkError):
    pass


def _password(args: argparse.Namespace) -> str | None:
    from kiosk.commandline import ask_hidden

    if args.open:
        return None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise NetworkError("no password on standard input (use --open for an open network)")
        return password
    return ask_hidden(
        f"Password for {args.ssid}: ", "password", "--password-stdin", _PasswordRefusedError
    )


def command(args: argparse.Namespace) -> int:
    from kiosk.commandline import EXIT_OK, EXIT_PROBLEMS
    from provisioning.layout import Layout

    nmcli = Nmcli()
    if args.network_command == "wifi":
        said = connect_wifi(
            nmcli, check_ssid(args.ssid), _password(args), ifname=args.ifname, hidden=args.hidden
        )
        print(said or f"Joined {args.ssid}.")
        print("Check it with `kiosk-provision network status`.")
        return EXIT_OK
    if args.network_command == "wired":
        if args.dhcp and (args.gateway or args.dns):
            raise NetworkError("--gateway and --dns go with --address; DHCP provides both")
        static = None if args.dhcp else parse_static(args.address, args.gateway, args.dns)
        said = set_wired(nmcli, static, args.ifname)
        print(said or "Wired settings changed.")
        print("Check it with `kiosk-provision network status`.")
        return EXIT_OK
    from kiosk.config import load
    from kiosk.errors import ConfigError

    hub = None
    path = args.config or Layout(args.root).config
    try:
        hub = load(path).hub
    except ConfigError as exc:
        print(f"note: the hub is not checked: {exc.problems[0]}", file=sys.stderr)
    report = Report(tuple(status_checks(list_devices(nmcli), hub)))
    if args.json:
        import json

        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print(report.text(), end="")
    return EXIT_OK if report.ok else EXIT_PROBLEMS
