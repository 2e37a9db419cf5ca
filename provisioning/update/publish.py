"""The maintainer's side: keys, a TUF repository of release bundles, and signing.

The repository is plain files, so any static web server can host it::

    REPO/metadata/N.root.json   every root version (booths walk the chain on key rotation)
    REPO/metadata/root.json     a copy of the newest root (for bundles and humans)
    REPO/metadata/N.targets.json, N.snapshot.json, timestamp.json   (consistent snapshots)
    REPO/targets/channels/<sha256>.<channel>.json   which version a channel runs now
    REPO/targets/bundles/<sha256>.telehealth-kiosk-<version>.tar
    REPO/repository.json        where the repository is published (copied into bundles)

New files are written first and ``timestamp.json`` last, each by an atomic
rename, so a booth reading during a publish sees the old or the new state.

Keys are Ed25519, one PEM file per key: ``root.pem``, ``targets.pem``,
``snapshot.pem``, ``timestamp.pem`` (more keys for a role: ``targets-2.pem``,
...). Only ``snapshot`` and ``timestamp`` are needed day to day; ``root`` lives
offline and comes out only to make a repository or rotate keys (docs/updates.md).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from provisioning.update import UpdateError
from provisioning.update._tuf import (
    CryptoSigner,
    Metadata,
    MetaFile,
    Root,
    Signed,
    Signer,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from provisioning.update.bundle import (
    MAX_BUNDLE_BYTES,
    PROJECT,
    ROOT_FILE,
    extract_bundle,
    make_bundle,
    parse_version,
)
from provisioning.update.fsio import fsync_dir, write_atomic

ROLES: Final = ("root", "targets", "snapshot", "timestamp")
ISSUED: Final = "x-telehealth-issued"
"""Extra signed field of timestamp.json: when it was signed (a floor for the booth's clock)."""


@dataclass(frozen=True)
class Expiry:
    """How long each role's metadata stays valid after signing."""

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=365)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)
    """Short: a frozen or replayed repository is noticed within a day."""


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


Clock = Callable[[], datetime]
_SERIALIZER = JSONSerializer(compact=False)


# ------------------------------------------------------------------------ keys


def key_files(keys: Path, role: str) -> list[Path]:
    """The role's key files: ``role.pem`` then ``role-2.pem``, ``role-3.pem``, ..."""
    found = [keys / f"{role}.pem"] if (keys / f"{role}.pem").is_file() else []
    return found + sorted(keys.glob(f"{role}-[0-9]*.pem"))


def keygen(keys: Path, roles: tuple[str, ...] = ROLES) -> list[Path]:
    """Make one new Ed25519 key per role in ``keys``; never overwrites a key."""
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    taken = [keys / f"{role}.pem" for role in roles if (keys / f"{role}.pem").exists()]
    if taken:
        raise UpdateError(
            f"{taken[0]}: already exists; keys are never overwritten (rotate with "
            "`kiosk-provision release rotate`, or choose an empty folder)"
        )
    return [_write_key(keys / f"{role}.pem") for role in roles]


def _write_key(path: Path) -> Path:
    signer = CryptoSigner(Ed25519PrivateKey.generate())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signer.private_bytes)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path.parent)
    return path


def load_signers(keys: Path, role: str) -> list[Signer]:
    """Every key of ``role`` in ``keys``, or a clear error saying which file is missing."""
    files = key_files(keys, role)
    if not files:
        raise UpdateError(
            f"{keys / (role + '.pem')}: no {role} key; run `kiosk-provision release keygen` "
            f"or give --keys the folder holding {role}.pem"
            + (
                " (the root key is kept offline: bring it in for this step)"
                if role == "root"
                else ""
            )
        )
    signers: list[Signer] = []
    for file in files:
        try:
            private = load_pem_private_key(file.read_bytes(), password=None)
        except (ValueError, TypeError, OSError) as exc:
            raise UpdateError(
                f"{file}: not a readable unencrypted PEM private key ({exc})"
            ) from None
        if not isinstance(private, Ed25519PrivateKey):
            raise UpdateError(f"{file}: not an Ed25519 key")
        signers.append(CryptoSigner(private))
    return signers


