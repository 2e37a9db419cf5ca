"""The booth's side of a technician's USB bundle: what the stage service said, and the request."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from hardware.events import DeviceKind
from kiosk import config, texts
from kiosk.app import BoothRuntime
from kiosk.bundles import REQUEST, STATUS, StagedBundles, parse_status
from kiosk.i18n import Translator
from kiosk.presenter import Context, UiState, present
from kiosk.session import Booth, BundleNews, BundleState, Intent, State, TechnicianUnlocked, Touch

ROOT = Path(__file__).resolve().parents[2]


def _status(state: str = "ready", **extra: object) -> bytes:
    body = {
        "state": state,
        "reason": None,
        "stick": "sda1",
        "summary": {"booth_id": "riverside-1", "site": "Riverside Library", "wifi": True,
                    "enrollment_code": False},
        "at": time.time(),
        **extra,
    }  # fmt: skip
    return json.dumps(body).encode()


def test_a_status_is_read_with_its_summary_and_anything_odd_is_ignored() -> None:
    status = parse_status(_status())
    assert status is not None and status.state is BundleState.READY
    assert status.summary == "booth riverside-1, site Riverside Library, Wi-Fi settings"
    refused = parse_status(_status("refused", reason="the signature does not match"))
    assert refused is not None and refused.reason == "the signature does not match"
    for bad in (
        b"",
        b"{",
        b"[]",
        json.dumps({"state": "ready"}).encode(),  # no time
        _status("applied"),  # not news for the screen
        _status("exploded"),
        _status(at=True),
        b" " * 20_000,
    ):
        assert parse_status(bad) is None, bad


def test_news_after_a_stick_is_plugged_in_reaches_the_visit_and_old_news_does_not(
    tmp_path: Path,
) -> None:
    posted: list[BundleNews] = []
    (tmp_path / STATUS).write_bytes(_status(at=time.time() - 600))  # a stick from before

    async def scenario() -> None:
        bundles = StagedBundles(posted.append, tmp_path)
        waiting = asyncio.create_task(bundles.after_insert())
        await asyncio.sleep(0.7)
        assert posted == []  # the old status is not this stick's
        (tmp_path / STATUS).write_bytes(_status("refused", reason="tampered: config.toml"))
        await asyncio.wait_for(waiting, 3)
        assert bundles.status is not None and bundles.status.reason == "tampered: config.toml"

    asyncio.run(scenario())
    assert posted == [BundleNews(BundleState.REFUSED)]


def test_the_apply_request_is_a_file_and_a_failure_to_write_it_is_a_failure(
    tmp_path: Path,
) -> None:
    (tmp_path / "requests").mkdir()
    bundles = StagedBundles(lambda news: None, tmp_path)
    assert asyncio.run(bundles.request_apply())
    assert json.loads((tmp_path / REQUEST).read_text()) == {"bundle_at": None}
    gone = StagedBundles(lambda news: None, tmp_path / "no-such-folder")
    assert not asyncio.run(gone.request_apply())


def _view(booth: Booth, summary: str = "", reason: str = "") -> tuple[str, list[str], str]:
    cfg = config.load(ROOT / "examples" / "demo-booth.toml")
    view = present(booth, UiState(), Context(cfg, bundle_summary=summary, bundle_reason=reason))
    return view.banner, [a.name for a in view.actions], " ".join(view.body)


def test_the_screens_announce_a_stick_between_visits_and_apply_only_in_technician_mode() -> None:
    banner, actions, _ = _view(Booth(bundle=BundleState.READY))
    assert banner == Translator("en")(texts.ATTRACT.bundle_found)
    assert "apply_bundle" not in actions  # technician mode only: the hidden gesture and the PIN
    banner, actions, _ = _view(Booth(state=State.OUT_OF_SERVICE, bundle=BundleState.REFUSED))
    assert banner and "apply_bundle" not in actions
    # Never over a visit.
    banner, actions, _ = _view(Booth(state=State.CHECK_IN, bundle=BundleState.READY))
    assert not banner

    tech = Booth(state=State.TECHNICIAN, resume=State.ATTRACT, bundle=BundleState.READY)
    _, actions, body = _view(tech, summary="booth riverside-1")
    assert actions[:2] == ["apply_bundle", "dismiss_bundle"] and "booth riverside-1" in body
    refused = Booth(state=State.TECHNICIAN, resume=State.ATTRACT, bundle=BundleState.REFUSED)
    _, actions, body = _view(refused, reason="the signature does not match")
    assert "apply_bundle" not in actions and "the signature does not match" in body


@pytest.mark.parametrize("unlocked", [True, False], ids=["pin-given", "twin-no-pin"])
def test_a_staged_bundle_is_applied_only_after_the_technician_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unlocked: bool
) -> None:
    """The simulated booth hears the stage service, and asks for the apply once unlocked."""
    monkeypatch.setenv("BUNDLE_DIRECTORY", str(tmp_path))
    (tmp_path / "requests").mkdir()

    async def scenario() -> tuple[Booth, bool]:
        runtime = BoothRuntime(config.load(ROOT / "examples" / "demo-booth.toml"), simulate=True)
        controller = await runtime.start()
        try:
            assert runtime.simulation is not None
            runtime.simulation.monitor.trigger_kind("add", DeviceKind.STORAGE)
            await asyncio.sleep(0.2)
            (tmp_path / STATUS).write_bytes(_status())  # the stage service's verdict
            for _ in range(40):
                await asyncio.sleep(0.1)
                if controller.booth.bundle is BundleState.READY:
                    break
            assert controller.booth.bundle is BundleState.READY
            if unlocked:
                controller.post(TechnicianUnlocked())
            controller.post(Touch(Intent.APPLY_BUNDLE))
            await controller.settle()
            return controller.booth, (tmp_path / REQUEST).exists()
        finally:
            await runtime.close()

    booth, requested = asyncio.run(scenario())
    if unlocked:
        assert requested and booth.bundle is BundleState.APPLYING
    else:
        assert not requested and booth.bundle is BundleState.READY and booth.state is State.ATTRACT
    assert sorted(os.listdir(tmp_path)) == ["requests", STATUS]
    assert os.listdir(tmp_path / "requests") == (["apply-request"] if unlocked else [])
    if unlocked:
        staged_at = json.loads((tmp_path / STATUS).read_text())["at"]
        assert json.loads((tmp_path / REQUEST).read_text()) == {"bundle_at": staged_at}
