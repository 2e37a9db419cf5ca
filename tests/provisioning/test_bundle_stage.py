"""A stick in a running booth: root's stage step mounts it, reads the bundle, unmounts,
verifies and stages it (status "ready"), or refuses it and says why; root's apply step
verifies the staged copy again and applies it only when the booth asked.

The sticks are real: a small ext4 image made with ``mkfs.ext4 -d`` (filled without
mounting), attached read-only as a loop block device with ``losetup``, and mounted by
the product's own ``mount``/``umount`` commands; this needs root and loop devices (CI
runs as root). The apply tests stage from a folder instead (the mount step injected),
since what they test starts after the stick is unmounted.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kiosk.config import loads
from provisioning import bundle
from provisioning.bundle import (
    BUNDLE_DIR,
    Bundle,
    BundleError,
    StickError,
    VerifiedBundle,
    apply_staged,
    load_private_key,
    make,
    read_status,
    stage,
)
from provisioning.cli import main
from provisioning.layout import Layout

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEMO = EXAMPLES / "demo-booth.toml"
CODE = "ENROLL-7f3a9c2e41"


# ---------------------------------------------------------------- sticks and booths


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("keys")
    fleet = bundle.keygen(folder / "fleet")
    other = bundle.keygen(folder / "other")
    return {"fleet": (fleet[0], fleet[1]), "other": (other[0], other[1])}


@pytest.fixture
def layout(tmp_path: Path, keys: dict[str, tuple[Path, Path]]) -> Layout:
    """A booth root that trusts the fleet's key, as `install --provisioning-key` leaves it."""
    layout = Layout(tmp_path / "booth")
    layout.provisioning_keys.mkdir(parents=True)
    shutil.copy(keys["fleet"][1], layout.provisioning_keys / "fleet.pub")
    return layout


