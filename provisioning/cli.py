"""``kiosk-provision``: the technician's tool for setting up and checking a booth.

Subcommands: ``check`` (validate a booth file) and ``hash-pin`` (make the
technician PIN's ``pin_hash`` line). Each is a :class:`Command`: a name, a
help line, a function that adds its arguments and a function that runs it and
returns the exit code.
Later subcommands (install, init, enroll, selftest, status, reset) are added
to :data:`COMMANDS` the same way.

:func:`main` is the one place where exceptions become exit codes, so a
technician sees what was wrong and how to fix it, never a traceback
(``--debug`` shows one, for a bug report).

Exit codes: 0 all well; 1 problems found (listed on stderr); 2 wrong usage;
70 a bug in this tool; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kiosk import __version__
from kiosk.commandline import (
    EXIT_OK,
    EXIT_PROBLEMS,
    Command,
    add_commands,
    ask_hidden,
    err,
    run,
)
from kiosk.config import DEFAULT_PATH, load, problem_report, read_credential
from kiosk.errors import ConfigError, KioskError
from kiosk.technician import PIN_MAX_DIGITS, PIN_MIN_DIGITS, hash_pin, pin_is_guessable, pin_problem
from provisioning import bundle, initcmd, network, selftest
from provisioning import enroll as enroll_command
from provisioning import install as install_command
from provisioning import reset as reset_command
from provisioning import status as status_command
from provisioning.update import cli as release_command

PROG = "kiosk-provision"
_err = err


# ------------------------------------------------------------------ commands


def _check_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=DEFAULT_PATH,
        metavar="PATH",
        help=f"the booth configuration to check (default: {DEFAULT_PATH})",
    )


def _check(args: argparse.Namespace) -> int:
    """Validate a booth file the way the booth will, before it is ever started with it."""
    try:
        cfg = load(args.path)
        credential = read_credential(cfg.hub)
    except ConfigError as exc:
        for line in problem_report(exc):
            _err(line)
        return EXIT_PROBLEMS
    if credential is None:
        print(
            "OK, but hub.credential_file is not set: this booth cannot reach a clinician "
            "(fine for a demo; a real booth needs the credential `clinic-hub add-booth` printed)"
        )
        return EXIT_OK
    print("OK")
    return EXIT_OK


class _PinRefusedError(Exception):
    """The PIN could not be read or is not a usable PIN; the message says why."""


def _hash_pin_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stdin",
        action="store_true",
        help="read the PIN from the first line of standard input instead of asking twice",
    )


def _ask_pin(prompt: str) -> str:
    return ask_hidden(prompt, "PIN", "--stdin", _PinRefusedError)


def _read_pin(from_stdin: bool) -> str:
    if from_stdin:
        try:
            pin = sys.stdin.readline().strip()
        except UnicodeDecodeError:
            raise _PinRefusedError("a PIN must be digits 0-9 only") from None
        if not pin:
            raise _PinRefusedError("no PIN on standard input")
        return pin
    digits = f"{PIN_MIN_DIGITS}-{PIN_MAX_DIGITS} digits"
    pin = _ask_pin(f"New technician PIN ({digits}): ").strip()
    problem = pin_problem(pin)
    if problem is not None:
        raise _PinRefusedError(problem)
    if _ask_pin("The same PIN again: ").strip() != pin:
        raise _PinRefusedError("the two PINs differ")
    return pin


def _hash_pin(args: argparse.Namespace) -> int:
    """Print the ``pin_hash`` line for a new technician PIN; the PIN itself is never shown."""
    try:
        pin = _read_pin(args.stdin)
        problem = pin_problem(pin)
        if problem is not None:
            raise _PinRefusedError(problem)
    except _PinRefusedError as exc:
        _err(f"{PROG} hash-pin: {exc}; nothing was printed")
        return EXIT_PROBLEMS
    if pin_is_guessable(pin):
        _err(
            f"{PROG} hash-pin: warning: this PIN is among the first a stranger would try; "
            "a less obvious one is safer"
        )
    print(f'pin_hash = "{hash_pin(pin)}"')
    _err(f"Paste that line into the [technician] section of {DEFAULT_PATH}.")
    return EXIT_OK


COMMANDS: tuple[Command, ...] = (
    Command(
        "check",
        "check a booth configuration file; prints OK, or every problem with its key",
        _check_args,
        _check,
    ),
    Command(
        "hash-pin",
        "make the technician PIN's pin_hash line for the booth file "
        f"(asks for a PIN of {PIN_MIN_DIGITS}-{PIN_MAX_DIGITS} digits twice)",
        _hash_pin_args,
        _hash_pin,
    ),
    Command(
        "selftest",
        "check the booth's camera, microphone, speaker, door, button, lights, hub, TURN "
        "server, clock, disk, power and temperature; non-zero exit if anything fails",
        selftest.add_arguments,
        selftest.command,
    ),
    Command(
        "network",
        "Wi-Fi and wired settings through NetworkManager, and a report of what works",
        network.add_arguments,
        network.command,
    ),
    Command(
        "bundle",
        "USB provisioning bundles signed by the fleet's key: keygen, make, verify, apply, "
        "stage, apply-staged",
        bundle.add_arguments,
        bundle.command,
    ),
    Command(
        "install",
        "install the booth onto this Raspberry Pi (or into --root DIR): kiosk user, release, "
        "units; run again to repair; --dry-run shows what would change",
        install_command.add_arguments,
        install_command.run,
    ),
    initcmd.COMMAND,
    enroll_command.COMMAND,
    status_command.COMMAND,
    reset_command.COMMAND,
    release_command.COMMAND,
)


# ---------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Set up, check and look after a telehealth booth.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_commands(parser, COMMANDS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand and return its exit code (the console script exits with it)."""
    return run(PROG, build_parser(), argv, expected=(KioskError,), name_command=False)


if __name__ == "__main__":
    sys.exit(main())
