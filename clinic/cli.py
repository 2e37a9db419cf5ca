"""``clinic-hub``: set up and look after the clinic hub's database from a shell.

Subcommands: ``add-clinician``, ``add-booth``, ``remove-booth``, ``enroll-code``,
``add-appointment`` and ``alerts``. Each is a :class:`Command`: a name, a help
line, a function that adds its arguments and a function that runs it and
returns the exit code. The hub server (``clinic-hub serve``, ``--dev`` on a
laptop) is one more entry in :data:`COMMANDS`, added the same way; it opens
the database with :func:`open_store` like the others.

The database is ``--db PATH`` (before or after the subcommand), else
``$CLINIC_HUB_DB``, else :data:`DEFAULT_DB`.

:func:`main` is the one place where exceptions become exit codes, so whoever
runs it sees what was wrong and how to fix it, never a traceback (``--debug``
shows one, for a bug report). Exit codes: 0 all well; 1 refused (the reason
on stderr); 2 wrong usage; 70 a bug in this tool; 130 interrupted (Ctrl-C).

Secrets are printed once, alone on stdout, so they can be piped; what to do
with them goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from clinic.store import (
    APPOINTMENT_SECONDS,
    ENROLLMENT_SECONDS,
    PASSWORD_MIN_CHARS,
    DatabaseError,
    NotFoundError,
    Store,
    StoreError,
    appointment_code_problem,
    booth_id_problem,
    password_problem,
    username_problem,
)
from clinic.turn import MIN_SECRET_BYTES, TurnConfig, TurnConfigError
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

PROG = "clinic-hub"
DEFAULT_DB = Path("/var/lib/clinic-hub/hub.sqlite3")
DB_ENV = "CLINIC_HUB_DB"
MAX_VALID_HOURS = 90 * 24

EXIT_REFUSED = EXIT_PROBLEMS

StoreFactory = Callable[[Path], Store]
"""How a command opens the database; tests pass one with a cheap scrypt cost."""


class RefusedError(Exception):
    """The command cannot go ahead; the message says why and what to do instead."""


_err = err


def _when(timestamp: float) -> str:
    """A time as the hub's staff read it: local, to the second, with the zone."""
    try:
        return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    except (OverflowError, OSError, ValueError):  # a booth clock at the calendar's very edge
        return "(a time beyond the calendar)"


def db_path(args: argparse.Namespace) -> tuple[Path, str]:
    """The database to use, and where that path came from when it was not typed (or "")."""
    if args.db is not None:
        return args.db, ""
    from_env = os.environ.get(DB_ENV, "")
    if from_env:
        return Path(from_env), f" (the path is from ${DB_ENV})"
    return DEFAULT_DB, f" (the default path; choose another with --db PATH or ${DB_ENV})"


def open_store(args: argparse.Namespace) -> Store:
    """Open the chosen database; if it cannot be, say where a path not typed came from."""
    path, note = db_path(args)
    factory: StoreFactory = args.store_factory
    try:
        return factory(path)
    except DatabaseError as exc:
        raise type(exc)(f"{exc}{note}") from None


# ------------------------------------------------------------- add-clinician


def _ask(prompt: str) -> str:
    return ask_hidden(prompt, "password", "--password-stdin", RefusedError)


def _read_password(username: str, from_stdin: bool) -> str:
    if from_stdin:
        try:
            password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError:
            raise RefusedError("a password must be valid text") from None
        if not password:
            raise RefusedError("no password on standard input")
    else:
        password = _ask(f"Password for {username} (at least {PASSWORD_MIN_CHARS} characters): ")
    problem = password_problem(password)
    if problem is not None:
        raise RefusedError(problem)
    if not from_stdin and _ask("The same password again: ") != password:
        raise RefusedError("the two passwords differ")
    return password


def _add_clinician_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("username", metavar="USERNAME", help='what they log in as, e.g. "a.rivera"')
    parser.add_argument(
        "--name", help='the name residents and staff see, e.g. "Dr. Ana Rivera" (default: USERNAME)'
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of asking twice",
    )


def _add_clinician(args: argparse.Namespace) -> int:
    """Add a clinician account; the password is asked for, never taken as an argument."""
    problem = username_problem(args.username)
    if problem is not None:
        raise RefusedError(problem)
    with open_store(args) as store:
        if store.clinician(args.username) is not None:  # before anyone types a password
            raise RefusedError(
                f'there is already a clinician "{args.username}"; choose another username'
            )
        try:
            password = _read_password(args.username, args.password_stdin)
        except RefusedError as exc:
            raise RefusedError(f"{exc}; nobody was added") from None
        clinician = store.add_clinician(args.username, password, args.name)
    print(f'Added clinician "{clinician.username}" ({clinician.display_name}).')
    return EXIT_OK


