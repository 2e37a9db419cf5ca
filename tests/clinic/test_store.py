"""The hub's database: every call, a restart between them, upgrades, and a writer killed mid-write.

Time is passed in by hand (``T0`` and offsets from it), so expiry and the
guessing throttle take no time to test. scrypt runs at a tiny cost
(``FAST``) except in the test that checks the product's own cost works.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinic import store as store_module
from clinic.store import (
    CODE_FORGIVE_SECONDS,
    CODE_MAX_DELAY,
    LATEST_VERSION,
    MIGRATIONS,
    PASSWORD_PARAMS,
    Alert,
    Booth,
    Clinician,
    CodeThrottle,
    DatabaseError,
    DuplicateError,
    InvalidValueError,
    NotFoundError,
    SchemaTooNewError,
    ScryptParams,
    Store,
    migrate,
    scrypt_kdf,
)
from kiosk.config import load

FAST = ScryptParams(n=16, r=1, p=1)
T0 = 1_750_000_000.0
PASSWORD = "correct horse battery staple"
BOOTH = {
    "name": "Riverside Library, Booth 1",
    "site": "Riverside Public Library",
    "address": "100 Example Street, Riverside, CA 92501",
    "room": "Second floor, Room 204",
}
EXAMPLE_BOOTH = Path(__file__).resolve().parents[2] / "examples" / "booth.toml"


class CountingKdf:
    """The real scrypt, counting its runs and the cost each was asked for."""

    def __init__(self) -> None:
        self.calls: list[ScryptParams] = []

    def __call__(self, password: bytes, salt: bytes, params: ScryptParams) -> bytes:
        self.calls.append(params)
        return scrypt_kdf(password, salt, params)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "hub.sqlite3"


def open_store(path: Path, **kwargs: object) -> Store:
    return Store(path, password_params=FAST, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    with open_store(path) as s:
        yield s


@pytest.fixture
def alice(store: Store) -> Clinician:
    return store.add_clinician("a.rivera", PASSWORD, "Dr. Ana Rivera")


@pytest.fixture
def booth_token(store: Store) -> str:
    return store.add_booth("riverside-1", **BOOTH)


def raw_bytes(path: Path) -> bytes:
    """Everything on disk for the database: the file, its WAL and shared memory."""
    parts = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
    return b"".join(p.read_bytes() for p in parts if p.exists())


def restart(store: Store) -> Store:
    """What a hub restart does to the store: close it, open the same file anew."""
    store.close()
    return open_store(store.path)


# -------------------------------------------------------------- the file


def test_a_new_file_is_created_private_with_the_latest_schema(path: Path) -> None:
    with open_store(path) as s:
        db = s._db
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA foreign_keys").fetchone() == (1,)
        assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(LATEST_VERSION,)]
        s.add_clinician("a.rivera", PASSWORD)
        for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
            assert (path.parent / name).stat().st_mode & 0o777 == 0o600, name


def test_an_empty_file_is_migrated(path: Path) -> None:
    path.touch()
    with open_store(path) as s:
        assert s._db.execute("SELECT version FROM schema_version").fetchone() == (LATEST_VERSION,)
        s.add_clinician("a.rivera", PASSWORD)


def test_the_folder_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "hub.sqlite3"
    with pytest.raises(DatabaseError) as caught:
        open_store(path)
    assert str(caught.value) == (
        f"{path}: the folder {path.parent} does not exist; create it "
        "(writable by the user the hub runs as), or use another path"
    )


def test_a_folder_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="is a folder, not a database file"):
        open_store(tmp_path)


def test_a_folder_nobody_may_write_to() -> None:
    """/proc/self refuses new files even to root, so this is real, not simulated."""
    path = Path("/proc/self/hub.sqlite3")
    with pytest.raises(DatabaseError) as caught:
        open_store(path)
    assert str(caught.value).startswith(f"{path}: cannot be created or opened")
    assert "may write to it and to its folder /proc/self" in str(caught.value)


def test_a_read_only_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root may write anything, so SQLite is made to open the file read-only."""
    open_store(path).close()
    real_connect = sqlite3.connect

    def read_only(database: Path, **kwargs: object) -> sqlite3.Connection:
        return real_connect(f"file:{database}?mode=ro", uri=True, **kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(sqlite3, "connect", read_only)
    with pytest.raises(DatabaseError) as caught:
        open_store(path)
    assert str(caught.value) == (
        f"{path}: is read-only for this user; check the owner and permissions "
        f"of the file and of its folder {path.parent}"
    )


def test_a_file_that_is_not_sqlite(path: Path) -> None:
    path.write_bytes(b"not a database\n" * 300)
    with pytest.raises(DatabaseError, match=r"is not a clinic-hub database \(not SQLite at all\)"):
        open_store(path)


def test_another_programs_database_is_left_alone(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE photos (id INTEGER)")
    db.close()
    with pytest.raises(DatabaseError, match=r"database of something else .* photos"):
        open_store(path)
    with sqlite3.connect(path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_schema")]
    db.close()
    assert tables == ["photos"]


# ------------------------------------------------------------ migrations


def make_v1(path: Path) -> None:
    """A database as the first release left it, with a clinician and a booth in it."""
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, target=1) == 0
    salt = bytes(16)
    digest = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=16, r=1, p=1, dklen=32)
    db.execute(
        "INSERT INTO clinicians VALUES ('a.rivera', 'Dr. Ana Rivera', ?)",
        (f"scrypt$16$1$1${salt.hex()}${digest.hex()}",),
    )
    db.execute(
        "INSERT INTO booths VALUES ('riverside-1', 'Booth 1', 'Library', '100 Example St', "
        "'Room 204', ?)",
        (hashlib.sha256(b"old-booth-token").digest(),),
    )
    db.close()


def test_a_v1_database_is_upgraded_and_keeps_its_data(path: Path) -> None:
    make_v1(path)
    with open_store(path) as s:
        assert s._db.execute("SELECT version FROM schema_version").fetchone() == (LATEST_VERSION,)
        alice = s.verify_clinician("a.rivera", PASSWORD)
        assert alice == Clinician("a.rivera", "Dr. Ana Rivera")
        assert s.verify_booth("riverside-1", "old-booth-token") is not None
        s.add_appointment("73914826", "a.rivera", T0)  # tables from version 2 work
        assert s.lookup_appointment("73914826", T0 + 1) == alice
        assert s.record_alert("riverside-1", "a1", "emergency", T0, T0 + 1)


def test_opening_again_migrates_nothing(path: Path) -> None:
    with open_store(path) as s:
        s.add_clinician("a.rivera", PASSWORD)
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db) == LATEST_VERSION
    db.close()
    with open_store(path) as s:
        assert s.clinician("a.rivera") is not None


