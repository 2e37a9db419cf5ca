"""What the hub must not forget across a restart, kept in one SQLite file.

Clinician accounts, booths and their credentials, enrollment codes,
appointment codes, the code-guessing throttle and staff alerts not yet
acknowledged all live here; calls, queues and who is online do not (they are
rebuilt when booths and clinicians reconnect).

Durability: the file is in WAL mode with ``synchronous=FULL``, so a write
has reached the disk when its method returns, and every write is one
transaction: a crash or power cut keeps whole writes or nothing. An alert a
booth was told is stored is never lost.

Secrets are kept only as hashes, so a copied database gives no way in:
passwords as scrypt (memory-hard, per-user salt); session tokens and booth
credentials (32 random bytes) and enrollment codes (60 random bits) as
SHA-256, enough for values too many to guess; appointment codes as
HMAC-SHA256 under a per-hub key. The key is in the database too, so it
stops the codes being read off the file or looked up in a precomputed
table; it cannot stop someone with the whole file trying every short code,
which is why codes expire.

Time is always passed in (``now``, seconds since the Unix epoch, as
``time.time()`` gives), never read here, so tests freeze it.

Every method blocks (disk I/O, scrypt): the hub calls them through
``asyncio.to_thread``, never on the event loop. A :class:`Store` may be used
from any thread; its calls take turns on one connection, and scrypt runs
outside that turn so a login never holds up an alert.

Schema changes are numbered SQL scripts in :data:`MIGRATIONS`, applied in
order when a file is opened; a file from a newer hub is refused rather than
guessed at.

::

    StoreError             anything the store raises on purpose
    ├── DatabaseError      the file cannot be opened or used (the message names the fix)
    │   └── SchemaTooNewError   written by a newer hub
    ├── InvalidValueError  an argument breaks its rule (the message states the rule)
    ├── DuplicateError     that username, booth id or live appointment code exists
    ├── NotFoundError      no such clinician, booth or alert
    └── EnrollmentRefusedError  a wrong, expired or used enrollment code (``reason`` says which)

Errors from :mod:`sqlite3` are wrapped at this boundary; an ``IntegrityError``
that escapes is a bug here, not bad input.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import sqlite3
import threading
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# ------------------------------------------------------------------ errors


class StoreError(Exception):
    """Base class of everything the store raises on purpose."""


class DatabaseError(StoreError):
    """The database file cannot be opened or used; the message says what to fix."""


class SchemaTooNewError(DatabaseError):
    """The file was written by a newer hub; this one will not guess at its schema."""


class InvalidValueError(StoreError):
    """An argument breaks its rule; the message states the rule and what was given."""


class DuplicateError(StoreError):
    """A username, booth id or live appointment code is already taken."""


class NotFoundError(StoreError):
    """No clinician, booth or alert by that name."""


class EnrollmentRefusedError(StoreError):
    """An enrollment code that cannot enroll a booth; ``reason``: one of :data:`ENROLL_REFUSALS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------- settings

SCRYPT_SALT_BYTES: Final = 16
SCRYPT_HASH_BYTES: Final = 32
TOKEN_BYTES: Final = 32  # session tokens and booth credentials

PASSWORD_MIN_CHARS: Final = 15  # NIST SP 800-63B-4 for a password used on its own
PASSWORD_MAX_CHARS: Final = 256
USERNAME_MAX_CHARS: Final = 64
TEXT_MAX_CHARS: Final = 200
BOOTH_ID_MAX_CHARS: Final = 63  # as in the booth's own configuration
APPOINTMENT_MIN_DIGITS: Final = 4
APPOINTMENT_MAX_DIGITS: Final = 12

SESSION_SECONDS: Final = 12 * 3600.0  # one clinic day; then log in again
ENROLLMENT_SECONDS: Final = 24 * 3600.0
APPOINTMENT_SECONDS: Final = 24 * 3600.0

# The guessing throttle (see CodeThrottle): every wrong code adds one to a
# booth's count and each CODE_FORGIVE_SECONDS takes one off, so three wrong
# codes within ten minutes (or more than one per ten minutes, kept up) start
# the waits: CODE_FIRST_DELAY, doubling with each further wrong code, at most
# CODE_MAX_DELAY. A resident who mistypes three times waits a second; a
# guesser who waits out every delay gets about one try per ten minutes (at
# most 14 + 144 a day, whatever the rhythm; the tests check that bound).
CODE_FREE_MISSES: Final = 2
CODE_FORGIVE_SECONDS: Final = 600.0
CODE_FIRST_DELAY: Final = 1.0
CODE_MAX_DELAY: Final = 900.0

ENROLLMENT_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
ENROLLMENT_CHARS: Final = 12  # 60 bits, typed by a technician as XXXX-XXXX-XXXX
ED25519_KEY_BYTES: Final = 32
ENROLL_REFUSALS: Final = ("wrong_code", "expired_code", "used_code")

_USERNAME = re.compile(rf"[a-z0-9][a-z0-9._-]{{0,{USERNAME_MAX_CHARS - 1}}}")
_BOOTH_ID = re.compile(rf"[a-z0-9][a-z0-9-]{{0,{BOOTH_ID_MAX_CHARS - 1}}}")
_APPOINTMENT = re.compile(rf"[0-9]{{{APPOINTMENT_MIN_DIGITS},{APPOINTMENT_MAX_DIGITS}}}")
_ALERT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ALERT_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CROCKFORD_ALIASES = str.maketrans({"I": "1", "L": "1", "O": "0"})


@dataclass(frozen=True)
class ScryptParams:
    """scrypt's cost: memory 128·n·r bytes, time about the same.

    The product uses :data:`PASSWORD_PARAMS`; tests pass a tiny cost so a
    hundred logins take milliseconds. Each hash records the cost it was made
    with, so raising it later does not lock anyone out.
    """

    n: int = 2**15
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1):
            raise InvalidValueError(f"scrypt n must be a power of two, not {self.n}")
        if not 1 <= self.r <= 32 or not 1 <= self.p <= 16:
            raise InvalidValueError(f"scrypt r must be 1-32 and p 1-16, not {self.r}, {self.p}")
        if 128 * self.n * self.r > 2**28:
            raise InvalidValueError("scrypt n·r needs more than 256 MiB; choose a smaller cost")

    @property
    def maxmem(self) -> int:
        """The memory OpenSSL must be allowed (its default, 32 MiB, is just short of n=2**15)."""
        return 128 * self.r * (self.n + self.p + 2) + 4096


PASSWORD_PARAMS: Final = ScryptParams()  # 32 MiB, ~0.1 s on a laptop

Kdf = Callable[[bytes, bytes, ScryptParams], bytes]
"""Password bytes, salt, cost -> hash: replaceable so tests can count the calls."""


def scrypt_kdf(password: bytes, salt: bytes, params: ScryptParams) -> bytes:
    """The real key derivation: scrypt with the given cost."""
    return hashlib.scrypt(
        password,
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=params.maxmem,
        dklen=SCRYPT_HASH_BYTES,
    )


# ------------------------------------------------------------- the schema

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: staff and booths.
    """
    CREATE TABLE clinicians (
        username      TEXT PRIMARY KEY,
        display_name  TEXT NOT NULL,
        password_hash TEXT NOT NULL      -- scrypt$n$r$p$<salt hex>$<hash hex>
    ) STRICT;
    CREATE TABLE sessions (
        token_hash BLOB PRIMARY KEY,     -- SHA-256 of the cookie's token
        username   TEXT NOT NULL REFERENCES clinicians(username) ON DELETE CASCADE,
        expires_at REAL NOT NULL
    ) STRICT;
    CREATE INDEX sessions_by_expiry ON sessions(expires_at);
    CREATE TABLE booths (
        booth_id        TEXT PRIMARY KEY,
        name            TEXT NOT NULL,
        site            TEXT NOT NULL,
        address         TEXT NOT NULL,
        room            TEXT NOT NULL,
        credential_hash BLOB NOT NULL    -- SHA-256 of the booth's token
    ) STRICT;
    CREATE TABLE enrollment_codes (
        code_hash  BLOB PRIMARY KEY,     -- SHA-256 of the normalised code
        expires_at REAL NOT NULL
    ) STRICT;
    """,
    # 2: residents' codes and alerts.
    """
    CREATE TABLE hub_secrets (
        name  TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) STRICT;
    CREATE TABLE appointments (
        code_hmac  BLOB PRIMARY KEY,     -- HMAC-SHA256(hub_secrets.appointment_codes, code)
        username   TEXT NOT NULL REFERENCES clinicians(username) ON DELETE CASCADE,
        expires_at REAL NOT NULL
    ) STRICT;
    CREATE INDEX appointments_by_expiry ON appointments(expires_at);
    CREATE TABLE code_attempts (
        booth_id      TEXT PRIMARY KEY REFERENCES booths(booth_id) ON DELETE CASCADE,
        misses        REAL NOT NULL,     -- wrong codes not yet forgiven, as of updated_at
        updated_at    REAL NOT NULL,
        blocked_until REAL NOT NULL      -- no code is checked before this
    ) STRICT;
    CREATE TABLE alerts (
        booth_id    TEXT NOT NULL REFERENCES booths(booth_id),
        alert_id    TEXT NOT NULL,       -- chosen by the booth; unique per booth
        kind        TEXT NOT NULL,
        raised_at   REAL NOT NULL,       -- the booth's clock
        received_at REAL NOT NULL,       -- the hub's clock
        acked_by    TEXT REFERENCES clinicians(username),
        acked_at    REAL,
        PRIMARY KEY (booth_id, alert_id),
        CHECK ((acked_by IS NULL) = (acked_at IS NULL))
    ) STRICT;
    CREATE INDEX alerts_unacked ON alerts(received_at) WHERE acked_at IS NULL;
    """,
    # 3: booths that enrolled themselves (kiosk-provision enroll) with a key of their own.
    """
    CREATE TABLE booth_keys (
        booth_id    TEXT PRIMARY KEY REFERENCES booths(booth_id) ON DELETE CASCADE,
        public_key  BLOB NOT NULL,       -- the booth's Ed25519 public key, 32 raw bytes
        enrolled_at REAL NOT NULL
    ) STRICT;
    CREATE TABLE used_enrollment_codes (
        code_hash  BLOB PRIMARY KEY,     -- as in enrollment_codes, so a reuse can be named
        booth_id   TEXT NOT NULL,
        expires_at REAL NOT NULL         -- forgotten by purge_expired after this
    ) STRICT;
    """,
)
"""Each script upgrades the schema by one version; never edit one that has shipped.

Scripts run inside the store's transaction, with foreign keys on. A future
change that rebuilds a table must follow SQLite's twelve-step procedure with
``PRAGMA defer_foreign_keys``, since foreign keys cannot be turned off there.
"""

LATEST_VERSION: Final = len(MIGRATIONS)

_SCHEMA_VERSION = """
CREATE TABLE schema_version (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    version  INTEGER NOT NULL
) STRICT
"""
_APPOINTMENT_KEY = "appointment_codes"


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements (``executescript`` would commit our transaction)."""
    pieces = script.split(";")
    statement = ""
    for i, piece in enumerate(pieces):
        statement += piece if i == len(pieces) - 1 else piece + ";"
        if sqlite3.complete_statement(statement):
            yield statement
            statement = ""
    leftover = "\n".join(
        line for line in statement.splitlines() if not line.strip().startswith("--")
    )
    if leftover.strip():
        raise ValueError(f"unterminated SQL statement in a migration: {leftover.strip()!r}")


def migrate(db: sqlite3.Connection, target: int = LATEST_VERSION) -> int:
    """Bring the schema up to ``target`` (tests make old files with a lower one).

    Runs on a connection in autocommit mode (``isolation_level=None``) and
    applies everything in one ``BEGIN IMMEDIATE`` transaction, so two hubs
    opening a new file at once cannot both migrate it, and a failed upgrade
    leaves the file as it was. Returns the version found before upgrading.
    """
    if not 0 <= target <= LATEST_VERSION:
        raise ValueError(f"target must be 0-{LATEST_VERSION}, not {target}")
    db.execute("BEGIN IMMEDIATE")
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_schema")}
        if "schema_version" not in tables:
            others = sorted(t for t in tables if not t.startswith("sqlite_"))
            if others:
                raise DatabaseError(
                    "is an SQLite database of something else (it has tables "
                    f"{', '.join(others[:5])} but no schema_version); choose another file"
                )
            db.execute(_SCHEMA_VERSION)
            db.execute("INSERT INTO schema_version VALUES (1, 0)")
        (found,) = db.execute("SELECT version FROM schema_version").fetchone()
        if found > LATEST_VERSION:
            raise SchemaTooNewError(
                f"has schema version {found}, but this clinic-hub knows versions up to "
                f"{LATEST_VERSION}: it was written by a newer clinic-hub; run that one "
                "(going back a version is not supported)"
            )
        for version in range(found, target):
            for statement in _statements(MIGRATIONS[version]):
                db.execute(statement)
            db.execute("UPDATE schema_version SET version = ?", (version + 1,))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return int(found)


# --------------------------------------------------------------- records


@dataclass(frozen=True)
class Clinician:
    """A clinician as the console and the waiting room see them (no password)."""

    username: str
    display_name: str


@dataclass(frozen=True)
class Booth:
    """A booth and where it stands: what staff need to find it in an emergency."""

    booth_id: str
    name: str
    site: str
    address: str
    room: str


@dataclass(frozen=True)
class Appointment:
    """An appointment code's clinician and when the code stops working."""

    clinician: Clinician
    expires_at: float


@dataclass(frozen=True)
class CodeThrottle:
    """One booth's wrong appointment codes, and how long it must wait before the next try.

    Pure, so its arithmetic is tested on its own; :class:`Store` keeps one per
    booth. ``misses`` counts wrong codes not yet forgiven as of ``updated_at``;
    one is forgiven every ``CODE_FORGIVE_SECONDS``, continuously.

    A right code forgives nothing: otherwise a resident holding one real code
    could type it between guesses and never be slowed.
    """

    misses: float = 0.0
    updated_at: float = 0.0
    blocked_until: float = 0.0

    def delay(self, now: float) -> float:
        """Seconds from ``now`` before the booth may try another code; 0 when it may now."""
        return max(0.0, self.blocked_until - now)

    def misses_at(self, now: float) -> float:
        """Wrong codes not yet forgiven at ``now``."""
        return max(0.0, self.misses - max(0.0, now - self.updated_at) / CODE_FORGIVE_SECONDS)

    def after(self, ok: bool, now: float) -> CodeThrottle:
        """The state after a code was tried at ``now``."""
        if ok:
            return self
        misses = self.misses_at(now) + 1
        # Up to 1e-9 over a whole number is float noise, not another miss.
        count = math.ceil(misses - 1e-9)
        delay = 0.0
        if count > CODE_FREE_MISSES:
            exponent = min(count - CODE_FREE_MISSES - 1, 32)
            delay = min(CODE_MAX_DELAY, CODE_FIRST_DELAY * 2.0**exponent)
        return CodeThrottle(misses, now, max(self.blocked_until, now + delay))


@dataclass(frozen=True)
class Alert:
    """A staff alert from a booth; ``acked_by``/``acked_at`` are None until a staff member acks."""

    booth: Booth
    alert_id: str
    kind: str
    raised_at: float
    received_at: float
    acked_by: str | None = None
    acked_at: float | None = None


# ----------------------------------------------------------- validation


def _text_problem(what: str, value: str, max_chars: int = TEXT_MAX_CHARS) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"{what} must not be empty"
    if len(value) > max_chars:
        return f"{what} must be at most {max_chars} characters, not {len(value)}"
    if not value.isprintable():
        return f"{what} must be one line of printable text"
    if value != value.strip():
        return f"{what} must not start or end with spaces"
    return None


def _check_booth(booth_id: str, *, name: str, site: str, address: str, room: str) -> None:
    """A booth's id and the texts staff see about it (alerts name them), each checked."""
    _check(booth_id_problem(booth_id))
    for what, value in (
        ("the booth's name", name),
        ("the site name", site),
        ("the street address", address),
        ("the room", room),
    ):
        _check(_text_problem(what, value))


def username_problem(username: str) -> str | None:
    """Why ``username`` cannot be a clinician's username, or None."""
    if isinstance(username, str) and _USERNAME.fullmatch(username):
        return None
    return (
        f"a username must be 1-{USERNAME_MAX_CHARS} lowercase letters, digits, '.', '_' or '-', "
        f'starting with a letter or digit (such as "a.rivera"), not "{username}"'
    )


def password_problem(password: str) -> str | None:
    """Why ``password`` may not be a clinician's password, or None; never repeats it."""
    if not isinstance(password, str) or not password:
        return "no password given"
    if len(password) < PASSWORD_MIN_CHARS:
        return (
            f"a password must be at least {PASSWORD_MIN_CHARS} characters, not {len(password)} "
            "(a few unrelated words make one easy to type and hard to guess)"
        )
    if len(password) > PASSWORD_MAX_CHARS:
        return f"a password must be at most {PASSWORD_MAX_CHARS} characters, not {len(password)}"
    if not password.isprintable():
        return "a password must not contain control characters"
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        return "a password must be valid text"
    return None


def booth_id_problem(booth_id: str) -> str | None:
    """Why ``booth_id`` cannot name a booth (the rule the booth's own config uses), or None."""
    if isinstance(booth_id, str) and _BOOTH_ID.fullmatch(booth_id):
        return None
    return (
        f"a booth id must be 1-{BOOTH_ID_MAX_CHARS} lowercase letters, digits and -, "
        f'starting with a letter or digit (such as "riverside-1"), not "{booth_id}"'
    )


def appointment_code_problem(code: str) -> str | None:
    """Why ``code`` cannot be an appointment code, or None; never repeats the code."""
    if isinstance(code, str) and code.isascii() and _APPOINTMENT.fullmatch(code):
        return None
    digits = f"{APPOINTMENT_MIN_DIGITS}-{APPOINTMENT_MAX_DIGITS}"
    if isinstance(code, str) and code.isascii() and code.isdigit():
        return f"an appointment code must be {digits} digits long, not {len(code)}"
    return f"an appointment code must be {digits} digits 0-9 only"


def _check(problem: str | None) -> None:
    if problem is not None:
        raise InvalidValueError(problem)


def _check_seconds(what: str, seconds: float) -> None:
    if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
        raise InvalidValueError(f"{what} must be a number of seconds above 0, not {seconds!r}")


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _password_bytes(password: str) -> bytes:
    """NFKC first, so the same password typed on another keyboard or OS still matches."""
    return unicodedata.normalize("NFKC", password).encode("utf-8", "surrogatepass")


def _encode_hash(params: ScryptParams, salt: bytes, digest: bytes) -> str:
    return f"scrypt${params.n}${params.r}${params.p}${salt.hex()}${digest.hex()}"


def _decode_hash(encoded: str) -> tuple[ScryptParams, bytes, bytes]:
    try:
        name, n, r, p, salt, digest = encoded.split("$")
        if name != "scrypt":
            raise ValueError(name)
        return ScryptParams(int(n), int(r), int(p)), bytes.fromhex(salt), bytes.fromhex(digest)
    except (ValueError, InvalidValueError):
        raise DatabaseError(
            "holds a password hash this clinic-hub cannot read; the file is damaged "
            "or was edited by hand"
        ) from None


def _normalise_enrollment_code(code: str) -> str:
    """What the technician typed, as the hub made it: case, dashes, spaces and O/I/L forgiven."""
    cleaned = code.upper().replace("-", "").replace(" ", "")
    return cleaned.translate(_CROCKFORD_ALIASES)


# --------------------------------------------------------------- the store


class Store:
    """The hub's database: open it once at start-up, share it, :meth:`close` it at exit.

    ``password_params`` is the scrypt cost for new passwords and for the
    check that runs when a username is unknown; ``kdf`` is the function that
    computes it. Both are for tests; the defaults are the product.
    """

    def __init__(
        self,
        path: Path,
        *,
        password_params: ScryptParams = PASSWORD_PARAMS,
        kdf: Kdf = scrypt_kdf,
        busy_timeout: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self._params = password_params
        self._kdf = kdf
        self._lock = threading.Lock()
        # What an unknown username is checked against, so it costs one scrypt
        # like a known one and the answer's timing does not say which it was.
        self._dummy_hash = _encode_hash(
            password_params, secrets.token_bytes(SCRYPT_SALT_BYTES), secrets.token_bytes(32)
        )
        self._db = self._open(busy_timeout)
        try:
            try:
                migrate(self._db)
            except DatabaseError as exc:
                raise type(exc)(f"{self.path}: {exc}") from None
            except sqlite3.Error as exc:
                raise self._wrap(exc) from None
            self._appointment_key = self._hub_secret(_APPOINTMENT_KEY)
        except BaseException:
            self._db.close()
            raise

    # ----------------------------------------------------- connection

    def _open(self, busy_timeout: float) -> sqlite3.Connection:
        path = self.path
        if not path.parent.is_dir():
            raise DatabaseError(
                f"{path}: the folder {path.parent} does not exist; create it "
                "(writable by the user the hub runs as), or use another path"
            )
        if path.is_dir():
            raise DatabaseError(f"{path}: is a folder, not a database file")
        try:
            # Created here, not by SQLite, so it is readable by its owner only:
            # it holds password hashes and the appointment-code key.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise self._cannot_open(exc.strerror) from None
        try:
            db = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._wrap(exc) from None
        try:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA synchronous = FULL")
            (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode != "wal":
                raise DatabaseError(
                    f"{path}: cannot be put in WAL mode (it stays {mode!r}); put it on a local disk"
                )
        except sqlite3.Error as exc:
            db.close()
            raise self._wrap(exc) from None
        except BaseException:
            db.close()
            raise
        return db

    def _cannot_open(self, reason: str | None) -> DatabaseError:
        why = f" ({reason.lower()})" if reason else ""
        return DatabaseError(
            f"{self.path}: cannot be created or opened{why}; check that the user the hub "
            f"runs as may write to it and to its folder {self.path.parent} (SQLite keeps "
            f"{self.path.name}-wal and {self.path.name}-shm beside it)"
        )

    def _wrap(self, exc: sqlite3.Error) -> DatabaseError:
        """An sqlite3 error as a sentence naming the file and what to do about it."""
        if isinstance(exc, DatabaseError):
            return exc
        name = getattr(exc, "sqlite_errorname", "")
        if name.startswith("SQLITE_CANTOPEN"):
            return self._cannot_open(None)
        if name.startswith("SQLITE_READONLY"):
            return DatabaseError(
                f"{self.path}: is read-only for this user; check the owner and permissions "
                f"of the file and of its folder {self.path.parent}"
            )
        if name == "SQLITE_NOTADB":
            return DatabaseError(f"{self.path}: is not a clinic-hub database (not SQLite at all)")
        if name.startswith("SQLITE_BUSY") or name.startswith("SQLITE_LOCKED"):
            return DatabaseError(
                f"{self.path}: is busy; another process has held it too long "
                "(is a second clinic-hub running?)"
            )
        if name == "SQLITE_FULL":
            return DatabaseError(f"{self.path}: the disk is full; free some space")
        if name.startswith("SQLITE_CORRUPT"):
            return DatabaseError(f"{self.path}: is damaged ({exc}); restore it from a backup")
        return DatabaseError(f"{self.path}: {exc}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is kept or none of it."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError):
                    raise self._wrap(exc) from None
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                if isinstance(exc, sqlite3.IntegrityError):
                    raise
                raise self._wrap(exc) from None

    def _hub_secret(self, name: str) -> bytes:
        with self._write() as db:
            db.execute(
                "INSERT INTO hub_secrets VALUES (?, ?) ON CONFLICT DO NOTHING",
                (name, secrets.token_bytes(32)),
            )
            (value,) = db.execute(
                "SELECT value FROM hub_secrets WHERE name = ?", (name,)
            ).fetchone()
        return bytes(value)

    def close(self) -> None:
        """Close the file; the WAL is folded back into it when the last user closes."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------- clinicians

    def add_clinician(
        self, username: str, password: str, display_name: str | None = None
    ) -> Clinician:
        """Add an account; the password is kept only as a salted scrypt hash."""
        _check(username_problem(username))
        _check(password_problem(password))
        name = username if display_name is None else display_name
        _check(_text_problem("the display name", name))
        salt = secrets.token_bytes(SCRYPT_SALT_BYTES)
        digest = self._kdf(_password_bytes(password), salt, self._params)
        with self._write() as db:
            added = db.execute(
                "INSERT INTO clinicians VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (username, name, _encode_hash(self._params, salt, digest)),
            ).rowcount
        if not added:
            raise DuplicateError(
                f'there is already a clinician "{username}"; choose another username'
            )
        return Clinician(username, name)

    def clinician(self, username: str) -> Clinician | None:
        """The account called ``username``, or None."""
        with self._read() as db:
            row = db.execute(
                "SELECT username, display_name FROM clinicians WHERE username = ?", (username,)
            ).fetchone()
        return None if row is None else Clinician(*row)

    def verify_clinician(self, username: str, password: str) -> Clinician | None:
        """The clinician if the password is theirs, else None.

        Exactly one scrypt runs either way, against a dummy hash when there is
        no such user, so the time taken does not tell a guesser which
        usernames exist.
        """
        with self._read() as db:
            row = db.execute(
                "SELECT username, display_name, password_hash FROM clinicians WHERE username = ?",
                (username,),
            ).fetchone()
        encoded = self._dummy_hash if row is None else row[2]
        params, salt, expected = _decode_hash(encoded)
        actual = self._kdf(_password_bytes(password), salt, params)
        if hmac.compare_digest(actual, expected) and row is not None:
            return Clinician(row[0], row[1])
        return None

    # ------------------------------------------------------- sessions

    def new_session(self, username: str, now: float, *, lifetime: float = SESSION_SECONDS) -> str:
        """A fresh login token for a cookie; only its SHA-256 is kept."""
        _check_seconds("a session's lifetime", lifetime)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self._write() as db:
            if not _exists(db, "clinicians", "username", username):
                raise NotFoundError(f'there is no clinician "{username}"')
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?)", (_sha256(token), username, now + lifetime)
            )
        return token

    def session_user(self, token: str, now: float) -> Clinician | None:
        """Who a cookie's token belongs to, or None if unknown, ended or expired.

        The lookup is by the token's hash, so its timing says nothing about the token.
        """
        with self._read() as db:
            row = db.execute(
                "SELECT c.username, c.display_name FROM sessions s JOIN clinicians c "
                "USING (username) WHERE s.token_hash = ? AND s.expires_at > ?",
                (_sha256(token), now),
            ).fetchone()
        return None if row is None else Clinician(*row)

    def end_session(self, token: str) -> None:
        """Log out: the token stops working at once. Unknown tokens are ignored."""
        with self._write() as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (_sha256(token),))

    # --------------------------------------------------------- booths

    def add_booth(self, booth_id: str, *, name: str, site: str, address: str, room: str) -> str:
        """Register a booth and return its credential: shown once, kept only as SHA-256."""
        _check_booth(booth_id, name=name, site=site, address=address, room=room)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self._write() as db:
            added = db.execute(
                "INSERT INTO booths VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (booth_id, name, site, address, room, _sha256(token)),
            ).rowcount
        if not added:
            raise DuplicateError(f'there is already a booth "{booth_id}"; choose another booth id')
        return token

    def booth(self, booth_id: str) -> Booth | None:
        """The booth called ``booth_id``, or None."""
        with self._read() as db:
            row = db.execute(
                "SELECT booth_id, name, site, address, room FROM booths WHERE booth_id = ?",
                (booth_id,),
            ).fetchone()
        return None if row is None else Booth(*row)

    def all_booths(self) -> list[Booth]:
        """Every registered booth, by id: the console lists those that never came online too."""
        with self._read() as db:
            rows = db.execute(
                "SELECT booth_id, name, site, address, room FROM booths ORDER BY booth_id"
            ).fetchall()
        return [Booth(*row) for row in rows]

    def verify_booth(self, booth_id: str, token: str) -> Booth | None:
        """The booth if ``token`` is its current credential, else None; in constant time."""
        with self._read() as db:
            row = db.execute(
                "SELECT booth_id, name, site, address, room, credential_hash FROM booths "
                "WHERE booth_id = ?",
                (booth_id,),
            ).fetchone()
        expected = bytes(32) if row is None else bytes(row[5])
        if hmac.compare_digest(_sha256(token), expected) and row is not None:
            return Booth(*row[:5])
        return None

    def rotate_booth_credential(self, booth_id: str) -> str:
        """Give a booth a new credential (returned, shown once); the old one stops working."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self._write() as db:
            changed = db.execute(
                "UPDATE booths SET credential_hash = ? WHERE booth_id = ?",
                (_sha256(token), booth_id),
            ).rowcount
        if not changed:
            raise NotFoundError(f'there is no booth "{booth_id}"')
        return token

    def booth_alert_counts(self, booth_id: str) -> tuple[int, int]:
        """(unacknowledged, acknowledged) alerts from ``booth_id``: what removing it touches."""
        with self._read() as db:
            row = db.execute(
                "SELECT count(*) FILTER (WHERE acked_at IS NULL), "
                "count(*) FILTER (WHERE acked_at IS NOT NULL) FROM alerts WHERE booth_id = ?",
                (booth_id,),
            ).fetchone()
        return int(row[0]), int(row[1])

    def remove_booth(self, booth_id: str) -> int:
        """Forget a booth: its registration, credential and enrolled key; returns alerts deleted.

        For a booth set up again (``kiosk-provision reset``) or retired: its id
        can then be enrolled anew, and its old credential opens nothing (a
        connection already open is refused at its next hello). Alerts not yet
        acknowledged refuse the removal, since staff must see them; the
        acknowledged ones go with the booth, which they name.
        """
        with self._write() as db:
            if not _exists(db, "booths", "booth_id", booth_id):
                raise NotFoundError(f'there is no booth "{booth_id}"')
            unacked = db.execute(
                "SELECT count(*) FROM alerts WHERE booth_id = ? AND acked_at IS NULL", (booth_id,)
            ).fetchone()[0]
            if unacked:
                raise InvalidValueError(
                    f'booth "{booth_id}" has {unacked} alert(s) not yet acknowledged; '
                    "acknowledge them in the clinician console first (`clinic-hub alerts` "
                    "lists them)"
                )
            gone = db.execute("DELETE FROM alerts WHERE booth_id = ?", (booth_id,)).rowcount
            # booth_keys and code_attempts go by ON DELETE CASCADE.
            db.execute("DELETE FROM booths WHERE booth_id = ?", (booth_id,))
        return int(gone)

    # ---------------------------------------------------- enrollment

    def new_enrollment_code(self, now: float, *, lifetime: float = ENROLLMENT_SECONDS) -> str:
        """A one-time code, ``XXXX-XXXX-XXXX``, for a technician to enroll one booth with."""
        _check_seconds("an enrollment code's lifetime", lifetime)
        raw = "".join(secrets.choice(ENROLLMENT_ALPHABET) for _ in range(ENROLLMENT_CHARS))
        with self._write() as db:
            db.execute("INSERT INTO enrollment_codes VALUES (?, ?)", (_sha256(raw), now + lifetime))
        return "-".join(raw[i : i + 4] for i in range(0, ENROLLMENT_CHARS, 4))

    def redeem_enrollment_code(self, code: str, now: float) -> bool:
        """True the first time a live code is redeemed; False for any other code, ever after."""
        code_hash = _sha256(_normalise_enrollment_code(code))
        with self._write() as db:
            row = db.execute(
                "DELETE FROM enrollment_codes WHERE code_hash = ? RETURNING expires_at",
                (code_hash,),
            ).fetchone()
        return row is not None and row[0] > now

    def enroll_booth(
        self,
        code: str,
        booth_id: str,
        *,
        name: str,
        site: str,
        address: str,
        room: str,
        public_key: bytes,
        now: float,
    ) -> str:
        """Use up a live enrollment code to register a booth with its public key; its credential.

        One transaction: the code is spent only if the booth is added. A
        booth id already taken raises :class:`DuplicateError` and leaves the
        code live, but only after the code was found good, so a stranger
        without a code learns nothing about which booth ids exist.
        """
        _check_booth(booth_id, name=name, site=site, address=address, room=room)
        if not isinstance(public_key, bytes) or len(public_key) != ED25519_KEY_BYTES:
            raise InvalidValueError(f"a booth's public key must be {ED25519_KEY_BYTES} bytes")
        code_hash = _sha256(_normalise_enrollment_code(code))
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self._write() as db:
            row = db.execute(
                "SELECT expires_at FROM enrollment_codes WHERE code_hash = ?", (code_hash,)
            ).fetchone()
            if row is None:
                used = _exists_blob(db, "used_enrollment_codes", code_hash)
                raise EnrollmentRefusedError(
                    "used_code" if used else "wrong_code",
                    "that enrollment code was used already"
                    if used
                    else "there is no such enrollment code",
                )
            if row[0] <= now:
                raise EnrollmentRefusedError("expired_code", "that enrollment code has expired")
            if _exists(db, "booths", "booth_id", booth_id):
                raise DuplicateError(
                    f'there is already a booth "{booth_id}"; choose another booth id'
                )
            db.execute("DELETE FROM enrollment_codes WHERE code_hash = ?", (code_hash,))
            db.execute(
                "INSERT INTO used_enrollment_codes VALUES (?, ?, ?)", (code_hash, booth_id, row[0])
            )
            db.execute(
                "INSERT INTO booths VALUES (?, ?, ?, ?, ?, ?)",
                (booth_id, name, site, address, room, _sha256(token)),
            )
            db.execute("INSERT INTO booth_keys VALUES (?, ?, ?)", (booth_id, public_key, now))
        return token

    def booth_public_key(self, booth_id: str) -> bytes | None:
        """The Ed25519 public key a booth enrolled with, or None (added by hand, or unknown)."""
        with self._read() as db:
            row = db.execute(
                "SELECT public_key FROM booth_keys WHERE booth_id = ?", (booth_id,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    # -------------------------------------------------- appointments

    def _code_hmac(self, code: str) -> bytes:
        return hmac.new(self._appointment_key, code.encode("ascii"), hashlib.sha256).digest()

    def add_appointment(
        self, code: str, username: str, now: float, *, lifetime: float = APPOINTMENT_SECONDS
    ) -> Appointment:
        """Route residents who type ``code`` to ``username`` until ``now + lifetime``.

        Only the code's HMAC is stored. A code still live for anyone is refused.
        """
        _check(appointment_code_problem(code))
        _check_seconds("an appointment code's lifetime", lifetime)
        key = self._code_hmac(code)
        with self._write() as db:
            row = db.execute(
                "SELECT username, display_name FROM clinicians WHERE username = ?", (username,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f'there is no clinician "{username}"')
            db.execute(
                "DELETE FROM appointments WHERE code_hmac = ? AND expires_at <= ?", (key, now)
            )
            added = db.execute(
                "INSERT INTO appointments VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (key, username, now + lifetime),
            ).rowcount
        if not added:
            raise DuplicateError("that appointment code is already in use; choose another")
        return Appointment(Clinician(*row), now + lifetime)

    def lookup_appointment(self, code: str, now: float) -> Clinician | None:
        """The clinician a live code routes to, or None.

        A wrong, expired or malformed code all give the same None, so the
        answer says nothing about which other codes exist. Guessing is
        slowed by :meth:`note_code_attempt`, which the caller must use.
        """
        if appointment_code_problem(code) is not None:
            return None
        with self._read() as db:
            row = db.execute(
                "SELECT c.username, c.display_name FROM appointments a JOIN clinicians c "
                "USING (username) WHERE a.code_hmac = ? AND a.expires_at > ?",
                (self._code_hmac(code), now),
            ).fetchone()
        return None if row is None else Clinician(*row)

    # ------------------------------------------------ guessing throttle

    def _throttle(self, db: sqlite3.Connection, booth_id: str) -> CodeThrottle:
        row = db.execute(
            "SELECT misses, updated_at, blocked_until FROM code_attempts WHERE booth_id = ?",
            (booth_id,),
        ).fetchone()
        return CodeThrottle() if row is None else CodeThrottle(*row)

    def code_delay(self, booth_id: str, now: float) -> float:
        """Seconds before ``booth_id`` may try another code; 0 when it may try now."""
        with self._read() as db:
            return self._throttle(db, booth_id).delay(now)

    def note_code_attempt(self, booth_id: str, ok: bool, now: float) -> float:
        """Record one code tried at a booth; return the seconds it must wait before the next.

        The hub asks :meth:`code_delay` first and, while that is above 0,
        refuses without looking the code up; otherwise it calls
        :meth:`lookup_appointment`, then this. See :class:`CodeThrottle`.
        """
        with self._write() as db:
            if not _exists(db, "booths", "booth_id", booth_id):
                raise NotFoundError(f'there is no booth "{booth_id}"')
            before = self._throttle(db, booth_id)
            after = before.after(ok, now)
            if after != before:
                db.execute(
                    "INSERT INTO code_attempts VALUES (?, ?, ?, ?) ON CONFLICT (booth_id) DO "
                    "UPDATE SET misses = excluded.misses, updated_at = excluded.updated_at, "
                    "blocked_until = excluded.blocked_until",
                    (booth_id, after.misses, after.updated_at, after.blocked_until),
                )
        return after.delay(now)

    # ---------------------------------------------------------- alerts

    def record_alert(
        self, booth_id: str, alert_id: str, kind: str, raised_at: float, received_at: float
    ) -> bool:
        """Keep an alert until a staff member acks it; True if this delivery is its first.

        A booth resends until the hub confirms, so the same ``alert_id`` may
        arrive twice; it is stored once and the hub confirms it both times.
        ``alert_id`` is unique per booth, so one booth can never shadow
        another's alert.
        """
        if not isinstance(alert_id, str) or not _ALERT_ID.fullmatch(alert_id):
            raise InvalidValueError(
                f"an alert id must be 1-64 letters, digits, '_' or '-', not {alert_id!r}"
            )
        if not isinstance(kind, str) or not _ALERT_KIND.fullmatch(kind):
            raise InvalidValueError(
                f'an alert kind must be a lowercase word such as "emergency", not {kind!r}'
            )
        with self._write() as db:
            if not _exists(db, "booths", "booth_id", booth_id):
                raise NotFoundError(f'there is no booth "{booth_id}"')
            added = db.execute(
                "INSERT INTO alerts (booth_id, alert_id, kind, raised_at, received_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (booth_id, alert_id, kind, raised_at, received_at),
            ).rowcount
        return bool(added)

    def unacked_alerts(self) -> list[Alert]:
        """Every alert no staff member has acknowledged, oldest first, with where the booth is."""
        with self._read() as db:
            rows = db.execute(
                "SELECT b.booth_id, b.name, b.site, b.address, b.room, "
                "a.alert_id, a.kind, a.raised_at, a.received_at FROM alerts a "
                "JOIN booths b USING (booth_id) WHERE a.acked_at IS NULL "
                "ORDER BY a.received_at, a.raised_at, b.booth_id, a.alert_id"
            ).fetchall()
        return [Alert(Booth(*row[:5]), *row[5:]) for row in rows]

    def ack_alert(self, booth_id: str, alert_id: str, username: str, now: float) -> bool:
        """Mark an alert handled by ``username``; True if this ack was the first.

        Two staff pressing at once both succeed, and the first is recorded.
        """
        with self._write() as db:
            if not _exists(db, "clinicians", "username", username):
                raise NotFoundError(f'there is no clinician "{username}"')
            row = db.execute(
                "SELECT acked_at FROM alerts WHERE booth_id = ? AND alert_id = ?",
                (booth_id, alert_id),
            ).fetchone()
            if row is None:
                raise NotFoundError(f'there is no alert "{alert_id}" from booth "{booth_id}"')
            if row[0] is not None:
                return False
            db.execute(
                "UPDATE alerts SET acked_by = ?, acked_at = ? WHERE booth_id = ? AND alert_id = ?",
                (username, now, booth_id, alert_id),
            )
        return True

    # --------------------------------------------------------- upkeep

    def purge_expired(self, now: float) -> int:
        """Delete what can no longer be used (sessions, codes, forgiven misses); returns rows gone.

        Acknowledged alerts are kept: they are the record of what happened.
        """
        with self._write() as db:
            gone = db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,)).rowcount
            gone += db.execute(
                "DELETE FROM enrollment_codes WHERE expires_at <= ?", (now,)
            ).rowcount
            gone += db.execute("DELETE FROM appointments WHERE expires_at <= ?", (now,)).rowcount
            gone += db.execute(
                "DELETE FROM used_enrollment_codes WHERE expires_at <= ?", (now,)
            ).rowcount
            gone += db.execute(
                "DELETE FROM code_attempts WHERE updated_at + misses * ? <= ? "
                "AND blocked_until <= ?",
                (CODE_FORGIVE_SECONDS, now, now),
            ).rowcount
        return gone


def _exists(db: sqlite3.Connection, table: str, column: str, value: str) -> bool:
    row = db.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", (value,)).fetchone()
    return row is not None


def _exists_blob(db: sqlite3.Connection, table: str, code_hash: bytes) -> bool:
    row = db.execute(f"SELECT 1 FROM {table} WHERE code_hash = ?", (code_hash,)).fetchone()
    return row is not None
