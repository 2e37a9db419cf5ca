"""USB provisioning bundles: a booth's settings on a stick, signed by the fleet's key.

A bundle is a folder (or a tar of it) named :data:`BUNDLE_DIR` at the top of
a USB stick::

    telehealth-kiosk-bundle/
        manifest.json      what is in the bundle: each file's size and SHA-256
        manifest.sig       Ed25519 signature of manifest.json's exact bytes (base64)
        booth.toml         the booth configuration
        wifi.json          optional: {"ssid": ..., "password": ..., "hidden": false}
        enrollment-code    optional: the one-time code for `kiosk-provision enroll`

The fleet's provisioning key (``bundle keygen``) signs it (``bundle make``);
booths trust its public half. Anything else is refused with the reason:
no signature, a signature by another key, a manifest changed after signing,
a file changed, added or removed, a name that could escape the folder
(``../x``, ``/etc/x``), a link, a device, an oversized file, an expired
bundle, or a configuration the booth would not start with.

The library API, for ``kiosk-provision`` and for the booth when udev reports a
stick: :func:`find_bundle` (``Bundle | None``), :func:`verify` (a
:class:`VerifiedBundle` or :class:`BundleError`) and :func:`apply`, which takes
only a :class:`VerifiedBundle`. Everything is read into memory once, so what
was verified is exactly what is applied, whatever happens on the stick after.

In a running booth (which is unprivileged) two root units do the privileged
part: :func:`stage` (``bundle stage DEVICE``, started by udev) and
:func:`apply_staged` (``bundle apply-staged``, started when the booth asks after
the technician PIN); see systemd/README.md and the ``bundle_*`` paths of
:class:`provisioning.layout.Layout`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import grp
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kiosk.config import BoothConfig, loads
from kiosk.errors import ConfigError, KioskError
from provisioning.layout import USER, Layout

BUNDLE_DIR: Final = "telehealth-kiosk-bundle"
MANIFEST: Final = "manifest.json"
SIGNATURE: Final = "manifest.sig"
CONFIG: Final = "booth.toml"
WIFI: Final = "wifi.json"
ENROLLMENT: Final = "enrollment-code"
CONTENT_FILES: Final = (CONFIG, WIFI, ENROLLMENT)
FORMAT: Final = "telehealth-kiosk-provisioning-bundle"
VERSION: Final = 1
MAX_FILE_BYTES: Final = 256 * 1024
"""Every file in a bundle is a few kilobytes; anything bigger is refused unread."""
MAX_ENTRIES: Final = 16
VALID_DAYS: Final = 30
"""A bundle expires, so a lost stick stops working on its own."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CODE = re.compile(r"[\x21-\x7e]{8,128}")


class BundleError(KioskError):
    """A bundle was refused; the message says why and what to do."""


@dataclass(frozen=True)
class Bundle:
    """A bundle as read from the stick, not yet trusted in any way."""

    source: str
    manifest: bytes
    signature: bytes | None
    files: Mapping[str, bytes]


