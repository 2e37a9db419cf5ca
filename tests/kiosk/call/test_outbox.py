"""The alert outbox on disk: written atomically, read back, a damaged file set aside."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clinic.protocol import Alert, AlertKind, Site, new_id
from kiosk.call.outbox import OutboxFile


def alert() -> Alert:
    return Alert(
        id=new_id(),
        alert_id=new_id(),
        booth_id="booth-1",
        kind=AlertKind.EMERGENCY,
        raised_at=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
        site=Site(name="Riverside Library", street_address="1 Main St", room="104"),
    )


def test_alerts_are_kept_in_order_and_read_back(tmp_path: Path) -> None:
    box = OutboxFile(tmp_path / "outbox.json")
    assert box.load() == {}
    first, second = alert(), alert()
    box.save([first, second])
    assert list(box.load().values()) == [first, second]
    assert box.path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["outbox.json"], "no temporary file left"
    box.save([])
    assert not box.path.exists()


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"a": 1}', b'[{"v": 1, "type": "ping", "id": "x1"}]', b"[" * 100_000],
)
def test_a_damaged_file_is_set_aside_not_trusted(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    box = OutboxFile(tmp_path / "outbox.json")
    box.path.write_bytes(content)
    with caplog.at_level(logging.ERROR):
        assert box.load() == {}
    assert (tmp_path / "outbox.bad").read_bytes() == content
    assert "is damaged" in caplog.text


def test_a_write_cut_short_leaves_the_old_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = OutboxFile(tmp_path / "outbox.json")
    kept = alert()
    box.save([kept])

    def power_cut(src: object, dst: object) -> None:
        raise OSError(5, "power cut")

    monkeypatch.setattr("os.replace", power_cut)
    with pytest.raises(OSError):
        box.save([kept, alert()])
    monkeypatch.undo()
    assert list(box.load().values()) == [kept]
    assert json.loads(box.path.read_text())[0]["alert_id"] == kept.alert_id