def test_a_newer_schema_is_refused_and_left_as_it_was(path: Path) -> None:
    open_store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (LATEST_VERSION + 1,))
    db.close()
    with pytest.raises(SchemaTooNewError) as caught:
        open_store(path)
    assert str(caught.value) == (
        f"{path}: has schema version {LATEST_VERSION + 1}, but this clinic-hub knows versions "
        f"up to {LATEST_VERSION}: it was written by a newer clinic-hub; run that one "
        "(going back a version is not supported)"
    )
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (LATEST_VERSION + 1,)
    db.close()


def test_a_failing_migration_leaves_the_file_as_it_was(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_v1(path)
    broken = (MIGRATIONS[0], "CREATE TABLE half_done (x INTEGER);\nNOT SQL AT ALL;")
    monkeypatch.setattr(store_module, "MIGRATIONS", broken)
    with pytest.raises(DatabaseError, match="syntax error"):
        open_store(path)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (1,)
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_schema")}
    db.close()
    assert "half_done" not in names


def test_statements_split_where_sqlite_would() -> None:
    script = """
    CREATE TABLE t (x TEXT DEFAULT 'a;b');  -- a comment; with a semicolon
    CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END;
    """
    statements = list(store_module._statements(script))
    assert len(statements) == 2
    assert statements[1].strip().endswith("END;")
    with pytest.raises(ValueError, match="unterminated"):
        list(store_module._statements("CREATE TABLE t (x)"))


# ------------------------------------------------------------ clinicians


def test_a_clinician_logs_in_with_their_password(store: Store, alice: Clinician) -> None:
    assert alice == Clinician("a.rivera", "Dr. Ana Rivera")
    assert store.verify_clinician("a.rivera", PASSWORD) == alice
    assert store.verify_clinician("a.rivera", PASSWORD + "!") is None
    assert store.verify_clinician("b.okafor", PASSWORD) is None
    assert store.clinician("a.rivera") == alice
    assert store.clinician("b.okafor") is None


def test_the_display_name_defaults_to_the_username(store: Store) -> None:
    assert store.add_clinician("b.okafor", PASSWORD) == Clinician("b.okafor", "b.okafor")


def test_passwords_are_salted_scrypt(store: Store) -> None:
    store.add_clinician("a.rivera", PASSWORD)
    store.add_clinician("b.okafor", PASSWORD)
    rows = store._db.execute("SELECT password_hash FROM clinicians ORDER BY username").fetchall()
    (first,), (second,) = rows
    name, n, r, p, salt, digest = first.split("$")
    assert (name, n, r, p) == ("scrypt", "16", "1", "1")
    expected = hashlib.scrypt(PASSWORD.encode(), salt=bytes.fromhex(salt), n=16, r=1, p=1, dklen=32)
    assert bytes.fromhex(digest) == expected
    assert first != second  # the same password, a different salt
    assert PASSWORD.encode() not in raw_bytes(store.path)


def test_the_product_cost_is_memory_hard_and_runs() -> None:
    """2**15 x 8 needs 32 MiB: just over OpenSSL's default limit, so maxmem must be raised."""
    assert (PASSWORD_PARAMS.n, PASSWORD_PARAMS.r, PASSWORD_PARAMS.p) == (2**15, 8, 1)
    assert 128 * PASSWORD_PARAMS.n * PASSWORD_PARAMS.r == 32 * 2**20
    assert len(scrypt_kdf(b"password", bytes(16), PASSWORD_PARAMS)) == 32


def test_the_same_password_typed_in_another_unicode_form_matches(store: Store) -> None:
    composed = "caf\u00e9 au lait, s'il vous pla\u00eet"
    decomposed = "cafe\u0301 au lait, s'il vous plai\u0302t"
    store.add_clinician("a.rivera", composed)
    assert store.verify_clinician("a.rivera", decomposed) is not None


def test_an_unknown_user_costs_one_scrypt_like_a_known_one(path: Path) -> None:
    """The answer's timing must not tell a guesser which usernames exist."""
    kdf = CountingKdf()
    with open_store(path, kdf=kdf) as s:
        s.add_clinician("a.rivera", PASSWORD)
        kdf.calls.clear()
        for username, password in [
            ("a.rivera", PASSWORD),
            ("a.rivera", "wrong wrong wrong wrong"),
            ("nobody", PASSWORD),
            ("Not A Valid Username!", PASSWORD),
        ]:
            before = len(kdf.calls)
            s.verify_clinician(username, password)
            assert len(kdf.calls) == before + 1, username
    assert kdf.calls == [FAST] * 4  # the dummy costs what a real hash costs


def test_a_duplicate_username_is_refused(store: Store, alice: Clinician) -> None:
    with pytest.raises(DuplicateError) as caught:
        store.add_clinician("a.rivera", "another long password here")
    assert str(caught.value) == 'there is already a clinician "a.rivera"; choose another username'
    assert store.verify_clinician("a.rivera", PASSWORD) == alice


@pytest.mark.parametrize(
    ("username", "password", "name", "problem"),
    [
        ("A.Rivera", PASSWORD, None, "a username must be 1-64 lowercase letters, digits, "),
        ("-rivera", PASSWORD, None, "starting with a letter or digit"),
        ("a" * 65, PASSWORD, None, "a username must be 1-64"),
        ("", PASSWORD, None, 'not ""'),
        ("a.rivera", "short", None, "at least 15 characters, not 5"),
        ("a.rivera", "x" * 257, None, "at most 256 characters, not 257"),
        ("a.rivera", PASSWORD + "\n", None, "must not contain control characters"),
        ("a.rivera", PASSWORD, "Dr.\nRivera", "the display name must be one line"),
        ("a.rivera", PASSWORD, "  ", "the display name must not be empty"),
    ],
)
def test_bad_clinician_values_are_refused(
    store: Store, username: str, password: str, name: str | None, problem: str
) -> None:
    with pytest.raises(InvalidValueError, match=re.escape(problem)):
        store.add_clinician(username, password, name)
    assert store._db.execute("SELECT count(*) FROM clinicians").fetchone() == (0,)


def test_a_refused_password_is_never_repeated(store: Store) -> None:
    with pytest.raises(InvalidValueError) as caught:
        store.add_clinician("a.rivera", "hunter2")
    assert "hunter2" not in str(caught.value)


# -------------------------------------------------------------- sessions


def test_a_session_lasts_until_it_expires_or_ends(store: Store, alice: Clinician) -> None:
    token = store.new_session("a.rivera", T0, lifetime=3600)
    assert len(token) >= 43  # 32 random bytes
    assert store.session_user(token, T0) == alice
    assert store.session_user(token, T0 + 3599) == alice
    assert store.session_user(token, T0 + 3600) is None
    assert store.session_user(token + "x", T0) is None
    assert store.session_user("", T0) is None
    store.end_session(token)
    assert store.session_user(token, T0) is None
    store.end_session(token)  # twice is fine


def test_session_tokens_are_random_and_kept_only_as_hashes(store: Store, alice: Clinician) -> None:
    tokens = {store.new_session("a.rivera", T0) for _ in range(20)}
    assert len(tokens) == 20
    on_disk = raw_bytes(store.path)
    for token in tokens:
        assert token.encode() not in on_disk
        assert hashlib.sha256(token.encode()).digest() in on_disk


def test_a_session_needs_a_clinician(store: Store) -> None:
    with pytest.raises(NotFoundError, match='there is no clinician "nobody"'):
        store.new_session("nobody", T0)


def test_sessions_survive_a_restart(store: Store, alice: Clinician) -> None:
    token = store.new_session("a.rivera", T0)
    with restart(store) as again:
        assert again.session_user(token, T0 + 60) == alice


# ---------------------------------------------------------------- booths


def test_a_booth_gets_a_credential_that_only_it_can_use(store: Store, booth_token: str) -> None:
    booth = Booth("riverside-1", **BOOTH)
    assert store.verify_booth("riverside-1", booth_token) == booth
    assert store.verify_booth("riverside-1", booth_token[:-1]) is None
    assert store.verify_booth("riverside-2", booth_token) is None
    assert store.verify_booth("not valid", booth_token) is None
    assert store.booth("riverside-1") == booth
    assert store.booth("riverside-2") is None
    assert len(booth_token) >= 43
    assert booth_token.encode() not in raw_bytes(store.path)


def test_two_booths_get_different_credentials(store: Store, booth_token: str) -> None:
    other = store.add_booth("riverside-2", **BOOTH)
    assert other != booth_token
    assert store.verify_booth("riverside-2", booth_token) is None


def test_rotating_a_credential_retires_the_old_one(store: Store, booth_token: str) -> None:
    new = store.rotate_booth_credential("riverside-1")
    assert new != booth_token
    assert store.verify_booth("riverside-1", booth_token) is None
    assert store.verify_booth("riverside-1", new) is not None
    with pytest.raises(NotFoundError, match='there is no booth "riverside-9"'):
        store.rotate_booth_credential("riverside-9")


def test_booths_and_credentials_survive_a_restart(store: Store, booth_token: str) -> None:
    with restart(store) as again:
        assert again.verify_booth("riverside-1", booth_token) == Booth("riverside-1", **BOOTH)


def test_a_duplicate_booth_id_is_refused(store: Store, booth_token: str) -> None:
    with pytest.raises(DuplicateError, match='already a booth "riverside-1"; choose another'):
        store.add_booth("riverside-1", **BOOTH)
    assert store.verify_booth("riverside-1", booth_token) is not None


@pytest.mark.parametrize("booth_id", ["Riverside-1", "riverside 1", "-riverside", "", "a" * 64])
def test_a_bad_booth_id_is_refused(store: Store, booth_id: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        store.add_booth(booth_id, **BOOTH)
    assert str(caught.value) == (
        "a booth id must be 1-63 lowercase letters, digits and -, starting with a letter or "
        f'digit (such as "riverside-1"), not "{booth_id}"'
    )


def test_the_example_booths_id_is_accepted(store: Store) -> None:
    """The hub and the booth's own configuration agree on what a booth id is."""
    config = load(EXAMPLE_BOOTH)
    store.add_booth(
        config.booth.id,
        name=config.booth.name,
        site=config.site.name,
        address=config.site.street_address,
        room=config.site.room,
    )


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("name", "", "the booth's name must not be empty"),
        ("site", "Library\nBranch", "the site name must be one line of printable text"),
        ("address", "x" * 201, "the street address must be at most 200 characters, not 201"),
        ("room", " 204", "the room must not start or end with spaces"),
    ],
)
def test_bad_booth_details_are_refused(store: Store, field: str, value: str, problem: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        store.add_booth("riverside-1", **{**BOOTH, field: value})
    assert str(caught.value) == problem


# ------------------------------------------------------------ enrollment


def test_an_enrollment_code_works_once(store: Store) -> None:
    code = store.new_enrollment_code(T0)
    assert len(code) == 14 and code[4] == code[9] == "-"
    assert set(code.replace("-", "")) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert store.redeem_enrollment_code(code, T0 + 60)
    assert not store.redeem_enrollment_code(code, T0 + 61)


def test_an_enrollment_code_expires(store: Store) -> None:
    code = store.new_enrollment_code(T0, lifetime=3600)
    assert not store.redeem_enrollment_code(code, T0 + 3600)
    assert not store.redeem_enrollment_code(code, T0 + 1)  # and is gone


def test_an_enrollment_code_forgives_how_it_was_typed(store: Store) -> None:
    code = store.new_enrollment_code(T0)
    typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert store.redeem_enrollment_code(typed, T0 + 1)


def test_unknown_enrollment_codes_are_refused(store: Store) -> None:
    store.new_enrollment_code(T0)
    assert not store.redeem_enrollment_code("AAAA-AAAA-AAAA", T0)
    assert not store.redeem_enrollment_code("", T0)


def test_enrollment_codes_survive_a_restart_and_are_kept_hashed(store: Store) -> None:
    code = store.new_enrollment_code(T0)
    assert code.replace("-", "").encode() not in raw_bytes(store.path)
    with restart(store) as again:
        assert again.redeem_enrollment_code(code, T0 + 60)


def test_a_redeemed_code_stays_redeemed_after_a_restart(store: Store) -> None:
    code = store.new_enrollment_code(T0)
    assert store.redeem_enrollment_code(code, T0 + 1)
    with restart(store) as again:
        assert not again.redeem_enrollment_code(code, T0 + 2)


# ---------------------------------------------------------- appointments


def test_an_appointment_code_routes_to_its_clinician(store: Store, alice: Clinician) -> None:
    appointment = store.add_appointment("73914826", "a.rivera", T0, lifetime=3600)
    assert (appointment.clinician, appointment.expires_at) == (alice, T0 + 3600)
    assert store.lookup_appointment("73914826", T0 + 1) == alice
    assert store.lookup_appointment("73914826", T0 + 3599) == alice
    assert store.lookup_appointment("73914826", T0 + 3600) is None


def test_a_wrong_code_looks_like_any_other_wrong_code(store: Store, alice: Clinician) -> None:
    store.add_appointment("73914826", "a.rivera", T0, lifetime=60)
    answers = {
        store.lookup_appointment(code, T0 + 120)
        for code in ["73914826", "73914827", "0000", "abc", "", "1" * 13]
    }
    assert answers == {None}


def test_appointments_survive_a_restart(store: Store, alice: Clinician) -> None:
    store.add_appointment("73914826", "a.rivera", T0)
    with restart(store) as again:
        assert again.lookup_appointment("73914826", T0 + 60) == alice


def test_appointment_codes_are_nowhere_in_the_file(store: Store, alice: Clinician) -> None:
    """A stolen database (file and WAL) does not list the codes."""
    codes = ["73914826", "482915", "5550123456", "90210735"]
    for code in codes:
        store.add_appointment(code, "a.rivera", T0)
    on_disk = raw_bytes(store.path)
    assert b"Dr. Ana Rivera" in on_disk  # what is stored plainly can be seen this way
    for code in codes:
        assert code.encode() not in on_disk
        assert code.encode("utf-16-le") not in on_disk
        assert int(code).to_bytes(8, "big").lstrip(b"\0") not in on_disk
    store.close()  # the WAL is folded into the file
    on_disk = raw_bytes(store.path)
    for code in codes:
        assert code.encode() not in on_disk


def test_each_hub_keys_its_codes_differently(tmp_path: Path) -> None:
    stored = []
    for name in ("one", "two"):
        with open_store(tmp_path / f"{name}.sqlite3") as s:
            s.add_clinician("a.rivera", PASSWORD)
            s.add_appointment("73914826", "a.rivera", T0)
            stored.append(s._db.execute("SELECT code_hmac FROM appointments").fetchone())
    assert stored[0] != stored[1]


def test_a_live_code_cannot_be_given_twice(store: Store, alice: Clinician) -> None:
    store.add_clinician("b.okafor", PASSWORD)
    store.add_appointment("73914826", "a.rivera", T0, lifetime=60)
    with pytest.raises(DuplicateError, match="that appointment code is already in use"):
        store.add_appointment("73914826", "b.okafor", T0 + 30)
    store.add_appointment("73914826", "b.okafor", T0 + 60)  # once expired, it is free
    assert store.lookup_appointment("73914826", T0 + 61) == Clinician("b.okafor", "b.okafor")


def test_an_appointment_needs_a_known_clinician(store: Store) -> None:
    with pytest.raises(NotFoundError, match='there is no clinician "nobody"'):
        store.add_appointment("73914826", "nobody", T0)


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("123", "an appointment code must be 4-12 digits long, not 3"),
        ("1234567890123", "an appointment code must be 4-12 digits long, not 13"),
        ("12a4", "an appointment code must be 4-12 digits 0-9 only"),
        ("١٢٣٤", "an appointment code must be 4-12 digits 0-9 only"),  # Arabic-Indic digits
        ("", "an appointment code must be 4-12 digits 0-9 only"),
    ],
)
def test_a_bad_appointment_code_is_refused(
    store: Store, alice: Clinician, code: str, problem: str
) -> None:
    with pytest.raises(InvalidValueError) as caught:
        store.add_appointment(code, "a.rivera", T0)
    assert str(caught.value) == problem


