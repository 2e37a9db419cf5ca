"""U1-U3: attacks on the real ngclient client through a repository that mutates itself.

After each attack the trusted metadata on disk is byte-identical (except where a
validly signed newer file legitimately arrived first, named per attack) and the
running release is unchanged. Each has a twin: the same change made honestly
(right keys, right time, right bytes) is accepted, so the refusal comes from
the protection and not from a broken test.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from provisioning.update._tuf import Metadata
from provisioning.update.publish import load_signers
from provisioning.update.updater import Result, UpdaterConfig
from tests.provisioning.update.conftest import World
from tests.provisioning.update.helpers import (
    dribble,
    endless,
    frozen_tuf_time,
    release_view,
    tree_bytes,
    updater,
)

TS = "metadata/timestamp.json"


def trusted(world: World) -> dict[str, Any]:
    return tree_bytes(world.layout.update_state / "metadata")


def first_run(world: World) -> dict[str, Any]:
    """The booth has trusted metadata from an honest repository before the attack."""
    assert updater(world.layout, world.publisher, world.clock).run().result is Result.UP_TO_DATE
    return trusted(world)


def resign(
    world: World,
    name: str,
    change: Callable[[Any], None],
    role: str,
    *,
    signers: int | None = None,
    sign: bool = True,
) -> bytes:
    """Load a served metadata file, change it, and sign it (or not) with the role's keys."""
    path = world.publisher.repo.metadata / name
    md = Metadata[Any].from_bytes(path.read_bytes())
    change(md.signed)
    if sign:
        md.signatures.clear()
        for signer in load_signers(world.publisher.keys, role)[:signers]:
            md.sign(signer, append=True)
    return md.to_bytes()


def bump(signed: Any) -> None:
    signed.version += 1


def attempt(world: World, **overrides: Any) -> Result:
    return updater(world.layout, world.publisher, world.clock, **overrides).run().result


@pytest.mark.parametrize("honest", [False, True], ids=["attack", "twin"])
def test_bad_signature_on_timestamp(world: World, honest: bool) -> None:
    before = first_run(world)
    world.publisher.server.overrides[TS] = resign(
        world, "timestamp.json", bump, "timestamp", sign=honest
    )
    if honest:
        assert attempt(world) is Result.UP_TO_DATE and trusted(world) != before
        return
    assert attempt(world) is Result.FAILED
    assert trusted(world) == before
    assert release_view(world.layout) == ("releases/1.0.0", ["1.0.0"])


@pytest.mark.parametrize("honest", [False, True], ids=["attack", "twin"])
def test_too_few_signatures_on_a_new_root(world: World, honest: bool) -> None:
    """A new root must be signed by the old root's keys: the attacker has only its own."""
    before = first_run(world)
    from provisioning.update._tuf import CryptoSigner, Root

    root = world.publisher.repo.root()
    assert isinstance(root.signed, Root)
    attacker = CryptoSigner.generate_ed25519()
    root.signed.add_key(attacker.public_key, "root")
    root.signed.version += 1
    root.signatures.clear()
    root.sign(attacker, append=True)  # signs as a new root key, not as the old one
    if honest:
        for signer in load_signers(world.publisher.keys, "root"):
            root.sign(signer, append=True)
    world.publisher.server.overrides["metadata/2.root.json"] = root.to_bytes()
    if honest:
        assert attempt(world) is Result.UP_TO_DATE
        assert "root_history/2.root.json" in trusted(world)
        return
    assert attempt(world) is Result.FAILED
    assert trusted(world) == before
    assert release_view(world.layout) == ("releases/1.0.0", ["1.0.0"])


