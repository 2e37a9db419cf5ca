"""U5: the updater stopped before every write, rename, fsync, install and restart of an
update, then run again: always the old or the new release, never neither; no empty
file, no leftover temporary; the update then completes.

Phase A stops a run from the first step to the end of the install; its restart
has no network (only recovery runs, so no reinstall per point). Phase B starts
from the installed-but-not-switched state and stops at every step of the
switch, restart, health gate and commit; its restart finishes the update.
The twins use a plain write and an unlink-then-link switch: stopped at the
same step, they leave an empty state file and a booth with no release.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from provisioning.layout import Layout
from provisioning.update import UpdateError, fsio
from provisioning.update import updater as updater_module
from provisioning.update.fsio import TMP_SUFFIX, Steps
from provisioning.update.updater import Result, State, UpdateRun
from tests.provisioning.update.conftest import World
from tests.provisioning.update.helpers import (
    FakeBooth,
    iter_empty_files,
    restart_command,
    settings,
)


class Killed(BaseException):
    """Stands in for power loss: nothing of ours catches a BaseException."""


def run(
    world: World, stop_at: int | None = None, *, online: bool = True, stop_name: str = ""
) -> tuple[Any, Steps]:
    def fault(n: int, name: str) -> None:
        if n == stop_at or (stop_name and name.startswith(stop_name)):
            raise Killed(name)

    steps = Steps(fault)
    server = world.publisher.server
    if not online:
        server.overrides["metadata/timestamp.json"] = lambda h: h.send_error(503)
    try:
        outcome = UpdateRun(
            world.layout,
            settings(world.publisher, restart_command=restart_command(world.layout.root)),
            clock=world.clock,
            steps=steps,
            sleep=FakeBooth(world.layout),
        ).run()
    except Killed:
        outcome = None
    finally:
        server.overrides.pop("metadata/timestamp.json", None)
    return outcome, steps


def check_consistent(layout: Layout, *, recovered: bool = True) -> str:
    """The invariants after a crash and a restart; returns the running version."""
    target = os.readlink(layout.current)
    version = Path(target).name
    assert version in {"1.0.0", "2.0.0"}, target
    assert (layout.current / "bin" / "telehealth-kiosk").is_file()
    assert (layout.current / "pyvenv.cfg").is_file()
    if not recovered:  # straight after the crash: only recognisable temporaries may be off
        return version
    assert list(iter_empty_files(layout.update_state)) == []
    for folder in (
        layout.app,
        layout.releases,
        layout.update_state,
        layout.update_state / "downloads",
    ):
        if folder.is_dir():
            assert not [p for p in folder.iterdir() if p.name.endswith(TMP_SUFFIX)], folder
    state = State.load(layout.update_state / "state.json")
    assert state.installing is None or not recovered
    return version


def restore(snapshot: Path, root: Path) -> None:
    shutil.rmtree(root)
    shutil.copytree(snapshot, root, symlinks=True)


@pytest.fixture
def published(world: World, tmp_path: Path) -> tuple[World, Path]:
    world.publisher.publish("2.0.0")
    pristine = tmp_path / "pristine"
    shutil.copytree(world.layout.root, pristine, symlinks=True)
    return world, pristine


def test_crash_at_every_step(published: tuple[World, Path], tmp_path: Path) -> None:
    world, pristine = published
    layout = world.layout
    # Count the steps of a whole update, and find where the install ends.
    outcome, steps = run(world)
    assert outcome is not None and outcome.result is Result.UPDATED
    installed_at = max(i for i, n in enumerate(steps.names, 1) if n.startswith("fsync 2.0.0"))
    total = len(steps.names)

    # Phase A: every step up to the end of the install; the restart only recovers.
    for n in range(1, installed_at + 1):
        restore(pristine, layout.root)
        assert run(world, n)[0] is None
        run(world, online=False)
        assert check_consistent(layout) == "1.0.0", steps.names[n - 1]
        assert (
            not layout.release("2.0.0").exists()
            or "2.0.0" in State.load(layout.update_state / "state.json").installed
        )

    # Completion from the middle of the install (pip interrupted).
    restore(pristine, layout.root)
    pip = steps.names.index("pip install 2.0.0") + 2  # after pip, before its fsync
    assert run(world, pip)[0] is None
    outcome, _ = run(world)
    assert outcome is not None and outcome.result is Result.UPDATED
    assert check_consistent(layout) == "2.0.0"

    # Phase B: from installed-but-not-switched, every step of switch, gate and commit.
    restore(pristine, layout.root)
    assert run(world, steps.names.index("remove telehealth-kiosk-2.0.0.tar") + 1)[0] is None
    installed = tmp_path / "installed"
    shutil.copytree(layout.root, installed, symlinks=True)
    _, rest = run(world)
    assert check_consistent(layout) == "2.0.0"
    assert len(rest.names) >= total - installed_at - 6
    for n in range(1, len(rest.names) + 1):
        restore(installed, layout.root)
        assert run(world, n)[0] is None
        check_consistent(
            layout, recovered=False
        )  # straight after the crash: old or new, never neither
        outcome, _ = run(world)
        assert outcome is not None, rest.names[n - 1]
        assert check_consistent(layout) == "2.0.0", (rest.names[n - 1], outcome)
        state = State.load(layout.update_state / "state.json")
        assert state.bad == [] and state.floor_version == "2.0.0" and state.switch is None


def _plain_write(path: Path, data: bytes, steps: Any = fsio.no_steps, mode: int = 0o644) -> None:
    with path.open("wb") as f:
        steps(f"write {path.name}")
        f.write(data)


def _unlink_then_link(link: Path, target: str, steps: Any = fsio.no_steps) -> None:
    link.unlink()
    steps(f"symlink {link.name}")
    os.symlink(target, link)


@pytest.mark.parametrize("unsafe", ["plain-write", "unlink-then-link"])
def test_twin_without_atomic_writes_a_crash_breaks_the_booth(
    published: tuple[World, Path], unsafe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, _ = published
    if unsafe == "plain-write":
        monkeypatch.setattr(updater_module, "write_atomic", _plain_write)
        stop = "write state.json"
    else:
        monkeypatch.setattr(updater_module, "replace_symlink", _unlink_then_link)
        stop = "symlink current"
    outcome, _ = run(world, stop_name=stop)
    assert outcome is None
    layout = world.layout
    if unsafe == "plain-write":
        assert [p.name for p in iter_empty_files(layout.update_state)] == ["state.json"]
        with pytest.raises(UpdateError, match="damaged"):
            run(world)  # the updater can no longer run at all
    else:
        assert not layout.current.is_symlink()  # neither release: the booth cannot start
        with pytest.raises(UpdateError, match="no installed release"):
            UpdateRun(layout, settings(world.publisher), clock=world.clock)._recover(State())


def test_killed_process_mid_switch(published: tuple[World, Path]) -> None:
    """A real kill (SIGKILL from outside) while the switch runs, then a normal run."""
    world, _ = published
    layout = world.layout
    root = Path(__file__).resolve().parents[3]
    driver = (
        "import os, signal, sys\n"
        "from provisioning.update.fsio import Steps\n"
        "from tests.provisioning.update import helpers as h\n"
        "from provisioning.update.updater import UpdateRun\n"
        "from provisioning.layout import Layout\n"
        "def fault(n, name):\n"
        "    if name.startswith('rename current'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "class P: pass\n"
        "p = P(); p.server = P(); p.server.url = sys.argv[2]\n"
        "s = h.settings(p, restart_command=h.restart_command(Layout(sys.argv[1]).root))\n"
        "b = h.FakeBooth(Layout(sys.argv[1]))\n"
        "UpdateRun(Layout(sys.argv[1]), s, clock=h.Clock(), steps=Steps(fault), sleep=b).run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", driver, str(layout.root), world.publisher.server.url],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -9, done.stderr
    assert check_consistent(layout, recovered=False) == "1.0.0"
    outcome, _ = run(world)
    assert outcome is not None and outcome.result is Result.UPDATED
    assert check_consistent(layout) == "2.0.0"