def stick_folder(tmp_path: Path, key: Path | None, *, name: str = "stick") -> Path:
    """The files of a stick holding a bundle signed with ``key`` (None: an empty stick)."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "photos").mkdir()
    (folder / "photos" / "cat.jpg").write_bytes(b"\xff\xd8not really")
    if key is not None:
        make(
            load_private_key(key),
            DEMO,
            folder / BUNDLE_DIR,
            wifi=bundle.WifiProfile("Library Staff", "correct horse battery"),
            enrollment_code=CODE,
        )
    return folder


def unsign(folder: Path) -> None:
    (folder / BUNDLE_DIR / bundle.SIGNATURE).unlink()


def tamper(folder: Path) -> None:
    """Change one byte of booth.toml after signing."""
    config = folder / BUNDLE_DIR / bundle.CONFIG
    config.write_bytes(config.read_bytes().replace(b"Demo Booth", b"Demo Booti", 1))


@contextlib.contextmanager
def usb_stick(source: Path | None, tmp_path: Path) -> Iterator[Path]:
    """A block device holding ``source`` on ext4 (None: a device with no file system)."""
    image = tmp_path / "stick.img"
    with image.open("wb") as f:
        f.truncate(8 * 1024 * 1024)
    if source is not None:
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-d", str(source), str(image)],
            check=True,
            capture_output=True,
        )
    device = subprocess.run(
        ["losetup", "--find", "--show", "--read-only", str(image)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    try:
        yield Path(device)
    finally:
        subprocess.run(["losetup", "--detach", device], check=True)


def folder_mount(folder: Path) -> Any:
    """The mount step injected: the 'stick' is already a folder (for the apply tests)."""

    @contextlib.contextmanager
    def mounted(device: Path) -> Iterator[Path]:
        yield folder

    return mounted


def status_of(layout: Layout) -> dict[str, Any]:
    data = read_status(layout)
    assert data is not None
    return data


def mounted_here(device: Path) -> bool:
    return any(
        line.split()[0] == str(device) for line in Path("/proc/mounts").read_text().splitlines()
    )


# ---------------------------------------------------------------- staging from a real stick


def test_a_good_bundle_is_staged_and_ready(
    tmp_path: Path, layout: Layout, keys: dict[str, tuple[Path, Path]]
) -> None:
    with usb_stick(stick_folder(tmp_path, keys["fleet"][0]), tmp_path) as device:
        status = stage(device, layout)
        assert not mounted_here(device)
    assert status is not None and status.state == "ready"
    data = status_of(layout)
    assert data["state"] == "ready" and data["reason"] is None
    assert data["stick"] == device.name
    assert data["summary"] == {
        "booth_id": "demo-booth-1",
        "site": "Riverside Demo Site",
        "wifi": True,
        "enrollment_code": True,
    }
    assert abs(data["at"] - datetime.now(UTC).timestamp()) < 60
    # Nothing applied yet; the staged copy is root's alone; no secret in the status.
    assert not layout.config.exists()
    assert stat.S_IMODE(layout.bundle_status.stat().st_mode) == 0o640
    assert stat.S_IMODE(layout.bundle_pending.stat().st_mode) == 0o700
    assert stat.S_IMODE(layout.bundle_staged.stat().st_mode) == 0o600
    assert stat.S_IMODE(layout.bundle_requests.stat().st_mode) == 0o770
    assert b"correct horse" not in layout.bundle_status.read_bytes()
    with tarfile.open(layout.bundle_staged) as tar:
        assert sorted(tar.getnames()) == sorted(
            ["booth.toml", "enrollment-code", "manifest.json", "manifest.sig", "wifi.json"]
        )


def test_the_stick_is_mounted_read_only_and_unmounted_before_verifying(
    tmp_path: Path,
    layout: Layout,
    keys: dict[str, tuple[Path, Path]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}
    real_find, real_verify = bundle.find_bundle, bundle.verify

    def find(point: Path) -> Bundle | None:
        [line] = [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines()
                  if ln.split()[4] == str(point)]  # fmt: skip
        seen["options"] = set(line.split()[5].split(","))
        return real_find(point)

    def verify(found: Bundle, trusted: Any, **kw: Any) -> VerifiedBundle:
        seen["mounted_at_verify"] = mounted_here(device)
        return real_verify(found, trusted, **kw)

    monkeypatch.setattr(bundle, "find_bundle", find)
    monkeypatch.setattr(bundle, "verify", verify)
    with usb_stick(stick_folder(tmp_path, keys["fleet"][0]), tmp_path) as device:
        status = stage(device, layout)
    assert status is not None and status.state == "ready"
    assert {"ro", "nosuid", "nodev", "noexec", "nosymfollow"} <= seen["options"]
    assert seen["mounted_at_verify"] is False


REFUSALS = {
    "unsigned": (unsign, "fleet", "unsigned (no manifest.sig)"),
    "tampered": (tamper, "fleet", "booth.toml: does not match the SHA-256 in the signed manifest"),
    "wrong-key": (None, "other", "which is not a trusted provisioning key"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
@pytest.mark.parametrize("protected", [True, False], ids=["verified", "twin-unverified"])
def test_a_bad_bundle_is_refused_with_the_reason_and_nothing_is_staged(
    *,
    tmp_path: Path,
    layout: Layout,
    keys: dict[str, tuple[Path, Path]],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    protected: bool,
) -> None:
    spoil, signer, why = REFUSALS[case]
    folder = stick_folder(tmp_path, keys[signer][0])
    if spoil is not None:
        spoil(folder)
    # A good bundle was staged before: a refused stick must not leave it behind.
    stage(Path("/dev/earlier"), layout, mount=folder_mount(stick_folder(
        tmp_path, keys["fleet"][0], name="earlier")))  # fmt: skip
    assert layout.bundle_staged.is_file()
    if not protected:  # the twin: with the signature check taken out, the bad one is staged
        monkeypatch.setattr(bundle, "verify", unchecked)
    with usb_stick(folder, tmp_path) as device:
        status = stage(device, layout)
    assert status is not None
    data = status_of(layout)
    if protected:
        assert data["state"] == "refused"
        assert why in data["reason"]
        assert "\n" not in data["reason"]
        assert data["reason"].startswith(f"{device.name}/{BUNDLE_DIR}")  # not the mount point
        assert data["summary"] == {
            "booth_id": None, "site": None, "wifi": False, "enrollment_code": False
        }  # fmt: skip
        assert not layout.bundle_staged.exists()
    else:
        assert data["state"] == "ready"
        assert layout.bundle_staged.is_file()


def unchecked(found: Bundle, trusted: Any, **kw: Any) -> VerifiedBundle:
    """verify() with every check taken out: what a stager without it would do."""
    text = found.files["booth.toml"]
    return VerifiedBundle(found, "none", datetime.now(UTC), text, loads(text.decode(), "x"))


def test_a_stick_with_no_bundle_writes_nothing(
    tmp_path: Path, layout: Layout, keys: dict[str, tuple[Path, Path]]
) -> None:
    stage(Path("/dev/earlier"), layout, mount=folder_mount(stick_folder(
        tmp_path, keys["fleet"][0], name="earlier")))  # fmt: skip
    before = layout.bundle_status.read_bytes()
    with usb_stick(stick_folder(tmp_path, None), tmp_path) as device:
        assert stage(device, layout) is None
    assert layout.bundle_status.read_bytes() == before
    assert layout.bundle_staged.is_file()  # the earlier, good one stays staged


def test_a_device_with_no_file_system_is_left_alone(
    tmp_path: Path, layout: Layout, capfd: pytest.CaptureFixture[str]
) -> None:
    with usb_stick(None, tmp_path) as device:
        code = main(["bundle", "stage", str(device), "--root", str(layout.root)])
    out, err = capfd.readouterr()
    assert code == 0
    assert "file system unknown; a bundle stick is FAT32, exFAT or ext4" in out
    assert not layout.bundle_status.exists()


def test_not_a_block_device_is_an_error_naming_it(
    tmp_path: Path, layout: Layout, capfd: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "plain-file"
    image.write_bytes(b"\0" * 4096)
    assert main(["bundle", "stage", str(image), "--root", str(layout.root)]) == 1
    out, err = capfd.readouterr()
    assert f"{image}: not a block device" in err and "Traceback" not in out + err
    with pytest.raises(StickError, match="cannot be opened"):
        stage(tmp_path / "no-such-device", layout)


def test_a_booth_with_no_trusted_key_refuses_and_says_how_to_fix_it(
    tmp_path: Path, layout: Layout, keys: dict[str, tuple[Path, Path]]
) -> None:
    shutil.rmtree(layout.provisioning_keys)
    status = stage(Path("/dev/sdb1"), layout,
                   mount=folder_mount(stick_folder(tmp_path, keys["fleet"][0])))  # fmt: skip
    assert status is not None and status.state == "refused"
    assert status.reason is not None and "--provisioning-key" in status.reason


# ---------------------------------------------------------------- applying what was staged


@pytest.fixture
def staged(tmp_path: Path, layout: Layout, keys: dict[str, tuple[Path, Path]]) -> Layout:
    status = stage(Path("/dev/sdb1"), layout,
                   mount=folder_mount(stick_folder(tmp_path, keys["fleet"][0])))  # fmt: skip
    assert status is not None and status.state == "ready"
    return layout


def ask(layout: Layout) -> None:
    """What the booth does once the technician PIN was right."""
    layout.bundle_apply_request.touch()


def test_apply_staged_applies_exactly_the_staged_bundle_and_restarts_the_booth(
    staged: Layout,
) -> None:
    restarts: list[str] = []
    ask(staged)
    status = apply_staged(staged, restart=lambda: restarts.append("booth"))
    assert status is not None and status.state == "applied"
    assert staged.config.read_bytes() == DEMO.read_bytes()
    assert stat.S_IMODE(staged.config.stat().st_mode) == 0o640
    assert bundle.enrollment_code_path(staged).read_text().strip() == CODE
    assert restarts == ["booth"]
    data = status_of(staged)
    assert data["state"] == "applied" and data["stick"] == "sdb1" and data["reason"] is None
    assert data["summary"]["booth_id"] == "demo-booth-1"
    assert not staged.bundle_staged.exists()
    assert not staged.bundle_apply_request.exists()


def test_without_the_booths_request_nothing_is_applied(staged: Layout) -> None:
    restarts: list[str] = []
    assert apply_staged(staged, restart=lambda: restarts.append("booth")) is None
    assert not staged.config.exists() and restarts == []
    assert status_of(staged)["state"] == "ready"
    ask(staged)  # the twin: with the request, it is applied
    assert apply_staged(staged, restart=lambda: restarts.append("booth")) is not None
    assert staged.config.exists() and restarts == ["booth"]


@pytest.mark.parametrize("same", [True, False], ids=["the-bundle-approved", "another-one"])
def test_only_the_bundle_the_technician_approved_is_applied(staged: Layout, same: bool) -> None:
    """The booth names the staged bundle it showed (its status time) in the request."""
    shown_at = status_of(staged)["at"]
    approved = shown_at if same else shown_at - 30.0  # a stick staged before this one
    staged.bundle_apply_request.write_text(json.dumps({"bundle_at": approved}))
    restarts: list[str] = []
    status = apply_staged(staged, restart=lambda: restarts.append("booth"))
    assert status is not None
    if same:
        assert status.state == "applied" and restarts == ["booth"]
    else:
        assert status.state == "failed" and "apply it again" in (status.reason or "")
        assert not staged.config.exists() and restarts == []
        assert staged.bundle_staged.exists()  # still there, for a fresh approval


def test_a_stale_request_with_nothing_staged_is_removed_and_ignored(
    layout: Layout, capfd: pytest.CaptureFixture[str]
) -> None:
    layout.bundle_requests.mkdir(parents=True)
    ask(layout)
    restarts: list[str] = []
    assert apply_staged(layout, restart=lambda: restarts.append("booth")) is None
    assert "no staged bundle" in capfd.readouterr().err
    assert not layout.bundle_apply_request.exists()
    assert not layout.config.exists() and not layout.bundle_status.exists() and restarts == []


@pytest.mark.parametrize("protected", [True, False], ids=["reverified", "twin-unverified"])
def test_a_staged_copy_changed_after_staging_is_refused_at_apply(
    staged: Layout, monkeypatch: pytest.MonkeyPatch, protected: bool
) -> None:
    with tarfile.open(staged.bundle_staged) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    files["booth.toml"] = files["booth.toml"].replace(b"Demo Booth", b"Demo Booti", 1)
    staged.bundle_staged.unlink()
    with tarfile.open(staged.bundle_staged, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    if not protected:  # the twin: applied without checking again, the change lands
        monkeypatch.setattr(bundle, "verify", unchecked)
    restarts: list[str] = []
    ask(staged)
    status = apply_staged(staged, restart=lambda: restarts.append("booth"))
    assert status is not None
    if protected:
        assert status.state == "refused"
        assert status_of(staged)["reason"].startswith(
            "the staged bundle/booth.toml: does not match"
        )
        assert not staged.config.exists() and restarts == []
        assert not staged.bundle_staged.exists()
    else:
        assert status.state == "applied"
        assert b"Demo Booti" in staged.config.read_bytes()


def test_an_apply_that_fails_says_why(staged: Layout) -> None:
    staged.config.mkdir()  # a folder where booth.toml goes: the write fails
    ask(staged)
    status = apply_staged(staged, restart=lambda: None)
    assert status is not None and status.state == "failed"
    assert status.reason is not None and status.reason.startswith("could not be applied:")
    assert status_of(staged)["state"] == "failed"


# ---------------------------------------------------------------- the commands, end to end


def test_cli_stage_then_apply_staged(
    tmp_path: Path,
    layout: Layout,
    keys: dict[str, tuple[Path, Path]],
    capfd: pytest.CaptureFixture[str],
) -> None:
    with usb_stick(stick_folder(tmp_path, keys["fleet"][0]), tmp_path) as device:
        assert main(["bundle", "stage", str(device), "--root", str(layout.root)]) == 0
    out, _ = capfd.readouterr()
    assert "bundle for booth demo-booth-1 staged" in out
    ask(layout)
    marker = tmp_path / "restarted"
    restart = f"{sys.executable} -c 'import pathlib; pathlib.Path(\"{marker}\").touch()'"
    code = main(["bundle", "apply-staged", "--root", str(layout.root), "--no-network",
                 "--restart-command", restart])  # fmt: skip
    out, err = capfd.readouterr()
    assert code == 0, err
    assert marker.exists()
    assert layout.config.read_bytes() == DEMO.read_bytes()
    assert "Wi-Fi Library Staff: not joined" in out
    assert json.loads(layout.bundle_status.read_bytes())["state"] == "applied"


def test_cli_a_failing_restart_is_reported(
    staged: Layout, capfd: pytest.CaptureFixture[str]
) -> None:
    ask(staged)
    code = main(["bundle", "apply-staged", "--root", str(staged.root), "--no-network",
                 "--restart-command", "false"])  # fmt: skip
    _, err = capfd.readouterr()
    assert code == 1
    assert "applied, but `false` exited with 1" in err and "Traceback" not in err
    assert status_of(staged)["state"] == "applied"


def test_status_json_is_replaced_atomically(staged: Layout) -> None:
    """A reader holding the old file keeps reading it whole; no temporary is left."""
    with staged.bundle_status.open("rb") as old:
        before = os.fstat(old.fileno()).st_ino
        ask(staged)
        apply_staged(staged, restart=lambda: None)
        assert json.loads(old.read())["state"] == "ready"
    assert staged.bundle_status.stat().st_ino != before
    assert [p.name for p in staged.bundle_run.iterdir() if p.name.startswith(".")] == []


def test_refuses_without_a_key_file_that_reads(layout: Layout, tmp_path: Path) -> None:
    (layout.provisioning_keys / "broken.pub").write_text("not a key")
    with pytest.raises(BundleError, match=r"broken\.pub: not a PEM public key"):
        bundle.trusted_keys(layout)