# ------------------------------------------------------------------ repository


class Repository:
    """A repository on disk: its newest metadata, and the signing of new versions."""

    def __init__(self, path: Path, clock: Clock = utc_now, expiry: Expiry = Expiry()) -> None:
        self.path = path
        self.metadata = path / "metadata"
        self.targets_dir = path / "targets"
        self.clock = clock
        self.expiry = expiry

    # ---------------------------------------------------------------- reading

    def _read(self, name: str, kind: type[Signed]) -> Metadata[Any]:
        file = self.metadata / name
        try:
            md = Metadata[Any].from_bytes(file.read_bytes())
        except OSError as exc:
            raise UpdateError(
                f"{file}: cannot be read ({exc.strerror}); is {self.path} a repository made by "
                "`kiosk-provision release init-repo`?"
            ) from None
        except DeserializationError as exc:
            raise UpdateError(f"{file}: not valid TUF metadata ({exc})") from None
        if not isinstance(md.signed, kind):
            raise UpdateError(f"{file}: holds {md.signed.type} metadata, not {kind.type}")
        return md

    def root(self) -> Metadata[Root]:
        versions = [int(p.name.split(".")[0]) for p in self.metadata.glob("[0-9]*.root.json")]
        if not versions:
            raise UpdateError(
                f"{self.metadata}: no N.root.json; make the repository first with "
                "`kiosk-provision release init-repo`"
            )
        return self._read(f"{max(versions)}.root.json", Root)

    def timestamp(self) -> Metadata[Timestamp]:
        return self._read("timestamp.json", Timestamp)

    def snapshot(self) -> Metadata[Snapshot]:
        return self._read(
            f"{self.timestamp().signed.snapshot_meta.version}.snapshot.json", Snapshot
        )

    def targets(self) -> Metadata[Targets]:
        version = self.snapshot().signed.meta["targets.json"].version
        return self._read(f"{version}.targets.json", Targets)

    def target_file(self, info: TargetFile) -> Path:
        """Where a target's bytes are stored (consistent snapshot: hash-prefixed name)."""
        folder, _, name = info.path.rpartition("/")
        return self.targets_dir / folder / f"{info.hashes['sha256']}.{name}"

    def channel(self, channel: str) -> dict[str, str] | None:
        """The published index of a channel: {"version": ..., "bundle": target path}."""
        info = self.targets().signed.targets.get(channel_target(channel))
        if info is None:
            return None
        data: dict[str, str] = json.loads(self.target_file(info).read_bytes())
        return data

    def source(self) -> dict[str, str]:
        file = self.path / "repository.json"
        try:
            data: dict[str, str] = json.loads(file.read_bytes())
        except (OSError, ValueError) as exc:
            raise UpdateError(f"{file}: cannot be read ({exc}); remake with init-repo") from None
        return data

    # ---------------------------------------------------------------- writing

    def _sign(self, md: Metadata[Any], signers: list[Signer], *, append: bool = False) -> None:
        if not append:
            md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)

    def _write(self, name: str, md: Metadata[Any]) -> None:
        write_atomic(self.metadata / name, md.to_bytes(_SERIALIZER))

    def _write_target(self, path: str, data: bytes) -> TargetFile:
        info = TargetFile.from_data(path, data, ["sha256"])
        file = self.target_file(info)
        file.parent.mkdir(parents=True, exist_ok=True)
        if not file.exists():
            write_atomic(file, data)
        return info

    def _publish(
        self,
        keys: Path,
        targets: Metadata[Targets] | None,
        *,
        snapshot: bool = True,
    ) -> None:
        """Sign and write a new targets (if given), snapshot and timestamp, timestamp last."""
        now = self.clock()
        snap = self.snapshot() if self.metadata.joinpath("timestamp.json").exists() else None
        if targets is not None:
            targets.signed.version += 1
            targets.signed.expires = now + self.expiry.targets
            self._sign(targets, load_signers(keys, "targets"))
            self._write(f"{targets.signed.version}.targets.json", targets)
        if snapshot or snap is None:
            if snap is None:
                snap = Metadata(Snapshot(expires=now))
                snap.signed.version = 0
            if targets is not None:
                snap.signed.meta["targets.json"] = MetaFile(targets.signed.version)
            snap.signed.version += 1
            snap.signed.expires = now + self.expiry.snapshot
            self._sign(snap, load_signers(keys, "snapshot"))
            self._write(f"{snap.signed.version}.snapshot.json", snap)
        assert snap is not None
        if self.metadata.joinpath("timestamp.json").exists():
            ts = self.timestamp()
        else:
            ts = Metadata(Timestamp(expires=now))
            ts.signed.version = 0
        ts.signed.snapshot_meta = MetaFile(snap.signed.version)
        ts.signed.version += 1
        ts.signed.expires = now + self.expiry.timestamp
        ts.signed.unrecognized_fields[ISSUED] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        self._sign(ts, load_signers(keys, "timestamp"))
        self._write("timestamp.json", ts)

    def init(
        self, keys: Path, url: str, thresholds: Mapping[str, int] | None = None
    ) -> Metadata[Root]:
        """Make a new repository signed by the keys in ``keys``; refuses to overwrite one."""
        if not url.startswith(("https://", "http://")):
            raise UpdateError(
                f"--url: must be the http(s) address the repository will be served at, not {url!r}"
            )
        if self.metadata.exists() and any(self.metadata.iterdir()):
            raise UpdateError(
                f"{self.metadata}: already holds a repository; choose an empty folder"
            )
        signers = {role: load_signers(keys, role) for role in ROLES}
        now = self.clock()
        root = Metadata(Root(expires=now + self.expiry.root, consistent_snapshot=True))
        for role in ROLES:
            for signer in signers[role]:
                root.signed.add_key(signer.public_key, role)
            wanted = (thresholds or {}).get(role, 1)
            if not 1 <= wanted <= len(signers[role]):
                raise UpdateError(
                    f"threshold for {role}: must be 1 to {len(signers[role])} "
                    f"(the number of {role} keys in {keys}), not {wanted}"
                )
            root.signed.roles[role].threshold = wanted
        self._sign(root, signers["root"])
        self.metadata.mkdir(parents=True, exist_ok=True)
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        base = url.rstrip("/") + "/"
        source = {"metadata_url": base + "metadata/", "targets_url": base + "targets/"}
        write_atomic(self.path / "repository.json", json.dumps(source, indent=1).encode() + b"\n")
        self._write("1.root.json", root)
        self._write(ROOT_FILE, root)
        targets = Metadata(Targets(expires=now))
        targets.signed.version = 0
        self._publish(keys, targets)
        return root

    def add(self, keys: Path, bundle: Path, channel: str, *, allow_older: bool = False) -> str:
        """Publish a bundle and point ``channel`` at it; returns the version."""
        _check_channel(channel)
        if bundle.stat().st_size > MAX_BUNDLE_BYTES:
            raise UpdateError(f"{bundle}: bigger than {MAX_BUNDLE_BYTES} bytes; booths refuse it")
        with tempfile.TemporaryDirectory() as tmp:
            manifest = extract_bundle(bundle, Path(tmp))
            shipped = Path(tmp, "trust", ROOT_FILE).read_bytes()
        roots = {p.read_bytes() for p in self.metadata.glob("[0-9]*.root.json")}
        if shipped not in roots:
            raise UpdateError(
                f"{bundle}: its trust/root.json is not a root of {self.path}; booths installed "
                "from it could not verify this repository (build it with `release bundle --repo`)"
            )
        version = manifest.version
        targets = self.targets()
        bundle_path = f"bundles/{PROJECT}-{version}.tar"
        data = bundle.read_bytes()
        old = targets.signed.targets.get(bundle_path)
        if (
            old is not None
            and old.hashes["sha256"] != TargetFile.from_data("", data).hashes["sha256"]
        ):
            raise UpdateError(
                f"{bundle}: version {version} was already published with different contents; "
                "a version is never changed: give the release a new version number"
            )
        current = self.channel(channel)
        if current is not None:
            if parse_version(version) == parse_version(current["version"]):
                raise UpdateError(f"channel {channel} already runs {version}; nothing to do")
            if parse_version(version) < parse_version(current["version"]) and not allow_older:
                raise UpdateError(
                    f"{bundle}: version {version} is older than {current['version']}, which "
                    f"channel {channel} runs now; booths refuse older releases (fix forward "
                    "with a new version; --allow-older only for booths not yet updated)"
                )
        targets.signed.targets[bundle_path] = self._write_target(bundle_path, data)
        index = {"version": version, "bundle": bundle_path}
        channel_path = channel_target(channel)
        encoded = json.dumps(index, indent=1, sort_keys=True).encode() + b"\n"
        targets.signed.targets[channel_path] = self._write_target(channel_path, encoded)
        fsync_dir(self.targets_dir)
        self._publish(keys, targets)
        return version

    def refresh_timestamp(self, keys: Path) -> Metadata[Timestamp]:
        """Re-sign timestamp.json (run often: it expires within a day); renews snapshot when due."""
        snap = self.snapshot()
        due = snap.signed.expires - self.clock() < self.expiry.snapshot / 2
        self._publish(keys, None, snapshot=due)
        return self.timestamp()

    def rotate(self, keys: Path, role: str) -> Path:
        """Replace ``role``'s key with a new one; the new root is signed by old and new root keys.

        The old key file is kept as ``<role>.pem.retired-<root version>`` (destroy
        it once every booth has taken the new root). Returns the new key file.
        """
        if role not in ROLES:
            raise UpdateError(f"role: must be one of {', '.join(ROLES)}, not {role!r}")
        root = self.root()
        old_root_signers = load_signers(keys, "root")
        old_files = key_files(keys, role)
        if not old_files:
            load_signers(keys, role)  # raises the clear error
        for keyid in list(root.signed.roles[role].keyids):
            root.signed.revoke_key(keyid, role)
        retired = [f.with_name(f"{f.name}.retired-{root.signed.version}") for f in old_files]
        for old, new in zip(old_files, retired, strict=True):
            old.replace(new)
        new_file = _write_key(keys / f"{role}.pem")
        [new_signer] = load_signers(keys, role)
        root.signed.add_key(new_signer.public_key, role)
        root.signed.roles[role].threshold = 1
        root.signed.version += 1
        root.signed.expires = self.clock() + self.expiry.root
        signers = old_root_signers + ([new_signer] if role == "root" else [])
        self._sign(root, signers)
        self._write(f"{root.signed.version}.root.json", root)
        self._write(ROOT_FILE, root)
        self._publish(keys, self.targets())
        return new_file


def channel_target(channel: str) -> str:
    return f"channels/{channel}.json"


def _check_channel(channel: str) -> None:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", channel):
        raise UpdateError(
            f'--channel: must be lowercase letters, digits and - such as "stable", not {channel!r}'
        )


def bundle_from_wheels(repo: Repository, wheels_dir: Path, version: str, out: Path) -> Path:
    """``release bundle``: pack a folder of wheels with this repository's root and address."""
    wheels = sorted(wheels_dir.glob("*.whl"))
    if not wheels:
        raise UpdateError(
            f"{wheels_dir}: no .whl files; fill it with `pip wheel --wheel-dir {wheels_dir} .` "
            "on the booth's platform (see docs/updates.md)"
        )
    root = repo.metadata / ROOT_FILE
    try:
        root_bytes = root.read_bytes()
    except OSError as exc:
        raise UpdateError(f"{root}: cannot be read ({exc.strerror}); run init-repo first") from None
    make_bundle(wheels, version, out, root_bytes, repo.source())
    return out