@pytest.mark.parametrize("lifetime", [0, -1, float("nan"), float("inf")])
def test_a_lifetime_must_be_positive_and_finite(
    store: Store, alice: Clinician, lifetime: float
) -> None:
    with pytest.raises(InvalidValueError, match="must be a number of seconds above 0"):
        store.add_appointment("73914826", "a.rivera", T0, lifetime=lifetime)


# ------------------------------------------------------ guessing throttle


def miss_delays(throttle: CodeThrottle, times: list[float]) -> list[float]:
    delays = []
    for now in times:
        throttle = throttle.after(False, now)
        delays.append(throttle.delay(now))
    return delays


def test_the_third_quick_miss_starts_doubling_waits() -> None:
    delays = []
    throttle = CodeThrottle()
    now = T0
    for _ in range(60):  # each try waits out the last delay
        throttle = throttle.after(False, now)
        delays.append(throttle.delay(now))
        now += throttle.delay(now) + 0.001
    assert delays[:12] == [0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert max(delays) == CODE_MAX_DELAY  # while waiting, misses are forgiven: it takes a while


def test_misses_spread_out_never_wait() -> None:
    assert miss_delays(CodeThrottle(), [T0 + i * CODE_FORGIVE_SECONDS for i in range(50)]) == (
        [0.0] * 50
    )


def test_a_right_code_does_not_buy_more_guesses() -> None:
    throttle = CodeThrottle()
    for now in (T0, T0 + 1, T0 + 2):
        throttle = throttle.after(False, now)
    assert throttle.after(True, T0 + 3) == throttle
    assert throttle.after(False, T0 + 4).delay(T0 + 4) == 2


def test_quiet_time_forgives_misses() -> None:
    throttle = CodeThrottle()
    for now in (T0, T0 + 1, T0 + 2, T0 + 3):
        throttle = throttle.after(False, now)
    assert throttle.misses_at(T0 + 3) == pytest.approx(4, abs=0.01)
    later = T0 + 3 + 4 * CODE_FORGIVE_SECONDS
    assert throttle.misses_at(later) == 0
    assert miss_delays(throttle, [later, later + 1, later + 2]) == [0, 0, 1]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.floats(min_value=0, max_value=700, allow_nan=False)),
        max_size=300,
    )
)
def test_three_misses_in_ten_minutes_always_wait(tries: list[tuple[bool, float]]) -> None:
    """Whatever comes between, a third miss within ten minutes of the first two waits."""
    throttle = CodeThrottle()
    now = T0
    misses: list[float] = []
    for ok, gap in tries:
        now += throttle.delay(now) + gap
        throttle = throttle.after(ok, now)
        if not ok:
            misses.append(now)
            if len(misses) >= 3 and now - misses[-3] < CODE_FORGIVE_SECONDS:
                assert throttle.delay(now) > 0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.sampled_from([0.0, 0.001, 1.0, 30.0, 299.0, 600.0, 601.0, 1800.0, 7200.0]),
        ),
        min_size=1,
        max_size=400,
    )
)
def test_a_guesser_gets_about_one_try_per_ten_minutes(tries: list[tuple[bool, float]]) -> None:
    """Waiting out every delay, in any rhythm, no day holds more than 14 + 144 misses."""
    day = 86_400.0
    throttle = CodeThrottle()
    now = T0
    misses: list[float] = []
    for ok, gap in tries:
        now += throttle.delay(now) + gap
        throttle = throttle.after(ok, now)
        assert 0 <= throttle.delay(now) <= CODE_MAX_DELAY
        if not ok:
            misses.append(now)
    for i, start in enumerate(misses):
        within = sum(1 for t in misses[i:] if t < start + day)
        assert within <= 14 + day / CODE_FORGIVE_SECONDS