# ----------------------------------------------------------------- add-booth


def _add_booth_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "booth_id",
        metavar="BOOTH_ID",
        help='the id in the booth\'s configuration ([booth] id), e.g. "riverside-1"',
    )
    parser.add_argument("--name", required=True, help='e.g. "Riverside Library, Booth 1"')
    parser.add_argument("--site", required=True, help='e.g. "Riverside Public Library"')
    parser.add_argument("--address", required=True, help="the site's street address")
    parser.add_argument("--room", required=True, help='where in the building, e.g. "Room 104"')


def _add_booth(args: argparse.Namespace) -> int:
    """Register a booth and print its credential, the one time it can be seen."""
    problem = booth_id_problem(args.booth_id)
    if problem is not None:
        raise RefusedError(problem)
    with open_store(args) as store:
        token = store.add_booth(
            args.booth_id, name=args.name, site=args.site, address=args.address, room=args.room
        )
    print(token)
    _err(
        f"That is booth {args.booth_id}'s credential: put it in the booth's configuration now. "
        "It will not be shown again (the hub keeps only a hash of it)."
    )
    return EXIT_OK


# -------------------------------------------------------------- remove-booth


def _remove_booth_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("booth_id", metavar="BOOTH_ID", help="the booth to forget")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _remove_booth(args: argparse.Namespace) -> int:
    """Forget a booth (registration, credential, key) so its id can be enrolled again."""
    with open_store(args) as store:
        booth = store.booth(args.booth_id)
        if booth is None:
            ids = [b.booth_id for b in store.all_booths()]
            known = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "") if ids else "none"
            raise RefusedError(
                f'there is no booth "{args.booth_id}" (registered: {known}); check the id'
            )
        unacked, acked = store.booth_alert_counts(booth.booth_id)
        if unacked:
            raise RefusedError(
                f'booth "{booth.booth_id}" has {unacked} alert(s) not yet acknowledged; '
                "acknowledge them in the clinician console first (`clinic-hub alerts` lists "
                "them); nothing was removed"
            )
        if not args.yes:
            what = "its credential, its enrolled key and its " + (
                f"{acked} acknowledged alert(s)" if acked else "code attempts"
            )
            sys.stderr.write(
                f'Remove booth "{booth.booth_id}" ({booth.name}, {booth.site}, {booth.room}), '
                f"{what}? Its credential stops working.\n"
                f'Type the booth id "{booth.booth_id}" to confirm: '
            )
            sys.stderr.flush()
            if sys.stdin.readline().strip() != booth.booth_id:
                raise RefusedError("not confirmed; nothing was removed")
        deleted = store.remove_booth(booth.booth_id)
    extra = f" and {deleted} acknowledged alert(s)" if deleted else ""
    print(f'Removed booth "{booth.booth_id}"{extra}.')
    _err(
        f"Its credential no longer opens a connection. To set the booth up again, give the "
        f"technician a code from `{PROG} enroll-code` for `kiosk-provision enroll`."
    )
    return EXIT_OK


# --------------------------------------------------------------- enroll-code


def _enroll_code(args: argparse.Namespace) -> int:
    """Print a one-time code that lets a technician enroll one booth."""
    now = args.clock()
    with open_store(args) as store:
        code = store.new_enrollment_code(now, lifetime=ENROLLMENT_SECONDS)
    print(code)
    hours = round(ENROLLMENT_SECONDS / 3600)
    _err(
        f"One-time enrollment code, valid for {hours} hours (until "
        f"{_when(now + ENROLLMENT_SECONDS)}): type it into `kiosk-provision enroll` on the booth."
    )
    return EXIT_OK


# ----------------------------------------------------------- add-appointment


def _hours(text: str) -> float:
    """argparse type for --valid-hours: a number of hours in (0, MAX_VALID_HOURS]."""
    try:
        hours = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of hours, not {text!r}") from None
    if not 0 < hours <= MAX_VALID_HOURS:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 and at most {MAX_VALID_HOURS} hours, not {text}"
        )
    return hours


def _add_appointment_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("code", metavar="CODE", help="the digits the resident will type")
    parser.add_argument(
        "--clinician", required=True, metavar="USERNAME", help="who the resident is routed to"
    )
    parser.add_argument(
        "--valid-hours",
        type=_hours,
        default=APPOINTMENT_SECONDS / 3600,
        metavar="HOURS",
        help=f"how long the code works (default: {APPOINTMENT_SECONDS / 3600:g})",
    )


