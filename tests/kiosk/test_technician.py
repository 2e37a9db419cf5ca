"""The technician PIN: stored only as a hash, and guessing is stopped by the gate.

Time is passed in by hand, so lockouts of minutes take no time to test. The
brute-force tests use a stand-in for the scrypt check (10,000 real checks would
take minutes); the real check is tested on its own, and once through the gate.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from kiosk.technician import (
    Outcome,
    PinGate,
    Result,
    decode_pin_hash,
    hash_pin,
    pin_is_guessable,
    pin_problem,
    verify_pin,
)

SALT = bytes(range(16))
PIN = "7391"
ENCODED = hash_pin(PIN, salt=SALT)  # one scrypt run, shared by the tests
ALL_4_DIGIT_PINS = [f"{n:04d}" for n in range(10_000)]


class CountingVerify:
    """A fast stand-in for :func:`verify_pin` that knows the PIN and counts its calls."""

    def __init__(self, pin: str = PIN) -> None:
        self.pin = pin
        self.calls = 0

    def __call__(self, pin: str, encoded: str) -> bool:
        self.calls += 1
        return hmac.compare_digest(pin, self.pin)


# --------------------------------------------------------------- the hash


def test_hash_has_the_documented_form() -> None:
    assert re.fullmatch(r"scrypt\$16384\$8\$1\$[0-9a-f]{32}\$[0-9a-f]{64}", ENCODED)
    assert ENCODED.split("$")[4] == SALT.hex()


def test_hash_is_scrypt_with_the_stated_parameters() -> None:
    expected = hashlib.scrypt(PIN.encode(), salt=SALT, n=2**14, r=8, p=1, dklen=32)
    assert decode_pin_hash(ENCODED) == (SALT, expected)


def test_right_pin_verifies() -> None:
    assert verify_pin(PIN, ENCODED)


@pytest.mark.parametrize("guess", ["7390", "73910", "0000", "", "739a", " 7391"])
def test_wrong_pin_does_not_verify(guess: str) -> None:
    assert not verify_pin(guess, ENCODED)


def test_each_hash_gets_a_fresh_salt() -> None:
    a, b = hash_pin(PIN), hash_pin(PIN)
    assert a != b
    assert verify_pin(PIN, a) and verify_pin(PIN, b)


def test_verify_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []

    def compare(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(hmac, "compare_digest", compare)
    assert verify_pin(PIN, ENCODED)
    assert len(compared) == 1


@pytest.mark.parametrize(
    ("pin", "problem"),
    [
        ("", "no PIN given"),
        ("123", "a PIN must be 4-8 digits long, not 3"),
        ("123456789", "a PIN must be 4-8 digits long, not 9"),
        ("12a4", "a PIN must be digits 0-9 only"),
        ("12 34", "a PIN must be digits 0-9 only"),
        ("١٢٣٤", "a PIN must be digits 0-9 only"),  # Arabic-Indic digits
        ("\uff11\uff12\uff13\uff14", "a PIN must be digits 0-9 only"),  # full-width digits
    ],
)
def test_bad_pins_are_refused(pin: str, problem: str) -> None:
    assert pin_problem(pin) == problem
    with pytest.raises(ValueError, match=re.escape(problem)):
        hash_pin(pin)


@pytest.mark.parametrize("pin", ["1234", "00000000", "9876", "4567", "8901"])
def test_good_pin_lengths(pin: str) -> None:
    assert pin_problem(pin) is None


@pytest.mark.parametrize(
    ("pin", "guessable"),
    [("1234", True), ("0000", True), ("9876", True), ("1111111", True), ("7391", False)],
)
def test_guessable_pins(pin: str, guessable: bool) -> None:
    assert pin_is_guessable(pin) is guessable


@pytest.mark.parametrize(
    "encoded",
    [
        "1234",
        "",
        ENCODED.replace("16384", "2", 1),  # a weak cost must not be accepted
        ENCODED.replace("16384", "1048576", 1),  # nor one that exhausts memory
        ENCODED.replace("$8$", "$1$", 1),
        ENCODED[:-2],
        ENCODED.replace("scrypt", "pbkdf2", 1),
        ENCODED + "$",
    ],
)
def test_malformed_hash_is_refused_naming_the_tool(encoded: str) -> None:
    with pytest.raises(ValueError, match="kiosk-provision hash-pin"):
        decode_pin_hash(encoded)
    with pytest.raises(ValueError):
        verify_pin(PIN, encoded)
    with pytest.raises(ValueError):
        PinGate(encoded)


def test_hash_in_capitals_is_the_same_hash() -> None:
    assert verify_pin(PIN, ENCODED.upper().replace("SCRYPT", "scrypt"))


def test_salt_must_be_16_bytes() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        hash_pin(PIN, salt=b"short")


# --------------------------------------------------------------- the gate


def gate(max_attempts: int = 3, lockout_seconds: float = 300.0) -> PinGate:
    return PinGate(ENCODED, max_attempts, lockout_seconds, verify=CountingVerify())


def test_right_pin_opens() -> None:
    result = gate().try_pin(PIN, now=0.0)
    assert result == Result(Outcome.OK)
    assert result.ok


def test_right_pin_opens_with_the_real_check() -> None:
    real = PinGate(ENCODED, 3, 300.0)
    assert real.try_pin("0000", now=0.0) == Result(Outcome.WRONG, attempts_left=2)
    assert real.try_pin(PIN, now=1.0).ok


def test_wrong_pin_says_how_many_tries_are_left() -> None:
    g = gate()
    assert g.try_pin("0000", now=0.0) == Result(Outcome.WRONG, attempts_left=2)
    assert g.try_pin("0001", now=1.0) == Result(Outcome.WRONG, attempts_left=1)
    assert not g.try_pin("0001", now=2.0).ok


def test_locks_after_max_attempts() -> None:
    g = gate()
    g.try_pin("0000", now=0.0)
    g.try_pin("0001", now=1.0)
    assert g.try_pin("0002", now=2.0) == Result(Outcome.LOCKED, seconds_left=300.0)
    assert g.locked_for(2.0) == 300.0
    assert g.try_pin("0003", now=62.0) == Result(Outcome.LOCKED, seconds_left=240.0)


def test_locked_refuses_even_the_right_pin() -> None:
    g = gate(max_attempts=1)
    g.try_pin("0000", now=0.0)
    assert g.try_pin(PIN, now=1.0) == Result(Outcome.LOCKED, seconds_left=299.0)
    assert g.try_pin(PIN, now=299.9).outcome is Outcome.LOCKED


def test_locked_spends_no_hashing_time() -> None:
    """Refused tries never reach scrypt: hammering the keypad cannot load the Pi."""
    verify = CountingVerify()
    g = PinGate(ENCODED, 3, 300.0, verify=verify)
    for i in range(3):
        g.try_pin("0000", now=float(i))
    for i in range(100):
        g.try_pin(PIN, now=3.0 + i)
    assert verify.calls == 3


def test_unlocks_after_the_lockout_with_a_fresh_count() -> None:
    g = gate()
    for i in range(3):
        g.try_pin("0000", now=float(i))
    assert g.locked_for(302.0) == 0.0
    assert g.try_pin("0000", now=302.0) == Result(Outcome.WRONG, attempts_left=2)
    assert g.try_pin(PIN, now=303.0).ok


def test_right_pin_resets_the_count() -> None:
    g = gate()
    g.try_pin("0000", now=0.0)
    g.try_pin("0001", now=1.0)
    assert g.try_pin(PIN, now=2.0).ok
    assert g.try_pin("0002", now=3.0) == Result(Outcome.WRONG, attempts_left=2)


def test_bad_format_counts_as_a_wrong_try() -> None:
    g = PinGate(ENCODED, 2, 300.0)  # the real check: no scrypt run for a malformed PIN
    assert g.try_pin("", now=0.0) == Result(Outcome.WRONG, attempts_left=1)
    assert g.try_pin("12a4", now=1.0).outcome is Outcome.LOCKED


def test_not_configured_cannot_be_unlocked_and_says_so() -> None:
    verify = CountingVerify()
    g = PinGate(None, 3, 300.0, verify=verify)
    assert not g.configured
    for pin in ("", "0000", PIN):
        assert g.try_pin(pin, now=0.0) == Result(Outcome.NOT_CONFIGURED)
    assert verify.calls == 0
    assert g.locked_for(0.0) == 0.0


@pytest.mark.parametrize(
    ("max_attempts", "lockout_seconds"), [(0, 300.0), (3, 0.0), (3, -1.0), (3, float("nan"))]
)
def test_gate_refuses_settings_that_turn_it_off(max_attempts: int, lockout_seconds: float) -> None:
    with pytest.raises(ValueError):
        PinGate(ENCODED, max_attempts, lockout_seconds)


# --------------------------------------------------------- brute force


def brute_force(g: PinGate, *, seconds_per_try: float) -> tuple[str | None, float]:
    """Try every 4-digit PIN in order as fast as the keypad allows; the PIN found and the time."""
    now = 0.0
    for pin in ALL_4_DIGIT_PINS:
        if g.try_pin(pin, now).ok:
            return pin, now
        now += seconds_per_try
    return None, now


def test_twin_without_lockout_a_brute_force_finds_the_pin() -> None:
    """Twin: with the lockout effectively off, trying every 4-digit PIN gets in."""
    no_lockout = PinGate(ENCODED, 10**9, 300.0, verify=CountingVerify())
    found, elapsed = brute_force(no_lockout, seconds_per_try=0.01)
    assert found == PIN
    assert elapsed < 300.0


def test_with_the_gate_10000_quick_tries_find_nothing() -> None:
    verify = CountingVerify()
    g = PinGate(ENCODED, 3, 300.0, verify=verify)
    found, elapsed = brute_force(g, seconds_per_try=0.01)  # 100 s for all 10,000
    assert found is None
    assert elapsed < 300.0
    assert verify.calls == 3  # only the first three were ever checked


def test_with_the_real_check_10000_quick_tries_find_nothing() -> None:
    """The gate in front of real scrypt: the same attack, fast because locked tries are free."""
    g = PinGate(ENCODED, 3, 300.0)
    assert brute_force(g, seconds_per_try=0.01)[0] is None


def test_a_patient_attacker_needs_days_with_the_defaults() -> None:
    """Waiting out every lockout, the defaults allow 3 guesses per 5 minutes: 10,000 take >11 days.

    This is the margin a 4-digit PIN buys; each extra digit multiplies it by 10.
    """
    verify = CountingVerify(pin="9999")  # the last one tried
    g = PinGate(ENCODED, 3, 300.0, verify=verify)
    now = 0.0
    result = Result(Outcome.WRONG)
    for pin in ALL_4_DIGIT_PINS:
        checked = verify.calls
        while (result := g.try_pin(pin, now)).outcome is Outcome.LOCKED and verify.calls == checked:
            now += result.seconds_left  # refused unchecked: wait the lockout out, try again
        if result.ok:
            break
        now += 1.0
    assert result.ok
    assert verify.calls == 10_000
    assert now / 86_400 > 11
