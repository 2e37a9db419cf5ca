"""USB provisioning bundles: a good one applies after the PIN; an unsigned, tampered,
malformed or wrongly signed one is refused with its reason, and applying without
verification (the twin) would have installed the tampered file."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import sys
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.config import loads
from provisioning import bundle
from provisioning.bundle import (
    BUNDLE_DIR,
    MANIFEST,
    SIGNATURE,
    BundleError,
    VerifiedBundle,
    apply,
    find_bundle,
    load_private_key,
    load_public_key,
    make,
    read_bundle,
    verify,
)
from provisioning.cli import main
from provisioning.layout import Layout

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEMO = EXAMPLES / "demo-booth.toml"  # its technician PIN is 2468
DEMO_PIN = "2468"
CODE = "ENROLL-7f3a9c2e41"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("keys")
    private, public, _ = bundle.keygen(folder / "fleet")
    return private, public


@pytest.fixture
def good(tmp_path: Path, keys: tuple[Path, Path]) -> Path:
    """A signed bundle on a 'stick' folder: config, Wi-Fi profile and enrollment code."""
    out = tmp_path / "stick" / BUNDLE_DIR
    make(
        load_private_key(keys[0]),
        DEMO,
        out,
        wifi=bundle.WifiProfile("Library Staff", "correct horse battery"),
        enrollment_code=CODE,
    )
    return out


def trusted(keys: tuple[Path, Path]) -> list[object]:
    return [load_public_key(keys[1])]


def resign(folder: Path, key_path: Path, manifest: bytes) -> None:
    """Sign ``manifest`` with the fleet key: a malformed bundle made by a key holder."""
    key = load_private_key(key_path)
    (folder / MANIFEST).write_bytes(manifest)
    (folder / SIGNATURE).write_bytes(base64.b64encode(key.sign(manifest)))


def edit_manifest(
    folder: Path, key_path: Path, change: Callable[[dict[str, object]], object]
) -> None:
    data = json.loads((folder / MANIFEST).read_bytes())
    change(data)
    resign(folder, key_path, json.dumps(data).encode())


# ---------------------------------------------------------------- good bundles


def test_good_bundle_verifies(good: Path, keys: tuple[Path, Path]) -> None:
    verified = verify(read_bundle(good), trusted(keys))  # type: ignore[arg-type]
    assert verified.config.booth.id == "demo-booth-1"
    assert verified.wifi is not None and verified.wifi.ssid == "Library Staff"
    assert verified.enrollment_code == CODE
    assert "correct horse" not in repr(verified.wifi)


def test_find_bundle_on_a_stick(good: Path, tmp_path: Path) -> None:
    found = find_bundle(good.parent)
    assert found is not None and found.source == str(good)
    empty = tmp_path / "empty-stick"
    empty.mkdir()
    assert find_bundle(empty) is None


def test_a_tarball_bundle_verifies(good: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    tarball = tmp_path / f"{BUNDLE_DIR}.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(good, arcname=BUNDLE_DIR)
    stick = tmp_path / "tarstick"
    stick.mkdir()
    tarball.rename(stick / tarball.name)
    found = find_bundle(stick)
    assert found is not None
    assert verify(found, trusted(keys)).config.booth.id == "demo-booth-1"  # type: ignore[arg-type]


def test_cli_verify_then_apply_with_the_pin(
    good: Path,
    keys: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert main(["bundle", "verify", str(good.parent), "--trust", str(keys[1])]) == 0
    assert "Bundle OK: signed by" in capsys.readouterr().out
    root = tmp_path / "root"
    monkeypatch.setattr(sys, "stdin", io.StringIO(DEMO_PIN + "\n"))
    argv = ["bundle", "apply", str(good), "--trust", str(keys[1]), "--root", str(root)]
    assert main([*argv, "--pin-stdin", "--no-network"]) == 0
    out = capsys.readouterr().out
    layout = Layout(root)
    assert layout.config.read_bytes() == DEMO.read_bytes()
    assert stat.S_IMODE(layout.config.stat().st_mode) == 0o640
    code_file = layout.config_dir / "enrollment-code"
    assert code_file.read_text() == CODE + "\n"
    assert stat.S_IMODE(code_file.stat().st_mode) == 0o600
    assert "Wi-Fi Library Staff: not joined" in out
    assert "correct horse" not in out


def test_cli_apply_refuses_a_wrong_pin(
    good: Path,
    keys: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "root"
    monkeypatch.setattr(sys, "stdin", io.StringIO("1357\n"))
    argv = ["bundle", "apply", str(good), "--trust", str(keys[1]), "--root", str(root)]
    assert main([*argv, "--pin-stdin", "--no-network"]) == 1
    assert "wrong technician PIN; nothing was changed" in capsys.readouterr().err
    assert not Layout(root).config.exists()


def test_keygen_refuses_to_overwrite(
    keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bundle", "keygen", str(keys[0])]) == 1
    assert f"{keys[0]}: already exists" in capsys.readouterr().err
    assert stat.S_IMODE(keys[0].stat().st_mode) == 0o600


# ---------------------------------------------------------------- refused bundles


def _unsigned(b: Path, k: Path) -> None:
    (b / SIGNATURE).unlink()


def _garbage_signature(b: Path, k: Path) -> None:
    (b / SIGNATURE).write_text("hello")


def _flip_config_byte(b: Path, k: Path) -> None:
    data = bytearray((b / "booth.toml").read_bytes())
    at = data.index(b"Demo Booth") + len("Demo Boot")
    data[at] ^= 0x01  # "Demo Booth" -> "Demo Booti": still a valid file
    (b / "booth.toml").write_bytes(bytes(data))


def _flip_manifest_byte(b: Path, k: Path) -> None:
    data = bytearray((b / MANIFEST).read_bytes())
    data[data.index(b'"expires"') + 13] ^= 0x01
    (b / MANIFEST).write_bytes(bytes(data))


def _flip_wifi_byte(b: Path, k: Path) -> None:
    data = bytearray((b / "wifi.json").read_bytes())
    data[-3] ^= 0x02
    (b / "wifi.json").write_bytes(bytes(data))


def _add_file(b: Path, k: Path) -> None:
    (b / "extra.sh").write_text("rm -rf /\n")


def _remove_file(b: Path, k: Path) -> None:
    (b / "wifi.json").unlink()


def _symlink(b: Path, k: Path) -> None:
    (b / "booth.toml").rename(b.parent / "real.toml")
    (b / "booth.toml").symlink_to(b.parent / "real.toml")


def _fifo(b: Path, k: Path) -> None:
    os.mkfifo(b / "enrollment-code.fifo")


def _oversized(b: Path, k: Path) -> None:
    (b / "booth.toml").write_bytes(b"#" * (300 * 1024))


def _subfolder(b: Path, k: Path) -> None:
    (b / "more").mkdir()


def _bad_json(b: Path, k: Path) -> None:
    resign(b, k, b'{"format": "telehealth-kiosk-provisioning-bundle", ')


def _missing_field(b: Path, k: Path) -> None:
    edit_manifest(b, k, lambda m: m.pop("expires"))


def _rename_in_manifest(b: Path, k: Path, old: str, new: str) -> None:
    """The manifest lists ``old`` as ``new``, signed again with ``k``."""

    def change(m: dict[str, object]) -> None:
        files = m["files"]
        assert isinstance(files, dict)
        files[new] = files.pop(old)

    edit_manifest(b, k, change)


def _traversal_in_manifest(b: Path, k: Path) -> None:
    _rename_in_manifest(b, k, "booth.toml", "../booth.toml")


def _absolute_in_manifest(b: Path, k: Path) -> None:
    _rename_in_manifest(b, k, "wifi.json", "/etc/passwd")


def _unknown_file_in_manifest(b: Path, k: Path) -> None:
    (b / "wifi.json").rename(b / "run.sh")
    _rename_in_manifest(b, k, "wifi.json", "run.sh")


def _wrong_version(b: Path, k: Path) -> None:
    edit_manifest(b, k, lambda m: m.update(version=99))


def _expired(b: Path, k: Path) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    edit_manifest(b, k, lambda m: m.update(expires=past.isoformat(timespec="seconds")))


def _bad_config(b: Path, k: Path) -> None:
    text = (b / "booth.toml").read_text().replace("door = 17", "door = 99")
    (b / "booth.toml").write_text(text)
    data = text.encode()

    def change(m: dict[str, object]) -> None:
        import hashlib

        files = m["files"]
        assert isinstance(files, dict)
        files["booth.toml"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    edit_manifest(b, k, change)


def _wrong_key(b: Path, k: Path) -> None:
    other = Ed25519PrivateKey.generate()
    data = json.loads((b / MANIFEST).read_bytes())
    data["key_id"] = bundle.key_id(other.public_key())
    manifest = json.dumps(data).encode()
    (b / MANIFEST).write_bytes(manifest)
    (b / SIGNATURE).write_bytes(base64.b64encode(other.sign(manifest)))


def _wrong_key_claiming_ours(b: Path, k: Path) -> None:
    other = Ed25519PrivateKey.generate()
    manifest = (b / MANIFEST).read_bytes()  # still names the fleet key
    (b / SIGNATURE).write_bytes(base64.b64encode(other.sign(manifest)))


REFUSALS: list[tuple[Callable[[Path, Path], None], str]] = [
    (_unsigned, "unsigned (no manifest.sig)"),
    (_garbage_signature, "manifest.sig: not an Ed25519 signature"),
    (_flip_config_byte, "booth.toml: does not match the SHA-256 in the signed manifest"),
    (_flip_wifi_byte, "wifi.json: does not match the SHA-256 in the signed manifest"),
    (_flip_manifest_byte, "manifest.json: the signature does not match"),
    (_add_file, "extra.sh: not listed in the signed manifest (a file was added)"),
    (_remove_file, "wifi.json: listed in the signed manifest but missing (a file was removed)"),
    (_symlink, "booth.toml: is a symbolic link"),
    (_fifo, "enrollment-code.fifo: not a plain file"),
    (_oversized, "booth.toml: 307200 bytes, over the 256 KiB"),
    (_subfolder, "more: not a plain file (a folder or device)"),
    (_bad_json, "manifest.json: not valid JSON"),
    (_missing_field, "manifest.json has no 'expires'"),
    (_traversal_in_manifest, "'../booth.toml' is not a plain file name"),
    (_absolute_in_manifest, "'/etc/passwd' is not a plain file name"),
    (_unknown_file_in_manifest, "lists 'run.sh'; a bundle may hold only"),
    (_wrong_version, "bundle version 99 is not 1"),
    (_expired, "expired on"),
    (_bad_config, "hardware.pins.door: must be a GPIO number 0-27"),
    (_wrong_key, "which is not a trusted provisioning key"),
    (_wrong_key_claiming_ours, "the signature does not match"),
]


@pytest.mark.parametrize(
    ("spoil", "reason"), REFUSALS, ids=[f.__name__.strip("_") for f, _ in REFUSALS]
)
def test_refused_with_its_reason(
    good: Path, keys: tuple[Path, Path], spoil: Callable[[Path, Path], None], reason: str
) -> None:
    spoil(good, keys[0])
    with pytest.raises(BundleError) as refused:
        verify(read_bundle(good), trusted(keys))  # type: ignore[arg-type]
    assert reason in str(refused.value)


def test_traversal_in_a_tarball_is_refused(good: Path, tmp_path: Path) -> None:
    tarball = tmp_path / "evil.tar"
    with tarfile.open(tarball, "w") as tar:
        for child in sorted(good.iterdir()):
            tar.add(child, arcname=child.name)
        info = tarfile.TarInfo("../../etc/cron.d/x")
        payload = b"* * * * * root sh\n"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(BundleError, match=r"'\.\./\.\./etc/cron\.d/x' is not a plain file name"):
        read_bundle(tarball)


def test_a_link_in_a_tarball_is_refused(good: Path, tmp_path: Path) -> None:
    tarball = tmp_path / "link.tar"
    with tarfile.open(tarball, "w") as tar:
        info = tarfile.TarInfo("booth.toml")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/shadow"
        tar.addfile(info)
    with pytest.raises(BundleError, match=r"booth\.toml is a link"):
        read_bundle(tarball)


def test_cli_refusal_changes_nothing(
    good: Path, keys: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _flip_config_byte(good, keys[0])
    root = tmp_path / "root"
    argv = ["bundle", "apply", str(good), "--trust", str(keys[1]), "--root", str(root)]
    assert main([*argv, "--pin-stdin", "--no-network"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kiosk-provision: ")
    assert "booth.toml: does not match the SHA-256 in the signed manifest" in err
    assert "Traceback" not in err
    assert not Layout(root).config.exists()


@pytest.mark.parametrize("protected", [True, False], ids=["verified", "twin-unverified"])
def test_twin_without_verification_the_tampered_config_lands(
    good: Path, keys: tuple[Path, Path], tmp_path: Path, protected: bool
) -> None:
    """The same tampered bundle: verify() stops it; skipping verify() would install it."""
    _flip_config_byte(good, keys[0])
    layout = Layout(tmp_path / "root")
    read = read_bundle(good)
    if protected:
        with pytest.raises(BundleError):
            apply(verify(read, trusted(keys)), layout)  # type: ignore[arg-type]
        assert not layout.config.exists()
    else:
        text = read.files["booth.toml"]
        unchecked = VerifiedBundle(
            read, "none", datetime.now(UTC), text, loads(text.decode(), "tampered")
        )
        apply(unchecked, layout)
        assert b"Demo Booti" in layout.config.read_bytes()


def test_make_refuses_a_config_the_booth_would_not_start_with(
    keys: tuple[Path, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(DEMO.read_text().replace("door = 17", "door = 99"))
    with pytest.raises(BundleError, match=r"hardware\.pins\.door: must be a GPIO number"):
        make(load_private_key(keys[0]), bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
