"""``kiosk-provision status`` (readable and ``--json``) on a bare, a configured and an
enrolled booth with a real hub; ``reset`` wipes identity, configuration and state,
keeps the releases, and asks first unless ``--yes``."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from provisioning.cli import main
from provisioning.layout import Layout
from tests.provisioning.test_enroll import ThreadHub, booth_root, hub_thread


@pytest.fixture
def hub(tmp_path: Path) -> Any:
    with hub_thread(tmp_path / "hub") as running:
        yield running


def installed(layout: Layout) -> None:
    """What install and the updater leave: a release, ``current``, state in both folders."""
    release = layout.release("1.4.2")
    (release / "bin").mkdir(parents=True)
    (release / "bin" / "telehealth-kiosk").write_text("#!/bin/sh\n", encoding="utf-8")
    layout.current.symlink_to(Path("releases") / "1.4.2")
    layout.state.mkdir(parents=True)
    (layout.state / "alert-outbox.json").write_bytes(b"x" * 1500)
    (layout.state / "cache").mkdir()
    (layout.state / "cache" / "x").write_bytes(b"y" * 500)
    layout.update_state.mkdir(parents=True)
    (layout.update_state / "root.json").write_bytes(b"{}")


def status(layout: Layout, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["status", "--root", str(layout.root), *extra])
    return code, capsys.readouterr().out


def test_status_of_a_bare_booth_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = Layout(tmp_path)
    code, out = status(layout, capsys)
    assert code == 1
    assert f"Configuration: NOT VALID ({layout.config}); fix with `kiosk-provision init`" in out
    assert "booth.toml: no such file" in out
    assert "Enrolled: NO (no booth key; no credential); enroll with `kiosk-provision enroll`" in out
    assert "Release: none installed" in out
    assert "Ready: NO" in out


def test_status_of_an_enrolled_booth_with_its_hub(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = booth_root(tmp_path, hub)
    installed(layout)
    code, out = status(layout, capsys, "--json")
    report = json.loads(out)
    assert code == 1
    assert report["config"]["valid"] is True
    assert report["identity"]["enrolled"] is False
    assert report["identity"]["problem"] == "hub.credential_file is not set"

    assert main(["enroll", "--root", str(layout.root), "--code", hub.code()]) == 0
    code, out = status(layout, capsys, "--json")
    report = json.loads(out)
    assert code == 0, out
    assert report["ready"] is True
    assert report["booth_id"] == "riverside-library-1"
    assert report["identity"]["enrolled"] is True
    assert report["identity"]["key_private"] is True
    assert report["hub"] == {
        "url": hub.url,
        "checked": True,
        "reachable": True,
        "detail": "answered HTTP 303",
    }
    assert report["release"]["version"] == "1.4.2"
    assert report["release"]["present"] is True
    assert report["state"]["booth"]["bytes"] == 2000
    assert report["state"]["booth"]["files"] == 2

    code, out = status(layout, capsys)
    assert code == 0
    assert "Configuration: valid" in out
    assert f"Enrolled: yes (key {layout.identity_key}, credential {layout.credential})" in out
    assert "Hub: reachable, certificate matches" in out
    assert "Release: 1.4.2 (releases/1.4.2)" in out
    assert "State (booth): 2.0 KiB in 2 files" in out
    assert "Ready: yes" in out


def test_status_reports_a_hub_whose_certificate_does_not_match(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str]
) -> None:
    with hub_thread(tmp_path / "impostor") as impostor:
        layout = booth_root(tmp_path, hub)
        text = layout.config.read_text(encoding="utf-8")
        layout.config.write_text(text.replace(hub.url, impostor.url), encoding="utf-8")
        code, out = status(layout, capsys)
    assert code == 1
    assert (
        f"Hub: NOT REACHABLE ({impostor.url}: certificate mismatch: expected "
        f"{hub.tls.fingerprint}, got {impostor.tls.fingerprint})" in out
    )


def test_status_offline_does_not_try_the_hub(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = booth_root(tmp_path, hub)
    _, out = status(layout, capsys, "--offline")
    assert f"Hub: {hub.url} (not checked)" in out


# ------------------------------------------------------------------- reset


@pytest.fixture
def enrolled(tmp_path: Path, hub: ThreadHub) -> Layout:
    layout = booth_root(tmp_path, hub)
    installed(layout)
    assert main(["enroll", "--root", str(layout.root), "--code", hub.code()]) == 0
    return layout


def test_reset_wipes_identity_config_and_state_and_keeps_the_release(
    enrolled: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = enrolled
    capsys.readouterr()
    assert main(["reset", "--root", str(layout.root), "--yes"]) == 0
    out = capsys.readouterr().out
    assert str(layout.identity_key) in out and str(layout.credential) in out
    for gone in (layout.identity_key, layout.credential, layout.config):
        assert not gone.exists(), gone
    assert layout.state.is_dir()
    assert list(layout.state.iterdir()) == []
    # Kept: the release the booth runs, and the updater's state (its version floor).
    assert (layout.current / "bin" / "telehealth-kiosk").is_file()
    assert (layout.update_state / "root.json").is_file()
    code, out = status(layout, capsys, "--offline")
    assert "Enrolled: NO" in out
    assert "Release: 1.4.2" in out
    # Nothing left: a second reset says so.
    assert main(["reset", "--root", str(layout.root), "--yes"]) == 0
    assert "Nothing to wipe" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("answer", "wiped"), [("reset\n", True), ("no\n", False), ("", False)], ids=str
)
def test_reset_asks_first(
    enrolled: Layout,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer: str,
    wiped: bool,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
    capsys.readouterr()
    assert main(["reset", "--root", str(enrolled.root)]) == (0 if wiped else 1)
    captured = capsys.readouterr()
    assert 'Type "reset" to wipe' in captured.out
    assert enrolled.identity_key.exists() is not wiped
    assert enrolled.config.exists() is not wiped
    if not wiped:
        assert "not confirmed; nothing was removed" in captured.err


def test_after_a_reset_the_booth_can_be_set_up_and_enrolled_again(
    tmp_path: Path, enrolled: Layout, hub: ThreadHub
) -> None:
    old_key = enrolled.identity_key.read_bytes()
    assert main(["reset", "--root", str(enrolled.root), "--yes"]) == 0
    again = booth_root(tmp_path, hub, booth_id="riverside-library-2")
    assert again.root == enrolled.root
    assert main(["enroll", "--root", str(again.root), "--code", hub.code()]) == 0
    assert again.identity_key.read_bytes() != old_key  # a new identity