def test_a_greedy_guesser_for_a_whole_day() -> None:
    throttle = CodeThrottle()
    now, misses = T0, 0
    while now < T0 + 86_400:
        throttle = throttle.after(False, now)
        misses += 1
        now += throttle.delay(now) + 0.001
    assert 144 <= misses <= 158


def test_the_store_keeps_a_throttle_per_booth(store: Store, booth_token: str) -> None:
    store.add_booth("riverside-2", **BOOTH)
    assert [store.note_code_attempt("riverside-1", False, T0 + i) for i in range(4)] == [
        0,
        0,
        1,
        2,
    ]
    assert store.code_delay("riverside-1", T0 + 3) == 2
    assert store.code_delay("riverside-1", T0 + 4) == 1
    assert store.code_delay("riverside-1", T0 + 5) == 0
    assert store.code_delay("riverside-2", T0 + 3) == 0
    assert store.note_code_attempt("riverside-2", False, T0 + 3) == 0
    assert store.note_code_attempt("riverside-1", True, T0 + 5) == 0
    assert store.note_code_attempt("riverside-1", False, T0 + 5) == 4


def test_the_throttle_survives_a_restart(store: Store, booth_token: str) -> None:
    for i in range(5):
        store.note_code_attempt("riverside-1", False, T0 + i)
    with restart(store) as again:
        assert again.code_delay("riverside-1", T0 + 4) == 4
        assert again.note_code_attempt("riverside-1", False, T0 + 8) == 8
        assert again.code_delay("riverside-1", T0 + 8 + 5 * CODE_FORGIVE_SECONDS) == 0
        delays = [
            again.note_code_attempt("riverside-1", False, T0 + 10 * CODE_FORGIVE_SECONDS + i)
            for i in range(3)
        ]
        assert delays == [0, 0, 1]