def _add_appointment(args: argparse.Namespace) -> int:
    """Route residents who type CODE at any booth to a clinician, until it expires."""
    problem = appointment_code_problem(args.code)
    if problem is not None:
        raise RefusedError(problem)
    now = args.clock()
    with open_store(args) as store:
        try:
            appointment = store.add_appointment(
                args.code, args.clinician, now, lifetime=args.valid_hours * 3600
            )
        except NotFoundError as exc:
            raise RefusedError(
                f"{exc}; add them first with `{PROG} add-clinician {args.clinician}`"
            ) from None
    who = appointment.clinician
    print(
        f'Appointment code added for {who.display_name} ("{who.username}"), '
        f"valid until {_when(appointment.expires_at)}."
    )
    return EXIT_OK


# -------------------------------------------------------------------- alerts


def _alerts(args: argparse.Namespace) -> int:
    """List the alerts no staff member has acknowledged yet, oldest first."""
    with open_store(args) as store:
        alerts = store.unacked_alerts()
    if not alerts:
        print("No unacknowledged alerts.")
        return EXIT_OK
    print(f"{len(alerts)} unacknowledged alert{'s' if len(alerts) != 1 else ''}, oldest first:")
    for alert in alerts:
        booth = alert.booth
        print(
            f"{alert.kind.upper()}  booth {booth.booth_id}  raised {_when(alert.raised_at)}  "
            f"received {_when(alert.received_at)}  (alert {alert.alert_id})"
        )
        print(f"    {booth.name}: {booth.room}, {booth.site}, {booth.address}")
    return EXIT_OK


# --------------------------------------------------------------------- serve


def _port(text: str) -> int:
    """argparse type for --port: a TCP port 1-65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, not {text!r}") from None
    if not 1 <= port <= 65_535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, not {text}")
    return port


def _seconds(text: str) -> float:
    """argparse type for --call-grace: seconds above 0, at most an hour."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 and at most 3600 seconds, not {text}"
        )
    return seconds


def _serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    _updates_args(parser)
    parser.add_argument(
        "--port", type=_port, default=8443, help="port to listen on (default: 8443)"
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        help="use (and make, once) a self-signed certificate for localhost, beside the database",
    )
    parser.add_argument("--cert", type=Path, metavar="PEM", help="the hub's TLS certificate chain")
    parser.add_argument("--key", type=Path, metavar="PEM", help="the certificate's private key")
    parser.add_argument(
        "--turn-url",
        action="append",
        default=[],
        metavar="URL",
        help='a TURN server for calls, e.g. "turn:turn.example.org:3478?transport=udp" '
        "(repeat for more addresses of the same server; needs --turn-secret-file)",
    )
    parser.add_argument(
        "--turn-secret-file",
        type=Path,
        metavar="PATH",
        help="a file holding the secret shared with coturn (its static-auth-secret)",
    )
    parser.add_argument(
        "--call-grace",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="how long a call waits for a booth whose connection dropped (default: 60)",
    )


def _updates_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--updates",
        type=Path,
        metavar="DIR",
        default=None,
        help="with --dev: also serve the update repository DIR (its metadata/ and targets/) "
        "under /updates/, for booths on this machine (docs/updates.md)",
    )


def turn_config(urls: Sequence[str], secret_file: Path | None) -> TurnConfig | None:
    """The TURN settings from --turn-url and --turn-secret-file, or None when neither is given."""
    if not urls and secret_file is None:
        return None
    if not urls:
        raise RefusedError(
            "--turn-secret-file needs at least one --turn-url (where coturn listens)"
        )
    if secret_file is None:
        raise RefusedError(
            "--turn-url needs --turn-secret-file PATH, the file holding the secret shared "
            "with coturn (its static-auth-secret)"
        )
    try:
        secret = secret_file.read_bytes().strip()
    except FileNotFoundError:
        raise RefusedError(f"the TURN secret file {secret_file} does not exist") from None
    except OSError as exc:
        raise RefusedError(
            f"cannot read the TURN secret file {secret_file}: {exc.strerror or exc}"
        ) from None
    if len(secret) < MIN_SECRET_BYTES:
        raise RefusedError(
            f"the TURN secret in {secret_file} is {len(secret)} bytes long; it must be at "
            f"least {MIN_SECRET_BYTES} (use the same long random static-auth-secret as coturn)"
        )
    try:
        return TurnConfig(urls=tuple(urls), secret=secret)
    except TurnConfigError as exc:
        detail = str(exc).partition(": ")[2] or str(exc)
        raise RefusedError(f"--turn-url: {detail}") from None


