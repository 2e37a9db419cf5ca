"""``kiosk-provision status``: what state this booth is in, at a glance or as JSON.

Whether the configuration is valid, whether the booth is enrolled (its key
and credential are in place and private), whether the hub answers over
HTTPS with the pinned certificate, which release is current, and how much
the state folders hold. Reading only: nothing is changed, and the hub is not
sent a ``hello`` (that would close the running booth's own connection).

Exit 0 when the booth is ready (valid, enrolled, hub reachable or not
checked), 1 otherwise, so scripts can use it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import stat
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from kiosk.commandline import EXIT_OK, EXIT_PROBLEMS, Command
from kiosk.config import BoothConfig, load, read_credential
from kiosk.errors import ConfigError
from provisioning.enroll import certificate_sha256_at
from provisioning.initcmd import PROG, add_root
from provisioning.layout import Layout

HUB_TIMEOUT: Final = 5.0


def folder_size(path: Path) -> dict[str, Any]:
    """Bytes and files under ``path`` (links not followed); exists False when it is not there."""
    if not path.is_dir():
        return {"path": str(path), "exists": False, "bytes": 0, "files": 0}
    total = files = 0
    for folder, _dirs, names in os.walk(path):
        for name in names:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            total += info.st_size
            files += 1
    return {"path": str(path), "exists": True, "bytes": total, "files": files}


def _private(path: Path) -> bool:
    return not os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO)


async def hub_reachable(config: BoothConfig, timeout: float = HUB_TIMEOUT) -> dict[str, Any]:
    """Whether the hub answers HTTPS with the pinned certificate (any HTTP reply counts)."""
    parts = urlsplit(config.hub.url)
    url = urlunsplit(("https", parts.netloc, "/", "", ""))
    pin = aiohttp.Fingerprint(bytes.fromhex(config.hub.certificate_sha256))
    expected = config.hub.certificate_sha256
    try:
        got = await certificate_sha256_at(url, timeout)
        if got != expected:
            return {
                "reachable": False,
                "detail": f"certificate mismatch: expected {expected}, got {got}",
            }
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url, ssl=pin, allow_redirects=False) as reply,
        ):
            return {"reachable": True, "detail": f"answered HTTP {reply.status}"}
    except aiohttp.ServerFingerprintMismatch as exc:
        return {
            "reachable": False,
            "detail": f"certificate mismatch: expected {exc.expected.hex()}, got {exc.got.hex()}",
        }
    except (TimeoutError, aiohttp.ClientError, OSError, ssl.SSLError) as exc:
        return {"reachable": False, "detail": str(exc) or type(exc).__name__}


def gather(layout: Layout, *, check_hub: bool = True) -> dict[str, Any]:
    """Everything ``status`` reports, as plain data (what ``--json`` prints)."""
    report: dict[str, Any] = {"root": str(layout.root)}
    config: BoothConfig | None = None
    try:
        config = load(layout.config)
        report["config"] = {"path": str(layout.config), "valid": True, "problems": []}
        report["booth_id"] = config.booth.id
    except ConfigError as exc:
        report["config"] = {"path": str(layout.config), "valid": False, "problems": exc.problems}
        report["booth_id"] = None
    key = layout.identity_key
    identity: dict[str, Any] = {
        "key": str(key),
        "key_present": key.is_file(),
        "key_private": key.is_file() and _private(key),
        "credential": None,
        "credential_ok": False,
        "problem": None,
    }
    if config is not None:
        try:
            identity["credential_ok"] = read_credential(config.hub) is not None
            if config.hub.credential_file is not None:
                identity["credential"] = str(config.hub.credential_file)
            else:
                identity["problem"] = "hub.credential_file is not set"
        except ConfigError as exc:
            identity["credential"] = str(config.hub.credential_file)
            identity["problem"] = "; ".join(exc.problems)
    identity["enrolled"] = bool(
        identity["key_present"] and identity["key_private"] and identity["credential_ok"]
    )
    report["identity"] = identity
    hub: dict[str, Any] = {"url": None, "checked": False, "reachable": None, "detail": None}
    if config is not None:
        hub["url"] = config.hub.url
        if check_hub:
            hub.update(asyncio.run(hub_reachable(config)), checked=True)
    report["hub"] = hub
    release: dict[str, Any] = {"current": str(layout.current), "target": None, "version": None}
    if layout.current.is_symlink():
        target = Path(os.readlink(layout.current))
        release["target"] = str(target)
        release["version"] = target.name
        release["present"] = (layout.current.parent / target).is_dir()
    else:
        release["present"] = False
    report["release"] = release
    report["state"] = {
        "booth": folder_size(layout.state),
        "updater": folder_size(layout.update_state),
    }
    report["ready"] = bool(
        report["config"]["valid"] and identity["enrolled"] and hub["reachable"] is not False
    )
    return report


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return f"{n} bytes"  # pragma: no cover


def render(report: dict[str, Any]) -> list[str]:
    """The report as a technician reads it."""
    lines: list[str] = []
    config = report["config"]
    if config["valid"]:
        lines.append(f"Configuration: valid ({config['path']}), booth {report['booth_id']}")
    else:
        lines.append(f"Configuration: NOT VALID ({config['path']}); fix with `{PROG} init`:")
        lines += [f"    {p}" for p in config["problems"]]
    ident = report["identity"]
    if ident["enrolled"]:
        lines.append(f"Enrolled: yes (key {ident['key']}, credential {ident['credential']})")
    else:
        why = []
        if not ident["key_present"]:
            why.append("no booth key")
        elif not ident["key_private"]:
            why.append(f"the key {ident['key']} can be read by others (chmod 600)")
        if ident["problem"]:
            why.append(ident["problem"])
        elif not ident["credential_ok"]:
            why.append("no credential")
        lines.append(f"Enrolled: NO ({'; '.join(why)}); enroll with `{PROG} enroll`")
    hub = report["hub"]
    if hub["url"] is None:
        lines.append("Hub: unknown (no valid configuration)")
    elif not hub["checked"]:
        lines.append(f"Hub: {hub['url']} (not checked)")
    elif hub["reachable"]:
        lines.append(f"Hub: reachable, certificate matches ({hub['url']}, {hub['detail']})")
    else:
        lines.append(f"Hub: NOT REACHABLE ({hub['url']}: {hub['detail']})")
    release = report["release"]
    if release["version"] is None:
        lines.append(f"Release: none installed ({release['current']} missing); `{PROG} install`")
    else:
        missing = "" if release["present"] else " (its folder is missing!)"
        lines.append(f"Release: {release['version']} ({release['target']}){missing}")
    for name, folder in report["state"].items():
        if folder["exists"]:
            size = _size(folder["bytes"])
            lines.append(f"State ({name}): {size} in {folder['files']} files, {folder['path']}")
        else:
            lines.append(f"State ({name}): none ({folder['path']})")
    lines.append("Ready: yes" if report["ready"] else "Ready: NO")
    return lines


def _status_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--offline", action="store_true", help="do not try to reach the hub")
    add_root(parser)


def _status(args: argparse.Namespace) -> int:
    report = gather(Layout(args.root), check_hub=not args.offline)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print("\n".join(render(report)))
    return EXIT_OK if report["ready"] else EXIT_PROBLEMS


COMMAND: Final = Command(
    "status",
    "show this booth's state: configuration, enrollment, hub, release, state folders",
    _status_args,
    _status,
)
