"""Command lines: ``kiosk-provision release ...`` (maintainer) and ``python -m provisioning.update``
(the booth's updater, started by ``telehealth-kiosk-update.service``).

Every expected problem is an :class:`~provisioning.update.UpdateError` (a
``KioskError``), which the shared :func:`kiosk.commandline.run` prints as one
line naming what to fix.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from kiosk.commandline import EXIT_OK, EXIT_PROBLEMS, Command, add_commands, run
from kiosk.config import load, problem_report
from kiosk.errors import ConfigError, KioskError
from provisioning.layout import Layout
from provisioning.update import UpdateError
from provisioning.update.publish import ROLES, Repository, bundle_from_wheels, keygen
from provisioning.update.updater import Result, Settings, UpdateRun, read_state

# ------------------------------------------------------------------ release


def _release_args(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def keys(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--keys",
            type=Path,
            required=True,
            metavar="DIR",
            help="the folder holding the role keys (root.pem, targets.pem, ...)",
        )

    def repo(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--repo",
            type=Path,
            required=True,
            metavar="DIR",
            help="the repository folder (metadata/ and targets/)",
        )

    p = sub.add_parser("keygen", help="make Ed25519 keys for root, targets, snapshot, timestamp")
    p.add_argument("keys", type=Path, metavar="DIR", help="an empty folder for the key files")

    p = sub.add_parser("init-repo", help="make a new repository signed by the keys")
    repo(p)
    keys(p)
    p.add_argument(
        "--url", required=True, help="the http(s) address the repository folder will be served at"
    )
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="ROLE=N",
        help="signatures a role needs (default 1; give the role N key files)",
    )

    p = sub.add_parser("bundle", help="pack a folder of wheels into a release bundle")
    p.add_argument(
        "wheels",
        type=Path,
        metavar="WHEELS_DIR",
        help="the project's wheel and every dependency's, for the booth's platform",
    )
    p.add_argument("--version", required=True, help='the release version, such as "1.4.0"')
    repo(p)
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.tar")

    p = sub.add_parser("add", help="publish a bundle and point a channel at it")
    p.add_argument("bundle", type=Path, metavar="BUNDLE")
    repo(p)
    keys(p)
    p.add_argument("--channel", default="stable", help="the channel to point (default stable)")
    p.add_argument(
        "--allow-older",
        action="store_true",
        help="point the channel at an older version (updated booths refuse it)",
    )

    p = sub.add_parser("timestamp", help="re-sign timestamp.json (run at least daily)")
    repo(p)
    keys(p)

    p = sub.add_parser("rotate", help="replace one role's key (needs the offline root key)")
    p.add_argument("role", choices=ROLES)
    repo(p)
    keys(p)


def _thresholds(values: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        role, _, number = value.partition("=")
        if role not in ROLES or not number.isdigit():
            raise UpdateError(
                f"--threshold: must be ROLE=N with ROLE one of {ROLES}, not {value!r}"
            )
        out[role] = int(number)
    return out


def _release(args: argparse.Namespace) -> int:
    """The maintainer's signing and publishing steps (docs/updates.md)."""
    if args.action == "keygen":
        for path in keygen(args.keys):
            print(path)
        print(f"Keep {args.keys}/root.pem offline; see docs/updates.md.", file=sys.stderr)
        return EXIT_OK
    repo = Repository(args.repo)
    if args.action == "init-repo":
        root = repo.init(args.keys, args.url, _thresholds(args.threshold))
        print(f"{args.repo}: repository made (root version {root.signed.version})")
    elif args.action == "bundle":
        _exists(args.wheels)
        print(bundle_from_wheels(repo, args.wheels, args.version, args.output))
    elif args.action == "add":
        _exists(args.bundle)
        version = repo.add(args.keys, args.bundle, args.channel, allow_older=args.allow_older)
        print(f"{version} published on channel {args.channel}")
    elif args.action == "timestamp":
        ts = repo.refresh_timestamp(args.keys)
        print(
            f"timestamp version {ts.signed.version}, "
            f"valid until {ts.signed.expires:%Y-%m-%d %H:%M} UTC"
        )
    elif args.action == "rotate":
        new = repo.rotate(args.keys, args.role)
        print(f"{args.role} key replaced: {new} (root version {repo.root().signed.version})")
    return EXIT_OK


def _exists(path: Path) -> None:
    if not path.exists():
        raise UpdateError(f"{path}: no such file or folder")


COMMAND = Command(
    "release",
    "make keys, a signed update repository and release bundles, and publish them",
    _release_args,
    _release,
)


# ------------------------------------------------------------------ updater


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        help="the booth's root folder (default /; tests use a temporary one)",
    )


def _run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the booth file (default ROOT/etc/telehealth-kiosk/booth.toml)",
    )
    parser.add_argument(
        "--repository",
        default=None,
        metavar="URL",
        help="the repository's base URL (default: the one the release shipped)",
    )
    parser.add_argument(
        "--restart-command",
        default=None,
        metavar="CMD",
        help='how to restart the booth (default "systemctl restart telehealth-kiosk.service")',
    )
    parser.add_argument(
        "--ca-file",
        type=Path,
        default=None,
        metavar="PEM",
        help="trust only this certificate for the repository's https (e.g. clinic-hub --dev's)",
    )
    parser.add_argument(
        "--health-deadline",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a new release has to report healthy (default 120)",
    )


def _run(args: argparse.Namespace) -> int:
    """One update run; exit 0 unless updates are impossible (then 1, and state.json says why)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    layout = Layout(args.root)
    config_path = args.config or layout.config
    try:
        cfg = load(config_path)
    except ConfigError as exc:
        for line in problem_report(exc):
            print(line, file=sys.stderr)
        return EXIT_PROBLEMS
    overrides: dict[str, object] = {}
    if args.repository:
        overrides["repository"] = args.repository
    if args.restart_command:
        overrides["restart_command"] = tuple(shlex.split(args.restart_command))
    if args.ca_file is not None:
        overrides["ca_file"] = args.ca_file
    if args.health_deadline is not None:
        overrides["health_deadline_s"] = args.health_deadline
    outcome = UpdateRun(layout, Settings.from_config(cfg, **overrides)).run()
    print(f"{outcome.result}: {outcome.message}")
    bad = {Result.FAILED, Result.CLOCK_BEHIND, Result.ROLLED_BACK}
    return EXIT_PROBLEMS if outcome.result in bad else EXIT_OK


def _status(args: argparse.Namespace) -> int:
    """Print state.json; exit 1 when the update alert is raised."""
    state = read_state(Layout(args.root))
    print(json.dumps(asdict(state), indent=1, sort_keys=True))
    return EXIT_PROBLEMS if state.alert else EXIT_OK


def _run_all_args(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    _run_args(parser)


UPDATER_COMMANDS = (
    Command("run", "check for, install and switch to a new signed release", _run_all_args, _run),
    Command(
        "status", "show the updater's state (exit 1 when its alert is raised)", _common, _status
    ),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="telehealth-kiosk-update", description="The booth's signed automatic updates."
    )
    add_commands(parser, UPDATER_COMMANDS)
    return run("telehealth-kiosk-update", parser, argv, expected=(KioskError,))
