"""The technician PIN: how it is stored, checked and guarded against guessing.

The booth keeps only an scrypt hash of the PIN (``[technician] pin_hash`` in
the booth file, made by ``kiosk-provision hash-pin``), never the PIN itself,
so a copied configuration does not give the PIN away.

A 4-digit PIN has only 10,000 values, so the hash alone protects nothing on a
screen anyone can touch: :class:`PinGate` is what stops guessing. After
``max_attempts`` wrong PINs it refuses every PIN, the right one too, for
``lockout_seconds``, and spends no hashing time on refused tries.

Everything here is pure: the caller passes the time in (``time.monotonic()``
on the booth), so tests drive the clock by hand. One scrypt check takes tens
of milliseconds on a laptop and more on a Pi; the screen should run
:meth:`PinGate.try_pin` off the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

PIN_MIN_DIGITS = 4
PIN_MAX_DIGITS = 8
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
PIN_HASH_FORMAT = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$<salt hex>$<hash hex>"
HASH_PIN_COMMAND = "kiosk-provision hash-pin"

_PIN = re.compile(rf"[0-9]{{{PIN_MIN_DIGITS},{PIN_MAX_DIGITS}}}")
_ENCODED = re.compile(
    rf"scrypt\${SCRYPT_N}\${SCRYPT_R}\${SCRYPT_P}"
    rf"\$([0-9a-f]{{{SALT_BYTES * 2}}})\$([0-9a-f]{{{HASH_BYTES * 2}}})"
)


def pin_problem(pin: str) -> str | None:
    """Why ``pin`` cannot be a technician PIN, or None; never repeats the PIN itself."""
    if not pin:
        return "no PIN given"
    if not pin.isascii() or not pin.isdigit():
        return "a PIN must be digits 0-9 only"
    if not _PIN.fullmatch(pin):
        return f"a PIN must be {PIN_MIN_DIGITS}-{PIN_MAX_DIGITS} digits long, not {len(pin)}"
    return None


def pin_is_guessable(pin: str) -> bool:
    """True for the PINs a stranger tries first: one digit repeated, or a run like 1234 or 9876."""
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    return len(steps) == 1 and steps <= {0, 1, 9}


def _scrypt(pin: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        pin.encode("ascii"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=HASH_BYTES
    )


def hash_pin(pin: str, *, salt: bytes | None = None) -> str:
    """The ``pin_hash`` text for a PIN, with a fresh random salt unless one is given (tests)."""
    problem = pin_problem(pin)
    if problem is not None:
        raise ValueError(problem)
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    if len(salt) != SALT_BYTES:
        raise ValueError(f"the salt must be {SALT_BYTES} bytes, not {len(salt)}")
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${_scrypt(pin, salt).hex()}"


def decode_pin_hash(encoded: str) -> tuple[bytes, bytes]:
    """The salt and hash in a ``pin_hash``; ValueError naming the expected form otherwise.

    Only the parameters ``hash-pin`` writes are accepted: a file cannot weaken the
    hash (a tiny ``n``) or make every check exhaust memory (a huge one).
    """
    match = _ENCODED.fullmatch(encoded.strip().lower()) if isinstance(encoded, str) else None
    if match is None:
        raise ValueError(
            f'must be a PIN hash "{PIN_HASH_FORMAT}" as printed by `{HASH_PIN_COMMAND}` '
            "(the PIN itself never goes in the file)"
        )
    return bytes.fromhex(match[1]), bytes.fromhex(match[2])


def verify_pin(pin: str, encoded: str) -> bool:
    """True when ``pin`` is the one ``encoded`` was made from; compared in constant time.

    A malformed ``encoded`` raises ValueError (configuration is checked at start-up,
    so this is a bug, not a wrong PIN).
    """
    salt, expected = decode_pin_hash(encoded)
    if pin_problem(pin) is not None:
        return False  # the PIN format is public; rejecting it early leaks nothing
    return hmac.compare_digest(_scrypt(pin, salt), expected)


class Outcome(StrEnum):
    """What the screen says after a PIN was tried."""

    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"
    NOT_CONFIGURED = "not_configured"


@dataclass(frozen=True)
class Result:
    """One try's outcome; ``attempts_left`` after a wrong PIN, ``seconds_left`` while locked."""

    outcome: Outcome
    attempts_left: int = 0
    seconds_left: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


class PinGate:
    """Rate-limits PIN tries: ``max_attempts`` wrong in a row lock it for ``lockout_seconds``.

    ``encoded`` None means no PIN is configured: technician mode cannot be
    unlocked on the screen at all (every try says so, and nothing is counted).
    The try that uses up the last attempt answers ``LOCKED``; a right PIN
    resets the count. ``verify`` is the hash check, replaceable so tests can
    try thousands of PINs without thousands of scrypt runs.
    """

    def __init__(
        self,
        encoded: str | None,
        max_attempts: int = 3,
        lockout_seconds: float = 300.0,
        *,
        verify: Callable[[str, str], bool] = verify_pin,
    ) -> None:
        if encoded is not None:
            decode_pin_hash(encoded)  # a bad hash fails here, not at the first try
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        if not lockout_seconds > 0:
            raise ValueError(f"lockout_seconds must be more than 0, not {lockout_seconds}")
        self._encoded = encoded
        self._max_attempts = max_attempts
        self._lockout_seconds = float(lockout_seconds)
        self._verify = verify
        self._wrong = 0
        self._locked_until: float | None = None

    @property
    def configured(self) -> bool:
        return self._encoded is not None

    def locked_for(self, now: float) -> float:
        """Seconds the gate stays locked from ``now``; 0 when a PIN may be tried."""
        if self._locked_until is None:
            return 0.0
        return max(0.0, self._locked_until - now)

    def try_pin(self, pin: str, now: float) -> Result:
        """Check one PIN typed at time ``now`` (seconds on a clock that never goes back)."""
        if self._encoded is None:
            return Result(Outcome.NOT_CONFIGURED)
        left = self.locked_for(now)
        if left > 0:
            return Result(Outcome.LOCKED, seconds_left=left)
        self._locked_until = None
        if self._verify(pin, self._encoded):
            self._wrong = 0
            return Result(Outcome.OK)
        self._wrong += 1
        if self._wrong >= self._max_attempts:
            self._wrong = 0
            self._locked_until = now + self._lockout_seconds
            return Result(Outcome.LOCKED, seconds_left=self._lockout_seconds)
        return Result(Outcome.WRONG, attempts_left=self._max_attempts - self._wrong)
