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
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import grp
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
) -> Path:
    """Write a signed bundle into the folder ``out`` (new or empty)."""
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
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out}: exists and is not an empty folder; give a new folder")
    out.mkdir(parents=True, exist_ok=True)
    for name, data in {**files, MANIFEST: manifest_bytes, SIGNATURE: signature}.items():
        (out / name).write_bytes(data)
    return out


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
        "out", type=Path, metavar="OUT_DIR", help=f"a new folder, e.g. /media/usb/{BUNDLE_DIR}"
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
            key, args.config, args.out, wifi=wifi, enrollment_code=code, valid_days=args.valid_days
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