@dataclass(frozen=True)
class WifiProfile:
    ssid: str
    password: str | None
    hidden: bool = False

    def __repr__(self) -> str:
        shown = "None" if self.password is None else "'…'"
        return f"WifiProfile(ssid={self.ssid!r}, password={shown}, hidden={self.hidden!r})"


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose signature, manifest and every file checked out; only these are applied."""

    bundle: Bundle
    key_id: str
    expires: datetime
    config_text: bytes
    config: BoothConfig
    wifi: WifiProfile | None = None
    enrollment_code: str | None = None


# ---------------------------------------------------------------- keys


def key_id(key: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 16 hex digits of its SHA-256."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def keygen(out: Path) -> tuple[Path, Path, str]:
    """A new provisioning key: ``out`` (private, 0600) and ``out.pub``; refuses to overwrite."""
    public_path = out.with_name(out.name + ".pub")
    for path in (out, public_path):
        if path.exists() or path.is_symlink():
            raise BundleError(f"{path}: already exists; choose another name or move it away")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private_pem)
        public_path.write_bytes(public_pem)
    except OSError as exc:
        raise BundleError(f"{out}: cannot be written ({exc.strerror})") from None
    return out, public_path, key_id(key.public_key())


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{path}: no such {what} file") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot be read ({exc.strerror})") from None
    if len(data) > 16 * 1024:
        raise BundleError(f"{path}: far too big for a {what}; is this the right file?")
    return data


def load_private_key(path: Path) -> Ed25519PrivateKey:
    data = _read_key_file(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BundleError(
            f"{path}: not a PEM private key ({exc}); give the file `bundle keygen` wrote"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(
            f"{path}: not an Ed25519 key; make one with `kiosk-provision bundle keygen`"
        )
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    data = _read_key_file(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise BundleError(
            f"{path}: not a PEM public key ({exc}); give the .pub file `bundle keygen` wrote"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path}: not an Ed25519 public key")
    return key


# ---------------------------------------------------------------- reading from the stick


def _check_name(name: str, where: str) -> None:
    if not _NAME.fullmatch(name):
        raise BundleError(
            f"{where}: {name!r} is not a plain file name (a bundle holds only files like "
            f"{CONFIG}, with no folders, no '..' and no leading '/' or '.')"
        )


def _check_size(name: str, size: int, where: str) -> None:
    if size > MAX_FILE_BYTES:
        raise BundleError(
            f"{where}/{name}: {size} bytes, over the {MAX_FILE_BYTES // 1024} KiB a bundle "
            "file may have; this is not a provisioning bundle file"
        )


def _read_plain_file(folder: Path, name: str) -> bytes:
    """Read one regular file without following a link or blocking on a FIFO."""
    path = folder / name
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(f"{path}: not a regular file; a bundle holds plain files only")
        _check_size(name, info.st_size, str(folder))
        data = f.read(MAX_FILE_BYTES + 1)
    _check_size(name, len(data), str(folder))
    return data


def _read_folder(folder: Path) -> dict[str, bytes]:
    try:
        entries = list(os.scandir(folder))
    except NotADirectoryError:
        raise BundleError(f"{folder}: not a folder") from None
    except OSError as exc:
        raise BundleError(f"{folder}: cannot be read ({exc.strerror})") from None
    if len(entries) > MAX_ENTRIES:
        raise BundleError(f"{folder}: {len(entries)} entries; a bundle has at most {MAX_ENTRIES}")
    files: dict[str, bytes] = {}
    for entry in sorted(entries, key=lambda e: e.name):
        _check_name(entry.name, str(folder))
        if entry.is_symlink():
            raise BundleError(
                f"{folder}/{entry.name}: is a symbolic link; a bundle holds plain files only"
            )
        if not entry.is_file(follow_symlinks=False):
            raise BundleError(f"{folder}/{entry.name}: not a plain file (a folder or device)")
        try:
            files[entry.name] = _read_plain_file(folder, entry.name)
        except OSError as exc:
            raise BundleError(f"{folder}/{entry.name}: cannot be read ({exc.strerror})") from None
    return files


def _read_tar(path: Path) -> dict[str, bytes]:
    """The files of a bundle tarball, flat or inside one :data:`BUNDLE_DIR` folder."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            members = tar.getmembers()
            if len(members) > MAX_ENTRIES + 1:
                raise BundleError(
                    f"{path}: {len(members)} entries; a bundle has at most {MAX_ENTRIES}"
                )
            for member in members:
                name = member.name.removeprefix("./")
                if member.isdir() and name.rstrip("/") in (BUNDLE_DIR, "."):
                    continue
                name = name.removeprefix(BUNDLE_DIR + "/")
                _check_name(name, str(path))
                if member.issym() or member.islnk():
                    raise BundleError(f"{path}: {name} is a link; a bundle holds plain files only")
                if not member.isfile():
                    raise BundleError(f"{path}: {name} is not a plain file")
                _check_size(name, member.size, str(path))
                if name in files:
                    raise BundleError(f"{path}: {name} appears twice")
                stream = tar.extractfile(member)
                if stream is None:
                    raise BundleError(f"{path}: {name} cannot be read")
                files[name] = stream.read(MAX_FILE_BYTES + 1)
                _check_size(name, len(files[name]), str(path))
    except (tarfile.TarError, EOFError) as exc:
        raise BundleError(f"{path}: not a readable tar file ({exc})") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot be read ({exc.strerror})") from None
    return files


def read_bundle(path: Path) -> Bundle:
    """A bundle folder or tarball, read into memory; BundleError if it cannot be one."""
    if path.is_symlink():
        raise BundleError(f"{path}: is a symbolic link; a bundle holds plain files only")
    files = _read_tar(path) if path.is_file() else _read_folder(path)
    manifest = files.pop(MANIFEST, None)
    if manifest is None:
        raise BundleError(f"{path}: no {MANIFEST}; this is not a provisioning bundle")
    signature = files.pop(SIGNATURE, None)
    return Bundle(str(path), manifest, signature, files)


def find_bundle(mount_point: Path) -> Bundle | None:
    """The bundle at the top of a mounted stick, or None when the stick has none."""
    for name in (BUNDLE_DIR, f"{BUNDLE_DIR}.tar", f"{BUNDLE_DIR}.tar.gz"):
        candidate = mount_point / name
        if candidate.exists() or candidate.is_symlink():
            return read_bundle(candidate)
    return None


def open_bundle(path: Path) -> Bundle:
    """What the technician named: a bundle folder or tarball, or a stick holding one."""
    if path.is_dir() and not (path / MANIFEST).exists():
        found = find_bundle(path)
        if found is not None:
            return found
    if not path.exists() and not path.is_symlink():
        raise BundleError(f"{path}: no such file or folder")
    return read_bundle(path)


# ---------------------------------------------------------------- verifying


def _claimed_key(manifest: bytes) -> str | None:
    """The key id the (still unverified) manifest names, for a helpful refusal only."""
    with contextlib.suppress(ValueError, UnicodeDecodeError, AttributeError):
        claimed = json.loads(manifest).get("key_id")
        return claimed if isinstance(claimed, str) else None
    return None