def test_the_throttle_needs_a_known_booth(store: Store) -> None:
    with pytest.raises(NotFoundError, match='there is no booth "nowhere"'):
        store.note_code_attempt("nowhere", False, T0)
    assert store.code_delay("nowhere", T0) == 0


# ---------------------------------------------------------------- alerts


def test_an_alert_waits_for_a_staff_member(
    store: Store, alice: Clinician, booth_token: str
) -> None:
    assert store.record_alert("riverside-1", "a1", "emergency", T0, T0 + 2)
    booth = Booth("riverside-1", **BOOTH)
    assert store.unacked_alerts() == [Alert(booth, "a1", "emergency", T0, T0 + 2)]
    assert store.ack_alert("riverside-1", "a1", "a.rivera", T0 + 30)
    assert store.unacked_alerts() == []
    row = store._db.execute("SELECT acked_by, acked_at FROM alerts").fetchone()
    assert row == ("a.rivera", T0 + 30)


def test_an_alert_delivered_twice_is_stored_once(store: Store, booth_token: str) -> None:
    assert store.record_alert("riverside-1", "a1", "emergency", T0, T0 + 1)
    assert not store.record_alert("riverside-1", "a1", "emergency", T0, T0 + 5)
    assert [a.received_at for a in store.unacked_alerts()] == [T0 + 1]