def console_address(host: str, port: int) -> str:
    """Where a clinician on this machine opens the console (a wildcard means any address)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"https://{shown}:{port}/"


def _serve(args: argparse.Namespace) -> int:
    """Run the hub until interrupted."""
    import ssl

    from aiohttp import web

    from clinic.server import (
        CALL_GRACE,
        UPDATE_FOLDERS,
        add_update_routes,
        certificate_sha256,
        create_app,
        dev_certificate,
    )

    turn = turn_config(args.turn_url, args.turn_secret_file)
    updates: Path | None = getattr(args, "updates", None)
    if updates is not None:
        if not args.dev:
            raise RefusedError(
                "--updates is for --dev only; a clinic serves its update repository from "
                "any static web server (docs/updates.md)"
            )
        missing = [name for name in UPDATE_FOLDERS if not (updates / name).is_dir()]
        if missing:
            raise RefusedError(
                f"--updates {updates}: no {' or '.join(missing)}/ folder; give the folder made "
                "by `kiosk-provision release init-repo --repo DIR`"
            )
    if args.dev:
        if args.cert is not None or args.key is not None:
            raise RefusedError("--dev makes its own certificate; leave out --cert and --key")
        cert, key, fingerprint = dev_certificate(db_path(args)[0].resolve().parent / "dev-tls")
    else:
        if args.cert is None or args.key is None:
            raise RefusedError(
                "serving needs the hub's TLS certificate: give --cert PEM and --key PEM "
                "(or --dev on a laptop for a self-signed one)"
            )
        cert, key = args.cert, args.key
        try:
            fingerprint = certificate_sha256(cert.read_bytes())
        except (OSError, ValueError) as exc:
            raise RefusedError(f"cannot read the certificate {cert}: {exc}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise RefusedError(f"cannot use the certificate {cert} with the key {key}: {exc}") from None
    grace = CALL_GRACE if args.call_grace is None else args.call_grace
    with open_store(args) as store:
        app = create_app(store, turn=turn, clock=args.clock, call_grace=grace)
        if updates is not None:
            add_update_routes(app, updates)
            print(f"Update repository {updates} at https://{args.host}:{args.port}/updates/")
        print(f"Booths connect to wss://{args.host}:{args.port}/booth; in each booth's [hub]:")
        print(f'certificate_sha256 = "{fingerprint}"')
        print(f"Clinicians sign in at {console_address(args.host, args.port)}")
        sys.stdout.flush()
        if turn is None:
            _err(
                "No TURN server (--turn-url): calls work only where booth and browser can "
                "reach each other directly."
            )
        web.run_app(app, host=args.host, port=args.port, ssl_context=context, print=None)
    return EXIT_OK


# ---------------------------------------------------------------- registry


def _no_args(parser: argparse.ArgumentParser) -> None:
    del parser


COMMANDS: tuple[Command, ...] = (
    Command(
        "add-clinician",
        "add a clinician's account (asks for the password twice)",
        _add_clinician_args,
        _add_clinician,
    ),
    Command(
        "add-booth",
        "register a booth and print its credential, once",
        _add_booth_args,
        _add_booth,
    ),
    Command(
        "remove-booth",
        "forget a booth (registration, credential, enrolled key) so its id can enroll again",
        _remove_booth_args,
        _remove_booth,
    ),
    Command(
        "enroll-code",
        f"print a one-time booth enrollment code, valid {round(ENROLLMENT_SECONDS / 3600)} hours",
        _no_args,
        _enroll_code,
    ),
    Command(
        "add-appointment",
        "route residents who type an appointment code to a clinician",
        _add_appointment_args,
        _add_appointment,
    ),
    Command("alerts", "list staff alerts not yet acknowledged", _no_args, _alerts),
    Command(
        "serve",
        "run the hub server over HTTPS (--dev: a self-signed certificate for a laptop)",
        _serve_args,
        _serve,
    ),
)


# ---------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    db_help = f"the hub's database (default: ${DB_ENV}, else {DEFAULT_DB})"
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Set up and look after a telehealth clinic hub.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--db", type=Path, metavar="PATH", help=db_help)

    def db_after_command(p: argparse.ArgumentParser) -> None:
        # Also after the subcommand; SUPPRESS keeps a value given before it.
        p.add_argument("--db", type=Path, metavar="PATH", default=argparse.SUPPRESS, help=db_help)

    add_commands(parser, COMMANDS, db_after_command)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    store_factory: StoreFactory = Store,
    clock: Callable[[], float] = time.time,
) -> int:
    """Run one subcommand and return its exit code (the console script exits with it).

    ``store_factory`` and ``clock`` are for tests: a cheap scrypt cost, a frozen time.
    """

    def prepare(args: argparse.Namespace) -> None:
        args.store_factory = store_factory
        args.clock = clock

    return run(PROG, build_parser(), argv, expected=(RefusedError, StoreError), prepare=prepare)


if __name__ == "__main__":
    sys.exit(main())