@pytest.mark.parametrize("honest", [False, True], ids=["attack", "twin"])
def test_version_rollback_of_timestamp(world: World, honest: bool) -> None:
    old = (world.publisher.repo.metadata / "timestamp.json").read_bytes()
    world.publisher.repo.refresh_timestamp(world.publisher.keys)
    before = first_run(world)
    if honest:  # the repository moves on: a newer timestamp is taken
        world.publisher.repo.refresh_timestamp(world.publisher.keys)
        assert attempt(world) is Result.UP_TO_DATE and trusted(world) != before
        return
    world.publisher.server.overrides[TS] = old  # validly signed, but older
    assert attempt(world) is Result.FAILED
    assert trusted(world) == before


@pytest.mark.parametrize("honest", [False, True], ids=["attack", "twin"])
def test_freeze_expired_metadata(world: World, honest: bool, monkeypatch: Any) -> None:
    """The mirror keeps serving the same (once valid) metadata; time moves past its expiry."""
    frozen_tuf_time(monkeypatch, world.clock)
    before = first_run(world)
    world.clock.advance(days=2)  # timestamp.json expires after 1 day
    if honest:  # the maintainer re-signs daily, as docs/updates.md says
        world.publisher.repo.refresh_timestamp(world.publisher.keys)
        assert attempt(world) is Result.UP_TO_DATE
        return
    assert attempt(world) is Result.FAILED
    assert trusted(world) == before
    assert release_view(world.layout) == ("releases/1.0.0", ["1.0.0"])


@pytest.mark.parametrize("honest", [False, True], ids=["attack", "twin"])
def test_mix_and_match_snapshot(world: World, honest: bool) -> None:
    """A new timestamp is served with an old snapshot under the new snapshot's name."""
    before = first_run(world)
    world.publisher.publish("2.0.0")
    new = world.publisher.repo.timestamp().signed.snapshot_meta.version
    old_snapshot = (world.publisher.repo.metadata / f"{new - 1}.snapshot.json").read_bytes()
    if not honest:
        world.publisher.server.overrides[f"metadata/{new}.snapshot.json"] = old_snapshot
        assert attempt(world) is Result.FAILED
        after = trusted(world)
        # The new timestamp is validly signed and legitimately trusted; nothing else moved.
        assert {k for k in after if after[k] != before.get(k)} == {"timestamp.json"}
        assert release_view(world.layout) == ("releases/1.0.0", ["1.0.0"])
        return
    assert attempt(world, window=_closed()) is Result.WAITING  # installed, not switched


@pytest.mark.parametrize("rotate", [True, False], ids=["recovered", "twin-no-rotation"])
def test_fast_forward_recovery(world: World, rotate: bool) -> None:
    """A stolen timestamp key pushes version 10**6; rotating the key lets booths recover."""
    first_run(world)
    world.publisher.server.overrides[TS] = resign(
        world, "timestamp.json", lambda s: setattr(s, "version", 10**6), "timestamp"
    )
    assert attempt(world) is Result.UP_TO_DATE  # validly signed: believed
    del world.publisher.server.overrides[TS]
    if rotate:
        world.publisher.repo.rotate(world.publisher.keys, "timestamp")
    else:
        world.publisher.repo.refresh_timestamp(world.publisher.keys)
    world.publisher.publish("2.0.0")
    result = attempt(world, window=_closed())
    assert result is (Result.WAITING if rotate else Result.FAILED)


@pytest.mark.parametrize("bound", [4_000, 10_000_000], ids=["attack", "twin-unbounded"])
def test_endless_metadata(world: World, bound: int) -> None:
    before = first_run(world)
    server = world.publisher.server
    server.overrides[TS] = endless(TS, server, limit=2_000_000)
    config = UpdaterConfig(timestamp_max_length=bound)
    outcome = updater(world.layout, world.publisher, world.clock, tuf=config).run()
    assert outcome.result is Result.FAILED
    assert trusted(world) == before
    if bound == 4_000:  # cut off at the bound
        assert "exceeding the maximum allowed length of 4000" in outcome.message
    else:  # read to the (here finite) end, then refused only as not being metadata
        assert server.served.get(TS, 0) >= 2_000_000
        assert "DownloadLengthMismatchError" not in outcome.message