def test_a_redelivered_alert_stays_acknowledged(
    store: Store, alice: Clinician, booth_token: str
) -> None:
    store.record_alert("riverside-1", "a1", "emergency", T0, T0 + 1)
    store.ack_alert("riverside-1", "a1", "a.rivera", T0 + 2)
    assert not store.record_alert("riverside-1", "a1", "emergency", T0, T0 + 3)
    assert store.unacked_alerts() == []


def test_booths_cannot_shadow_each_others_alerts(store: Store, booth_token: str) -> None:
    store.add_booth("riverside-2", **BOOTH)
    assert store.record_alert("riverside-1", "1", "emergency", T0, T0 + 1)
    assert store.record_alert("riverside-2", "1", "emergency", T0, T0 + 1)
    assert [a.booth.booth_id for a in store.unacked_alerts()] == ["riverside-1", "riverside-2"]


def test_a_second_ack_changes_nothing(store: Store, alice: Clinician, booth_token: str) -> None:
    store.add_clinician("b.okafor", PASSWORD)
    store.record_alert("riverside-1", "a1", "emergency", T0, T0 + 1)
    assert store.ack_alert("riverside-1", "a1", "a.rivera", T0 + 10)
    assert not store.ack_alert("riverside-1", "a1", "b.okafor", T0 + 11)
    assert store._db.execute("SELECT acked_by, acked_at FROM alerts").fetchone() == (
        "a.rivera",
        T0 + 10,
    )


