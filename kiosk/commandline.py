"""What every command-line tool of the project shares: subcommands, exit codes,
and the rule that a technician or an admin never sees a traceback.

``kiosk-provision`` and ``clinic-hub`` both build on :func:`run`: expected
problems print one line naming what to fix and exit 1, usage errors exit 2,
Ctrl-C exits 130, and anything unexpected is reported as a bug (exit 70) with
a hint to rerun with ``--debug``, which shows the traceback.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_BUG = 70  # EX_SOFTWARE
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


def err(line: str) -> None:
    print(line, file=sys.stderr)


@dataclass(frozen=True)
class Command:
    """One subcommand: how it reads its arguments and what it does."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def ask_hidden(prompt: str, what: str, flag: str, refuse: type[Exception]) -> str:
    """Read a secret without showing it; refuse (never echo it) when there is no terminal.

    ``what`` names the secret ("password", "PIN") and ``flag`` the option that
    reads it from standard input instead, for the refusal's advice.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            return getpass.getpass(prompt)
        except getpass.GetPassWarning:
            raise refuse(
                f"no terminal to type the {what} into without showing it; "
                f"run this in a terminal, or pipe the {what} in with {flag}"
            ) from None
        except EOFError:
            raise refuse(f"no {what} given") from None


def add_commands(
    parser: argparse.ArgumentParser,
    commands: Sequence[Command],
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """A subparser per command, plus ``--debug`` on the tool itself."""
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show a traceback if this tool itself fails (for a bug report)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        if extra is not None:
            extra(p)
        p.set_defaults(run=command.run)


def exit_code(exc: SystemExit) -> int:
    """argparse exits for --help and usage errors; turn that into a return value."""
    if exc.code is None:
        return EXIT_OK
    if isinstance(exc.code, int):
        return exc.code
    err(str(exc.code))
    return EXIT_PROBLEMS


def silence_stdout() -> None:
    """The reader of our output went away (``| head``); don't complain at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run(
    prog: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    *,
    expected: tuple[type[Exception], ...],
    prepare: Callable[[argparse.Namespace], None] | None = None,
    name_command: bool = True,
) -> int:
    """Parse ``argv``, run the chosen subcommand, and turn every outcome into an exit code.

    ``expected`` are the errors whose message is already written for the
    reader; they are printed after the tool's name (and the subcommand's, with
    ``name_command``).
    """
    debug = False
    where = prog
    try:
        args = parser.parse_args(argv)
        debug = args.debug
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        if name_command:
            where = f"{prog} {args.command}"
        if prepare is not None:
            prepare(args)
        code: int = args.run(args)
        return code
    except SystemExit as exc:
        return exit_code(exc)
    except KeyboardInterrupt:
        err(f"{prog}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        silence_stdout()
        return EXIT_PROBLEMS
    except expected as exc:
        if debug:
            raise
        err(f"{where}: {exc}")
        return EXIT_PROBLEMS
    except Exception as exc:
        if debug:
            raise
        err(
            f"{prog}: internal error ({type(exc).__name__}: {exc}); this is a bug in "
            f"{prog}, please report it with the output of the same command run with --debug"
        )
        return EXIT_BUG
