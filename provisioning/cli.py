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
import getpass
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kiosk import __version__
from kiosk.config import DEFAULT_PATH, load, problem_report
from kiosk.errors import ConfigError, KioskError
from kiosk.technician import PIN_MAX_DIGITS, PIN_MIN_DIGITS, hash_pin, pin_is_guessable, pin_problem

PROG = "kiosk-provision"
EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_BUG = 70  # EX_SOFTWARE
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


def _err(line: str) -> None:
    print(line, file=sys.stderr)


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
        load(args.path)
    except ConfigError as exc:
        for line in problem_report(exc):
            _err(line)
        return EXIT_PROBLEMS
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
    """Read a PIN without showing it; refuse rather than echo it when there is no terminal."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            return getpass.getpass(prompt)
        except getpass.GetPassWarning:
            raise _PinRefusedError(
                "no terminal to type the PIN into without showing it; "
                "run this in a terminal, or pipe the PIN in with --stdin"
            ) from None
        except EOFError:
            raise _PinRefusedError("no PIN given") from None


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


@dataclass(frozen=True)
class Command:
    """One subcommand: how it reads its arguments and what it does."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


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
)


# ---------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Set up, check and look after a telehealth booth.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show a traceback if this tool itself fails (for a bug report)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def _exit_code(exc: SystemExit) -> int:
    """argparse exits for --help and usage errors; turn that into a return value."""
    if exc.code is None:
        return EXIT_OK
    if isinstance(exc.code, int):
        return exc.code
    _err(str(exc.code))
    return EXIT_PROBLEMS


def _silence_stdout() -> None:
    """The reader of our output went away (``| head``); don't complain at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand and return its exit code (the console script exits with it)."""
    parser = build_parser()
    debug = False
    try:
        args = parser.parse_args(argv)
        debug = args.debug
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        code: int = args.run(args)
        return code
    except SystemExit as exc:
        return _exit_code(exc)
    except KeyboardInterrupt:
        _err(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_PROBLEMS
    except KioskError as exc:
        if debug:
            raise
        _err(f"{PROG}: {exc}")
        return EXIT_PROBLEMS
    except Exception as exc:
        if debug:
            raise
        _err(
            f"{PROG}: internal error ({type(exc).__name__}: {exc}); this is a bug in "
            f"{PROG}, please report it with the output of the same command run with --debug"
        )
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