def test_acks_need_a_known_alert_and_clinician(
    store: Store, alice: Clinician, booth_token: str
) -> None:
    store.record_alert("riverside-1", "a1", "emergency", T0, T0 + 1)
    with pytest.raises(NotFoundError, match='there is no alert "a2" from booth "riverside-1"'):
        store.ack_alert("riverside-1", "a2", "a.rivera", T0)
    with pytest.raises(NotFoundError, match='there is no clinician "nobody"'):
        store.ack_alert("riverside-1", "a1", "nobody", T0)
    assert len(store.unacked_alerts()) == 1


def test_unacked_alerts_survive_a_restart(store: Store, alice: Clinician, booth_token: str) -> None:
    store.record_alert("riverside-1", "a1", "emergency", T0, T0 + 1)
    store.record_alert("riverside-1", "a2", "emergency", T0 + 5, T0 + 6)
    store.ack_alert("riverside-1", "a1", "a.rivera", T0 + 10)
    with restart(store) as again:
        assert [a.alert_id for a in again.unacked_alerts()] == ["a2"]


def test_a_backlog_from_an_offline_booth_arrives_whole(store: Store, booth_token: str) -> None:
    """Alerts raised offline come in on reconnection, late and perhaps more than once."""
    raised = [T0, T0 + 60, T0 + 120]
    back = T0 + 3600
    for attempt in range(2):  # the link dropped before the booth saw the hub's answers
        for i, when in enumerate(raised):
            assert store.record_alert("riverside-1", f"q{i}", "emergency", when, back + i) == (
                attempt == 0
            )
    alerts = store.unacked_alerts()
    assert [(a.alert_id, a.raised_at, a.received_at) for a in alerts] == [
        ("q0", T0, back),
        ("q1", T0 + 60, back + 1),
        ("q2", T0 + 120, back + 2),
    ]


@pytest.mark.parametrize(
    ("alert_id", "kind", "problem"),
    [
        ("", "emergency", "an alert id must be 1-64 letters, digits"),
        ("a" * 65, "emergency", "an alert id must be 1-64 letters, digits"),
        ("a 1", "emergency", "an alert id must be 1-64 letters, digits"),
        ("a1", "Emergency", 'an alert kind must be a lowercase word such as "emergency"'),
        ("a1", "", 'an alert kind must be a lowercase word such as "emergency"'),
    ],
)
def test_bad_alerts_are_refused(
    store: Store, booth_token: str, alert_id: str, kind: str, problem: str
) -> None:
    with pytest.raises(InvalidValueError, match=problem):
        store.record_alert("riverside-1", alert_id, kind, T0, T0)


def test_an_alert_needs_a_known_booth(store: Store) -> None:
    with pytest.raises(NotFoundError, match='there is no booth "nowhere"'):
        store.record_alert("nowhere", "a1", "emergency", T0, T0)


# ----------------------------------------------------------------- upkeep


