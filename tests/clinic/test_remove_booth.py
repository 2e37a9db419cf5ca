"""``clinic-hub remove-booth`` and :meth:`Store.remove_booth`: the registration, credential
and enrolled key go, so the id can be enrolled again; unknown ids and unacknowledged
alerts are refused with what to do; the command asks first unless ``--yes``.

The booth's hello refused once it is removed is shown against a real hub in
``tests/provisioning/test_enroll.py``."""

from __future__ import annotations

import io
import shlex
import sys
from pathlib import Path

import pytest

from clinic.cli import main
from clinic.store import InvalidValueError, NotFoundError, ScryptParams, Store

FAST = ScryptParams(n=16, r=1, p=1)
T0 = 1_750_000_000.0
KEY = bytes(range(32))
WHERE = {"name": "Booth 1", "site": "Riverside Library", "address": "1 Main St", "room": "R 2"}


def fast_store(path: Path) -> Store:
    return Store(path, password_params=FAST)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "hub.sqlite3"


def enrolled(db: Path, booth_id: str = "riverside-1") -> str:
    """A booth enrolled with a key, with a code throttle and an acknowledged alert."""
    with fast_store(db) as store:
        code = store.new_enrollment_code(T0)
        token = store.enroll_booth(code, booth_id, public_key=KEY, now=T0, **WHERE)
        store.note_code_attempt(booth_id, False, T0)
        store.add_clinician("a.rivera", "correct horse battery staple")
        store.record_alert(booth_id, "a1", "emergency", T0, T0)
        store.ack_alert(booth_id, "a1", "a.rivera", T0)
    return token


def hub(
    capsys: pytest.CaptureFixture[str], db: Path, command: str, answer: str | None = None
) -> tuple[int, str, str]:
    if answer is not None:
        sys.stdin = io.StringIO(answer)
    try:
        code = main(["--db", str(db), *shlex.split(command)], store_factory=fast_store)
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# ---------------------------------------------------------------- the store


def test_removing_forgets_registration_credential_and_key(db: Path) -> None:
    token = enrolled(db)
    with fast_store(db) as store:
        assert store.verify_booth("riverside-1", token) is not None
        assert store.remove_booth("riverside-1") == 1  # the acknowledged alert
        assert store.booth("riverside-1") is None
        assert store.verify_booth("riverside-1", token) is None
        assert store.booth_public_key("riverside-1") is None
        assert store.code_delay("riverside-1", T0) == 0
        # The id is free: a new enrollment with a new key takes it.
        code = store.new_enrollment_code(T0)
        other = bytes(32)
        new_token = store.enroll_booth(code, "riverside-1", public_key=other, now=T0, **WHERE)
        assert store.booth_public_key("riverside-1") == other
        assert store.verify_booth("riverside-1", token) is None
        assert store.verify_booth("riverside-1", new_token) is not None


def test_removing_an_unknown_booth_names_it(db: Path) -> None:
    with fast_store(db) as store, pytest.raises(NotFoundError, match='no booth "nowhere-1"'):
        store.remove_booth("nowhere-1")


@pytest.mark.parametrize("acked", [False, True], ids=["unacknowledged", "twin-acknowledged"])
def test_an_alert_staff_have_not_seen_stops_the_removal(db: Path, acked: bool) -> None:
    token = enrolled(db)
    with fast_store(db) as store:
        store.record_alert("riverside-1", "a2", "emergency", T0 + 1, T0 + 1)
        if acked:
            store.ack_alert("riverside-1", "a2", "a.rivera", T0 + 2)
            assert store.remove_booth("riverside-1") == 2
            assert store.booth("riverside-1") is None
            return
        with pytest.raises(InvalidValueError, match="1 alert\\(s\\) not yet acknowledged"):
            store.remove_booth("riverside-1")
        assert store.verify_booth("riverside-1", token) is not None  # nothing was removed
        assert [a.alert_id for a in store.unacked_alerts()] == ["a2"]


# ---------------------------------------------------------------- the command


def test_remove_booth_with_yes(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enrolled(db)
    code, out, err = hub(capsys, db, "remove-booth riverside-1 --yes")
    assert code == 0
    assert out == 'Removed booth "riverside-1" and 1 acknowledged alert(s).\n'
    assert "clinic-hub enroll-code" in err
    with fast_store(db) as store:
        assert store.booth("riverside-1") is None


def test_remove_booth_asks_for_the_id_typed_back(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    enrolled(db)
    code, _, err = hub(capsys, db, "remove-booth riverside-1", answer="riverside-1\n")
    assert code == 0
    assert (
        'Remove booth "riverside-1" (Booth 1, Riverside Library, R 2), its credential, its '
        "enrolled key and its 1 acknowledged alert(s)? Its credential stops working." in err
    )
    assert 'Type the booth id "riverside-1" to confirm' in err
    with fast_store(db) as store:
        assert store.booth("riverside-1") is None


@pytest.mark.parametrize("answer", ["y\n", "", "riverside-2\n"])
def test_remove_booth_not_confirmed_removes_nothing(
    db: Path, capsys: pytest.CaptureFixture[str], answer: str
) -> None:
    token = enrolled(db)
    code, out, err = hub(capsys, db, "remove-booth riverside-1", answer=answer)
    assert code == 1
    assert out == ""
    assert "clinic-hub remove-booth: not confirmed; nothing was removed" in err
    with fast_store(db) as store:
        assert store.verify_booth("riverside-1", token) is not None


def test_remove_booth_unknown_id_lists_the_known_ones(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    enrolled(db)
    code, _, err = hub(capsys, db, "remove-booth riverside-9 --yes")
    assert code == 1
    assert 'there is no booth "riverside-9" (registered: riverside-1); check the id' in err


def test_remove_booth_with_unacknowledged_alerts_is_refused(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    enrolled(db)
    with fast_store(db) as store:
        store.record_alert("riverside-1", "a2", "emergency", T0, T0)
    code, _, err = hub(capsys, db, "remove-booth riverside-1 --yes")
    assert code == 1
    assert "1 alert(s) not yet acknowledged" in err
    assert "nothing was removed" in err
    with fast_store(db) as store:
        assert store.booth("riverside-1") is not None


def test_remove_booth_is_listed_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "remove-booth" in capsys.readouterr().out
