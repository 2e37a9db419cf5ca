"""The booth holds the switch off: the updater restarts it only after the booth said
"held" between visits, and only if it still says so just before the restart. Also:
old releases pruned after a healthy switch, and a state file the booth can read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from provisioning.update.booth_status import read_status
from provisioning.update.fsio import Steps
from provisioning.update.updater import Result, UpdateRun, read_state
from tests.provisioning.update.conftest import World
from tests.provisioning.update.helpers import (
    FakeBooth,
    restart_command,
    set_activity,
    settings,
    updater,
)


def restarts(world: World) -> list[str]:
    log = world.layout.root / "restarts.log"
    return log.read_text().split() if log.exists() else []


def test_an_idle_booth_holds_and_the_switch_happens(world: World) -> None:
    layout, pub = world.layout, world.publisher
    pub.publish("2.0.0")
    booth = FakeBooth(layout)
    outcome = updater(layout, pub, world.clock, booth=booth).run()
    assert outcome.result is Result.UPDATED, outcome
    assert [h["version"] for h in booth.holds] == ["2.0.0"]
    assert isinstance(booth.holds[0]["at"], int)
    assert restarts(world) == ["releases/2.0.0"]
    assert not layout.update_hold.exists()


@pytest.mark.parametrize("when", ["visit-before", "visit-as-the-hold-came", "never-answers"])
def test_no_hold_no_switch(world: World, when: str) -> None:
    """A visit under way never holds; one starting as the hold came wins; a booth that
    never answers (an older release) is not restarted either. The hold is withdrawn."""
    layout, pub = world.layout, world.publisher
    pub.publish("2.0.0")
    answer = {"visit-before": "held", "visit-as-the-hold-came": "visit", "never-answers": None}
    booth = FakeBooth(layout, answer[when])
    if when == "visit-before":
        set_activity(layout, "1.0.0", "visit")
    outcome = updater(layout, pub, world.clock, booth=booth, hold_timeout_s=0.3).run()
    assert outcome.result is Result.WAITING, outcome
    assert os.readlink(layout.current) == "releases/1.0.0"
    assert restarts(world) == []
    assert not layout.update_hold.exists()
    assert len(booth.holds) == (0 if when != "visit-as-the-hold-came" else 1)
    state = read_state(layout)
    assert state.switch is None and state.bad == [] and "2.0.0" in state.installed
    if when == "never-answers":
        assert "did not hold" in outcome.message


@pytest.mark.parametrize("recheck", [True, False], ids=["protected", "twin-no-recheck"])
def test_an_emergency_between_held_and_restart(
    world: World, recheck: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout, pub = world.layout, world.publisher
    pub.publish("2.0.0")
    raised: list[str] = []

    def emergency(n: int, name: str) -> None:  # the button, just as the link is renamed
        if name.startswith("rename current") and not raised:
            status = read_status(layout.booth_status)
            assert status is not None and status.activity == "held"
            set_activity(layout, "1.0.0", "emergency")
            raised.append(name)

    if not recheck:
        monkeypatch.setattr(UpdateRun, "_still_held", lambda self: None)
    run = UpdateRun(
        layout,
        settings(pub, restart_command=restart_command(layout.root), hold_timeout_s=2.0),
        clock=world.clock,
        steps=Steps(emergency),
        sleep=FakeBooth(layout),
    )
    outcome = run.run()
    assert raised
    if not recheck:  # the booth is restarted in the middle of the emergency
        assert restarts(world) == ["releases/2.0.0"]
        return
    assert outcome.result is Result.WAITING and "emergency" in outcome.message, outcome
    assert os.readlink(layout.current) == "releases/1.0.0"  # switched back
    assert restarts(world) == []
    assert not layout.update_hold.exists()
    state = read_state(layout)
    assert state.switch is None and state.bad == [] and "2.0.0" in state.installed
    set_activity(layout, "1.0.0", "idle")  # the emergency is over
    assert updater(layout, pub, world.clock).run().result is Result.UPDATED
    assert restarts(world) == ["releases/2.0.0"]


def test_old_releases_are_pruned_after_a_healthy_switch(world: World) -> None:
    layout, pub, clock = world.layout, world.publisher, world.clock
    pub.publish("2.0.0")
    assert updater(layout, pub, clock).run().result is Result.UPDATED
    assert sorted(p.name for p in layout.releases.iterdir()) == ["1.0.0", "2.0.0"]
    pub.publish("3.0.0")
    assert updater(layout, pub, clock).run().result is Result.UPDATED
    # 3.0.0 runs, 2.0.0 is the previous good one; 1.0.0 goes
    assert sorted(p.name for p in layout.releases.iterdir()) == ["2.0.0", "3.0.0"]
    state = read_state(layout)
    assert state.previous_good == "2.0.0" and sorted(state.installed) == ["2.0.0", "3.0.0"]


@pytest.mark.parametrize("exact", [True, False], ids=["protected", "twin-umask-wins"])
def test_the_booth_can_read_the_state_file(
    world: World, exact: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The updater's unit runs with UMask=0077; state.json must still be world-readable
    (the booth, another user, raises the update-blocked alert from it)."""
    if not exact:
        monkeypatch.setattr(os, "fchmod", lambda fd, mode: None)
    layout = world.layout
    old = os.umask(0o077)
    try:
        assert updater(layout, world.publisher, world.clock).run().result is Result.UP_TO_DATE
    finally:
        os.umask(old)
    path: Path = layout.update_state_file
    mode = stat.S_IMODE(path.stat().st_mode)
    assert stat.S_IMODE(layout.update_state.stat().st_mode) == 0o755
    if exact:
        assert mode == 0o644
        assert "alert" in path.read_text()
    else:
        assert mode == 0o600