def test_purge_drops_only_what_can_no_longer_be_used(
    store: Store, alice: Clinician, booth_token: str
) -> None:
    old_session = store.new_session("a.rivera", T0, lifetime=60)
    live_session = store.new_session("a.rivera", T0, lifetime=7200)
    store.new_enrollment_code(T0, lifetime=60)
    live_code = store.new_enrollment_code(T0, lifetime=7200)
    store.add_appointment("1111", "a.rivera", T0, lifetime=60)
    store.add_appointment("2222", "a.rivera", T0, lifetime=7200)
    store.note_code_attempt("riverside-1", False, T0)
    store.record_alert("riverside-1", "a1", "emergency", T0, T0)
    store.ack_alert("riverside-1", "a1", "a.rivera", T0 + 1)
    assert store.purge_expired(T0 + 3600) == 4
    assert store.session_user(old_session, T0) is None
    assert store.session_user(live_session, T0 + 3600) == alice
    assert store.redeem_enrollment_code(live_code, T0 + 3600)
    assert store.lookup_appointment("2222", T0 + 3600) == alice
    assert store._db.execute("SELECT count(*) FROM alerts").fetchone() == (1,)


# ------------------------------------------------------- threads and crashes


def test_calls_from_the_hubs_threads(store: Store, alice: Clinician, booth_token: str) -> None:
    """The hub calls through asyncio.to_thread: many at once, from pool threads."""

    async def many() -> list[object]:
        return await asyncio.gather(
            *(
                asyncio.to_thread(store.record_alert, "riverside-1", f"a{i}", "emergency", T0, T0)
                for i in range(40)
            ),
            *(asyncio.to_thread(store.verify_clinician, "a.rivera", PASSWORD) for _ in range(10)),
        )

    answers = asyncio.run(many())
    assert answers == [True] * 40 + [alice] * 10
    assert len(store.unacked_alerts()) == 40


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from clinic.store import ScryptParams, Store

    path, protected = Path(sys.argv[1]), sys.argv[2] == "protected"
    pause_in = int(sys.argv[3])  # the batch to stop in until killed; -1 for none
    store = Store(path, password_params=ScryptParams(n=16, r=1, p=1))
    store.add_booth("b", name="B", site="S", address="A", room="R")
    if not protected:  # the twin: no journal on disk, no syncing
        store._db.execute("PRAGMA journal_mode = MEMORY")
        store._db.execute("PRAGMA synchronous = OFF")
    store._db.execute("PRAGMA cache_size = 8")  # spill to disk in mid-transaction
    batch = 0
    while True:
        with store._write() as db:
            for i in range(400):
                db.execute(
                    "INSERT INTO alerts (booth_id, alert_id, kind, raised_at, received_at) "
                    "VALUES ('b', ?, 'emergency', ?, ?)",
                    (f"{batch}-{i}-" + "x" * 40, batch, i),
                )
                if i == 200:
                    print(f"halfway {batch}", flush=True)
                    if batch == pause_in:
                        sys.stdin.readline()  # wait here, mid-transaction, to be killed
        batch += 1
    """
)
BATCH = 400


def kill_mid_batch(path: Path, mode: str, batch: int, *, pause: bool) -> None:
    """Run the writer and SIGKILL it halfway through its ``batch``-th transaction.

    With ``pause`` the writer stops there until killed; without, it runs on and
    the kill lands wherever it has got to, commits included.
    """
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), mode, str(batch if pause else -1)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = threading.Timer(30, writer.kill)  # a writer that never gets there fails the test
    deadline.start()
    try:
        assert writer.stdout is not None
        for line in writer.stdout:
            if line.strip() == f"halfway {batch}":
                os.kill(writer.pid, signal.SIGKILL)
                break
    finally:
        deadline.cancel()
        writer.kill()
        writer.wait(timeout=30)
        for pipe in (writer.stdin, writer.stdout):
            if pipe is not None:
                pipe.close()
    assert writer.returncode == -signal.SIGKILL


def whole_batches_only(path: Path) -> bool:
    """True when the database opens, is intact and holds only whole transactions."""
    try:
        with open_store(path) as s:
            if s._db.execute("PRAGMA integrity_check").fetchall() != [("ok",)]:
                return False
            rows = s._db.execute("SELECT raised_at FROM alerts").fetchall()
    except (DatabaseError, sqlite3.DatabaseError):
        return False
    per_batch = collections.Counter(row[0] for row in rows)
    return bool(per_batch) and set(per_batch.values()) == {BATCH}


@pytest.mark.parametrize(("batch", "pause"), [(1, True), (2, True), (1, False), (3, False)])
def test_a_writer_killed_mid_transaction_leaves_whole_transactions(
    tmp_path: Path, batch: int, pause: bool
) -> None:
    """SIGKILL stops the process, not the disk: this shows atomicity, which synchronous=FULL
    then makes durable across a power cut (that half needs real power cuts to show)."""
    path = tmp_path / "hub.sqlite3"
    kill_mid_batch(path, "protected", batch, pause=pause)
    assert whole_batches_only(path)


def test_twin_without_a_journal_the_same_kill_damages_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite3"
    kill_mid_batch(path, "unprotected", 2, pause=True)
    assert not whole_batches_only(path)