def _check_signature(bundle: Bundle, trusted: Sequence[Ed25519PublicKey]) -> str:
    where = bundle.source
    if bundle.signature is None:
        raise BundleError(
            f"{where}: unsigned (no {SIGNATURE}); only bundles signed with the fleet's "
            "provisioning key are applied: make it with `kiosk-provision bundle make --key`"
        )
    try:
        signature = base64.b64decode(bundle.signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if len(signature) != 64:
        raise BundleError(f"{where}/{SIGNATURE}: not an Ed25519 signature (64 bytes in base64)")
    if not trusted:
        raise BundleError("no trusted provisioning key given; add --trust with the fleet's .pub")
    for key in trusted:
        try:
            key.verify(signature, bundle.manifest)
        except InvalidSignature:
            continue
        return key_id(key)
    ids = ", ".join(key_id(k) for k in trusted)
    claimed = _claimed_key(bundle.manifest)
    if claimed is not None and claimed not in {key_id(k) for k in trusted}:
        raise BundleError(
            f"{where}: signed by key {claimed}, which is not a trusted provisioning key "
            f"(trusted: {ids}); use a bundle made with the fleet's key"
        )
    raise BundleError(
        f"{where}/{MANIFEST}: the signature does not match (trusted keys: {ids}): the manifest "
        "was changed after signing, or signed with another key; make the bundle again"
    )


def _field(data: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise BundleError(f"{where}: {MANIFEST} has no {key!r}; make the bundle again")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BundleError(f"{where}: {MANIFEST} {key!r} must be a {kind.__name__}")
    return value


def _timestamp(value: str, key: str, where: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None:
        raise BundleError(f"{where}: {MANIFEST} {key!r} must be a UTC time, not {value!r}")
    return stamp


def _parse_manifest(bundle: Bundle) -> tuple[str, datetime, dict[str, tuple[int, str]]]:
    where = bundle.source
    try:
        data = json.loads(bundle.manifest.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{where}/{MANIFEST}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BundleError(f"{where}/{MANIFEST}: must be a JSON object")
    unknown = sorted(set(data) - {"format", "version", "key_id", "created", "expires", "files"})
    if unknown:
        raise BundleError(f"{where}/{MANIFEST}: unknown field(s) {', '.join(unknown)}")
    if _field(data, "format", str, where) != FORMAT:
        raise BundleError(
            f"{where}/{MANIFEST}: not a provisioning bundle (format {data['format']!r})"
        )
    if _field(data, "version", int, where) != VERSION:
        raise BundleError(
            f"{where}/{MANIFEST}: bundle version {data['version']} is not {VERSION}; "
            "update this booth's software or make the bundle with the matching version"
        )
    claimed = _field(data, "key_id", str, where)
    _timestamp(_field(data, "created", str, where), "created", where)
    expires = _timestamp(_field(data, "expires", str, where), "expires", where)
    listed = _field(data, "files", dict, where)
    files: dict[str, tuple[int, str]] = {}
    for name, entry in listed.items():
        _check_name(name, f"{where}/{MANIFEST}")
        if name not in CONTENT_FILES:
            raise BundleError(
                f"{where}/{MANIFEST}: lists {name!r}; a bundle may hold only "
                f"{', '.join(CONTENT_FILES)}"
            )
        if not isinstance(entry, dict) or set(entry) != {"size", "sha256"}:
            raise BundleError(f"{where}/{MANIFEST}: {name} needs exactly 'size' and 'sha256'")
        size, digest = entry["size"], entry["sha256"]
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_FILE_BYTES:
            raise BundleError(f"{where}/{MANIFEST}: {name} size must be 0-{MAX_FILE_BYTES}")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise BundleError(f"{where}/{MANIFEST}: {name} sha256 must be 64 lowercase hex digits")
        files[name] = (size, digest)
    if CONFIG not in files:
        raise BundleError(f"{where}/{MANIFEST}: lists no {CONFIG}; a bundle must carry one")
    return claimed, expires, files


def _parse_wifi(data: bytes, where: str) -> WifiProfile:
    from provisioning.network import NetworkError, check_password, check_ssid

    try:
        wifi = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{where}/{WIFI}: not valid JSON ({exc})") from None
    if not isinstance(wifi, dict) or not set(wifi) <= {"ssid", "password", "hidden"}:
        raise BundleError(f'{where}/{WIFI}: must be {{"ssid", "password", "hidden"}}')
    ssid, password, hidden = wifi.get("ssid"), wifi.get("password"), wifi.get("hidden", False)
    if not isinstance(ssid, str) or not (password is None or isinstance(password, str)):
        raise BundleError(f"{where}/{WIFI}: ssid and password must be text")
    if not isinstance(hidden, bool):
        raise BundleError(f"{where}/{WIFI}: hidden must be true or false")
    try:
        check_ssid(ssid)
        if password is not None:
            check_password(password)
    except NetworkError as exc:
        raise BundleError(f"{where}/{WIFI}: {exc}") from None
    return WifiProfile(ssid, password, hidden)


def verify(
    bundle: Bundle, trusted_keys: Sequence[Ed25519PublicKey], *, now: datetime | None = None
) -> VerifiedBundle:
    """Check the signature first, then the manifest, then every file; BundleError says why."""
    signer = _check_signature(bundle, trusted_keys)
    claimed, expires, listed = _parse_manifest(bundle)
    where = bundle.source
    if claimed != signer:
        raise BundleError(f"{where}/{MANIFEST}: names key {claimed} but was signed by {signer}")
    now = now or datetime.now(UTC)
    if now > expires:
        raise BundleError(
            f"{where}: expired on {expires:%Y-%m-%d %H:%M} UTC; make a new bundle with "
            "`kiosk-provision bundle make`"
        )
    for name in sorted(set(bundle.files) - set(listed)):
        raise BundleError(
            f"{where}/{name}: not listed in the signed manifest (a file was added); "
            "remove it or make the bundle again"
        )
    for name, (size, digest) in sorted(listed.items()):
        data = bundle.files.get(name)
        if data is None:
            raise BundleError(
                f"{where}/{name}: listed in the signed manifest but missing (a file was removed)"
            )
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise BundleError(
                f"{where}/{name}: does not match the SHA-256 in the signed manifest "
                "(changed after signing); make the bundle again"
            )
    config_text = bundle.files[CONFIG]
    try:
        config = loads(config_text.decode("utf-8-sig"), f"{where}/{CONFIG}")
    except UnicodeDecodeError:
        raise BundleError(f"{where}/{CONFIG}: not UTF-8 text") from None
    except ConfigError as exc:
        raise BundleError(
            f"{where}/{CONFIG}: the booth would not start with it: " + "; ".join(exc.problems)
        ) from None
    wifi = _parse_wifi(bundle.files[WIFI], where) if WIFI in listed else None
    code = None
    if ENROLLMENT in listed:
        code = bundle.files[ENROLLMENT].decode("ascii", errors="replace").strip()
        if not _CODE.fullmatch(code):
            raise BundleError(
                f"{where}/{ENROLLMENT}: not an enrollment code (8-128 printable characters, "
                "no spaces, as `clinic-hub enroll-code` prints it)"
            )
    return VerifiedBundle(bundle, signer, expires, config_text, config, wifi, code)


# ---------------------------------------------------------------- making and applying


def make(
    key: Ed25519PrivateKey,
    config_path: Path,
    out: Path,
    *,
    wifi: WifiProfile | None = None,
    enrollment_code: str | None = None,
    now: datetime | None = None,
    valid_days: float = VALID_DAYS,
    tar: bool = False,
) -> Path:
    """Write a signed bundle into the folder ``out`` (new or empty); returns where it went.

    ``tar``: one ``.tar.gz`` file instead (``out`` names it, or is the stick's
    folder to put :data:`BUNDLE_DIR` ``.tar.gz`` in), for sticks and mail that
    keep one file more easily than a folder.
    """
    from kiosk.config import load

    try:
        load(config_path)
    except ConfigError as exc:
        raise BundleError(f"{config_path}: not signed, the booth would not start with it: "
                          + "; ".join(exc.problems)) from None  # fmt: skip
    files: dict[str, bytes] = {CONFIG: config_path.read_bytes()}
    if wifi is not None:
        body = {"ssid": wifi.ssid, "password": wifi.password, "hidden": wifi.hidden}
        files[WIFI] = json.dumps(body, ensure_ascii=False).encode("utf-8")
    if enrollment_code is not None:
        if not _CODE.fullmatch(enrollment_code.strip()):
            raise BundleError("the enrollment code must be 8-128 printable characters, no spaces")
        files[ENROLLMENT] = enrollment_code.strip().encode("ascii") + b"\n"
    now = now or datetime.now(UTC)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "key_id": key_id(key.public_key()),
        "created": now.isoformat(timespec="seconds"),
        "expires": (now + timedelta(days=valid_days)).isoformat(timespec="seconds"),
        "files": {
            name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in sorted(files.items())
        },
    }
    manifest_bytes = json.dumps(manifest, indent=2).encode("utf-8") + b"\n"
    signature = base64.b64encode(key.sign(manifest_bytes)) + b"\n"
    if tar:
        members = {**files, MANIFEST: manifest_bytes, SIGNATURE: signature}
        return _write_tarball(members, out, now)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out}: exists and is not an empty folder; give a new folder")
    out.mkdir(parents=True, exist_ok=True)
    for name, data in {**files, MANIFEST: manifest_bytes, SIGNATURE: signature}.items():
        (out / name).write_bytes(data)
    return out


def _write_tarball(members: Mapping[str, bytes], out: Path, when: datetime) -> Path:
    """``members`` in a gzipped tar, inside a :data:`BUNDLE_DIR` folder as on a stick."""
    if out.is_dir():
        out = out / f"{BUNDLE_DIR}.tar.gz"
    elif not out.name.endswith(".tar.gz"):
        raise BundleError(
            f"{out}: with --tar, give a new file name ending in .tar.gz "
            f"(e.g. /media/usb/{BUNDLE_DIR}.tar.gz) or the stick's folder"
        )
    if out.exists() or out.is_symlink():
        raise BundleError(f"{out}: exists already; give a new file name")
    stamp = int(when.timestamp())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        folder = tarfile.TarInfo(BUNDLE_DIR)
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o700, stamp
        tar.addfile(folder)
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(f"{BUNDLE_DIR}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o600, stamp
            tar.addfile(info, io.BytesIO(data))
    # Not _write_atomic: a FAT stick refuses chmod. A new name, then a rename, all the same.
    temporary = out.with_name(f".{out.name}.new")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb", opener=_new_private) as f:
            f.write(buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise BundleError(f"{out}: cannot be written ({exc.strerror or exc})") from None
    return out


def _new_private(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_TRUNC | os.O_NOFOLLOW, 0o600)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write next to ``path`` and rename over it: a pulled plug leaves the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _kiosk_group(path: Path, layout: Layout) -> None:
    """On a real booth the config is root:kiosk 0640, as the installer leaves it."""
    if layout.root != Path("/"):
        return
    with contextlib.suppress(KeyError, OSError):
        grp.getgrnam(USER)
        shutil.chown(path, group=USER)


def enrollment_code_path(layout: Layout) -> Path:
    return layout.config_dir / "enrollment-code"


def apply(verified: VerifiedBundle, layout: Layout, *, nmcli: Any | None = None) -> list[str]:
    """Install what a verified bundle carries; returns what was done, a line each.

    The Wi-Fi profile is joined through ``nmcli`` (a :class:`provisioning.network.Nmcli`)
    when one is given; without it, it is left out and said so.
    """
    done = []
    _write_atomic(layout.config, verified.config_text, 0o640)
    _kiosk_group(layout.config, layout)
    done.append(f"wrote {layout.config} (booth {verified.config.booth.id})")
    if verified.enrollment_code is not None:
        path = enrollment_code_path(layout)
        _write_atomic(path, verified.enrollment_code.encode("ascii") + b"\n", 0o600)
        done.append(f"wrote {path}; run `kiosk-provision enroll` to use it")
    if verified.wifi is not None:
        if nmcli is None:
            done.append(f"Wi-Fi {verified.wifi.ssid}: not joined (no NetworkManager here)")
        else:
            from provisioning.network import connect_wifi

            connect_wifi(nmcli, verified.wifi.ssid, verified.wifi.password,
                         hidden=verified.wifi.hidden)  # fmt: skip
            done.append(f"joined Wi-Fi {verified.wifi.ssid}")
    return done


# ---------------------------------------------------------------- a stick in a running booth

# The booth runs unprivileged and cannot mount a stick or write /etc, so two root units
# do it (systemd/README.md): ``bundle stage`` (udev starts it for each USB file system)
# mounts, reads, unmounts, verifies and stages; ``bundle apply-staged`` (started when the
# booth, after the technician PIN, creates the apply request) verifies the staged copy
# again and applies it. They and the booth talk only through the files of
# Layout.bundle_run, described in provisioning/layout.py.

STATES: Final = ("ready", "refused", "applied", "failed")
RESTART_BOOTH: Final = ("systemctl", "restart", "telehealth-kiosk.service")
MOUNT_OPTIONS: Final = {
    # FAT and exFAT have no owners: everything is root's and nobody else's.
    "vfat": "uid=0,gid=0,umask=0077",
    "exfat": "uid=0,gid=0,umask=0077",
    # noload: a read-only ext3/ext4 mount would otherwise replay the journal onto the stick.
    "ext4": "noload",
    "ext3": "noload",
    "ext2": "",
}
"""The file systems a bundle stick may have; naming one keeps mount from probing others."""
_SAFE_MOUNT: Final = "ro,nosuid,nodev,noexec,nosymfollow"
COMMAND_TIMEOUT_S: Final = 30.0


class StickError(BundleError):
    """A stick could not be mounted or read at all (not a refusal of its bundle)."""


class UnsupportedStickError(StickError):
    """Not a file system a bundle stick has: probably not a bundle stick at all."""


@dataclass(frozen=True)
class Summary:
    """What the booth's screen shows about a bundle: no secrets, no personal data."""

    booth_id: str | None = None
    site: str | None = None
    wifi: bool = False
    enrollment_code: bool = False

    @classmethod
    def of(cls, verified: VerifiedBundle) -> Summary:
        return cls(
            verified.config.booth.id,
            verified.config.site.name,
            verified.wifi is not None,
            verified.enrollment_code is not None,
        )


@dataclass(frozen=True)
class Status:
    """The content of Layout.bundle_status."""

    state: str
    reason: str | None
    stick: str | None
    summary: Summary
    at: float

    def to_json(self) -> bytes:
        body = {
            "state": self.state,
            "reason": self.reason,
            "stick": self.stick,
            "summary": {
                "booth_id": self.summary.booth_id,
                "site": self.summary.site,
                "wifi": self.summary.wifi,
                "enrollment_code": self.summary.enrollment_code,
            },
            "at": self.at,
        }
        return json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Temporary file (unique per process), fsync, rename, fsync the folder.

    Group comes from the folder: on a booth the run folder is setgid kiosk, so the
    status file is readable by the booth without root ever calling chown.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_status(layout: Layout, status: Status) -> None:
    if status.state not in STATES:
        raise ValueError(f"unknown bundle state {status.state!r}")
    _write_private(layout.bundle_status, status.to_json(), 0o640)


def read_status(layout: Layout) -> dict[str, Any] | None:
    """The last status written, or None (none yet, or unreadable)."""
    try:
        data = json.loads(layout.bundle_status.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _prepare_run_dir(layout: Layout) -> None:
    """On a booth tmpfiles made these at boot (with group kiosk); under --root, make them."""
    run = layout.bundle_run
    if layout.root == Path("/") and not run.is_dir():
        raise StickError(
            f"{run}: missing; it is made at boot from /etc/tmpfiles.d/telehealth-kiosk-bundle."
            "conf: run `systemd-tmpfiles --create telehealth-kiosk-bundle.conf` or reboot"
        )
    for path, mode in (
        (run, 0o2750),
        (layout.bundle_pending, 0o700),
        (layout.bundle_requests, 0o770),
    ):
        if not path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(mode)


@contextlib.contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    """One stage or apply at a time (two sticks at once, or a stick during an apply)."""
    import fcntl

    _prepare_run_dir(layout)
    fd = os.open(layout.bundle_pending / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def trusted_keys(layout: Layout) -> list[Ed25519PublicKey]:
    """The booth's provisioning keys; BundleError when there are none or one is broken."""
    folder = layout.provisioning_keys
    paths = sorted(folder.glob("*.pub")) if folder.is_dir() else []
    if not paths:
        raise BundleError(
            f"this booth trusts no provisioning key ({folder} holds no .pub file); add the "
            "fleet's with `kiosk-provision install --provisioning-key FILE`"
        )
    return [load_public_key(path) for path in paths]


def _pack(bundle: Bundle) -> bytes:
    """The bundle's exact bytes as an uncompressed tar, as :func:`read_bundle` reads one."""
    out = io.BytesIO()
    members = {MANIFEST: bundle.manifest, **bundle.files}
    if bundle.signature is not None:
        members[SIGNATURE] = bundle.signature
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _discard_staged(layout: Layout) -> None:
    layout.bundle_staged.unlink(missing_ok=True)


# The runner of mount, umount and blkid: argv in, the finished process out.
Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]
Mounter = Callable[[Path], contextlib.AbstractContextManager[Path]]


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise StickError(f"{argv[0]}: not found; install util-linux (mount, blkid)") from None
    except subprocess.TimeoutExpired:
        raise StickError(f"`{' '.join(argv)}` took over {COMMAND_TIMEOUT_S:.0f} s") from None


def filesystem_type(device: Path, runner: Runner = run_command) -> str | None:
    """What blkid finds on the device by probing it (not from its cache), or None."""
    done = runner(["blkid", "-p", "-o", "value", "-s", "TYPE", "--", str(device)])
    kind = done.stdout.strip()
    return kind if done.returncode == 0 and kind else None


@contextlib.contextmanager
def mount_read_only(device: Path, runner: Runner = run_command) -> Iterator[Path]:
    """Mount ``device`` read-only (no set-uid, devices, programs or links) on a new folder.

    In the stage unit that folder is in its private /tmp and its own mount namespace.
    """
    try:
        info = os.stat(device)
    except OSError as exc:
        raise StickError(f"{device}: cannot be opened ({exc.strerror})") from None
    if not stat.S_ISBLK(info.st_mode):
        raise StickError(f"{device}: not a block device; give the stick's, e.g. /dev/sda1")
    kind = filesystem_type(device, runner)
    if kind not in MOUNT_OPTIONS:
        raise UnsupportedStickError(
            f"{device}: file system {kind or 'unknown'}; a bundle stick is FAT32, exFAT or ext4"
        )
    options = ",".join(filter(None, (_SAFE_MOUNT, MOUNT_OPTIONS[kind])))
    point = Path(tempfile.mkdtemp(prefix="kiosk-stick-"))
    try:
        done = runner(["mount", "-t", kind, "-o", options, "--", str(device), str(point)])
        if done.returncode != 0:
            raise StickError(
                f"{device}: cannot be mounted ({_one_line(done.stderr) or done.returncode})"
            )
        try:
            yield point
        finally:
            if runner(["umount", "--", str(point)]).returncode != 0:
                runner(["umount", "--lazy", "--", str(point)])
    finally:
        with contextlib.suppress(OSError):
            point.rmdir()


def stage(
    device: Path,
    layout: Layout,
    *,
    mount: Mounter = mount_read_only,
    now: datetime | None = None,
) -> Status | None:
    """Look for a bundle on the stick; stage it if it verifies. None: the stick has none.

    The stick is unmounted as soon as the bundle is in memory, before anything is
    checked, so a stick pulled out later changes nothing. A refused bundle removes
    any bundle staged before: the screen and the staged copy always agree.
    """
    stick = device.name
    found: Bundle | None = None
    problem: str | None = None
    with mount(device) as point:
        try:
            found = find_bundle(point)
        except BundleError as exc:
            problem = str(exc).replace(str(point), stick)
        if found is not None:
            found = replace(found, source=found.source.replace(str(point), stick))
    if found is None and problem is None:
        print(f"{stick}: no provisioning bundle on this stick; nothing to do", flush=True)
        return None
    clock = (now or datetime.now(UTC)).timestamp()
    with _locked(layout):
        verified = None
        if found is not None:
            try:
                verified = verify(found, trusted_keys(layout), now=now)
            except BundleError as exc:
                problem = str(exc)
        if verified is None:
            _discard_staged(layout)
            status = Status("refused", _one_line(problem or "refused"), stick, Summary(), clock)
        else:
            assert found is not None
            _write_private(layout.bundle_staged, _pack(found), 0o600)
            status = Status("ready", None, stick, Summary.of(verified), clock)
        write_status(layout, status)
    return status


def apply_staged(
    layout: Layout,
    *,
    restart: Callable[[], None],
    nmcli: Callable[[], Any] | None = None,
    now: datetime | None = None,
) -> Status | None:
    """Apply the staged bundle the booth asked for; None when there was nothing to do.

    No PIN is asked: the booth only creates the request once the technician PIN was
    right, and only the booth (group kiosk) and root can create it. The staged copy is
    verified again here, so what is applied is exactly what was verified, even if the
    copy in the run folder was changed since. ``nmcli`` makes a NetworkManager runner
    when the bundle carries Wi-Fi; ``restart`` restarts the booth after an apply.
    """
    request = layout.bundle_apply_request
    with _locked(layout):
        asked = request.exists() or request.is_symlink()
        approved_at = _approved_at(request) if asked else None
        # Removed first, whatever happens next: a request left behind would start
        # this again and again through the path unit.
        request.unlink(missing_ok=True)
        staged = layout.bundle_staged
        if not asked:
            print("no apply request from the booth; nothing applied", flush=True)
            return None
        if not staged.is_file():
            print(
                "apply request with no staged bundle (stale, or the stick was refused "
                "since): ignored",
                file=sys.stderr,
                flush=True,
            )
            return None
        previous = read_status(layout) or {}
        stick = previous.get("stick") if isinstance(previous.get("stick"), str) else None
        clock = (now or datetime.now(UTC)).timestamp()
        if approved_at is not None and previous.get("at") != approved_at:
            # Another stick was staged after the technician saw this one's summary and
            # gave the PIN: that approval was not for it. It stays staged for a new one.
            reason = (
                "a different bundle was staged after the technician PIN was given; "
                "check its summary and apply it again"
            )
            status = Status("failed", reason, stick, Summary(), clock)
            write_status(layout, status)
            return status
        try:
            bundle = replace(read_bundle(staged), source="the staged bundle")
            verified = verify(bundle, trusted_keys(layout), now=now)
        except BundleError as exc:
            _discard_staged(layout)
            status = Status("refused", _one_line(str(exc)), stick, Summary(), clock)
            write_status(layout, status)
            return status
        try:
            runner = nmcli() if nmcli is not None and verified.wifi is not None else None
            done = apply(verified, layout, nmcli=runner)
        except (KioskError, OSError) as exc:
            _discard_staged(layout)
            reason = _one_line(f"could not be applied: {exc}")
            status = Status("failed", reason, stick, Summary.of(verified), clock)
            write_status(layout, status)
            return status
        _discard_staged(layout)
        status = Status("applied", None, stick, Summary.of(verified), clock)
        write_status(layout, status)
    for line in done:
        print(line, flush=True)
    restart()
    return status


def _approved_at(request: Path) -> float | None:
    """The staged bundle's status time the booth showed when the PIN was given, if it says."""
    try:
        if request.is_symlink():
            return None
        with request.open("rb") as f:
            data = json.loads(f.read(4096))
    except (OSError, ValueError):
        return None
    at = data.get("bundle_at") if isinstance(data, dict) else None
    return float(at) if isinstance(at, int | float) and not isinstance(at, bool) else None


def command_restart(argv: Sequence[str]) -> Callable[[], None]:
    """Restart the booth with a command (``systemctl restart``); a failure is an error."""

    def restart() -> None:
        try:
            done = subprocess.run(
                list(argv), capture_output=True, text=True, timeout=60, check=False
            )
        except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
            raise BundleError(f"applied, but `{' '.join(argv)}` failed ({exc})") from None
        if done.returncode != 0:
            raise BundleError(
                f"applied, but `{' '.join(argv)}` exited with {done.returncode}: "
                f"{_one_line(done.stderr)}; restart the booth by hand"
            )

    return restart


# ---------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    gen = sub.add_parser("keygen", help="make the fleet's provisioning key pair (OUT, OUT.pub)")
    gen.add_argument("out", type=Path, metavar="OUT", help="where to write the private key")
    mk = sub.add_parser("make", help="write a signed bundle into a new folder (on the stick)")
    mk.add_argument("--key", type=Path, required=True, help="the provisioning private key")
    mk.add_argument("--config", type=Path, required=True, help="the booth file to carry")
    mk.add_argument("--wifi", metavar="SSID", help="also carry a Wi-Fi network to join")
    mk.add_argument(
        "--wifi-password-stdin",
        action="store_true",
        help="read the Wi-Fi password from standard input (else: an open network)",
    )
    mk.add_argument("--wifi-hidden", action="store_true", help="the network hides its name")
    mk.add_argument(
        "--enrollment-code-file",
        type=Path,
        metavar="FILE",
        help="also carry the one-time enrollment code in FILE",
    )
    mk.add_argument(
        "--valid-days",
        type=float,
        default=VALID_DAYS,
        metavar="DAYS",
        help=f"days until the bundle expires (default {VALID_DAYS})",
    )
    mk.add_argument(
        "--tar",
        action="store_true",
        help=f"write one .tar.gz file instead of a folder (OUT: the file, or the stick's "
        f"folder for {BUNDLE_DIR}.tar.gz)",
    )
    mk.add_argument(
        "out",
        type=Path,
        metavar="OUT",
        help=f"a new folder, e.g. /media/usb/{BUNDLE_DIR} (with --tar, see there)",
    )
    for name, text in (
        ("verify", "check a bundle without applying it"),
        ("apply", "check a bundle, ask the technician PIN, and install it"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "path",
            type=Path,
            metavar="DIR",
            help="the bundle folder or tarball, or the stick holding it",
        )
        p.add_argument(
            "--trust",
            type=Path,
            action="append",
            required=True,
            metavar="PUBKEY",
            help="a trusted provisioning public key (.pub); may be repeated",
        )
        if name == "apply":
            p.add_argument(
                "--root",
                type=Path,
                default=Path("/"),
                metavar="DIR",
                help="the booth's file system root (for tests)",
            )
            p.add_argument(
                "--pin-stdin",
                action="store_true",
                help="read the technician PIN from standard input",
            )
            p.add_argument(
                "--no-network",
                action="store_true",
                help="do not join the bundle's Wi-Fi network now",
            )
    root_help = "the booth's file system root (for tests)"
    st = sub.add_parser(
        "stage",
        help="(root, from udev) look for a signed bundle on a USB stick and stage it for the booth",
    )
    st.add_argument("device", type=Path, metavar="DEVICE", help="the stick, e.g. /dev/sda1")
    st.add_argument("--root", type=Path, default=Path("/"), metavar="DIR", help=root_help)
    ap = sub.add_parser(
        "apply-staged",
        help="(root, when the booth asks after the technician PIN) apply the staged bundle",
    )
    ap.add_argument("--root", type=Path, default=Path("/"), metavar="DIR", help=root_help)
    ap.add_argument(
        "--restart-command",
        default=" ".join(RESTART_BOOTH),
        metavar="COMMAND",
        help="how to restart the booth afterwards (default: %(default)s)",
    )
    ap.add_argument(
        "--no-network", action="store_true", help="do not join the bundle's Wi-Fi network now"
    )


class _PinError(BundleError):
    pass


def _pin_hash(verified: VerifiedBundle, layout: Layout) -> str:
    """The installed booth's PIN hash, or on a booth with none yet, the bundle's own."""
    from kiosk.config import load

    with contextlib.suppress(ConfigError):
        installed = load(layout.config).technician.pin_hash
        if installed is not None:
            return installed
    if verified.config.technician.pin_hash is not None:
        return verified.config.technician.pin_hash
    raise BundleError(
        "neither the installed nor the bundled booth file has a [technician] pin_hash, so no "
        "technician PIN can authorise this bundle; add one with `kiosk-provision hash-pin`"
    )


def command(args: argparse.Namespace) -> int:
    import sys

    from kiosk.commandline import EXIT_OK, EXIT_PROBLEMS, ask_hidden
    from kiosk.technician import verify_pin

    if args.bundle_command == "stage":
        return _stage_command(args)
    if args.bundle_command == "apply-staged":
        return _apply_staged_command(args)
    if args.bundle_command == "keygen":
        private, public, kid = keygen(args.out)
        print(
            f"Provisioning key {kid}: private {private} (keep it off the booths, 0600), "
            f"public {public} (give it to booths with --trust)"
        )
        return EXIT_OK
    if args.bundle_command == "make":
        key = load_private_key(args.key)
        wifi = None
        if args.wifi is not None:
            password = sys.stdin.readline().rstrip("\r\n") if args.wifi_password_stdin else None
            wifi = WifiProfile(args.wifi, password or None, args.wifi_hidden)
            _parse_wifi(
                json.dumps({"ssid": wifi.ssid, "password": wifi.password}).encode(), "--wifi"
            )
        code = None
        if args.enrollment_code_file is not None:
            code = _read_key_file(args.enrollment_code_file, "enrollment code").decode(
                "ascii", errors="replace"
            )
        out = make(
            key,
            args.config,
            args.out,
            wifi=wifi,
            enrollment_code=code,
            valid_days=args.valid_days,
            tar=args.tar,
        )
        print(f"Signed bundle written to {out} (key {key_id(key.public_key())})")
        return EXIT_OK
    trusted = [load_public_key(path) for path in args.trust]
    verified = verify(open_bundle(args.path), trusted)
    print(
        f"Bundle OK: signed by {verified.key_id}, booth {verified.config.booth.id}, "
        f"expires {verified.expires:%Y-%m-%d}; carries " + ", ".join(sorted(verified.bundle.files))
    )
    if args.bundle_command == "verify":
        return EXIT_OK
    layout = Layout(args.root)
    encoded = _pin_hash(verified, layout)
    if args.pin_stdin:
        pin = sys.stdin.readline().strip()
    else:
        pin = ask_hidden("Technician PIN: ", "PIN", "--pin-stdin", _PinError)
    if not verify_pin(pin, encoded):
        print(
            "kiosk-provision bundle apply: wrong technician PIN; nothing was changed",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    nmcli = None
    if verified.wifi is not None and not args.no_network:
        from provisioning.network import Nmcli

        nmcli = Nmcli()
    for line in apply(verified, layout, nmcli=nmcli):
        print(line)
    return EXIT_OK


def _stage_command(args: argparse.Namespace) -> int:
    from kiosk.commandline import EXIT_OK

    try:
        status = stage(args.device, Layout(args.root))
    except UnsupportedStickError as exc:
        # A stick for something else (photos on NTFS...): nothing to show the technician.
        print(f"{exc}; not looked at", flush=True)
        return EXIT_OK
    if status is not None and status.state == "ready":
        print(f"{status.stick}: bundle for booth {status.summary.booth_id} staged; "
              "waiting for the technician PIN on the booth", flush=True)  # fmt: skip
    elif status is not None:
        print(f"{status.stick}: bundle refused: {status.reason}", flush=True)
    return EXIT_OK


def _apply_staged_command(args: argparse.Namespace) -> int:
    import shlex

    from kiosk.commandline import EXIT_OK, EXIT_PROBLEMS

    try:
        restart_argv = shlex.split(args.restart_command)
    except ValueError as exc:
        raise BundleError(f"--restart-command: cannot be split into words ({exc})") from None
    if not restart_argv:
        raise BundleError("--restart-command: empty; give a command, e.g. systemctl restart ...")
    nmcli = None
    if not args.no_network:
        from provisioning.network import Nmcli

        nmcli = Nmcli
    status = apply_staged(Layout(args.root), restart=command_restart(restart_argv), nmcli=nmcli)
    if status is None or status.state == "applied":
        return EXIT_OK
    print(f"bundle {status.state}: {status.reason}", file=sys.stderr, flush=True)
    return EXIT_PROBLEMS