def _closed() -> Any:
    """A maintenance window that is never now, so a test stops after the install."""
    from datetime import time

    from kiosk.config import MaintenanceWindow

    return MaintenanceWindow(time(12, 0), time(12, 1))


def _bundle_path(world: World) -> str:
    repo = world.publisher.repo
    info = repo.targets().signed.targets["bundles/telehealth-kiosk-2.0.0.tar"]
    return str(repo.target_file(info).relative_to(repo.path))


def _flip(data: bytes) -> bytes:
    at = len(data) // 3
    return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :]


def assert_only_an_honest_prefix_kept(downloads: Path, honest: bytes) -> None:
    """Nothing is left but, at most, a partial download to continue (``<sha256>.part``),
    and only while what it holds could still become the signed bundle: bytes too many or
    a wrong hash are deleted (resumed downloads are verified whole, like any other)."""
    digest = hashlib.sha256(honest).hexdigest()
    for path in downloads.iterdir():
        assert path.name == f"{digest}.part", path
        assert 0 < path.stat().st_size < len(honest)
        assert honest.startswith(path.read_bytes())


BUNDLE_ATTACKS: dict[str, Callable[[bytes], bytes]] = {
    "byte-flipped": _flip,
    "truncated": lambda d: d[: len(d) // 2],
    "longer": lambda d: d + b"\0" * 1024,
    "other-bundle": lambda d: d.replace(b"2.0.0", b"6.6.6"),
}


@pytest.mark.parametrize("attack", [*BUNDLE_ATTACKS, "twin-honest"])
def test_wrong_bundle_is_never_installed(world: World, attack: str) -> None:
    first_run(world)
    world.publisher.publish("2.0.0")
    path = _bundle_path(world)
    honest = (world.publisher.repo.path / path).read_bytes()
    if attack != "twin-honest":
        world.publisher.server.overrides[path] = BUNDLE_ATTACKS[attack](honest)
    result = attempt(world, window=_closed())
    downloads = world.layout.update_state / "downloads"
    if attack == "twin-honest":
        assert result is Result.WAITING
        assert release_view(world.layout) == ("releases/1.0.0", ["1.0.0", "2.0.0"])
        return
    assert result is Result.FAILED
    assert release_view(world.layout) == ("releases/1.0.0", ["1.0.0"])
    assert_only_an_honest_prefix_kept(downloads, honest)


@pytest.mark.parametrize("deadline", [0.6, 30.0], ids=["attack", "twin-no-deadline"])
def test_slow_bundle_download_is_cut_off(world: World, deadline: float) -> None:
    first_run(world)
    world.publisher.publish("2.0.0")
    path = _bundle_path(world)
    data = (world.publisher.repo.path / path).read_bytes()
    world.publisher.server.overrides[path] = dribble(data, per_byte_s=2.0 / len(data))
    result = attempt(world, window=_closed(), download_deadline_s=deadline)
    if deadline > 1:
        assert result is Result.WAITING
        return
    assert result is Result.FAILED
    assert release_view(world.layout) == ("releases/1.0.0", ["1.0.0"])
    assert_only_an_honest_prefix_kept(world.layout.update_state / "downloads", data)


def test_channel_index_cannot_be_swapped(world: World) -> None:
    """An unsigned channel index naming another version is refused like any target."""
    first_run(world)
    repo = world.publisher.repo
    info = repo.targets().signed.targets["channels/stable.json"]
    path = str(repo.target_file(info).relative_to(repo.path))
    world.publisher.server.overrides[path] = (
        json.dumps({"version": "9.9.9", "bundle": "bundles/telehealth-kiosk-9.9.9.tar"})
        .encode()[: info.length]
        .ljust(info.length)
    )
    assert attempt(world) is Result.FAILED
