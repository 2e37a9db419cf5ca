"""End to end: a booth on 1.0.0 takes 2.0.0, rolls back a 3.0.0 that never gets ready,
refuses a republished 1.0.0, waits for a visit to end and for its maintenance window,
and refuses to act while its clock is behind the floor, raising the alert after days."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning.update.booth_status import read_status
from provisioning.update.updater import Result, read_state
from tests.provisioning.update.conftest import World
from tests.provisioning.update.helpers import (
    BoothThread,
    release_view,
    restart_command,
    set_activity,
    tree_bytes,
    updater,
)

ROOT = Path(__file__).resolve().parents[3]


def restarts(world: World) -> list[str]:
    log = world.layout.root / "restarts.log"
    return log.read_text().split() if log.exists() else []


def test_update_rollback_and_refusal(world: World) -> None:
    layout, pub, clock = world.layout, world.publisher, world.clock
    pub.publish("2.0.0")
    outcome = updater(layout, pub, clock).run()
    assert outcome.result is Result.UPDATED, outcome
    assert os.readlink(layout.current) == "releases/2.0.0"
    status = read_status(layout.booth_status)
    assert status is not None and status.healthy_as("2.0.0")
    assert restarts(world) == ["releases/2.0.0"]

    pub.publish("3.0.0", ready=False)
    outcome = updater(layout, pub, clock, health_deadline_s=1.0).run()
    assert outcome.result is Result.ROLLED_BACK, outcome
    assert "3.0.0" in outcome.message and "marked bad" in outcome.message
    assert os.readlink(layout.current) == "releases/2.0.0"
    assert restarts(world)[-2:] == ["releases/3.0.0", "releases/2.0.0"]
    state = read_state(layout)
    assert state.bad == ["3.0.0"] and state.floor_version == "2.0.0"
    assert not layout.release("3.0.0").exists()

    again = updater(layout, pub, clock).run()  # never retried
    assert again.result is Result.REFUSED and "never retried" in again.message
    assert restarts(world)[-1] == "releases/2.0.0" and len(restarts(world)) == 3

    pub.publish("1.0.0", allow_older=True)
    older = updater(layout, pub, clock).run()
    assert older.result is Result.REFUSED and "version floor" in older.message
    assert os.readlink(layout.current) == "releases/2.0.0"
    assert len(restarts(world)) == 3


def test_twin_a_newer_release_after_a_bad_one_is_taken(world: World) -> None:
    """The refusals above are about those versions, not a stuck updater."""
    layout, pub, clock = world.layout, world.publisher, world.clock
    pub.publish("3.0.0", ready=False)
    assert updater(layout, pub, clock, health_deadline_s=0.5).run().result is Result.ROLLED_BACK
    pub.publish("3.0.1")
    assert updater(layout, pub, clock).run().result is Result.UPDATED
    assert os.readlink(layout.current) == "releases/3.0.1"


@pytest.mark.parametrize("activity", ["visit", "technician"])
def test_update_waits_while_the_booth_is_busy(world: World, activity: str) -> None:
    layout, pub, clock = world.layout, world.publisher, world.clock
    set_activity(layout, "1.0.0", activity)
    pub.publish("2.0.0")
    outcome = updater(layout, pub, clock).run()
    assert outcome.result is Result.WAITING and activity in outcome.message
    assert os.readlink(layout.current) == "releases/1.0.0"
    assert layout.release("2.0.0").is_dir()  # installed beside, ready to switch
    assert restarts(world) == []
    set_activity(layout, "1.0.0", "idle")  # the visit ended
    assert updater(layout, pub, clock).run().result is Result.UPDATED
    assert os.readlink(layout.current) == "releases/2.0.0"


def test_update_waits_for_the_maintenance_window(world: World) -> None:
    layout, pub, clock = world.layout, world.publisher, world.clock
    pub.publish("2.0.0")
    clock.advance(hours=3)  # 06:00, after the 02:00-05:00 window
    outcome = updater(layout, pub, clock).run()
    assert outcome.result is Result.WAITING and "02:00-05:00" in outcome.message
    assert os.readlink(layout.current) == "releases/1.0.0"
    clock.advance(hours=21)  # 03:00 next day
    assert updater(layout, pub, clock).run().result is Result.UPDATED


def test_clock_behind_the_floor_changes_nothing_then_alerts(world: World) -> None:
    layout, pub, clock = world.layout, world.publisher, world.clock
    assert updater(layout, pub, clock).run().result is Result.UP_TO_DATE
    metadata = tree_bytes(layout.update_state / "metadata")
    pub.publish("2.0.0")
    clock.advance(days=-400)  # power cut, no clock battery: back in the past
    for _ in range(2):
        outcome = updater(layout, pub, clock).run()
        assert outcome.result is Result.CLOCK_BEHIND
    assert tree_bytes(layout.update_state / "metadata") == metadata
    assert release_view(layout) == ("releases/1.0.0", ["1.0.0"])
    assert not read_state(layout).alert
    # Days pass with updates impossible (here: the repository refuses to answer).
    clock.advance(days=400 + 4)
    pub.server.overrides["metadata/timestamp.json"] = lambda h: h.send_error(503)
    outcome = updater(layout, pub, clock).run()
    assert outcome.result is Result.FAILED
    state = read_state(layout)
    assert state.alert and state.impossible_since == "2031-03-04T03:00:00Z"
    assert (
        subprocess.run(
            [sys.executable, "-m", "provisioning.update", "status", "--root", str(layout.root)],
            capture_output=True,
            cwd=ROOT,
        ).returncode
        == 1
    )


def test_twin_without_a_floor_the_past_clock_is_believed(world: World) -> None:
    """Drop the persisted floor and the same backward clock goes ahead and changes state."""
    layout, pub, clock = world.layout, world.publisher, world.clock
    assert updater(layout, pub, clock).run().result is Result.UP_TO_DATE
    state_file = layout.update_state / "state.json"
    data = json.loads(state_file.read_text())
    data["floor_time"] = None
    state_file.write_text(json.dumps(data))
    metadata = tree_bytes(layout.update_state / "metadata")
    pub.repo.refresh_timestamp(pub.keys)
    clock.advance(hours=-1)
    assert updater(layout, pub, clock).run().result is Result.UP_TO_DATE
    assert tree_bytes(layout.update_state / "metadata") != metadata


def test_command_line_run(world: World) -> None:
    """`python -m provisioning.update run` reads the booth file and prints the outcome."""
    layout, pub = world.layout, world.publisher
    config = (ROOT / "examples" / "booth.toml").read_text()
    config = config.replace(
        'maintenance_window = "02:00-05:00"', 'maintenance_window = "00:00-23:59"'
    )
    layout.config_dir.mkdir(parents=True)
    layout.config.write_text(config)
    pub.publish("2.0.0")
    restart = " ".join(restart_command(layout.root))
    with BoothThread(layout) as booth:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "provisioning.update",
                "run",
                "--root",
                str(layout.root),
                "--repository",
                pub.server.url,
                "--restart-command",
                restart,
                "--health-deadline",
                "5",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("updated: 2.0.0 is running")
    assert booth.holds and {h["version"] for h in booth.holds} == {"2.0.0"}
    assert os.readlink(layout.current) == "releases/2.0.0"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "provisioning.update",
            "run",
            "--root",
            str(layout.root),
            "--config",
            str(layout.root / "nope.toml"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 1 and "nope.toml: no such file" in bad.stderr
    assert "Traceback" not in bad.stderr
