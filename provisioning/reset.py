"""``kiosk-provision reset``: factory reset, for a booth moving to another site or owner.

Wiped: the booth's identity (its private key and hub credential), its
configuration, and its local state (everything in the booth service's state
folder, e.g. the alert outbox). Kept: the installed releases and ``current``
(the booth still runs, and asks to be set up again), the systemd units, and
the updater's own state, whose version floor stops an old release with known
flaws being installed after a reset.

It asks for confirmation (type ``reset``) unless ``--yes`` is given. Files
are unlinked; on an SD card nothing can promise the old blocks are
overwritten, so the hub's admin should also remove the booth's registration
(``clinic-hub remove-booth BOOTH_ID``), which stops the old credential working
and frees the id for the booth's next enrollment. An enrollment code a
technician bundle left unused is wiped with the configuration.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Final, TextIO

from kiosk.commandline import EXIT_OK, EXIT_PROBLEMS, Command, err
from provisioning.bundle import enrollment_code_path
from provisioning.initcmd import PROG, ProvisionError, add_root, read_raw
from provisioning.layout import Layout

CONFIRM_WORD: Final = "reset"


def _configured_credential(layout: Layout) -> Path | None:
    """``[hub] credential_file`` when it names a file under the root (never anything else)."""
    hub = read_raw(layout.config).get("hub")
    named = hub.get("credential_file") if isinstance(hub, dict) else None
    if not isinstance(named, str) or not named.startswith("/"):
        return None
    path = Path(named)
    root = layout.root.resolve()
    if path.resolve() != root and root in path.resolve().parents and path.is_file():
        return path
    return None


def doomed(layout: Layout) -> list[Path]:
    """What a reset removes that is there now: identity, configuration, then state."""
    out = [p for p in (layout.identity_key, layout.credential) if p.exists()]
    configured = _configured_credential(layout)
    if configured is not None and configured.exists() and configured not in out:
        out.append(configured)
    if layout.config.exists():
        out.append(layout.config)
    if enrollment_code_path(layout).exists():
        out.append(enrollment_code_path(layout))
    if layout.config_dir.is_dir():  # temporary files left by an interrupted write
        out += sorted(p for p in layout.config_dir.glob(".*.tmp") if p.is_file())
    if layout.state.is_dir():
        out += sorted(layout.state.iterdir())
    return out


def wipe(layout: Layout) -> list[Path]:
    """Remove everything :func:`doomed` lists; returns what was removed."""
    removed = []
    for path in doomed(layout):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ProvisionError(
                f"cannot remove {path} ({exc.strerror or exc}); run as root (sudo)"
            ) from None
        removed.append(path)
    return removed


def booth_id(layout: Layout) -> str | None:
    """``[booth] id`` as configured, read before the wipe so the message can name it."""
    booth = read_raw(layout.config).get("booth")
    named = booth.get("id") if isinstance(booth, dict) else None
    return named if isinstance(named, str) and named else None


def confirmed(answers: TextIO, out: TextIO) -> bool:
    out.write(f'Type "{CONFIRM_WORD}" to wipe this booth\'s identity, configuration and state: ')
    out.flush()
    return answers.readline().strip().lower() == CONFIRM_WORD


def _reset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_root(parser)


def _reset(args: argparse.Namespace) -> int:
    layout = Layout(args.root)
    targets = doomed(layout)
    old_id = booth_id(layout)
    if not targets:
        print("Nothing to wipe: this booth has no identity, configuration or state.")
        return EXIT_OK
    print("A factory reset removes:")
    for path in targets:
        print(f"    {path}")
    print(f"and keeps the installed releases ({layout.releases}).")
    if not args.yes and not confirmed(sys.stdin, sys.stdout):
        err(f"{PROG} reset: not confirmed; nothing was removed")
        return EXIT_PROBLEMS
    try:
        removed = wipe(layout)
    except ProvisionError as exc:
        err(f"{PROG} reset: {exc}; the reset is incomplete, run it again")
        return EXIT_PROBLEMS
    print(
        f"Removed {len(removed)} item(s). Ask the hub's admin to remove this booth's "
        f"registration (`clinic-hub remove-booth {old_id or 'BOOTH_ID'}`); set the booth up "
        f"again with `{PROG} init` and `{PROG} enroll`."
    )
    return EXIT_OK


COMMAND: Final = Command(
    "reset",
    "factory reset: wipe the booth's key, credential, configuration and state; keep releases",
    _reset_args,
    _reset,
)
